import json
import shutil

import pytest
from click.testing import CliRunner

from registry import catalog, db
from registry.cli import main
from registry.ingest import ingest
from registry.io import write_parquet
from schemas import adversarial, quarantine, questions, splits
from schemas import eval as eval_schemas

from .conftest import DEMO, ROOT


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A project dir with demo questions, an empty quarantine and the database built over them."""
    work = tmp_path_factory.mktemp("q")
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")  # marks the project root for `medreg`
    result = ingest(catalog.benchmarks(), "demo", DEMO)
    write_parquet(result.questions, work / "data/raw/questions.parquet", questions.ARROW_SCHEMA)
    empty = result.questions.iloc[:0][["benchmark", "qid", "source_file", "source_row"]].assign(errors="", raw="")
    write_parquet(empty, work / "data/raw/quarantine.parquet", quarantine.ARROW_SCHEMA)
    empty_tables = {
        "classifier_split": splits.CLASSIFIER_SPLIT_ARROW,
        "splits": splits.LABELS_ARROW,
        "summary": eval_schemas.SUMMARY_ARROW,
        "gaps": eval_schemas.GAPS_ARROW,
        "adversarial_traces": adversarial.TRACES_ARROW,
        "robustness": adversarial.ROBUSTNESS_ARROW,
    }
    for name, schema in empty_tables.items():
        write_parquet(schema.empty_table().to_pandas(), catalog.dataset_path(name, work), schema)
    counts = db.build(work / "data/results.duckdb", work)  # no evaluated models: no predictions views
    assert counts == {"questions": len(result.questions), "quarantine": 0, "questions_labeled": 0} | dict.fromkeys(empty_tables, 0)
    return work, result.questions


def _invoke(workdir, monkeypatch, *args):
    work, _ = workdir
    monkeypatch.chdir(work / "data")  # any directory inside the project works
    return CliRunner().invoke(main, list(args))


def test_query_counts_match_the_parquet(workdir, monkeypatch):
    _, q = workdir
    out = _invoke(workdir, monkeypatch, "query", "--format", "json", "select benchmark, count(*) n from questions group by all")
    assert out.exit_code == 0, out.output
    assert {r["benchmark"]: r["n"] for r in json.loads(out.output)} == q.benchmark.value_counts().to_dict()


def test_query_csv_and_map_access(workdir, monkeypatch):
    _, q = workdir
    out = _invoke(
        workdir,
        monkeypatch,
        "query",
        "--format",
        "csv",
        "select qid, options[answer] as text from questions where benchmark = 'pubmedqa' order by qid",
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "qid,text" and len(lines) == 1 + (q.benchmark == "pubmedqa").sum()
    assert all(line.split(",")[1] in {"yes", "no", "maybe"} for line in lines[1:])


@pytest.mark.parametrize(
    "sql",
    [
        "insert into questions select * from questions",
        "create table t as select 1",
        "drop view questions",
        "copy (select 1) to 'leak.csv'",
        "attach 'other.duckdb'",
        "select 1; delete from questions",
    ],
)
def test_query_refuses_writes_with_exit_2(workdir, monkeypatch, sql):
    work, _ = workdir
    out = _invoke(workdir, monkeypatch, "query", sql)
    assert out.exit_code == 2
    assert "refused" in out.output and "read-only" in out.output
    assert not list(work.rglob("leak.csv")) and not list(work.rglob("other.duckdb"))


def test_bad_query_exits_2_with_duckdb_message(workdir, monkeypatch):
    out = _invoke(workdir, monkeypatch, "query", "select no_such_column from questions")
    assert out.exit_code == 2 and "Binder Error" in out.output and "no_such_column" in out.output
    out = _invoke(workdir, monkeypatch, "query", "selec 1")
    assert out.exit_code == 2 and "Parser Error" in out.output


def test_tables_lists_views_with_row_counts(workdir, monkeypatch):
    _, q = workdir
    out = _invoke(workdir, monkeypatch, "tables", "--format", "json")
    assert out.exit_code == 0, out.output
    got = {r["name"]: r["rows"] for r in json.loads(out.output)}
    assert got["questions"] == len(q) and got["quarantine"] == 0 and got["summary"] == 0 and "robustness" in got


def test_missing_database_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["tables"])
    assert out.exit_code == 2 and "does not exist" in out.output


def test_every_command_has_help_with_an_example():
    for cmd in ([], ["query"], ["tables"], ["benchmarks"]):
        out = CliRunner().invoke(main, [*cmd, "--help"])
        assert out.exit_code == 0 and "Example" in out.output


def test_table_format_cuts_wide_cells(workdir, monkeypatch):
    out = _invoke(workdir, monkeypatch, "query", "select qid, options, question from questions where benchmark = 'medxpertqa' limit 3")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert len(lines) == 4 and "..." in out.output and max(map(len, lines)) < 200
