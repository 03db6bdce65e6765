"""The study's collection (zou-lab/BioMed-R1-Eval) and the original Hub datasets, read from recorded rows in their schema."""

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from registry import catalog, io
from registry.errors import MedregError
from registry.ingest import IngestError, _commit, ingest, ingest_metrics, resolve_revision
from stages.adversarial_traces import from_study

TWIN_SOURCE = Path(__file__).parent / "fixtures/hub"
EVAL = "zou-lab/BioMed-R1-Eval"
CONFIGS = ["hle_biomed", "medbullets_op4", "medbullets_op5", "medmcqa", "medqa", "MedXpertQA", "mmlu_health_biology", "pubmedqa",
           "GPQA_Medical_test", "Lancet", "NEJM"]  # fmt: skip


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """The local twin of the Hub (tests/fixtures/hub/build.py): git repositories in the Hub's layout."""
    out = tmp_path_factory.mktemp("hub")
    subprocess.run([sys.executable, str(TWIN_SOURCE / "build.py"), str(out)], check=True, capture_output=True)
    return out


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def rows_of(twin: Path, config: str, repo: str = EVAL, split: str = "test") -> list[dict]:
    return pd.read_parquet(twin / repo / config / f"{split}-00000-of-00001.parquet").to_dict("records")


def test_every_study_config_ingests_from_the_twin_with_the_commit_read_and_the_studys_labels_beside_ours(twin, tmp_path):
    result = ingest(catalog.benchmarks(), "hub", ".", hub_source="study", twin=twin)
    head = git(twin / EVAL, "rev-parse", "main")
    q = result.questions
    assert not result.problems and not result.skipped and q["benchmark"].nunique() == 11
    for bench, entry in catalog.benchmarks().items():
        config = entry.hub["study"].config
        assert result.revisions[bench] == {"path": EVAL, "config": config, "split": "test", "revision": "main", "commit": head, "twin": str(twin)}
        got = q[q["benchmark"] == bench].set_index("qid")
        expected = rows_of(twin, config)
        assert list(got.index) == [r["id"] for r in expected]
        assert set(got["source_file"]) == {f"hf://{EVAL}@{head}/{config}/test"}  # the commit read, in every row
        for r in expected:
            row = got.loc[r["id"]]
            assert row["options"] == json.loads(r["options"]) and row["answer"] == r["answer_idx"]
            assert row["options"][row["answer"]] == r["answer"]  # the letter names the collection's answer text
            assert row["study_category"] == ("reasoning" if r["is_reasoning"] else "knowledge") and row["study_p_reasoning"] == r["reasoning_prob"]
            assert json.loads(row["meta"]) == {"dataset_name": r["dataset_name"], "reasoning_threshold": r["reasoning_threshold"]}
    # MedXpertQA's expert labels come from its authors' release (the collection has no question_type), matched by text
    original = {" ".join(r["question"].split()).casefold(): r["question_type"] for r in rows_of(twin, "Text", "TsinghuaC3I/MedXpertQA")}
    mx = q[q["benchmark"] == "medxpertqa"]
    want = [{"Reasoning": "reasoning", "Understanding": "knowledge"}.get(original.get(" ".join(t.split()).casefold())) for t in mx["question"]]
    assert [None if pd.isna(c) else c for c in mx["expert_category"]] == want and sum(w is not None for w in want) == 66
    assert q.loc[q["benchmark"] != "medxpertqa", "expert_category"].isna().all()
    mx_head = git(twin / "TsinghuaC3I/MedXpertQA", "rev-parse", "main")
    assert result.revisions["medxpertqa.expert_labels"]["commit"] == mx_head
    assert ingest_metrics(result, "hub")["revisions"] == result.revisions
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
    for bench, entry in catalog.benchmarks().items():
        rows = rows_of(twin, entry.hub["study"].config)
        agree = [("year-old" in r["question"]) == r["is_reasoning"] for r in rows]
        hand[bench] = (len(rows), round(sum(agree) / len(agree), 9))
    assert {b: (n, round(a, 9)) for b, n, a in got.itertuples(index=False)} == hand


def test_the_collections_first_upload_has_one_config_so_pinning_it_fails_on_the_second(twin):
    """The catalog once pinned cabedcf, the collection's first upload (a card and hle_biomed): only hle_biomed reads."""
    first = git(twin / EVAL, "rev-list", "--max-parents=0", "main")
    entries = {
        n: e.model_copy(update={"hub": {"study": e.hub["study"].model_copy(update={"revision": first})}}) for n, e in catalog.benchmarks().items()
    }
    assert len(ingest({"hle_biomed": entries["hle_biomed"]}, "hub", ".", twin=twin).questions) == 2
    with pytest.raises(MedregError, match=rf"^hf://{EVAL}@{first}/medqa/test: benchmark 'medqa': cannot read: .*BuilderConfig 'medqa' not found"):
        ingest(entries, "hub", ".", twin=twin)


def test_a_wrong_config_name_fails_naming_the_dataset_and_benchmark(twin):
    entry = catalog.benchmarks()["lancet"]
    wrong = entry.model_copy(update={"hub": {"study": entry.hub["study"].model_copy(update={"config": "lancet"})}})
    with pytest.raises(
        MedregError, match=rf"^hf://{EVAL}@[0-9a-f]{{40}}/lancet/test: benchmark 'lancet': cannot read: .*BuilderConfig 'lancet' not found"
    ) as e:
        ingest({"lancet": wrong}, "hub", ".", twin=twin)
    assert len(str(e.value).splitlines()) == 1


def test_an_unresolvable_revision_fails_before_reading(twin):
    entry = catalog.benchmarks()["nejm"]
    for revision in ("v2.0", "0e0de2a"):  # a tag the repository does not have; a commit it does not have
        gone = entry.model_copy(update={"hub": {"study": entry.hub["study"].model_copy(update={"revision": revision})}})
        with pytest.raises(MedregError, match=rf"^hf://{EVAL}@{revision}: revision '{revision}' is not a branch, tag or commit of {twin / EVAL}$"):
            ingest({"nejm": gone}, "hub", ".", twin=twin)
    with pytest.raises(MedregError, match=r"hub.twin: .* is not a git repository: the twin has no zou-lab/BioMed-R1-Eval"):
        ingest(catalog.benchmarks(), "hub", ".", twin=twin / "elsewhere")


def test_a_column_missing_upstream_names_file_row_and_field(twin, tmp_path):
    """A branch of the twin where medqa lost its answer_idx column: every row is refused, in one grouped line."""
    repo = tmp_path / EVAL
    shutil.copytree(twin / EVAL, repo)
    data = repo / "medqa/test-00000-of-00001.parquet"
    pd.read_parquet(data).drop(columns="answer_idx").to_parquet(data, index=False)
    git(repo, "checkout", "-q", "-b", "broken")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "drop answer_idx")
    entry = catalog.benchmarks()["medqa"]
    broken = entry.model_copy(update={"hub": {"study": entry.hub["study"].model_copy(update={"revision": "broken"})}})
    with pytest.raises(IngestError) as e:
        ingest({"medqa": broken}, "hub", ".", twin=tmp_path)
    commit = git(repo, "rev-parse", "broken")
    assert {(p.file, p.field) for p in e.value.problems} == {(f"hf://{EVAL}@{commit}/medqa/test", "answer_idx")}
    assert f"hf://{EVAL}@{commit}/medqa/test" in str(e.value) and "answer_idx" in str(e.value)


def test_a_branch_on_the_hub_resolves_to_the_commit_of_the_recorded_api_answer(monkeypatch):
    """No Hub here: HfApi.dataset_info answers with the Hub's recorded JSON for the branch; a full commit is not looked up."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import DatasetInfo

    recorded = json.loads((TWIN_SOURCE / "api/dataset_info_BioMed-R1-Eval_main.json").read_text())
    asked = []

    def dataset_info(self, repo_id, revision=None, **kwargs):
        asked.append((repo_id, revision))
        if revision != "main":
            url = f"https://huggingface.co/api/datasets/{repo_id}/revision/{revision}"
            raise RevisionNotFoundError(f"Invalid rev id: {revision}", response=httpx.Response(404, request=httpx.Request("GET", url)))
        return DatasetInfo(**recorded)

    from huggingface_hub.errors import RevisionNotFoundError

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr("registry.ingest._commit", functools.cache(_commit.__wrapped__))  # a fresh memo, dropped after the test
    spec = catalog.benchmarks()["medqa"].hub["study"]
    assert resolve_revision(spec) == recorded["sha"] and asked == [(EVAL, "main")]
    assert resolve_revision(spec) == recorded["sha"] and len(asked) == 1  # once per repository and revision
    assert resolve_revision(spec.model_copy(update={"revision": recorded["sha"]})) == recorded["sha"] and len(asked) == 1
    with pytest.raises(MedregError, match=rf"^hf://{EVAL}@v9: cannot resolve the revision to a commit: RevisionNotFoundError: Invalid rev id: v9$"):
        resolve_revision(spec.model_copy(update={"revision": "v9"}))


def test_original_hub_sources_with_allow_unpinned_and_dotted_field_paths(twin):
    with pytest.raises(MedregError, match="not pinned"):
        ingest(catalog.benchmarks(), "hub", ".", benchmarks=["pubmedqa"], hub_source="original", twin=twin)
    result = ingest(catalog.benchmarks(), "hub", ".", benchmarks=["pubmedqa", "medxpertqa"], hub_source="original", allow_unpinned=True, twin=twin)
    q = result.questions.set_index("qid")
    assert q.loc["21645374", "context"] == "Programmed cell death is ...\nThe lace plant ..."  # context.contexts, joined
    assert (q.loc["21645374", "answer"], q.loc["16418930", "answer"]) == ("A", "C") and q.loc["16418930", "context"] == "Zeolite ..."
    mx = q[q["benchmark"] == "medxpertqa"]
    assert len(mx) == 66 and mx["expert_category"].notna().all() and mx["study_category"].isna().all()
    assert result.revisions["pubmedqa"]["revision"] is None and result.revisions["pubmedqa"]["commit"] == git(
        twin / "qiaojin/PubMedQA", "rev-parse", "main"
    )


@pytest.fixture
def demo_questions() -> pd.DataFrame:
    return ingest(catalog.benchmarks(), "demo", "data/demo").questions


def test_study_traces_match_our_questions_by_text_and_count_the_unmatched(twin, demo_questions):
    traces, unusable, report = from_study(demo_questions, allow_unpinned=False, twin=twin)
    medqa = pd.read_json(Path("data/demo/medreason/medqa_test.jsonl"), lines=True)
    line = {q: str(i + 1) for i, q in enumerate(medqa["question"])}  # demo qids are line numbers
    study = {r["id"]: r for r in rows_of(twin, "medqa")}
    q0, q1 = line[study["medqa-test-0"]["question"]], line[study["medqa-test-1"]["question"].strip().replace("a  sore", "a sore")]
    got = traces.set_index(["benchmark", "qid", "trace_index"])["target"]
    assert got.loc[("medqa", q0)].to_dict() == {0: "A", 2: "B"}  # trace 1 argues for the right answer (C): not used
    assert got.loc[("medqa", q1)].to_dict() == {0: "C"}  # the collection's B (of 3 options) is our C: "Oral metronidazole for 7 days"
    assert traces.set_index(["qid", "trace_index"]).loc[(q1, 0), "trace"] == study["medqa-test-1"]["adversarial_trace_0"].strip()
    n = demo_questions.groupby("benchmark").size()
    head = git(twin / EVAL, "rev-parse", "main")
    for bench in ("medqa", "medxpertqa", "pubmedqa"):  # every demo question of these is in the twin's collection
        r = report[bench]
        assert (r["questions"], r["matched"], r["unmatched"], r["ambiguous"]) == (n[bench], n[bench], 0, 0)
        assert r["traces"] == (traces["benchmark"] == bench).sum() and r["revision"]["commit"] == head
    assert set(report) == {"medqa", "medxpertqa", "pubmedqa"} and unusable == sum(r["unusable"] for r in report.values())
    assert (traces["generator"] == "study").all()


def test_no_selected_question_in_the_collection_is_a_clear_error(twin, demo_questions):
    unknown = demo_questions[demo_questions["benchmark"] == "medqa"].assign(question=lambda d: "Not in the collection: " + d["question"])
    with pytest.raises(MedregError, match=r"none of the selected questions \(medqa: 44\) is in the study collection"):
        from_study(unknown, allow_unpinned=False, twin=twin)
    with pytest.raises(MedregError, match="no questions selected"):
        from_study(demo_questions.iloc[:0], allow_unpinned=False, twin=twin)


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


def test_release_refuses_outputs_read_from_the_hub_at_an_unresolved_revision(tmp_path):
    from registry.publish import unresolved_revisions

    metrics = tmp_path / "data/metrics"
    metrics.mkdir(parents=True)
    pinned = {"path": EVAL, "config": "medqa", "split": "test", "revision": "main", "commit": "a" * 40}
    (metrics / "ingest.json").write_text(json.dumps({"source": "hub", "revisions": {"medqa": pinned}}))
    (metrics / "train_data.json").write_text(json.dumps({"source": "demo", "revisions": {}}))
    assert unresolved_revisions(tmp_path) == []
    (metrics / "ingest.json").write_text(json.dumps({"source": "hub", "revisions": {"medqa": {**pinned, "commit": None}}}))
    (metrics / "train_data.json").write_text(json.dumps({"source": "hub"}))  # written before revisions were recorded
    assert unresolved_revisions(tmp_path) == [
        f"data/metrics/ingest.json: medqa ({EVAL}@main)",
        "data/metrics/train_data.json: read from the hub with no revisions recorded (re-run the stage)",
    ]


def test_label_source_study_takes_the_collections_split_and_threshold():
    from stages.label import study_split

    scored = pd.DataFrame({
        "benchmark": ["medqa", "medqa", "nejm"], "qid": ["1", "2", "3"],
        "study_category": ["reasoning", "knowledge", "reasoning"], "study_p_reasoning": [0.9, 0.2, 0.6],
        "meta": [json.dumps({"dataset_name": "medqa", "reasoning_threshold": 0.5})] * 2 + [json.dumps({"reasoning_threshold": 0.55})],
    })  # fmt: skip
    category, p, threshold = study_split(scored)
    assert list(category) == ["reasoning", "knowledge", "reasoning"] and list(p) == [0.9, 0.2, 0.6] and list(threshold) == [0.5, 0.5, 0.55]
    with pytest.raises(
        MedregError, match=r"^label.source: study: 2 question\(s\) have no study label: medqa \(1\), nejm \(1\); .*ingest.source: hub"
    ):
        study_split(scored.assign(study_category=["reasoning", None, None]))
    with pytest.raises(MedregError, match=r"question nejm/3 has no reasoning_threshold"):
        study_split(scored.assign(meta=[scored["meta"][0]] * 2 + ["{}"]))
