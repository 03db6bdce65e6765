import json

import pytest

from registry import catalog
from registry.ingest import ingest, ingest_metrics

EXPECTED = {"medqa": 1273, "medbullets_op4": 308, "medbullets_op5": 308, "hle_biomed": 103, "pubmedqa": 500}


@pytest.fixture(scope="module")
def result(request):
    from .conftest import MIRROR

    if not MIRROR.is_dir():
        pytest.skip(f"real benchmark mirror not found at {MIRROR}")
    return ingest(catalog.benchmarks(), "mirror", MIRROR)


def test_mirror_counts_are_exact(result, mirror):
    counts = result.questions.benchmark.value_counts().to_dict()
    medxpertqa_lines = sum(1 for line in (mirror / "medreason/MedXpertQA_test.jsonl").open() if line.strip())
    assert counts == {**EXPECTED, "medxpertqa": medxpertqa_lines}
    assert result.problems == []


def test_mirror_reports_missing_benchmarks_by_name(result):
    metrics = ingest_metrics(result, "mirror")
    assert set(metrics["skipped"]) == {"medmcqa", "mmlu_pro_health_biology", "gpqa_medical", "lancet", "nejm"}
    assert metrics["n_skipped"] == 5 and metrics["questions"] == len(result.questions)


def test_mirror_expert_categorys_match_question_type(result, mirror):
    raw = [json.loads(line) for line in (mirror / "medreason/MedXpertQA_test.jsonl").open()]
    q = result.questions[result.questions.benchmark == "medxpertqa"]
    assert (q.expert_category == "reasoning").sum() == sum(r["question_type"] == "Reasoning" for r in raw)
    assert (q.expert_category == "knowledge").sum() == sum(r["question_type"] == "Understanding" for r in raw)
    assert result.questions[result.questions.benchmark != "medxpertqa"].expert_category.isna().all()


def test_source_pointer_leads_back_to_the_upstream_row(result, mirror):
    q = result.questions
    row = q[(q.benchmark == "medbullets_op5") & (q.qid == "200")].iloc[0]
    line = open(row.source_file).read().splitlines()[int(row.source_row) - 1]
    rec = json.loads(line)
    assert row.question == rec["question"].strip() and row.answer == rec["answer_idx"]
    pub = q[q.benchmark == "pubmedqa"].iloc[0]
    upstream = json.loads(open(pub.source_file).read())[pub.source_row]
    assert pub.options[pub.answer] == upstream["final_decision"]


def test_hle_keeps_upstream_option_letters_and_counts_irregular_ones(result):
    q = result.questions[result.questions.benchmark == "hle_biomed"]
    assert q.n_options.max() > 10  # HLE questions carry up to 22 options upstream
    assert ingest_metrics(result, "mirror")["benchmarks"]["hle_biomed"]["irregular_options"] == 3


def test_pubmedqa_is_the_official_test_split(result, mirror):
    test_split = json.loads((mirror / "pubmedqa/test_ground_truth.json").read_text())
    q = result.questions[result.questions.benchmark == "pubmedqa"]
    assert set(q.qid) == set(test_split) and len(q) == 500
    assert all(q.set_index("qid").loc[pmid, "options"][q.set_index("qid").loc[pmid, "answer"]] == gold for pmid, gold in test_split.items())
