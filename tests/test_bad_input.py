import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from registry.io import read_parquet

from .conftest import DEMO, ROOT, run

OUTPUTS = ["data/raw/questions.parquet", "data/raw/quarantine.parquet", "data/metrics/ingest.json"]


def _workdir(tmp_path: Path, on_invalid: str = "fail") -> Path:
    """A directory with params.yaml and its own copy of the demo inputs, where the ingest stage can run."""
    shutil.copytree(DEMO, tmp_path / "demo")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"].update(demo_dir="demo", on_invalid=on_invalid)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _corrupt(demo: Path) -> dict[str, tuple[str, str, str]]:
    """Break five rows in five ways; returns {case: (file, row, field)} as the report must name them."""
    medqa = demo / "medreason/medqa_test.jsonl"
    lines = medqa.read_text().splitlines()
    lines[2] = lines[2][:-5]  # broken JSON line (line 3)
    rec = json.loads(lines[4])
    del rec["question"]  # missing field (line 5)
    lines[4] = json.dumps(rec)
    rec = json.loads(lines[6])
    rec["answer_idx"] = "H"  # answer not among the options (line 7)
    lines[6] = json.dumps(rec)
    medqa.write_text("\n".join(lines) + "\n")

    mxqa = demo / "medreason/MedXpertQA_test.jsonl"
    mlines = mxqa.read_text().splitlines()
    dup = json.loads(mlines[0])
    dup["question"] = "A different question reusing the first id?"
    mlines.append(json.dumps(dup))  # duplicate id (last line)
    mxqa.write_text("\n".join(mlines) + "\n")

    pub = demo / "pubmedqa/ori_pqal.json"
    data = json.loads(pub.read_text())
    pmid = next(iter(data))
    data[pmid]["QUESTION"] = "   "  # empty question
    pub.write_text(json.dumps(data, indent=4))
    return {
        "json": (str(medqa.relative_to(demo.parent)), "3", "<row>"),
        "missing": (str(medqa.relative_to(demo.parent)), "5", "question"),
        "answer": (str(medqa.relative_to(demo.parent)), "7", "answer"),
        "duplicate": (str(mxqa.relative_to(demo.parent)), str(len(mlines)), "qid"),
        "empty": (str(pub.relative_to(demo.parent)), pmid, "question"),
    }


def _snapshot(work: Path) -> dict[str, bytes]:
    return {rel: (work / rel).read_bytes() for rel in OUTPUTS}


def test_bad_input_fails_with_every_problem_named_and_keeps_previous_outputs(tmp_path):
    work = _workdir(tmp_path)
    good = run(["python", "-m", "stages.ingest"], work)
    assert good.returncode == 0, good.stderr
    before = _snapshot(work)

    cases = _corrupt(work / "demo")
    bad = run(["python", "-m", "stages.ingest"], work)
    assert bad.returncode != 0
    report = bad.stderr
    assert "ingest failed: 5 problem(s) in 5 row(s) of 3 file(s)" in report
    for case, (file, row, field) in cases.items():
        assert f"{file}:{row}: field '{field}'" in report, f"{case} not reported:\n{report}"
    assert "not valid JSON" in report
    assert "required field missing" in report
    assert "answer is one of the option letters" in report
    assert "duplicate (benchmark, qid)" in report
    assert "non-empty, stripped, NFC text" in report
    assert "Traceback" not in report
    assert _snapshot(work) == before, "a failed run must leave the previous outputs intact"
    assert not list(work.rglob("*.tmp")), "no half-written temp files may remain"


def test_quarantine_keeps_valid_rows_and_writes_rejected_ones_with_reasons(tmp_path):
    work = _workdir(tmp_path, on_invalid="quarantine")
    clean = run(["python", "-m", "stages.ingest"], work)
    assert clean.returncode == 0, clean.stderr
    n_clean = len(read_parquet(work / OUTPUTS[0]))

    cases = _corrupt(work / "demo")
    result = run(["python", "-m", "stages.ingest"], work)
    assert result.returncode == 0, result.stderr
    questions = read_parquet(work / OUTPUTS[0])
    rejected = pd.read_parquet(work / OUTPUTS[1])
    metrics = json.loads((work / OUTPUTS[2]).read_text())

    # 4 corrupted rows leave, the duplicate's first occurrence stays, the duplicate copy is rejected
    assert len(questions) == n_clean - 4
    assert len(rejected) == 5 and metrics["quarantined_rows"] == 5
    got = {(r.source_file, r.source_row) for r in rejected.itertuples()}
    assert got == {(file, row) for file, row, _ in cases.values()}
    assert rejected.errors.str.len().gt(0).all()
    dup = rejected[rejected.benchmark == "medxpertqa"].iloc[0]
    assert dup.errors == "qid: duplicate (benchmark, qid)" and "A different question" in dup.raw
    assert "quarantined" in result.stdout


@pytest.mark.parametrize("bad", ["source: s3", "on_invalid: ignore", "benchmarks: [medqa, nope]"])
def test_bad_params_exit_nonzero_with_message(tmp_path, bad):
    work = _workdir(tmp_path)
    params = yaml.safe_load((work / "params.yaml").read_text())
    key, value = bad.split(": ")
    params["ingest"][key] = yaml.safe_load(value)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    result = run(["python", "-m", "stages.ingest"], work)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"ingest.{key}" in result.stderr
    assert not (work / OUTPUTS[0]).exists()
