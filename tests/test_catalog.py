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


# zou-lab/BioMed-R1-Eval's configs, as its dataset card lists them
STUDY_CONFIGS = {
    "hle_biomed": "hle_biomed",
    "medbullets_op4": "medbullets_op4",
    "medbullets_op5": "medbullets_op5",
    "medmcqa": "medmcqa",
    "medqa": "medqa",
    "medxpertqa": "MedXpertQA",
    "mmlu_pro_health_biology": "mmlu_health_biology",
    "pubmedqa": "pubmedqa",
    "gpqa_medical": "GPQA_Medical_test",
    "lancet": "Lancet",
    "nejm": "NEJM",
}


def test_catalog_declares_the_eleven_study_benchmarks_with_pinned_study_source():
    entries = catalog.benchmarks()
    assert set(entries) == STUDY_BENCHMARKS
    for name, e in entries.items():
        study = e.hub["study"]
        assert study.path == "zou-lab/BioMed-R1-Eval" and study.split == "test"
        assert study.config == STUDY_CONFIGS[name]  # the collection's own, case-sensitive config names
        assert len(study.revision) == 40, f"{name}: study revision must be a pinned commit"
        assert e.license and e.title


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e["medqa"].pop("mirror"), "benchmarks.medqa.mirror: required key missing"),
        (lambda e: e["nejm"].update(answer_format="free_text"), "benchmarks.nejm.answer_format: Input should be 'letter' or 'yes_no_maybe'"),
        (lambda e: e["lancet"]["fields"].update(questoin="q"), "benchmarks.lancet.fields.questoin: unknown key"),
        (lambda e: e["hle_biomed"]["mirror"].update(format="csv"), "benchmarks.hle_biomed.mirror.format: Input should be 'jsonl'"),
        (lambda e: e["pubmedqa"]["hub"]["study"].pop("revision"), "benchmarks.pubmedqa.hub.study.revision: required key missing"),
        (lambda e: e["medqa"]["fields"].update(answer_text="x"), "benchmarks.medqa.fields: give one of answer .a letter. and answer_text"),
        (lambda e: e["medqa"].update(max_options=40), "benchmarks.medqa.max_options: Input should be less than or equal to 26"),
    ],
)
def test_a_broken_entry_is_refused_naming_entry_and_key(mutate, message):
    data = copy.deepcopy(yaml.safe_load(catalog.BENCHMARKS_YAML.read_text()))
    mutate(data["benchmarks"])
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.check(catalog.BenchmarkCatalog, data, "benchmarks.yaml")


def test_errors_name_the_line(tmp_path):
    path = tmp_path / "benchmarks.yaml"
    text = catalog.BENCHMARKS_YAML.read_text().replace("    answer_format: letter\n", "    answer_format: lettr\n", 1)
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if "lettr" in t)
    with pytest.raises(catalog.CatalogError, match=rf"benchmarks.yaml:{line}: benchmarks.medqa.answer_format"):
        catalog.benchmarks(path)


def test_every_catalog_dataset_has_a_path_and_dvc_declares_it():
    dvc_yaml = (catalog.PACKAGE_DIR.parent / "dvc.yaml").read_text()
    for name, entry in catalog.datasets().items():
        if name.startswith("sft"):
            continue  # shipped input, not a stage output
        path = entry.path.replace("{model}", "${item}")  # per-model outputs of foreach stages
        assert path in dvc_yaml, f"dataset {name} ({entry.path}) is not a stage output in dvc.yaml"
        assert not entry.path.endswith(".parquet") or entry.schema_ref, name
