import json
import unicodedata

import pytest

from registry import catalog
from registry.errors import MedregError
from registry.ingest import ingest, normalise, read_records
from schemas.questions import QuestionsSchema

from .conftest import DEMO


@pytest.fixture(scope="module")
def ingested():
    """The demo benchmarks, ingested once for this module."""
    return ingest(catalog.benchmarks(), "demo", DEMO)


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_demo_jsonl_medxpertqa_keeps_ids_options_and_expert_labels(ingested):
    rows = _jsonl(DEMO / "medreason/MedXpertQA_test.jsonl")
    q = ingested.questions[ingested.questions.benchmark == "medxpertqa"].set_index("qid")
    assert len(q) == len(rows) >= 60
    for r in rows:
        got = q.loc[r["id"]]
        assert got.answer == r["label"]
        assert got.options == r["options"] and list(got.options) == list(r["options"])
        assert got.expert_category == {"Reasoning": "reasoning", "Understanding": "knowledge"}[r["question_type"]]
        assert json.loads(got.meta) == {"medical_task": r["medical_task"], "body_system": r["body_system"]}
    labels = q.expert_category.value_counts()
    assert labels["reasoning"] >= 25 and labels["knowledge"] >= 25  # both classes well represented


def test_demo_jsonl_medqa_uses_line_numbers_as_qid(ingested):
    rows = _jsonl(DEMO / "medreason/medqa_test.jsonl")
    q = ingested.questions[ingested.questions.benchmark == "medqa"]
    assert len(q) == len(rows) >= 40
    assert q.n_options.isin([4, 5]).all()
    first = q[q.qid == "1"].iloc[0]
    assert first.source_row == "1" and first.source_file.endswith("medreason/medqa_test.jsonl")
    assert first.options[first.answer] == rows[0]["answer"]


def test_demo_json_object_pubmedqa_maps_decision_to_fixed_options(ingested):
    raw = json.loads((DEMO / "pubmedqa/ori_pqal.json").read_text())
    q = ingested.questions[ingested.questions.benchmark == "pubmedqa"].set_index("qid")
    assert len(q) == len(raw) >= 20
    for pmid, r in raw.items():
        got = q.loc[pmid]
        assert got.options == {"A": "yes", "B": "no", "C": "maybe"}
        assert got.options[got.answer] == r["final_decision"]
        assert got.context.startswith(r["CONTEXTS"][0].strip()[:40])
        assert got.answer_format == "yes_no_maybe"


def test_demo_json_list_sft_examples_have_the_medical_o1_fields():
    path = catalog.dataset_path("sft_demo", catalog.PACKAGE_DIR.parent)
    records = [r.value for r in read_records(path, "json_list")]
    assert len(records) >= 30
    for rec in records:
        assert isinstance(rec, dict), rec
        for key in ("question", "options", "answer_idx", "answer", "Complex_CoT", "Response"):
            assert rec.get(key), f"missing {key}"
        assert rec["options"][rec["answer_idx"]] == rec["answer"]


def test_demo_ingest_validates_is_deterministic_and_reports_skipped(ingested):
    QuestionsSchema.validate(ingested.questions)
    again = ingest(catalog.benchmarks(), "demo", DEMO)
    assert again.questions.equals(ingested.questions)
    assert len(ingested.questions) >= 120
    assert set(ingested.skipped) == set(catalog.benchmarks()) - {"medxpertqa", "medqa", "pubmedqa"}
    assert all("not in the demo directory" in why for why in ingested.skipped.values())


def test_normalise_strips_and_nfc_normalises_text():
    entry = catalog.benchmarks()["medqa"]
    decomposed = "  Cafe\u0301 au lait spots\n\n"
    row, errors = normalise({"question": decomposed, "options": {"A": " x\u0301 ", "B": "y"}, "answer_idx": "b"}, entry, entry.fields)
    assert errors == []
    assert row["question"] == unicodedata.normalize("NFC", "Cafe\u0301 au lait spots") == "Café au lait spots"
    assert row["options"] == {"A": unicodedata.normalize("NFC", "x\u0301"), "B": "y"}
    assert row["answer"] == "B"


def pinned_study(name: str) -> dict:
    entry = catalog.benchmarks()[name]
    return {name: entry.model_copy(update={"hub": {"study": entry.hub["study"].model_copy(update={"revision": "c" * 40})}})}


def test_hub_source_uses_pinned_revision_and_parses_string_options(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split, revision):
        calls.append((path, name, split, revision))
        return [
            {
                "id": "medqa-0",
                "question": "Q one?",
                "options": "{'A': 'a', 'B': 'b', 'C': 'c', 'D': 'd'}",
                "answer_idx": "C",
                "dataset_name": "medqa",
                "reasoning_prob": 0.7,
                "is_reasoning": True,
            },
            {
                "id": "medqa-1",
                "question": "Q two?",
                "options": '{"A": "a", "B": "b"}',
                "answer_idx": "A",
                "dataset_name": "medqa",
                "reasoning_prob": 0.1,
                "is_reasoning": False,
            },
        ]

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = ingest(pinned_study("medqa"), "hub", ".", benchmarks=["medqa"])  # a full commit: no lookup
    study = pinned_study("medqa")["medqa"].hub["study"]
    assert calls == [("zou-lab/BioMed-R1-Eval", "medqa", "test", study.revision)]
    q = result.questions
    assert list(q.qid) == ["medqa-0", "medqa-1"]
    assert q.options[0] == {"A": "a", "B": "b", "C": "c", "D": "d"} and q.answer[0] == "C"
    assert q.source_file[0] == f"hf://zou-lab/BioMed-R1-Eval@{study.revision}/medqa/test"
    assert (q.study_category[0], q.study_p_reasoning[0], q.study_category[1], q.study_p_reasoning[1]) == ("reasoning", 0.7, "knowledge", 0.1)
    assert json.loads(q.meta[0]) == {"dataset_name": "medqa"}


def test_hub_source_refuses_unpinned_revision_unless_allowed(monkeypatch):
    with pytest.raises(MedregError, match="not pinned"):
        ingest(catalog.benchmarks(), "hub", ".", benchmarks=["pubmedqa"], hub_source="original")


def test_hub_failure_names_the_benchmark_and_dataset(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MedregError, match=r"hf://zou-lab/BioMed-R1-Eval@c{40}/NEJM/test: benchmark 'nejm': cannot read: ConnectionError"):
        ingest(pinned_study("nejm"), "hub", ".", benchmarks=["nejm"])


def test_unknown_benchmark_is_a_clear_error():
    with pytest.raises(MedregError, match="unknown benchmark"):
        ingest(catalog.benchmarks(), "demo", DEMO, benchmarks=["medqa", "medqa_typo"])
