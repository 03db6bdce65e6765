"""Registry use from other projects: artifacts, a real S3 remote (moto's server on 127.0.0.1), push / fresh clone / pull /
nothing to reproduce, releases by GTO tag, consumers (dvc import + update, get, artifacts get, dvc.api, load_split, the
Hugging Face export), a damaged remote object, wrong credentials."""

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from registry import s3server
from registry.db import build, stabilise

from .conftest import ROOT, run

SPLIT = "data/splits/labels.parquet"
ARTIFACT = "reasoning-knowledge-split"


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


# --- fast: no pipeline run -------------------------------------------------------------------------------------------


def test_artifacts_are_declared_outputs_with_type_desc_labels_meta():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    arts = pipeline["artifacts"]
    outs = set()
    for stage in pipeline["stages"].values():
        for out in stage.get("do", stage).get("outs", []):
            outs.add(out if isinstance(out, str) else next(iter(out)))
    wanted = {"benchmark-questions", ARTIFACT, "reasoning-classifier", "sft-checkpoint", "grpo-checkpoint", "eval-summary", "eval-gaps"}
    assert wanted | {"eval-robustness"} <= set(arts)
    for name, entry in arts.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name
        assert entry["path"] in outs, f"{name}: {entry['path']} is no stage output"
        assert entry["type"] in ("dataset", "model") and entry["desc"] and entry["labels"] and isinstance(entry["meta"], dict), name


def test_credentials_are_never_committed():
    from dvc.config import Config

    committed = Config(dvc_dir=ROOT / ".dvc", validate=False).load_one("repo")
    assert set(committed["remote"]) == {"local", "s3"} and committed["core"]["remote"] == "local"
    for name, remote in committed["remote"].items():
        assert remote["verify"] == "true", name
        assert not {k for k in remote if re.search(r"key|secret|password|token|credential", k)}, name
    assert ".dvc/config.local" not in subprocess.run(["git", "ls-files", ".dvc"], cwd=ROOT, capture_output=True, text=True).stdout


def test_s3_server_refuses_wrong_credentials_and_stops(tmp_path):
    server = s3server.start(log=tmp_path / "moto.log")
    try:
        good = server.client()
        good.put_object(Bucket=server.bucket, Key="k", Body=b"x")
        assert good.get_object(Bucket=server.bucket, Key="k")["Body"].read() == b"x"
        for key, secret, code in [("AKIAWRONG", "nope", "InvalidAccessKeyId"), (server.access_key_id, "nope", "SignatureDoesNotMatch")]:
            bad = s3server.S3Server(server.pid, server.endpoint, server.bucket, key, secret).client()
            with pytest.raises(Exception, match=code):
                bad.get_object(Bucket=server.bucket, Key="k")
    finally:
        assert s3server.stop(server.pid)
    port = int(server.endpoint.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_results_database_is_the_same_bytes_when_rebuilt(tmp_path):
    src = tmp_path / "t.parquet"
    pd.DataFrame({"a": range(1000), "b": ["x"] * 1000}).to_parquet(src)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for d in ("one", "two"):
        build(tmp_path / d / "results.duckdb", {"t": [src]}, {"v": "select count(*) n from t"})
    one, two = ((tmp_path / d / "results.duckdb").read_bytes() for d in ("one", "two"))
    assert one == two
    import duckdb

    assert duckdb.connect(str(tmp_path / "one/results.duckdb"), read_only=True).execute("select n from v").fetchone() == (1000,)
    (tmp_path / "junk.duckdb").write_bytes(b"\0" * 8192)
    with pytest.raises(Exception, match="expected main header"):
        stabilise(tmp_path / "junk.duckdb")


def test_load_split_refuses_unclear_requests(monkeypatch):
    from registry.api import load_split
    from registry.errors import MedregError

    monkeypatch.delenv("MEDREG_REPO", raising=False)
    with pytest.raises(MedregError, match="say which registry"):
        load_split()
    with pytest.raises(MedregError, match="category must be one of reasoning, knowledge"):
        load_split(category="both", repo=str(ROOT))


def test_hugging_face_export_loads_per_benchmark_and_category(tmp_path):
    import datasets
    import pyarrow as pa

    from registry.publish import export_hf

    rows = [("medqa", "q1", "reasoning"), ("medqa", "q2", "knowledge"), ("medqa", "q3", "reasoning"), ("pubmedqa", "p1", "knowledge")]
    split = pa.table({k: list(v) for k, v in zip(("benchmark", "qid", "category"), zip(*rows, strict=True), strict=True)})
    counts = export_hf(split, tmp_path / "hf", "reasoning-knowledge-split@v9.9.9 (abc1234)", "medreg")
    assert counts == {"medqa": {"reasoning": 2, "knowledge": 1}, "pubmedqa": {"reasoning": 0, "knowledge": 1}}
    assert "version: reasoning-knowledge-split@v9.9.9 (abc1234)" in (tmp_path / "hf/README.md").read_text()
    medqa = datasets.load_dataset(str(tmp_path / "hf"), "medqa")
    assert sorted(medqa["reasoning"]["qid"]) == ["q1", "q3"] and medqa["knowledge"]["qid"] == ["q2"]
    everything = datasets.load_dataset(str(tmp_path / "hf"))
    assert sorted(everything["knowledge"]["qid"]) == ["p1", "q2"] and sorted(everything["reasoning"]["qid"]) == ["q1", "q3"]
    assert list(datasets.load_dataset(str(tmp_path / "hf"), "pubmedqa")) == ["knowledge"]  # no empty reasoning split


def test_artifacts_command_lists_every_declared_artifact():
    out = ok(run(["medreg", "artifacts"], ROOT))
    for name, entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"].items():
        assert re.search(rf"^{name} +{entry['type']} .* {re.escape(entry['path'])}$", out, re.M), name


def test_release_of_an_unknown_artifact_names_the_known_ones():
    out = run(["medreg", "release", "no-such-thing"], ROOT)
    assert out.returncode == 2 and "no artifact 'no-such-thing'" in out.stderr and ARTIFACT in out.stderr


# --- end to end on the demo pipeline ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on a free port of 127.0.0.1, with authentication; stopped after the module."""
    server = s3server.start(log=tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    s3server.stop(server.pid)


def use_s3(project: Path, server: s3server.S3Server, credentials: bool) -> None:
    """Point the clone's 's3' remote at the test server (config.local) and make it the default; credentials optional."""
    ok(run(["dvc", "remote", "modify", "--local", "s3", "endpointurl", server.endpoint], project))
    ok(run(["dvc", "remote", "default", "--local", "s3"], project))
    if credentials:
        ok(run(["dvc", "remote", "modify", "--local", "s3", "access_key_id", server.access_key_id], project))
        ok(run(["dvc", "remote", "modify", "--local", "s3", "secret_access_key", server.secret_access_key], project))


@pytest.fixture(scope="module")
def published(demo, s3):
    """The demo pipeline committed and pushed to the S3 remote; the registry a consumer reads."""
    ok(run(["dvc", "repro"], demo))  # other tests may have left stages to re-run (cheap: cached)
    git(demo, "config", "user.name", "Registry Maintainer")  # GTO's tags are annotated: they need an identity
    git(demo, "config", "user.email", "maintainer@example.org")
    git(demo, "add", "-A")
    git(demo, "commit", "-qm", "pipeline outputs", "--allow-empty")
    use_s3(demo, s3, credentials=True)
    ok(run(["dvc", "push"], demo))
    return demo


@pytest.mark.slow
def test_fresh_clone_pulls_everything_and_has_nothing_to_reproduce(published, s3, tmp_path):
    keys = [o["Key"] for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket) for o in page.get("Contents", [])]
    assert len(keys) > 10 and all(k.startswith("dvcstore/files/md5/") for k in keys)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(published), str(clone))
    assert not (clone / SPLIT).exists() and not (clone / "models/checkpoints/grpo").exists()
    use_s3(clone, s3, credentials=False)
    ok(run(["medreg", "pull"], clone, **s3.env()))  # credentials from the environment
    assert (clone / SPLIT).read_bytes() == (published / SPLIT).read_bytes()
    status = ok(run(["dvc", "status"], clone))
    assert "up to date" in status, status
    repro = ok(run(["dvc", "repro"], clone))
    assert "Running stage" not in repro and "up to date" in repro, repro


@pytest.mark.slow
def test_wrong_credentials_give_a_clear_error(published, s3, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(published), str(clone))
    use_s3(clone, s3, credentials=False)
    failed = run(["medreg", "pull", SPLIT], clone, **(s3.env() | {"AWS_SECRET_ACCESS_KEY": "wrong"}))
    assert failed.returncode == 2 and "error: failed to connect to s3" in failed.stderr and "Forbidden" in failed.stderr, failed.stderr
    assert not (clone / SPLIT).exists()


@pytest.mark.slow
def test_a_damaged_remote_object_is_named_and_never_used(published, s3, tmp_path):
    md5 = next(o["md5"] for o in yaml.safe_load((published / "dvc.lock").read_text())["stages"]["label"]["outs"] if o["path"] == SPLIT)
    key = f"dvcstore/files/md5/{md5[:2]}/{md5[2:]}"
    good = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=good[:-100] + b"\0" * 100)
    try:
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", str(published), str(clone))
        use_s3(clone, s3, credentials=False)
        failed = run(["medreg", "pull", SPLIT], clone, **s3.env())
        assert failed.returncode == 2 and f"{md5} ({SPLIT})" in failed.stderr and "do not match their hash" in failed.stderr, failed.stderr
        assert not (clone / SPLIT).exists()
    finally:
        s3.client().put_object(Bucket=s3.bucket, Key=key, Body=good)


@pytest.mark.slow
def test_release_refuses_uncommitted_stale_or_unpushed_outputs(published, tmp_path):
    empty = tmp_path / "empty-remote"
    ok(run(["dvc", "remote", "add", "--local", "empty", str(empty)], published))
    unpushed = run(["medreg", "release", ARTIFACT, "-r", "empty"], published)
    assert unpushed.returncode == 2 and f"not in the remote: {SPLIT}" in unpushed.stderr, unpushed.stderr

    params = (published / "params.yaml").read_text()
    (published / "params.yaml").write_text(params.replace("prefer_expert: true", "prefer_expert: false"))
    dirty = run(["medreg", "release", ARTIFACT], published)
    assert dirty.returncode == 2 and "uncommitted changes to params.yaml" in dirty.stderr, dirty.stderr
    git(published, "commit", "-qam", "stale split")
    stale = run(["medreg", "release", ARTIFACT], published)
    assert stale.returncode == 2 and "stale: " in stale.stderr and "label" in stale.stderr, stale.stderr
    git(published, "reset", "-q", "--hard", "HEAD~1")
    assert git(published, "tag", "--list") == ""


@pytest.mark.slow
def test_a_consumer_project_imports_a_tagged_split_and_updates_to_a_newer_one(published, s3, tmp_path):
    v1 = ok(run(["medreg", "release", ARTIFACT, "--version", "v1.0.0", "--stage", "prod"], published))
    assert f"tagged {ARTIFACT}@v1.0.0" in v1 and f"tagged {ARTIFACT}#prod" in v1
    assert re.search(rf"^{ARTIFACT} +dataset +v1.0.0 +prod=v1.0.0 ", ok(run(["medreg", "artifacts"], published)), re.M)
    again = run(["medreg", "release", ARTIFACT, "--version", "v1.0.1"], published)
    assert again.returncode == 2 and "already registered in this commit" in again.stderr, again.stderr
    first = pq.read_table(published / SPLIT).to_pandas()

    consumer = tmp_path / "paper"
    consumer.mkdir()
    git(consumer, "init", "-q")
    ok(run(["dvc", "init", "-q"], consumer))
    env = s3.env()
    ok(run(["dvc", "import", str(published), SPLIT, "--rev", f"{ARTIFACT}@v1.0.0", "-o", "split.parquet"], consumer, **env))
    assert pd.read_parquet(consumer / "split.parquet").equals(first)

    # a new version of the split: experts' labels no longer override the classifier
    params = (published / "params.yaml").read_text()
    (published / "params.yaml").write_text(params.replace("prefer_expert: true", "prefer_expert: false"))
    ok(run(["dvc", "repro", "label"], published))
    git(published, "commit", "-qam", "split without expert overrides")
    ok(run(["dvc", "push", SPLIT], published))
    ok(run(["medreg", "release", ARTIFACT, "--bump", "minor"], published))
    second = pq.read_table(published / SPLIT).to_pandas()
    assert not second.equals(first) and (second["category_source"] == "classifier").all()

    ok(run(["dvc", "update", "--rev", f"{ARTIFACT}@v1.1.0", "split.parquet.dvc"], consumer, **env))
    assert pd.read_parquet(consumer / "split.parquet").equals(second)
    assert yaml.safe_load((consumer / "split.parquet.dvc").read_text())["deps"][0]["repo"]["rev"] == f"{ARTIFACT}@v1.1.0"

    ok(run(["dvc", "get", str(published), SPLIT, "--rev", f"{ARTIFACT}@v1.0.0", "-o", "got.parquet"], consumer, **env))
    assert pd.read_parquet(consumer / "got.parquet").equals(first)
    ok(run(["dvc", "artifacts", "get", str(published), ARTIFACT, "--rev", "v1.0.0", "-o", "art.parquet"], consumer, **env))
    assert pd.read_parquet(consumer / "art.parquet").equals(first)
    ok(run(["dvc", "artifacts", "get", str(published), ARTIFACT, "--stage", "prod", "-o", "prod.parquet"], consumer, **env))
    assert pd.read_parquet(consumer / "prod.parquet").equals(first)

    api = (
        "import io, sys, dvc.api, pandas as pd\n"
        "from registry.api import load_split\n"
        f"raw = pd.read_parquet(io.BytesIO(dvc.api.read('{SPLIT}', repo=sys.argv[1], rev='{ARTIFACT}@v1.0.0', mode='rb')))\n"
        f"df = load_split(benchmark='medqa', category='reasoning', rev='{ARTIFACT}@v1.0.0', repo=sys.argv[1])\n"
        f"ds = load_split(category='knowledge', rev='{ARTIFACT}@v1.1.0', repo=sys.argv[1], format='datasets')\n"
        "print(len(raw), len(df), set(df.benchmark), set(df.category), type(ds).__name__, len(ds), ds.features['options'])\n"
    )
    out = ok(run(["python", "-c", api, str(published)], consumer, **env))
    n_medqa = ((first["benchmark"] == "medqa") & (first["category"] == "reasoning")).sum()
    n_knowledge = (second["category"] == "knowledge").sum()
    assert out.startswith(f"{len(first)} {n_medqa} {{'medqa'}} {{'reasoning'}} Dataset {n_knowledge} "), out

    hf = tmp_path / "hf"
    ok(run(["medreg", "export-hf", str(hf), "--rev", f"{ARTIFACT}@v1.0.0"], published, **env))
    card = (hf / "README.md").read_text()
    assert f"{ARTIFACT}@v1.0.0" in card and "config_name: medqa" in card
    load = (
        "import sys, datasets\n"
        "d, a = datasets.load_dataset(sys.argv[1], 'medqa'), datasets.load_dataset(sys.argv[1])\n"
        "print(d['reasoning'].num_rows, a['knowledge'].num_rows)"
    )
    out = ok(run(["python", "-c", load, str(hf)], consumer, HF_DATASETS_OFFLINE="1"))
    assert out.split()[:2] == [str(n_medqa), str((first["category"] == "knowledge").sum())], out
    shutil.rmtree(hf)

    (published / "params.yaml").write_text(params)  # leave the demo as the other tests expect it
    ok(run(["dvc", "repro", "label"], published))
    git(published, "commit", "-qam", "expert overrides again")
