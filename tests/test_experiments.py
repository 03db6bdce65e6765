"""The `experiments` table: DVC's experiment records flattened (fast), and a queued two-point sweep on the demo (slow)."""

import hashlib
import json
import re
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from registry import db, experiments
from registry.cli import main
from registry.errors import MedregError

from .conftest import run

BASE = "a" * 40
EXP1, EXP2, QUEUED, FAILED = "b" * 40, "c" * 40, "d" * 40, "e" * 40


def _data(rev, timestamp, seed, threshold, accuracy=None, error=None):
    params = {
        "params.yaml": {
            "data": {
                "evaluate": {"models": ["m1", "m2"], "bootstrap": {"n": 2000, "seed": seed}, "runtime": {"vllm": {}}},
                "classifier": {"threshold": threshold, "lr": 5e-5, "quantize": True},
            }
        },
        "registry/models.yaml": {"data": {"models": {"m1": {"size": "135M"}}}},
    }
    metrics = {} if accuracy is None else {"data/metrics/eval.json": {"data": {"m1": {"accuracy": accuracy, "n": 24}}}}
    if error:
        metrics["data/metrics/robustness.json"] = {"error": {"msg": error, "type": "FileNotFoundError"}}
    return {"rev": rev, "timestamp": timestamp, "params": params, "metrics": metrics, "deps": {}, "outs": {}, "meta": {}}


def _exp(rev, name, state, data, error=None):
    executor = {"state": state, "name": "dvc-task", "local": {"root": None, "log": None, "pid": None, "returncode": None, "task_id": None}}
    return {"revs": [{"rev": rev, "name": name, "data": data, "error": error, "experiments": None}], "executor": executor, "name": name}


# shaped like `dvc exp show --json` (dvc 3.67): the workspace, then a baseline holding its experiments
RECORDS = [
    {"rev": "workspace", "name": None, "data": _data("workspace", None, 0, "tune", 0.5), "error": None, "experiments": None},
    {
        "rev": BASE,
        "name": "main",
        "data": _data(BASE, "2026-01-02T10:00:00", 0, "tune", 0.5, error="missing"),
        "error": None,
        "experiments": [
            _exp(EXP2, "seed2", "success", _data(EXP2, "2026-01-02T11:00:02", 2, 0.7, 0.75)),
            _exp(EXP1, "seed1", "success", _data(EXP1, "2026-01-02T11:00:01", 1, "tune", 0.625)),
            _exp(QUEUED, "seed3", "queued", _data(QUEUED, "2026-01-02T11:00:03", 3, "tune")),
            _exp(FAILED, "bad", "failed", _data(FAILED, "2026-01-02T11:00:04", 4, "tune", 0.5), {"msg": "Experiment run failed", "type": ""}),
        ],
    },
    {"rev": "f" * 40, "name": None, "data": None, "error": {"msg": "broken dvc.yaml", "type": "YAMLError"}, "experiments": None},
]


def test_flatten_rows_columns_and_types():
    df = experiments.flatten(RECORDS, head=BASE)
    assert list(df.columns[:7]) == experiments.FIXED
    assert list(df["experiment"]) == ["workspace", "main", "seed2", "seed1", "seed3", "bad", "fffffff"]
    assert list(df["kind"]) == ["workspace", "baseline", *["experiment"] * 4, "baseline"]
    assert df["rev"].tolist()[1:3] == [BASE, EXP2] and df["rev"].isna()[0]
    assert df["baseline_rev"].tolist()[:6] == [BASE] * 6 and df["baseline_rev"][6] == "f" * 40
    assert df["status"].tolist()[2:6] == ["success", "success", "queued", "failed"] and df["status"].isna()[[0, 1, 6]].all()
    assert str(df["timestamp"].dtype).startswith("datetime64") and df["timestamp"].isna()[0]
    assert df["timestamp"][3].isoformat() == "2026-01-02T11:00:01"
    errors = df["error"].tolist()
    assert errors[1] == "metrics data/metrics/robustness.json: missing" and errors[5] == "Experiment run failed"
    assert errors[6] == "broken dvc.yaml" and df["error"].isna()[[0, 2, 3, 4]].all()
    # params.yaml keys bare, other params files and metrics by file:key; typed columns; lists, {} and mixed types as JSON text
    seed = df["params.evaluate.bootstrap.seed"]
    assert str(seed.dtype) == "Int64" and seed.tolist()[:6] == [0, 0, 2, 1, 3, 4] and seed.isna()[6]
    assert str(df["params.classifier.lr"].dtype) == "float64" and str(df["params.classifier.quantize"].dtype) == "boolean"
    assert df["params.evaluate.models"][0] == '["m1", "m2"]' and df["params.evaluate.runtime.vllm"][0] == "{}"
    assert df["params.classifier.threshold"].tolist()[1:3] == ["tune", "0.7"]
    assert df["params.registry/models.yaml:models.m1.size"][0] == "135M"
    accuracy = df["metrics.data/metrics/eval.json:m1.accuracy"]
    assert str(accuracy.dtype) == "float64" and accuracy.tolist()[:4] == [0.5, 0.5, 0.75, 0.625] and accuracy.isna()[4]
    assert str(df["metrics.data/metrics/eval.json:m1.n"].dtype) == "Int64"
    assert not any(c.startswith("metrics.data/metrics/robustness.json") for c in df.columns)  # an unreadable file has no columns


def test_flatten_of_nothing():
    df = experiments.flatten([])
    assert list(df.columns) == experiments.FIXED and df.empty


@pytest.fixture
def sealed_db(tmp_path):
    path = tmp_path / "results.duckdb"
    db.build(path, {}, {})
    return path


def test_query_sees_experiments_on_the_sealed_database(sealed_db, monkeypatch):
    monkeypatch.setattr(experiments, "frame", lambda root, *a: experiments.flatten(RECORDS, BASE))
    before = hashlib.md5(sealed_db.read_bytes()).hexdigest()
    sql = (
        'select experiment, status, "params.evaluate.bootstrap.seed" seed, "metrics.data/metrics/eval.json:m1.accuracy" acc '
        "from experiments where kind = 'experiment' order by seed"
    )
    out = CliRunner().invoke(main, ["query", "--db", str(sealed_db), "--format", "json", sql])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == [
        {"experiment": "seed1", "status": "success", "seed": 1, "acc": 0.625},
        {"experiment": "seed2", "status": "success", "seed": 2, "acc": 0.75},
        {"experiment": "seed3", "status": "queued", "seed": 3, "acc": None},
        {"experiment": "bad", "status": "failed", "seed": 4, "acc": 0.5},
    ]
    out = CliRunner().invoke(main, ["query", "--db", str(sealed_db), "copy (select * from experiments) to 'x.csv'"])
    assert out.exit_code == 2 and "refused" in out.output
    assert hashlib.md5(sealed_db.read_bytes()).hexdigest() == before


def test_query_without_experiments_does_not_collect(sealed_db, monkeypatch):
    def boom(*a):
        raise AssertionError("collected")

    monkeypatch.setattr(experiments, "frame", boom)
    out = CliRunner().invoke(main, ["query", "--db", str(sealed_db), "select 1 as experiments_seen"])
    assert out.exit_code == 0, out.output


def test_experiments_command_changed_columns_and_out(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "frame", lambda root, *a: experiments.flatten(RECORDS, BASE))
    out = CliRunner().invoke(main, ["experiments", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert set(rows[0]) == {
        *experiments.FIXED,
        "params.evaluate.bootstrap.seed",
        "params.classifier.threshold",
        "metrics.data/metrics/eval.json:m1.accuracy",
    }
    assert rows[3]["timestamp"] == "2026-01-02T11:00:01"
    out = CliRunner().invoke(main, ["experiments", "-o", str(tmp_path / "e.parquet")])  # every column in a file
    assert out.exit_code == 0 and "7 rows" in out.output
    assert set(pq.read_schema(tmp_path / "e.parquet").names) > set(rows[0])
    out = CliRunner().invoke(main, ["experiments", "--out", str(tmp_path / "e.txt")])
    assert out.exit_code == 2 and "names no format" in out.output


def test_collect_outside_a_dvc_project_is_refused(tmp_path):
    with pytest.raises(MedregError, match="cannot read DVC experiments"):
        experiments.collect(tmp_path)


@pytest.mark.slow
def test_queued_sweep_shows_in_sql(demo):
    """Two queued experiments on the demo (a bootstrap seed each: summarise and robustness re-run, build_db if needed) come back
    as rows of `experiments`, and the demo workspace is left as it was."""

    def state():
        files = ["params.yaml", "dvc.lock", "data/results.duckdb", "data/metrics/eval.json"]
        status = run(["git", "status", "--porcelain"], demo).stdout
        return status, {f: hashlib.md5((demo / f).read_bytes()).hexdigest() for f in files}

    before = state()
    names = ["medreg-seed1", "medreg-seed2"]
    try:
        for seed, name in enumerate(names, start=1):
            out = run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"evaluate.bootstrap.seed={seed}"], demo)
            assert out.returncode == 0, out.stdout + out.stderr
        start = time.monotonic()
        out = run(["dvc", "queue", "start", "-j", "2"], demo)
        assert out.returncode == 0, out.stdout + out.stderr
        while True:
            status = run(["dvc", "queue", "status"], demo).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            assert time.monotonic() - start < 900, status
            time.sleep(5)
        print(f"queued sweep of 2: {time.monotonic() - start:.0f} s")
        sql = """select experiment, status, "params.evaluate.bootstrap.seed" seed,
                 "metrics.data/metrics/eval.json:smollm2-135m-instruct.accuracy" acc,
                 "metrics.data/metrics/eval.json:smollm2-135m-instruct.gap_ci_low" gap_low,
                 "metrics.data/metrics/robustness.json:smollm2-135m-sft.all.took_bait_share" bait,
                 "metrics.data/metrics/robustness.json:smollm2-135m-sft.all.drop_ci_high" drop_high
                 from experiments where kind = 'experiment' and experiment like 'medreg-seed%' order by seed"""
        out = run(["medreg", "query", "--format", "json", sql], demo)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = json.loads(out.stdout)
        logs = {n: run(["dvc", "queue", "logs", n], demo).stdout for n in names}
        tails = "\n".join(log[-2000:] for log in logs.values())
        assert [(r["experiment"], r["status"], r["seed"]) for r in rows] == [(names[0], "success", 1), (names[1], "success", 2)], tails
        for log in logs.values():  # it starts from the workspace's outputs: what reads the seed re-runs (build_db if they changed)
            ran = set(re.findall(r"Running stage '([^']+)'", log))
            assert {"summarise", "robustness"} <= ran <= {"summarise", "robustness", "build_db"}, log[-3000:]
        assert all(isinstance(r[k], float) for r in rows for k in ("acc", "gap_low", "bait", "drop_high")), rows  # results, with CIs
        workspace = json.loads(
            run(
                ["medreg", "query", "--format", "json", "select \"params.evaluate.bootstrap.seed\" seed from experiments where kind = 'workspace'"],
                demo,
            ).stdout
        )
        assert workspace == [{"seed": 0}]
    finally:
        run(["dvc", "queue", "stop", "--kill"], demo)
        run(["dvc", "queue", "remove", "--all"], demo)
        run(["dvc", "exp", "remove", *names], demo)
    assert state() == before
