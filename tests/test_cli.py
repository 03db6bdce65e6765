"""One CLI convention: -h everywhere, full descriptions in `medreg -h`, --format/-o on every command that prints data,
one error style (`error: <what> — <next step>`, exit 2) for refusals, usage errors and DVC failures, and the
classifier's provenance in `classify`."""

import json
import re
import shutil
import sys
from pathlib import Path

import click
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from registry import classifier, dvcerrors
from registry.cli import main
from registry.errors import MedregError
from registry.io import load
from registry.params import Candidate

from .conftest import DEMO, ROOT, run


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The group and every command below it, nested groups' commands included, as name paths."""
    paths = [prefix]
    for name, command in group.commands.items():
        paths += command_paths(command, (*prefix, name)) if isinstance(command, click.Group) else [(*prefix, name)]
    return paths


def invoke(*args: str, **kwargs) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), prog_name="medreg", **kwargs)


def error_lines(result: click.testing.Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.lower().startswith("error")]


def refused_once(result: click.testing.Result, *needles: str) -> str:
    """Exit 2, exactly one `error: ` line on stderr (nothing of click's `Error:`, no usage, no DVC log), the needles in it."""
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert lines[0] in result.stderr.splitlines(), result.output
    assert "Error:" not in result.output and "Usage:" not in result.output and "Traceback" not in result.output, result.output
    assert not re.search(r"^(\S+ \S+ )?(ERROR|WARNING|DEBUG): ", result.output, re.M), result.output  # DVC's log lines
    for needle in needles:
        assert needle in lines[0], (needle, result.output)
    return lines[0]


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory) -> Path:
    """A results database of two tables, with a MAP, a date, a decimal and NULLs."""
    path = tmp_path_factory.mktemp("db") / "results.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "create table questions as select * from (values "
        "('medqa', '1', map(['A', 'B'], ['yes', 'no']), 0.25::double, date '2024-01-02', 1.50::decimal(4, 2)),"
        "('medqa', '2', map(['A'], ['maybe']), null, null, null),"
        "('pubmedqa', '3', map(['A', 'B', 'C'], ['x', 'y', 'z']), 0.75::double, date '2025-03-04', 2.25::decimal(4, 2))"
        ") t(benchmark, qid, options, p, day, amount)"
    )
    con.execute("create table empty_table (a integer)")
    con.close()
    return path


# ------------------------------------------------------------------ help


def test_h_and_help_on_every_command_and_group_with_an_example():
    paths = command_paths(main)
    assert {(), ("query",), ("classify",), ("s3",), ("s3", "start"), ("s3", "stop")} <= set(paths)
    for path in paths:
        invocation = " ".join(("medreg", *path))
        short = invoke(*path, "-h")
        assert short.exit_code == 0 and short.output.startswith(f"Usage: {invocation} "), (path, short.output)
        assert invoke(*path, "--help").output == short.output, path
        lines = [line.strip() for line in short.output.splitlines()]
        assert "Example:" in lines and "-h, --help" in " ".join(lines), (path, short.output)
        example = lines[lines.index("Example:") + 1 :]
        example = example[: example.index("")] if "" in example else example
        assert any(line == invocation or line.startswith(invocation + " ") for line in example), (path, example)


def test_query_h_is_help_and_sql_may_still_start_with_a_dash(tiny_db):
    out = invoke("query", "-h")
    assert out.exit_code == 0 and out.output.startswith("Usage: medreg query ") and "-o, --out" in out.output, out.output
    out = invoke("query", "--db", str(tiny_db), "--format", "json", "-- a comment\nselect count(*) n from questions")
    assert out.exit_code == 0 and json.loads(out.output) == [{"n": 3}], out.output
    out = invoke("query", "--db", str(tiny_db), "--format", "csv", "-", input="select qid from questions order by qid")
    assert out.exit_code == 0 and out.output == "qid\n1\n2\n3\n", out.output


def test_main_help_shows_every_command_with_its_whole_first_paragraph():
    for group_path in ((), ("s3",)):
        group = main if not group_path else main.commands[group_path[0]]
        out = invoke(*group_path, "-h")
        assert out.exit_code == 0, out.output
        listed = re.sub(r"\s+", "", out.output.split("Commands:", 1)[1])
        for name, command in group.commands.items():
            first = re.sub(r"\s+", "", command.help.split("\n\n")[0])
            assert len(first) > 20 and name + first in listed, (name, out.output)
        assert "..." not in out.output.split("Commands:", 1)[1]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["query"], "see `medreg query -h`"),
        (["tables", "--format", "xml"], "'xml' is not one of"),
        (["nosuchcommand"], "No such command 'nosuchcommand' — see `medreg -h`"),
        (["--bogus"], "No such option '--bogus' — see `medreg -h`"),
        (["s3", "start", "--port", "x"], "see `medreg s3 start -h`"),
        (["tables", "--format", "parquet"], "--format parquet writes a file: add -o FILE.parquet — see `medreg tables -h`"),
        (["models", "-o", "models.txt"], "'.txt' names no format"),
        (["classify", "in.jsonl", "out.parquet"], "see `medreg classify -h`"),  # OUTPUT is -o now
    ],
)
def test_a_usage_error_is_one_error_line_and_exit_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text('{"question": "Why?"}\n')
    refused_once(invoke(*args), needle)
    assert not (tmp_path / "models.txt").exists() and not (tmp_path / "out.parquet").exists()


def test_a_refusal_is_one_error_line_and_exit_2(tmp_path, monkeypatch):
    line = refused_once(invoke("benchmarks", "--dir", "/nope"))
    assert line.startswith("error: /nope: no such directory — ")
    monkeypatch.chdir(tmp_path)
    refused_once(invoke("tables"), "does not exist")


# ------------------------------------------------------------------ the output convention


def test_tables_and_query_write_parquet_csv_and_json_lines_that_read_back(tiny_db, tmp_path):
    shown = json.loads(invoke("tables", "--db", str(tiny_db), "--format", "json").output)
    assert {r["name"]: r["rows"] for r in shown} == {"questions": 3, "empty_table": 0}
    out = invoke("tables", "--db", str(tiny_db), "--format", "parquet", "-o", str(tmp_path / "tables.parquet"))
    assert out.exit_code == 0 and out.output == f"wrote 2 rows to {tmp_path / 'tables.parquet'}\n", out.output
    assert pq.read_table(tmp_path / "tables.parquet").to_pylist() == shown

    sql = "select benchmark, qid, options, p, day, amount from questions order by qid"
    as_json = json.loads(invoke("query", "--db", str(tiny_db), "--format", "json", sql).output)
    out = invoke("query", "--db", str(tiny_db), "-o", str(tmp_path / "q.parquet"), sql)  # the format from the suffix
    assert out.exit_code == 0 and out.output == f"wrote 3 rows to {tmp_path / 'q.parquet'}\n", out.output
    table = pq.read_table(tmp_path / "q.parquet")
    assert table.column_names == ["benchmark", "qid", "options", "p", "day", "amount"]
    got = table.to_pylist()
    assert [r["qid"] for r in got] == ["1", "2", "3"] and [r["p"] for r in got] == [0.25, None, 0.75]
    assert [dict(r["options"]) for r in got] == [{"A": "yes", "B": "no"}, {"A": "maybe"}, {"A": "x", "B": "y", "C": "z"}]
    assert got[1]["day"] is None and [r["amount"] for r in got][1] is None
    assert [str(r["day"]) for r in got] == [r["day"] or "None" for r in as_json]

    for suffix in (".csv", ".json", ".jsonl"):
        target = tmp_path / f"q{suffix}"
        assert invoke("query", "--db", str(tiny_db), "-o", str(target), sql).exit_code == 0
        if suffix == ".csv":
            assert pd.read_csv(target, dtype=str, keep_default_na=False).qid.tolist() == ["1", "2", "3"]
        else:
            rows = json.loads(target.read_text()) if suffix == ".json" else [json.loads(line) for line in target.read_text().splitlines()]
            assert rows == as_json
    out = invoke("query", "--db", str(tiny_db), "--format", "csv", "-o", str(tmp_path / "forced.txt"), sql)  # --format wins
    assert out.exit_code == 0 and (tmp_path / "forced.txt").read_text().startswith("benchmark,qid,options,p,day,amount\n")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic writes leave no temporary file


def test_query_out_takes_one_statement(tiny_db, tmp_path):
    out = invoke("query", "--db", str(tiny_db), "-o", str(tmp_path / "x.csv"), "select 1; select 2")
    refused_once(out, "-o writes one result; the SQL has 2 statements")
    assert not (tmp_path / "x.csv").exists()


def test_catalog_listings_take_format_and_out(tmp_path):
    models = json.loads(invoke("models", "--format", "json").output)
    assert models and {"name", "backend", "source"} <= set(models[0])
    out = invoke("benchmarks", "-o", str(tmp_path / "b.csv"))
    assert out.exit_code == 0 and out.output.startswith("wrote ") and "name" in pd.read_csv(tmp_path / "b.csv").columns
    out = invoke("benchmarks", "--format", "jsonl")
    assert out.exit_code == 0 and all(json.loads(line)["name"] for line in out.output.splitlines())


# ------------------------------------------------------------------ DVC failures


@pytest.fixture
def dvc_project(tmp_path, monkeypatch) -> Path:
    """A DVC project (no git) with one tracked file that is in neither the workspace nor the cache."""
    project = tmp_path / "p"
    project.mkdir()
    assert run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], project).returncode == 0
    (project / "a.txt").write_text("hi\n")
    assert run([sys.executable, "-m", "dvc", "add", "-q", "a.txt"], project).returncode == 0
    shutil.rmtree(project / ".dvc" / "cache")
    (project / "a.txt").unlink()
    monkeypatch.chdir(project)
    return project


def test_pull_from_an_unknown_remote_is_one_error_line_with_the_next_step(dvc_project):
    refused_once(invoke("pull", "-r", "nosuchremote"), "remote 'nosuchremote' doesn't exist — ", "dvc remote list")
    refused_once(invoke("pull"), "No remote provided", "dvc remote add -d")


def test_pull_from_an_unreachable_s3_remote_names_medreg_s3_start(dvc_project, monkeypatch):
    assert run([sys.executable, "-m", "dvc", "remote", "add", "s3", "s3://medreg/dvcstore"], dvc_project).returncode == 0
    assert run([sys.executable, "-m", "dvc", "remote", "modify", "s3", "endpointurl", "http://127.0.0.1:1"], dvc_project).returncode == 0
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    line = refused_once(invoke("pull", "-r", "s3"), "failed to connect to s3", "`medreg s3 start` (or `make s3-up`)")
    assert line.count("error") == 1 and not (dvc_project / "a.txt").exists()


def test_pull_names_a_damaged_remote_object_and_never_checks_it_out(dvc_project, tmp_path):
    dvc = [sys.executable, "-m", "dvc"]
    remote = tmp_path / "remote"
    (dvc_project / "a.txt").write_text("hi\n")
    steps = (["add", "-q", "a.txt"], ["remote", "add", "-d", "local", str(remote)], ["remote", "modify", "local", "verify", "true"], ["push", "-q"])
    for args in steps:
        assert run([*dvc, *args], dvc_project).returncode == 0, args
    (obj,) = [p for p in remote.rglob("*") if p.is_file()]
    obj.chmod(0o644)
    obj.write_text("damaged\n")
    shutil.rmtree(dvc_project / ".dvc" / "cache")
    (dvc_project / "a.txt").unlink()
    refused_once(invoke("pull"), f"1 object(s) in the remote do not match their hash and were not used: {obj.parent.name}{obj.name}", "dvc push")
    assert not (dvc_project / "a.txt").exists()


def test_dvc_in_process_outside_a_project_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused_once(invoke("experiments"), "not inside of a DVC repository", "dvc init")


def test_captured_holds_back_dvc_log_lines_and_explains_dvc_exceptions(capsys):
    import logging

    from dvc.exceptions import DvcException

    with pytest.raises(MedregError, match=r"^failed to connect to s3 - Could not connect to the endpoint URL: .* — start the S3 server"):
        with dvcerrors.captured():
            logging.getLogger("dvc.fs").error(
                "failed to connect to s3", exc_info=(ValueError, ValueError("Could not connect to the endpoint URL: x"), None)
            )
            raise DvcException("1 files failed to download")
    with pytest.raises(KeyError):  # not DVC's: a bug keeps its traceback
        with dvcerrors.captured():
            raise KeyError("x")
    assert capsys.readouterr().err == ""
    assert logging.getLogger("dvc").handlers == [h for h in logging.getLogger("dvc").handlers if not isinstance(h, dvcerrors.Capture)]


def test_run_dvc_failure_is_one_medreg_error(tmp_path):
    with pytest.raises(MedregError, match=r"not inside of a DVC repository.* — run it inside the project"):
        dvcerrors.run_dvc(["status"], tmp_path)


# ------------------------------------------------------------------ classify: the classifier's provenance


def save_model(folder: Path, **meta) -> Path:
    frame = pd.DataFrame({"question": ["Define X?", "What is Y?", "A 54-year-old man has pain. BP 150/90 mm Hg. Next step?"] * 10})
    y = np.array([0, 0, 1] * 10)
    members = {}
    for name, spec in (("length", Candidate(kind="length")), ("features", Candidate(kind="features"))):
        members[name] = (spec, classifier.head(spec, 0).fit(classifier.inputs(spec, frame), y))
    metrics = {"n": 30, "accuracy": 0.7, "macro_f1": 0.65, "folds": 5}
    model = classifier.LabelingModel(members, classifier.Calibrator("none"), 0.5, {"chosen": "ensemble", "n_fit": 30, "metrics": metrics, **meta})
    model.save(folder, "card")
    return folder


def test_classify_says_which_labels_trained_the_model_and_warns_about_the_demo_one(tmp_path):
    demo = save_model(tmp_path / "demo", training_labels={"source": ["demo"], "benchmarks": {"medxpertqa": 30}, "n": 30})
    (tmp_path / "in.csv").write_text('id,question\na,"A 60-year-old woman has fever. Next step?"\nb,Define Z?\n')
    out = invoke("classify", str(tmp_path / "in.csv"), "--model", str(demo), "-o", str(tmp_path / "out.csv"))
    assert out.exit_code == 0, out.output
    said = out.stderr
    assert f"classifier {demo}: ensemble (length + features), trained on 30 expert labels (demo questions: medxpertqa 30)" in said
    assert "macro-F1 0.650" in said and "agreement with the experts 70.0%" in said
    assert "warning: this is the demo classifier" in said and "medreg run -p mirror" in said
    assert out.stdout.startswith(f"wrote 2 rows to {tmp_path / 'out.csv'}: ") and "reasoning" in out.stdout
    got = pd.read_csv(tmp_path / "out.csv")
    assert got.id.tolist() == ["a", "b"] and set(got.category) <= {"reasoning", "knowledge"} and got.p_reasoning.between(0, 1).all()

    out = invoke("classify", str(tmp_path / "in.csv"), "--model", str(demo), "--format", "json")  # data on stdout, the rest on stderr
    assert out.exit_code == 0 and [r["id"] for r in json.loads(out.stdout)] == ["a", "b"], out.output

    real = save_model(tmp_path / "real", training_labels={"source": ["mirror"], "benchmarks": {"medxpertqa": 1149}, "n": 1149})
    out = invoke("classify", str(tmp_path / "in.csv"), "--model", str(real), "-o", str(tmp_path / "out.parquet"))
    assert out.exit_code == 0 and "(mirror questions: medxpertqa 1149)" in out.stderr and "warning" not in out.output, out.output
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 2

    old = save_model(tmp_path / "old")  # saved before classifiers recorded their labels' source
    out = invoke("classify", str(tmp_path / "in.csv"), "--model", str(old), "-o", str(tmp_path / "old.jsonl"))
    assert out.exit_code == 0 and "source not recorded" in out.stderr and "warning: probably the demo classifier" in out.stderr


@pytest.mark.slow
def test_train_classifier_records_the_source_of_its_labels(tmp_path):
    shutil.copytree(DEMO, tmp_path / "demo")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"].update(demo_dir="demo")
    params["classifier"]["compare"] = ["length", "features"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("ingest", "train_classifier"):
        result = run([sys.executable, "-m", f"stages.{stage}"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    questions = load("questions", tmp_path)
    labeled = questions[questions.expert_category.notna()]
    meta = json.loads((tmp_path / "models/classifier/medreg.json").read_text())
    assert meta["training_labels"] == {"source": ["demo"], "benchmarks": labeled.benchmark.value_counts().sort_index().to_dict(), "n": len(labeled)}
    out = run(["medreg", "classify", str(DEMO / "medreason" / "medqa_test.jsonl"), "-o", str(tmp_path / "o.parquet")], tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"trained on {len(labeled)} expert labels (demo questions: " in out.stderr and "warning: this is the demo classifier" in out.stderr
