import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from registry import catalog
from registry.ingest import IngestError, ingest
from registry.io import load

from .conftest import DEMO, ROOT, run

OUTPUTS = ["data/raw/questions.parquet", "data/quarantine/quarantine.parquet", "data/metrics/ingest.json"]
MEDQA = "demo/medreason/medqa_test.jsonl"
PUBMEDQA = "demo/pubmedqa/ori_pqal.json"


def _workdir(tmp_path: Path, **ingest_params) -> Path:
    """A directory with params.yaml and its own copy of the demo inputs, where the ingest stage can run."""
    shutil.copytree(DEMO, tmp_path / "demo")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"].update(demo_dir="demo", **ingest_params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _set_params(work: Path, **ingest_params) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["ingest"].update(ingest_params)
    (work / "params.yaml").write_text(yaml.safe_dump(params))


def _ingest(work: Path):
    return run(["python", "-m", "stages.ingest"], work)


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


def _refused(result, *needles: str) -> str:
    """Exit status 2, no traceback, every needle in stderr."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


def _error_lines(stderr: str) -> list[str]:
    """The report from its `error:` line on (progress bars before it are not part of it)."""
    lines = stderr.strip().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")) :]


def test_bad_input_fails_with_every_problem_named_and_keeps_previous_outputs(tmp_path):
    work = _workdir(tmp_path)
    good = _ingest(work)
    assert good.returncode == 0, good.stderr
    before = _snapshot(work)

    cases = _corrupt(work / "demo")
    report = _refused(_ingest(work), "ingest failed: 5 problem(s) in 5 row(s) of 3 file(s)")
    for case, (file, row, field) in cases.items():
        assert f"{file}:{row}: field '{field}'" in report, f"{case} not reported:\n{report}"
    assert "not valid JSON" in report and " at at " not in report
    assert "required field missing" in report
    assert "answer is one of the option letters" in report
    assert "duplicate (benchmark, qid)" in report
    assert "non-empty, stripped, NFC text" in report
    assert _snapshot(work) == before, "a failed run must leave the previous outputs intact"
    assert not list(work.rglob("*.tmp")), "no half-written temp files may remain"


def test_quarantine_keeps_valid_rows_and_writes_rejected_ones_with_reasons_and_raw_text(tmp_path):
    work = _workdir(tmp_path, on_invalid="quarantine")
    clean = _ingest(work)
    assert clean.returncode == 0, clean.stderr
    n_clean = len(load("questions", work))

    broken_line = (work / MEDQA).read_text().splitlines()[2][:-5]
    cases = _corrupt(work / "demo")
    result = _ingest(work)
    assert result.returncode == 0, result.stderr
    questions = load("questions", work)
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
    unparseable = rejected[(rejected.benchmark == "medqa") & (rejected.source_row == "3")].iloc[0]
    assert unparseable.raw == broken_line  # an unparseable line keeps its raw text
    assert "quarantined" in result.stdout


def test_invalid_utf8_is_named_by_line_and_quarantined_alone(tmp_path):
    work = _workdir(tmp_path)
    medqa = work / MEDQA
    lines = medqa.read_bytes().split(b"\n")
    lines[3] = lines[3][:30] + b"\xff" + lines[3][30:]  # one invalid byte on line 4, inside the question text
    medqa.write_bytes(b"\n".join(lines))
    pub = work / PUBMEDQA
    text = pub.read_bytes()
    pmid = next(iter(json.loads(text)))
    second = list(json.loads(text))[1]
    at = text.index(f'"{second}"'.encode()) + 40
    pub.write_bytes(text[:at] + b"\xc3\x28" + text[at:])  # an invalid two-byte sequence inside the second record
    line = text[:at].count(b"\n") + 1

    report = _refused(_ingest(work), f"{MEDQA}:4: field '<row>': not valid UTF-8 (byte 0xff at column 31)")
    assert f"{PUBMEDQA}:{second}: field '<row>': not valid UTF-8 (byte 0xc3 at line {line}" in report

    _set_params(work, on_invalid="quarantine")
    assert _ingest(work).returncode == 0
    questions, rejected = load("questions", work), pd.read_parquet(work / OUTPUTS[1])
    assert set(zip(rejected.source_file, rejected.source_row, strict=True)) == {(MEDQA, "4"), (PUBMEDQA, second)}
    assert "\\xff" in rejected.set_index("source_row").loc["4", "raw"]  # the raw line, invalid byte shown escaped
    assert ((questions.benchmark == "medqa").sum(), (questions.benchmark == "pubmedqa").sum()) == (43, 23)
    assert pmid in set(questions.qid)


@pytest.mark.parametrize("damage", ["delete", "empty", "blank", "a new copy without it"])
def test_a_benchmark_the_previous_output_held_does_not_vanish(tmp_path, damage):
    work = _workdir(tmp_path)
    assert _ingest(work).returncode == 0
    before = _snapshot(work)
    medqa = work / MEDQA
    if damage == "a new copy without it":  # the same kind of source, pointed at another directory
        shutil.copytree(work / "demo", work / "demo2")
        (work / "demo2/medreason/medqa_test.jsonl").unlink()
        _set_params(work, demo_dir="demo2")
        medqa = work / "demo2/medreason/medqa_test.jsonl"
    else:
        {"delete": medqa.unlink, "empty": lambda: medqa.write_text(""), "blank": lambda: medqa.write_text("\n  \n\n")}[damage]()
    why = "no rows (the file is empty)" if damage in ("empty", "blank") else "file is missing"
    file = medqa.relative_to(work).as_posix()
    _refused(_ingest(work), f"{file}: {why}: benchmark 'medqa' (44 questions in the previous output) would vanish", "ingest.allow_drop: [medqa]")
    assert _snapshot(work) == before

    _set_params(work, allow_drop=["medqa"])
    allowed = _ingest(work)
    assert allowed.returncode == 0, allowed.stderr
    assert "medqa" not in set(load("questions", work).benchmark) and "medqa" in json.loads((work / OUTPUTS[2]).read_text())["skipped"]


def test_an_empty_file_or_a_named_but_absent_benchmark_fails_even_on_the_first_run(tmp_path):
    work = _workdir(tmp_path)
    (work / PUBMEDQA).write_text("")
    _refused(_ingest(work), f"{PUBMEDQA}: no rows (the file is empty): benchmark 'pubmedqa' would vanish")
    shutil.copy(DEMO / "pubmedqa/ori_pqal.json", work / PUBMEDQA)
    _set_params(work, benchmarks=["medqa", "medbullets_op4"])
    _refused(_ingest(work), "demo/medreason/medbullets_op4.jsonl: file is missing: benchmark 'medbullets_op4' would vanish")
    assert not (work / OUTPUTS[0]).exists()


def test_a_missing_or_empty_directory_is_one_line_naming_it(tmp_path):
    work = _workdir(tmp_path, source="mirror", mirror_dir="no/such/dir")
    err = _refused(_ingest(work), "ingest.mirror_dir: no/such/dir does not exist or is not a directory")
    assert len(_error_lines(err)) == 2  # the error and "nothing was written"
    (work / "empty").mkdir()
    _set_params(work, mirror_dir="empty")
    err = _refused(_ingest(work), "ingest.mirror_dir: no benchmark found in empty (looked for medreason/medqa_test.jsonl")
    assert len(_error_lines(err)) == 2


def test_a_field_mapping_typo_is_reported_once_with_the_count():
    entries = dict(catalog.benchmarks())
    medqa = entries["medqa"]
    entries["medqa"] = medqa.model_copy(update={"fields": medqa.fields.model_copy(update={"question": "questoin"})})
    with pytest.raises(IngestError) as err:
        ingest(entries, "demo", DEMO, benchmarks=["medqa"])
    lines = str(err.value).splitlines()
    assert len(lines) == 2, lines
    assert "field 'questoin': required field missing: 44 rows (e.g. 1, 2, 3) — every row: is the field mapping" in lines[1]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("source", "s3", "ingest.source: Input should be 'demo', 'mirror' or 'hub'"),
        ("on_invalid", "ignore", "ingest.on_invalid: Input should be 'fail' or 'quarantine'"),
        ("benchmarks", ["medqa", "nope"], "ingest.benchmarks: unknown benchmark(s) ['nope']"),
        ("benchmarks", "medqa", "ingest.benchmarks: must be all or a non-empty list of benchmark names, got 'medqa'"),
        ("allow_drop", ["medqa_typo"], "ingest.allow_drop: unknown benchmark(s) ['medqa_typo']"),
    ],
)
def test_bad_params_exit_2_naming_the_key(tmp_path, key, value, message):
    work = _workdir(tmp_path)
    _set_params(work, **{key: value})
    _refused(_ingest(work), message)
    assert not (work / OUTPUTS[0]).exists()
