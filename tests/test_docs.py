"""The user documentation: every generated number matches the outputs, a hand-edited one fails, the README stays short."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry import docs
from registry.errors import MedregError

ROOT = Path(__file__).resolve().parents[1]


def test_every_number_in_the_docs_matches_the_outputs_it_names():
    """README.md and docs/*.md against the git-tracked metrics (present in every clone): `medreg docs --check` is clean."""
    mismatches = docs.update(ROOT, check=True)
    assert not mismatches, "\n".join(f"{m.file.name}:{m.line}: {m.source}: doc {m.found!r}, data {m.expected!r}" for m in mismatches)
    markers = sum(len(docs.MARKER.findall(p.read_text())) for p in docs.doc_files(ROOT))
    assert markers >= 5  # the quickstart's table, the schema, the measured tables and numbers in the prose


def _copy(tmp_path: Path) -> Path:
    for rel in ("README.md", "docs", "data/metrics", "bench/results"):
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    return tmp_path


def test_a_number_changed_by_hand_is_reported_with_its_file_and_line_and_rewritten(tmp_path):
    root = _copy(tmp_path)
    page = next(p for p in docs.doc_files(root) if re.search(r"<!--=[^>]*:pct-->", p.read_text()))
    text = page.read_text()
    match = re.search(r"<!--=(?P<source>[^>]*:pct)-->(?P<value>[^<]*)<!--/-->", text)
    page.write_text(text[: match.start("value")] + "99.9%" + text[match.end("value") :])
    found = docs.update(root, check=True)
    assert [(m.file, m.source, m.found, m.expected) for m in found] == [(page, match["source"], "99.9%", match["value"])]
    assert found[0].line == text.count("\n", 0, match.start()) + 1
    assert "99.9%" in page.read_text()  # --check writes nothing; without it, the value is rewritten
    docs.update(root)
    assert page.read_text() == text and not docs.update(root, check=True)


def test_a_changed_output_is_reported_in_the_doc_that_cites_it(tmp_path):
    root = _copy(tmp_path)
    metrics = root / "data/metrics/splits.json"
    metrics.write_text(metrics.read_text().replace('"questions": ', '"questions": 1', 1))
    cited = [m for p in docs.doc_files(root) for m in docs.MARKER.finditer(p.read_text()) if m["source"].startswith("splits.json:questions:")]
    assert cited, "the docs cite the number of questions from splits.json"
    assert {m.source for m in docs.update(root, check=True)} >= {c["source"] for c in cited}


@pytest.mark.parametrize(
    ("source", "message"),
    [("eval.json", "expected FILE:KEY:FORMAT"), ("nope.json:a:pct", "no metrics file"), ("splits.json:nope:pct", "has no key 'nope'"),
     ("splits.json:questions:eur", "unknown format"), ("block:nope", "no block generator")],
)  # fmt: skip
def test_a_bad_marker_is_refused_naming_it(source, message):
    with pytest.raises(MedregError, match=message):
        docs.generate(ROOT, source, docs.BLOCKS)


def test_the_readme_is_for_users():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for page in docs.doc_files(ROOT):
        body = page.read_text()
        assert not re.search(r"\b(issue|work item) #?\d+", body, re.I), f"{page.name}: internal work-item reference"
    assert "## Quickstart" in text and "make repro" in text and "make test" in text
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|cff))\)", text) + ["LICENSE", "CITATION.cff"]:
        assert (ROOT / link).is_file(), link


def test_medreg_docs_check_exits_2_and_names_the_line(tmp_path):
    root = _copy(tmp_path)
    (root / "dvc.yaml").write_text("stages: {}\n")
    page = root / "README.md"
    page.write_text(page.read_text() + "\nshare <!--=splits.json:reasoning_share:pct-->0.0%<!--/-->\n")
    run = subprocess.run([str(Path(sys.executable).parent / "medreg"), "docs", "--check"], cwd=root, capture_output=True, text=True)
    line = len(page.read_text().splitlines())
    assert run.returncode == 2 and f"README.md:{line}: splits.json:reasoning_share:pct" in run.stderr, run.stderr


def test_the_quickstart_table_is_what_the_query_prints(demo):
    """The README's expected output, generated from eval.json, is byte for byte what `medreg query` prints on the database."""
    printed = subprocess.run([str(Path(sys.executable).parent / "medreg"), "query", docs.ACCURACY_SQL], cwd=demo, capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert docs.accuracy_block(demo) == "```\n" + printed.stdout + "```"
    assert docs.ACCURACY_SQL.split(" from ")[1] in " ".join((ROOT / "README.md").read_text().split())
