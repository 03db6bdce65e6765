import json
import shutil

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from registry import catalog, db, io
from registry.cli import main
from registry.ingest import ingest

from .conftest import DEMO, ROOT

EMPTY = ["quarantine", "classifier_split", "splits", "summary", "gaps", "adversarial_traces", "robustness"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A project dir with demo questions, empty other tables, and the database built over them."""
    work = tmp_path_factory.mktemp("q")
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")  # marks the project root for `medreg`
    questions = ingest(catalog.benchmarks(), "demo", DEMO).questions
    io.save("questions", questions, work)
    sources = {"questions": [catalog.dataset_path("questions", work)]}
    for name in EMPTY:
        path = catalog.dataset_path(name, work)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(io.arrow_schema(io.schema(name)).empty_table(), path)
        sources[catalog.dataset(name).table] = [path]
    counts = db.build(catalog.dataset_path("results_db", work), sources, catalog.views())
    empty = dict.fromkeys([catalog.dataset(n).table for n in EMPTY], 0)
    assert counts == {"questions": len(questions), "lineage": 0, "questions_labeled": 0, "checkpoints": 0} | empty
    return work, questions


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
    sql = "select qid, options[answer] as text from questions where benchmark = 'pubmedqa' order by qid"
    out = _invoke(workdir, monkeypatch, "query", "--format", "csv", sql)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "qid,text" and len(lines) == 1 + (q.benchmark == "pubmedqa").sum()
    assert all(line.split(",")[1] in {"yes", "no", "maybe"} for line in lines[1:])


@pytest.mark.parametrize(
    "sql",
    [
        "insert into questions select * from questions",
        "create table t as select 1",
        "drop view questions_labeled",
        "copy (select 1) to 'leak.csv'",
        "attach 'other.duckdb'",
        "select 1; delete from questions",
    ],
)
def test_write_statements_are_refused_with_exit_2(workdir, monkeypatch, sql):
    work, _ = workdir
    out = _invoke(workdir, monkeypatch, "query", sql)
    assert out.exit_code == 2
    assert "refused" in out.output and "read-only" in out.output
    assert not list(work.rglob("leak.csv")) and not list(work.rglob("other.duckdb"))


@pytest.mark.parametrize(
    "sql",
    [
        "explain analyze copy (select 1 as a) to '{tmp}/leak.csv'",
        "explain analyze copy (select 1 as a) to '{parquet}' (use_tmp_file false)",
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/hostname')",
        "select * from glob('/root/*')",
        "select * from '{parquet}'",
        "explain analyze set threads = 1",
    ],
)
def test_the_engine_refuses_file_access_and_configuration_changes(workdir, monkeypatch, tmp_path, sql):
    work, _ = workdir
    parquet = catalog.dataset_path("questions", work)
    before = parquet.read_bytes()
    out = _invoke(workdir, monkeypatch, "query", sql.format(tmp=tmp_path, parquet=parquet))
    assert out.exit_code == 2, out.output
    assert "disabled by configuration" in out.output or "configuration has been locked" in out.output, out.output
    assert not list(tmp_path.iterdir()) and parquet.read_bytes() == before


def test_sql_may_start_with_a_comment(workdir, monkeypatch):
    out = _invoke(workdir, monkeypatch, "query", "--format", "json", "-- how many?\nselect count(*) as n from questions")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["n"] == len(workdir[1])


def test_the_database_works_from_anywhere_and_without_the_parquet_files(workdir, tmp_path, monkeypatch):
    work, q = workdir
    copy = tmp_path / "elsewhere" / "results.duckdb"
    copy.parent.mkdir()
    shutil.copy(catalog.dataset_path("results_db", work), copy)
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["query", "--db", str(copy), "--format", "json", "select count(*) n, count(options['A']) a from questions"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == [{"n": len(q), "a": int(q.options.map(lambda o: "A" in o).sum())}]


def test_bad_query_exits_2_with_duckdb_message(workdir, monkeypatch):
    out = _invoke(workdir, monkeypatch, "query", "select no_such_column from questions")
    assert out.exit_code == 2 and "Binder Error" in out.output and "no_such_column" in out.output
    out = _invoke(workdir, monkeypatch, "query", "selec 1")
    assert out.exit_code == 2 and "Parser Error" in out.output


def test_tables_lists_tables_and_views_with_row_counts(workdir, monkeypatch):
    _, q = workdir
    out = _invoke(workdir, monkeypatch, "tables", "--format", "json")
    assert out.exit_code == 0, out.output
    got = {r["name"]: (r["type"], r["rows"]) for r in json.loads(out.output)}
    assert got["questions"] == ("table", len(q)) and got["quarantine"] == ("table", 0) and got["questions_labeled"] == ("view", 0)


def test_missing_database_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["tables"])
    assert out.exit_code == 2 and "does not exist" in out.output


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The group itself and every command below it, subcommands of nested groups included, as name paths."""
    paths = [prefix]
    for name, command in group.commands.items():
        paths += command_paths(command, (*prefix, name)) if isinstance(command, click.Group) else [(*prefix, name)]
    return paths


def test_every_command_has_help_with_an_example():
    paths = command_paths(main)
    assert {(), ("query",), ("classify",), ("s3",), ("s3", "start"), ("s3", "stop"), ("export-hf",)} <= set(paths)
    for path in paths:
        out = CliRunner().invoke(main, [*path, "--help"], prog_name="medreg")
        invocation = " ".join(("medreg", *path))
        assert out.exit_code == 0 and out.output.startswith(f"Usage: {invocation} "), (path, out.output)
        lines = [line.strip() for line in out.output.splitlines()]
        assert "Example:" in lines, (path, out.output)
        section = lines[lines.index("Example:") + 1 :]
        section = section[: section.index("")] if "" in section else section  # the example block ends at the first blank line
        assert any(line == invocation or line.startswith(invocation + " ") for line in section), (path, section)


def test_table_format_cuts_wide_cells(workdir, monkeypatch):
    out = _invoke(workdir, monkeypatch, "query", "select qid, options, question from questions where benchmark = 'medxpertqa' limit 3")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert len(lines) == 4 and "..." in out.output and max(map(len, lines)) < 200


def test_lineage_lists_only_the_stages_dvc_yaml_still_has():
    """dvc.lock keeps the entry of a stage removed from dvc.yaml; the lineage table does not list it."""
    lock = {
        "stages": {
            "kept": {"deps": [{"path": "a.csv", "md5": "1"}], "params": {"params.yaml": {"k": 1}}, "outs": [{"path": "b.parquet", "md5": "2"}]},
            "evaluate@gone": {"deps": [{"path": "b.parquet", "md5": "2"}], "outs": [{"path": "c.parquet", "md5": "3"}]},
        }
    }
    rows = db.lineage(lock, {"kept"})
    assert {r[0] for r in rows} == {"kept"} and {(r[3], r[4]) for r in rows} == {("a.csv", "dep"), ("params.yaml:k", "param")}
    assert {r[0] for r in db.lineage(lock)} == {"kept", "evaluate@gone"}  # no filter: every locked stage (the report's use)


def test_the_lineage_leaves_out_stages_of_models_no_longer_evaluated():
    from stages.build_db import current

    models = {"evaluate": ["a", "b"], "adversarial": ["a"]}
    stages = ("ingest", "evaluate@a", "evaluate@gone", "adversarial@b", "adversarial@a")
    assert [current(s, models) for s in stages] == [True, True, False, False, True]
