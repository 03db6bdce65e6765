import json
import shutil

import pytest

from registry.io import read_parquet

from .conftest import MIRROR, run

pytestmark = pytest.mark.slow


def test_dvc_repro_on_demo_then_nothing_to_reproduce_then_bad_input_keeps_outputs(project):
    first = run(["dvc", "repro"], project)
    assert first.returncode == 0, first.stdout + first.stderr
    metrics = json.loads((project / "data/metrics/ingest.json").read_text())
    assert metrics["source"] == "demo" and metrics["questions"] == len(read_parquet(project / "data/raw/questions.parquet"))
    assert "skipped" in first.stdout and (project / "data/results.duckdb").exists()

    second = run(["dvc", "repro"], project)
    assert second.returncode == 0
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout

    tables = run(["medreg", "tables", "--format", "json"], project)
    assert {r["name"]: r["rows"] for r in json.loads(tables.stdout)}["questions"] == metrics["questions"]

    before = (project / "data/raw/questions.parquet").read_bytes()
    medqa = project / "data/demo/medreason/medqa_test.jsonl"
    medqa.write_text(medqa.read_text() + '{"question": "broken\n')
    failed = run(["dvc", "repro"], project)
    assert failed.returncode != 0
    assert "data/demo/medreason/medqa_test.jsonl" in failed.stderr + failed.stdout
    assert (project / "data/raw/questions.parquet").read_bytes() == before


def test_dvc_exp_run_switches_to_the_real_mirror(project):
    if not MIRROR.is_dir():
        pytest.skip(f"real benchmark mirror not found at {MIRROR}")
    shutil.rmtree(project / "data/demo/medreason")  # proves nothing is read from the demo directory
    result = run(["dvc", "exp", "run", "-S", "ingest.source=mirror", "-S", f"ingest.mirror_dir={MIRROR}", "ingest"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((project / "data/metrics/ingest.json").read_text())
    assert metrics["source"] == "mirror"
    assert metrics["benchmarks"]["medqa"]["questions"] == 1273 and metrics["benchmarks"]["pubmedqa"]["questions"] == 1000
    assert sorted(metrics["skipped"]) == ["gpqa_medical", "lancet", "medmcqa", "mmlu_pro_health_biology", "nejm"]
