"""Licences drive export and release: the catalog's terms per benchmark, `export-hf` and `medreg release` refusing rows of
benchmarks that may not be redistributed unless told otherwise, and Hub metadata on the dataset and model cards."""

import copy
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from registry import catalog, publish
from registry.cli import main
from registry.errors import MedregError

RESTRICTED = {"gpqa_medical", "lancet", "nejm", "medbullets_op4", "medbullets_op5"}


def split_table(rows: list[tuple[str, str, str]]) -> pa.Table:
    """A small split: benchmark, qid, category, question."""
    benchmark, qid, category = (list(c) for c in zip(*rows, strict=True))
    return pa.table({"benchmark": benchmark, "qid": qid, "category": category, "question": [f"question {q}?" for q in qid]})


MIXED = [("medqa", "q1", "reasoning"), ("medqa", "q2", "knowledge"), ("gpqa_medical", "g1", "reasoning")]


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


# ---------------------------------------------------------------- the catalog


def test_every_benchmark_has_a_licence_id_terms_and_a_redistribution_flag():
    entries = catalog.benchmarks()
    assert {n for n, e in entries.items() if not e.redistribute} == RESTRICTED
    gpqa = entries["gpqa_medical"]
    assert gpqa.license == "cc-by-4.0" and "do not redistribute in plain text" in gpqa.license_note
    assert {entries[n].license for n in ("lancet", "nejm", "medbullets_op4", "medbullets_op5")} == {"other"}
    assert {e.license for n, e in entries.items() if e.redistribute} == {"mit"}
    assert all(e.license_note for e in entries.values())
    assert all(catalog.LICENSE_ID.match(t.license) and t.redistribute for t in catalog.training().values())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e["medqa"].update(license="MIT (Jin et al. 2021)"), r"benchmarks.medqa.license: a licence id as the Hugging Face Hub spells it"),
        (lambda e: e["nejm"].pop("redistribute"), r"benchmarks.nejm.redistribute: required key missing"),
        (lambda e: e["lancet"].update(redistribute="maybe"), r"benchmarks.lancet.redistribute: Input should be a valid boolean"),
        (lambda e: e["lancet"].pop("license_note"), r"benchmarks.lancet: license 'other' needs license_note"),
    ],
)
def test_a_wrong_licence_entry_is_refused_in_one_line_naming_entry_and_key(mutate, message):
    data = copy.deepcopy(yaml.safe_load(catalog.BENCHMARKS_YAML.read_text()))
    mutate(data["benchmarks"])
    with pytest.raises(catalog.CatalogError, match=message) as error:
        catalog.check(catalog.BenchmarkCatalog, data, "benchmarks.yaml")
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- export-hf


def test_exporting_a_split_with_gpqa_rows_is_refused_naming_the_terms_and_the_flags(tmp_path):
    out = tmp_path / "hf"
    with pytest.raises(MedregError) as error:
        publish.export_hf(split_table(MIXED), out, "v1", "medreg")
    message = str(error.value)
    assert "gpqa_medical (cc-by-4.0: Rein et al. 2023; gated upstream, do not redistribute in plain text)" in message
    assert "--drop-restricted" in message and "--include-restricted" in message and "medqa" not in message
    assert "\n" not in message and not out.exists()


def test_include_restricted_exports_everything_and_the_card_says_so(tmp_path):
    counts = publish.export_hf(split_table(MIXED), tmp_path / "hf", "v1", "medreg", "include")
    assert counts == {"gpqa_medical": {"reasoning": 1, "knowledge": 0}, "medqa": {"reasoning": 1, "knowledge": 1}}
    assert pq.read_table(tmp_path / "hf/gpqa_medical/reasoning.parquet")["qid"].to_pylist() == ["g1"]
    card = (tmp_path / "hf/README.md").read_text()
    assert front_matter(card)["license"] == "other"  # mit and cc-by-4.0
    assert "| gpqa_medical | `cc-by-4.0` |" in card and "**Restricted rows included**" in card


def test_drop_restricted_exports_without_gpqa(tmp_path):
    import datasets

    counts = publish.export_hf(split_table(MIXED), tmp_path / "hf", "v1", "medreg", "drop")
    assert counts == {"medqa": {"reasoning": 1, "knowledge": 1}}
    assert not (tmp_path / "hf/gpqa_medical").exists()
    card = (tmp_path / "hf/README.md").read_text()
    assert "Left out, their terms do not allow redistribution: gpqa_medical" in card
    assert front_matter(card)["license"] == "mit"
    assert sorted(datasets.load_dataset(str(tmp_path / "hf"))["reasoning"]["benchmark"]) == ["medqa"]
    with pytest.raises(MedregError, match="nothing to export"):
        publish.export_hf(split_table([("nejm", "n1", "reasoning")]), tmp_path / "none", "v1", "medreg", "drop")


def test_the_dataset_card_carries_licence_task_language_size_and_tags(tmp_path):
    rows = [("medqa", f"q{i}", "reasoning" if i % 2 else "knowledge") for i in range(1200)] + [("pubmedqa", "p1", "knowledge")]
    publish.export_hf(split_table(rows), tmp_path / "hf", "reasoning-knowledge-split@v1.0.0 (abc1234)", "medreg")
    meta = front_matter((tmp_path / "hf/README.md").read_text())
    assert meta["license"] == "mit" and meta["pretty_name"] == "medreg reasoning/knowledge split"
    assert meta["task_categories"] == ["question-answering"] and meta["task_ids"] == ["multiple-choice-qa"]
    assert meta["language"] == ["en"] and meta["tags"] == ["medical", "biomedical", "reasoning"]
    assert meta["size_categories"] == ["1K<n<10K"]  # 1,201 rows
    assert meta["version"] == "reasoning-knowledge-split@v1.0.0 (abc1234)"
    assert [c["config_name"] for c in meta["configs"]] == ["all", "medqa", "pubmedqa"]


@pytest.mark.parametrize(("n", "bucket"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (12_345, "10K<n<100K"), (2_000_000, "1M<n<10M")])
def test_size_categories_are_the_hubs_buckets(n, bucket):
    assert publish.size_category(n) == bucket


def git_project(root: Path) -> Path:
    """A git project with the dvc.yaml artifacts of this one, committed."""
    root.mkdir(exist_ok=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": publish.artifacts(Path(__file__).resolve().parents[1])}))
    for args in (["init", "-q"], ["add", "dvc.yaml"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "artifacts"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


def test_export_hf_command_refuses_then_takes_either_flag(tmp_path, monkeypatch):
    root = git_project(tmp_path / "project")
    split = catalog.dataset_path("splits", root)
    split.parent.mkdir(parents=True)
    pq.write_table(split_table(MIXED), split)
    monkeypatch.chdir(root)
    refused = CliRunner().invoke(main, ["export-hf", "hf"])
    assert refused.exit_code == 2 and "error: refusing to export: the split holds rows" in refused.output and not (root / "hf").exists()
    both = CliRunner().invoke(main, ["export-hf", "hf", "--drop-restricted", "--include-restricted"])
    assert both.exit_code == 2 and "give one of" in both.output
    dropped = CliRunner().invoke(main, ["export-hf", "hf", "--drop-restricted"])
    assert dropped.exit_code == 0 and "gpqa_medical" in dropped.output and "left out" in dropped.output, dropped.output
    assert sorted(p.name for p in (root / "hf").iterdir()) == ["README.md", "medqa"]
    included = CliRunner().invoke(main, ["export-hf", "hf2", "--include-restricted"])
    assert included.exit_code == 0 and (root / "hf2/gpqa_medical/reasoning.parquet").exists(), included.output


# ---------------------------------------------------------------- release


class NothingStale:
    """Stands in for dvc.repo.Repo: nothing stale, everything in the remote."""

    def __init__(self, root):
        self.config = {"core": {}}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def status(self, **kwargs):
        return {}


def test_release_of_outputs_holding_gpqa_rows_is_blocked_unless_allowed(tmp_path, monkeypatch):
    root = git_project(tmp_path / "project")
    questions = root / publish.artifact(root, "benchmark-questions")["path"]
    questions.parent.mkdir(parents=True)
    pq.write_table(split_table(MIXED), questions)
    monkeypatch.setattr("dvc.repo.Repo", NothingStale)
    blockers = publish.release_blockers(root, "benchmark-questions")
    assert len(blockers) == 1 and blockers[0].startswith("data/raw/questions.parquet holds rows of benchmarks whose terms do not allow")
    assert "gpqa_medical (cc-by-4.0: Rein et al. 2023" in blockers[0] and "--allow-restricted" in blockers[0]
    assert publish.release_blockers(root, "benchmark-questions", allow_restricted=True) == []
    pq.write_table(split_table(MIXED[:2]), questions)  # medqa only
    assert publish.release_blockers(root, "benchmark-questions") == []


def test_release_command_refuses_restricted_rows_and_takes_allow_restricted(tmp_path, monkeypatch):
    root = git_project(tmp_path / "project")
    split = root / publish.artifact(root, "reasoning-knowledge-split")["path"]
    split.parent.mkdir(parents=True)
    pq.write_table(split_table([*MIXED, ("lancet", "l1", "knowledge")]), split)
    monkeypatch.setattr("dvc.repo.Repo", NothingStale)
    registered = []
    monkeypatch.setattr("gto.api.register", lambda *a, **k: registered.append((a, k)))
    monkeypatch.chdir(root)
    refused = CliRunner().invoke(main, ["release", "reasoning-knowledge-split"])
    assert refused.exit_code == 2 and "refusing to release 'reasoning-knowledge-split'" in refused.output
    assert "gpqa_medical (cc-by-4.0" in refused.output and "lancet (other: research use; case texts (c) The Lancet)" in refused.output
    assert registered == []
    allowed = CliRunner().invoke(main, ["release", "reasoning-knowledge-split", "--allow-restricted"])
    assert allowed.exit_code == 0 and len(registered) == 1, allowed.output


def test_held_benchmarks_reads_question_tables_not_aggregates(tmp_path):
    from registry.db import build

    questions, summary = tmp_path / "questions.parquet", tmp_path / "summary.parquet"
    pq.write_table(split_table(MIXED), questions)
    pd.DataFrame({"model": ["m"], "benchmark": ["nejm"], "category": ["all"], "accuracy": [0.5]}).to_parquet(summary)
    assert publish.held_benchmarks(questions) == {"medqa", "gpqa_medical"}
    assert publish.held_benchmarks(summary) == set()
    build(tmp_path / "results.duckdb", {"questions": [questions], "summary": [summary]}, {})
    assert publish.held_benchmarks(tmp_path / "results.duckdb") == {"medqa", "gpqa_medical"}
    assert publish.held_benchmarks(tmp_path / "missing.parquet") == set()


def test_the_tables_that_hold_question_text_are_the_questions_quarantine_split_and_contaminated():
    """Contaminated training rows carry the benchmark question they matched (evidence); the rest are ids and aggregates."""
    import importlib

    holding = set()
    for name, entry in catalog.datasets().items():
        if entry.schema_ref:
            module, cls = entry.schema_ref.rsplit(".", 1)
            columns = set(getattr(importlib.import_module(module), cls).to_schema().columns)
            if "benchmark" in columns and columns & set(publish.CONTENT_COLUMNS):
                holding.add(name)
    assert holding == {"questions", "quarantine", "splits", "contaminated"}


# ---------------------------------------------------------------- model cards


def test_a_checkpoint_card_has_hub_metadata_and_no_results_until_evaluated():
    from registry.trainers import card, dataset_ids

    rows = pd.DataFrame(
        {
            "dataset": ["m23k_clean", "m23k_clean", "medical_o1"],
            "source_file": ["hf://zou-lab/BioMed-R1-Train@" + "a" * 40 + "/m23k_clean/train"] * 2 + ["demo/x.json"],
        }
    )
    assert dataset_ids(rows) == ["medical_o1", "zou-lab/BioMed-R1-Train"]
    target, base = catalog.model("smollm2-135m-sft"), catalog.model("smollm2-135m-instruct")
    text = card(target, base, "sft", {"data/train/sft.parquet": "abc"}, {"lr": 1}, {"steps": 2}, dataset_ids(rows))
    meta = front_matter(text)
    assert meta["base_model"] == "smollm2-135m-instruct" and meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["medical_o1", "zou-lab/BioMed-R1-Train"] and {"sft", "medical"} <= set(meta["tags"])
    assert "model-index" not in meta and "medreg query" in text and "| `data/train/sft.parquet` | `abc` |" in text

    hub = card(catalog.model("llama-3-1-8b-biomed-sft"), catalog.model("llama-3-1-8b-instruct"), "sft", {}, {}, {}, [])
    assert front_matter(hub)["base_model"] == "meta-llama/Llama-3.1-8B-Instruct" and front_matter(hub)["license"] == "llama3.1"

    results = [{"benchmark": "medqa", "category": "reasoning", "accuracy": 0.42}]
    scored = front_matter(card(target, base, "sft", {}, {}, {}, [], results))
    entry = scored["model-index"][0]
    assert entry["name"] == "smollm2-135m-sft" and entry["results"][0]["metrics"][0]["value"] == 0.42
    assert entry["results"][0]["dataset"]["name"] == "medqa"
