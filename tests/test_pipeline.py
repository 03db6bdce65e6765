import json
import shutil

import pytest

from .conftest import MIRROR, run

pytestmark = pytest.mark.slow


def test_dvc_exp_run_switches_to_the_real_mirror(project):
    if not MIRROR.is_dir():
        pytest.skip(f"real benchmark mirror not found at {MIRROR}")
    shutil.rmtree(project / "data/demo/medreason")  # proves nothing is read from the demo directory
    result = run(["dvc", "exp", "run", "-S", "ingest.source=mirror", "-S", f"ingest.mirror_dir={MIRROR}", "ingest"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((project / "data/metrics/ingest.json").read_text())
    assert metrics["source"] == "mirror"
    assert metrics["benchmarks"]["medqa"]["questions"] == 1273 and metrics["benchmarks"]["pubmedqa"]["questions"] == 500
    assert sorted(metrics["skipped"]) == ["gpqa_medical", "lancet", "medmcqa", "mmlu_pro_health_biology", "nejm"]
