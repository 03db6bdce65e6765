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


def test_catalog_declares_the_eleven_study_benchmarks_with_a_study_source_at_a_named_revision():
    entries = catalog.benchmarks()
    assert set(entries) == STUDY_BENCHMARKS
    for name, e in entries.items():
        study = e.hub["study"]
        assert study.path == "zou-lab/BioMed-R1-Eval" and study.split == "test"
        assert study.config == STUDY_CONFIGS[name]  # the collection's own, case-sensitive config names
        assert study.revision == "main", f"{name}: a branch ingest resolves and records (the first upload, cabedcf, has hle_biomed only)"
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
        if name.startswith("sft") or not entry.versioned:
            continue  # shipped input, not a stage output; or outside DVC by design (timings)
        path = entry.path.replace("{model}", "${item}")  # per-model outputs of foreach stages
        assert path in dvc_yaml, f"dataset {name} ({entry.path}) is not a stage output in dvc.yaml"
        assert not entry.path.endswith(".parquet") or entry.schema_ref, name


def test_the_study_references_name_catalog_models_and_both_paper_versions():
    refs = catalog.references()
    assert {r.paper_version for r in refs} == {"v1", "v2"}
    assert all(r.model in catalog.models() for r in refs if r.model)
    by = {(r.model, r.category, r.setting, r.paper_version): r.value for r in refs if r.measure == "accuracy"}
    assert by[("medreason-8b", "all", "clean", "v2")] == 0.504 and by[("medreason-8b", "all", "adversarial", "v2")] == 0.244
    assert by[("m1-7b-23k", "knowledge", "clean", "v1")] == 0.605 and by[("m1-7b-23k", "reasoning", "clean", "v1")] == 0.471


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "medreason-9b"}, r"references.yaml:\d+: references\[2\].model: no model named 'medreason-9b'"),
        ({"benchmark": "usmle"}, r"references.yaml:\d+: references\[2\].benchmark: no benchmark named 'usmle'"),
        ({"value": 44.4}, r"references.yaml:\d+: references\[2\].value: .*less than or equal to 1"),
        ({"setting": None}, r"references\[2\]: an accuracy needs a model and a setting"),
    ],
)
def test_a_wrong_reference_is_refused_naming_row_and_field(tmp_path, change, message):
    data = yaml.safe_load(catalog.REFERENCES_YAML.read_text())
    data["references"][2].update(change)
    path = tmp_path / "references.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(catalog.CatalogError, match=message) as error:
        catalog.references(path)
    assert "\n" not in str(error.value)
