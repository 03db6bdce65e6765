import copy

import pytest
import yaml

from registry import catalog

STUDY_BENCHMARKS = {
    "medqa",
    "medmcqa",
    "pubmedqa",
    "mmlu_pro_health_biology",
    "gpqa_medical",
    "lancet",
    "nejm",
    "medbullets_op4",
    "medbullets_op5",
    "medxpertqa",
    "hle_biomed",
}


def test_catalog_declares_the_eleven_study_benchmarks_with_pinned_study_source():
    entries = catalog.benchmarks()
    assert set(entries) == STUDY_BENCHMARKS
    for name, e in entries.items():
        study = e["hub"]["study"]
        assert study["path"] == "zou-lab/BioMed-R1-Eval" and study["split"] == "test"
        assert study["config"] == name
        assert len(study["revision"]) == 40, f"{name}: study revision must be a pinned commit"
        assert e["license"] and e["title"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e["medqa"].pop("mirror"), "benchmark 'medqa': missing 'mirror'"),
        (lambda e: e["nejm"].update(answer_format="free_text"), "benchmark 'nejm': answer_format must be one of"),
        (lambda e: e["lancet"]["fields"].update(questoin="q"), "benchmark 'lancet': unknown field key 'questoin'"),
        (lambda e: e["hle_biomed"]["mirror"].update(format="csv"), "benchmark 'hle_biomed': mirror needs"),
        (
            lambda e: e["pubmedqa"]["hub"]["study"].pop("revision"),
            "benchmark 'pubmedqa': hub.study needs path, split and revision",
        ),
    ],
)
def test_lint_names_the_broken_entry(mutate, message):
    data = yaml.safe_load(catalog.BENCHMARKS_YAML.read_text())
    data = copy.deepcopy(data)
    mutate(data["benchmarks"])
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.lint_benchmarks(data, "benchmarks.yaml")


def test_every_catalog_dataset_has_a_path_and_dvc_declares_it():
    dvc_yaml = (catalog.PACKAGE_DIR.parent / "dvc.yaml").read_text()
    for name, entry in catalog.datasets().items():
        if name.startswith("sft"):
            continue  # shipped input, not a stage output
        path = entry["path"].replace("{model}", "${item}")  # per-model outputs of foreach stages
        assert path in dvc_yaml, f"dataset {name} ({entry['path']}) is not a stage output in dvc.yaml"
