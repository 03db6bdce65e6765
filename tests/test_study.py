"""The study's collection (zou-lab/BioMed-R1-Eval) and the original Hub datasets, read from recorded rows in their schema."""

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from registry import catalog, io
from registry.errors import MedregError
from registry.ingest import ingest
from stages.adversarial_traces import from_study

COLLECTION = Path(__file__).parent / "fixtures/study_collection"
CONFIGS = ["hle_biomed", "medbullets_op4", "medbullets_op5", "medmcqa", "medqa", "MedXpertQA", "mmlu_health_biology", "pubmedqa",
           "GPQA_Medical_test", "Lancet", "NEJM"]  # fmt: skip


def rows_of(config: str) -> list[dict]:
    return [json.loads(line) for line in (COLLECTION / f"{config}.jsonl").read_text().splitlines()]


@pytest.fixture
def hub(monkeypatch):
    """`datasets.load_dataset` answering from the recorded collection (and `original` datasets a test registers)."""
    import datasets

    calls, originals = [], {}

    def load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        if path == "zou-lab/BioMed-R1-Eval":
            if name not in CONFIGS:  # what the Hub answers for a config name the collection does not have
                raise ValueError(f"BuilderConfig '{name}' not found. Available: {CONFIGS}")
            return datasets.Dataset.from_list(rows_of(name))
        return datasets.Dataset.from_list(originals[(path, name, split)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls, originals


def test_every_study_config_ingests_with_the_studys_labels_beside_ours(hub, tmp_path):
    calls, _ = hub
    result = ingest(catalog.benchmarks(), "hub", ".", hub_source="study")
    study = catalog.benchmarks()["medqa"].hub["study"]
    assert sorted(c[1] for c in calls) == sorted(CONFIGS) and {(c[0], c[2], c[3]) for c in calls} == {
        ("zou-lab/BioMed-R1-Eval", "test", study.revision)
    }
    q = result.questions
    assert not result.problems and not result.skipped and q["benchmark"].nunique() == 11
    by_config = {cfg: rows_of(cfg) for cfg in CONFIGS}
    for bench, entry in catalog.benchmarks().items():
        got = q[q["benchmark"] == bench].set_index("qid")
        expected = by_config[entry.hub["study"].config]
        assert list(got.index) == [r["id"] for r in expected]
        for r in expected:
            row = got.loc[r["id"]]
            assert row["options"] == json.loads(r["options"]) and row["answer"] == r["answer_idx"]
            assert row["options"][row["answer"]] == r["answer"]  # the letter names the collection's answer text
            assert row["study_category"] == ("reasoning" if r["is_reasoning"] else "knowledge") and row["study_p_reasoning"] == r["reasoning_prob"]
            assert json.loads(row["meta"]) == {"dataset_name": r["dataset_name"], "reasoning_threshold": r["reasoning_threshold"]}
    # in SQL: our labels (splits) beside the study's, agreement per benchmark in one query
    io.save("questions", q, tmp_path)
    ours = q[["benchmark", "qid"]].assign(p=[0.9 if "year-old" in t else 0.2 for t in q["question"]])
    ours["category"] = ours["p"].map(lambda p: "reasoning" if p >= 0.5 else "knowledge")
    ours.to_parquet(tmp_path / "ours.parquet")
    con = duckdb.connect()
    got = con.sql(f"""
        SELECT q.benchmark, count(*) AS n, avg((o.category = q.study_category)::INT) AS agreement
        FROM '{tmp_path / "data/raw/questions.parquet"}' q JOIN '{tmp_path / "ours.parquet"}' o USING (benchmark, qid)
        WHERE q.study_category IS NOT NULL GROUP BY q.benchmark ORDER BY q.benchmark""").df()
    hand = {}
    for cfg, rows in by_config.items():
        bench = next(b for b, e in catalog.benchmarks().items() if e.hub["study"].config == cfg)
        agree = [("year-old" in r["question"]) == r["is_reasoning"] for r in rows]
        hand[bench] = (len(rows), round(sum(agree) / len(agree), 9))
    assert {b: (n, round(a, 9)) for b, n, a in got.itertuples(index=False)} == hand


def test_a_wrong_config_name_fails_naming_the_dataset_and_benchmark(hub, monkeypatch):
    spec = catalog.benchmarks()["lancet"].hub["study"]
    entry = catalog.benchmarks()["lancet"]
    wrong = entry.model_copy(update={"hub": {"study": spec.model_copy(update={"config": "lancet"})}})
    with pytest.raises(
        MedregError, match=r"hf://zou-lab/BioMed-R1-Eval@\w+/lancet/test: benchmark 'lancet': cannot read: .*BuilderConfig 'lancet' not found"
    ):
        ingest({"lancet": wrong}, "hub", ".", hub_source="study")


def test_original_hub_sources_with_allow_unpinned_and_dotted_field_paths(hub):
    _, originals = hub
    originals[("qiaojin/PubMedQA", "pqa_labeled", "train")] = [
        {"pubid": 21645374, "question": "Do mitochondria play a role in remodelling lace plant leaves?",
         "context": {"contexts": ["Programmed cell death is ...", "The lace plant ..."], "labels": ["BACKGROUND", "RESULTS"]},
         "long_answer": "Results ...", "final_decision": "yes"},
        {"pubid": 16418930, "question": "Is the zeolite hemostatic agent safe?",
         "context": {"contexts": ["Zeolite ..."], "labels": ["OBJECTIVE"]}, "long_answer": "...", "final_decision": "maybe"},
    ]  # fmt: skip
    originals[("TsinghuaC3I/MedXpertQA", "Text", "test")] = [
        {"id": "Text-0", "question": "Q?", "options": {"A": "a", "B": "b", "C": "c"}, "label": "B", "medical_task": "Diagnosis",
         "body_system": "Cardiovascular", "question_type": "Reasoning"},
    ]  # fmt: skip
    with pytest.raises(MedregError, match="not pinned"):
        ingest(catalog.benchmarks(), "hub", ".", benchmarks=["pubmedqa"], hub_source="original")
    result = ingest(catalog.benchmarks(), "hub", ".", benchmarks=["pubmedqa", "medxpertqa"], hub_source="original", allow_unpinned=True)
    q = result.questions.set_index("qid")
    assert q.loc["21645374", "context"] == "Programmed cell death is ...\nThe lace plant ..."  # context.contexts, joined
    assert (q.loc["21645374", "answer"], q.loc["16418930", "answer"]) == ("A", "C") and q.loc["16418930", "context"] == "Zeolite ..."
    assert q.loc["Text-0", "expert_category"] == "reasoning" and q.loc["Text-0", "answer"] == "B"
    assert q.loc["Text-0", "source_file"] == "hf://TsinghuaC3I/MedXpertQA@main/Text/test" and q["study_category"].isna().all()


@pytest.fixture
def demo_questions() -> pd.DataFrame:
    return ingest(catalog.benchmarks(), "demo", "data/demo").questions


def test_study_traces_match_our_questions_by_text_and_count_the_unmatched(hub, demo_questions):
    traces, unusable, report = from_study(demo_questions, allow_unpinned=False)
    medqa = pd.read_json(Path("data/demo/medreason/medqa_test.jsonl"), lines=True)
    line = {q: str(i + 1) for i, q in enumerate(medqa["question"])}  # demo qids are line numbers
    study = {r["id"]: r for r in rows_of("medqa")}
    q0, q1 = line[study["medqa-test-0"]["question"]], line[study["medqa-test-1"]["question"].strip().replace("a  sore", "a sore")]
    mx0, mx1 = (r["id"] for r in rows_of("MedXpertQA")[:2])
    pubmed = rows_of("pubmedqa")[0]
    got = sorted((b, q, i, t) for b, q, i, t in traces[["benchmark", "qid", "trace_index", "target"]].itertuples(index=False))
    assert got == sorted([
        ("medqa", q0, 0, "A"), ("medqa", q0, 2, "B"),  # trace 1 argues for the right answer (C): not used
        ("medqa", q1, 0, "C"),  # the collection's B (of 3 options) is our C: "Oral metronidazole for 7 days"
        ("medxpertqa", mx0, 0, "B"), ("medxpertqa", mx0, 1, "C"), ("medxpertqa", mx0, 2, "G"), ("medxpertqa", mx1, 0, "A"),
        ("pubmedqa", pubmed["id"], 0, "A" if pubmed["answer_idx"] != "A" else "B"),
    ])  # fmt: skip
    n = demo_questions.groupby("benchmark").size()
    assert report == {
        "medqa": {"questions": n["medqa"], "matched": 2, "unmatched": n["medqa"] - 2, "ambiguous": 0, "traces": 3, "unusable": 3},
        "medxpertqa": {"questions": n["medxpertqa"], "matched": 2, "unmatched": n["medxpertqa"] - 2, "ambiguous": 0, "traces": 4, "unusable": 2},
        "pubmedqa": {"questions": n["pubmedqa"], "matched": 1, "unmatched": n["pubmedqa"] - 1, "ambiguous": 0, "traces": 1, "unusable": 2},
    }
    assert unusable == 7 and (traces["generator"] == "study").all()
    assert traces.set_index(["qid", "trace_index"]).loc[(q1, 0), "trace"] == rows_of("medqa")[1]["adversarial_trace_0"].strip()


def test_no_selected_question_in_the_collection_is_a_clear_error(hub, demo_questions):
    unknown = demo_questions[demo_questions["benchmark"] == "medqa"].assign(question=lambda d: "Not in the collection: " + d["question"])
    with pytest.raises(MedregError, match=r"none of the selected questions \(medqa: 44\) is in the study collection"):
        from_study(unknown, allow_unpinned=False)
    with pytest.raises(MedregError, match="no questions selected"):
        from_study(demo_questions.iloc[:0], allow_unpinned=False)


def test_label_metrics_compare_our_classifier_with_the_studys_labels():
    from stages.label import study_agreement

    out = pd.DataFrame({
        "benchmark": ["medqa", "medqa", "medqa", "nejm", "nejm", "pubmedqa"],
        "predicted_category": ["reasoning", "knowledge", "reasoning", "reasoning", "knowledge", "knowledge"],
        "study_category": ["reasoning", "reasoning", "reasoning", "knowledge", "knowledge", None],
    })  # fmt: skip
    assert study_agreement(out) == {
        "agreement": 0.6,  # 3 of the 5 rows with a study label
        "n": 5,
        "by_benchmark": {"medqa": {"agreement": 0.6667, "n": 3}, "nejm": {"agreement": 0.5, "n": 2}},
    }
    assert study_agreement(out.assign(study_category=None)) is None
