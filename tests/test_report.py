"""`medreg report`: refuses without outputs (fast); on the demo, the page renders in headless Chromium (slow)."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from registry import report
from registry.io import load

from .conftest import ROOT, run

CHROMIUM = Path(os.environ.get("MEDREG_CHROMIUM", "/usr/bin/chromium"))
ARTEFACTS = ROOT / "test-artefacts"


class Node:
    """An element of a parsed page: tag, attributes, children (nodes and text)."""

    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs, self.children = tag, attrs, []

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list["Node"]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag: str | None = None, **attrs: str) -> "Node":
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}> in the page"
        return found[0]

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return " ".join(" ".join(c.text() if isinstance(c, Node) else c for c in self.children).split())  # cells apart


class Tree(HTMLParser):
    """A minimal DOM from HTML text (what `chromium --dump-dom` prints), with the standard library only."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Load a local page in headless Chromium with a fresh profile and every host name unresolvable (no network)."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="session")
def browser() -> Path:
    """Headless Chromium, checked before the demo is built: a skip, or a failure where MEDREG_REQUIRE_BROWSER=1 (CI)."""
    if not CHROMIUM.exists():
        if os.environ.get("MEDREG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MEDREG_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install -y chromium (or set MEDREG_CHROMIUM)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); set MEDREG_REQUIRE_BROWSER=1 to fail instead")
    return CHROMIUM


def test_report_refuses_without_pipeline_outputs(project):
    out = run(["medreg", "report", "--out", "r.html"], project)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "data/tables/summary.parquet is missing" in out.stderr and "dvc repro" in out.stderr
    assert not (project / "r.html").exists()


def test_lineage_names_the_stage_and_checks_the_workspace_md5(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/t.csv").write_text("a\n1\n")
    lock = {
        "stages": {
            "make": {
                "deps": [{"path": "src.txt", "md5": "d" * 32}],
                "params": {"params.yaml": {"make.k": 3}},
                "outs": [{"path": "data/t.csv", "md5": report.md5_file(tmp_path / "data/t.csv")}, {"path": "logs", "md5": "x.dir"}],
            }
        }
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    rows, outs = report.lineage_index(tmp_path)
    item = report.lineage_of("data/t.csv", tmp_path, rows, outs)
    assert (item.stage, item.deps, item.params, item.matches) == ("make", [("src.txt", "d" * 32)], [("make.k", "3")], True)
    (tmp_path / "data/t.csv").write_text("a\n2\n")
    assert report.lineage_of("data/t.csv", tmp_path, rows, outs).matches is False
    inside = report.lineage_of("logs/plots/loss.tsv", tmp_path, rows, outs)  # in a directory output: its md5, no file check
    assert (inside.stage, inside.output, inside.lock_md5, inside.matches) == ("make", "logs", "x.dir", None)


def check_rendered_report(project: Path, tmp: Path) -> None:
    """Write the report of a pipeline-run project, render it offline in Chromium, and check plots and numbers on the page."""
    out = run(["medreg", "report", "--out", str(tmp / "report.html")], project)
    assert out.returncode == 0, out.stdout + out.stderr
    page = Path(out.stdout.strip())
    assert page == tmp / "report.html" and page.stat().st_size > 100_000
    html = page.read_text(encoding="utf-8")
    # self-contained: no element loads anything (script and style contents are not parsed as tags)
    loading = ("script", "img", "iframe", "embed", "link", "source")
    assert not [n.tag for n in Tree(html).root.iter() if n.tag in loading and n.attrs.keys() & {"src", "href"}]

    done = chromium(page, tmp / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-3000:]
    dom = Tree(done.stdout).root
    remote = re.compile(r"\s*(https?:)?//", re.I)
    assert not [n.attrs for n in dom.iter() if any(remote.match(n.attrs.get(a, "")) for a in ("src", "href", "xlink:href"))]

    # every plot dvc.yaml defines is on the page, each drawn as an SVG with marks
    defined = list(yaml.safe_load((project / "dvc.yaml").read_text())["plots"])
    names = [next(iter(p)) if isinstance(p, dict) else p for p in defined]
    figures = dom.find_all("figure")
    assert [f.find("figcaption").text() for f in figures][: len(names)] == names
    assert dom.find("body").attrs.get("data-plots-rendered") == f"{len(figures)}/{len(figures)}"
    for figure in figures:
        svg = figure.find("svg")
        marks = [n for g in svg.find_all("g") if "role-mark" in g.classes for n in g.iter() if n.tag in ("path", "line", "rect", "text")]
        assert marks, f"plot {figure.find('figcaption').text()!r}: an <svg> without marks"
        assert "error" not in figure.find("div").classes

    # the tables carry the numbers of their sources, formatted as the page formats them
    summary = load("summary", project).query("scorer == 'medreg'")  # the page's table: our scorer
    table = dom.find("table", id="summary-table")
    for r in summary.itertuples():
        cell = table.find("td", data_model=r.model, data_benchmark=r.benchmark, data_category=r.category).text()
        assert f"{r.accuracy:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" in cell and f"{r.n_correct}/{r.n}" in cell, cell
    gaps = dom.find("table", id="gaps-table")
    for r in load("gaps", project).itertuples():
        row = gaps.find("tr", data_model=r.model).text()
        assert f"{r.gap:+.3f} [{r.gap_ci_low:+.3f}, {r.gap_ci_high:+.3f}]" in row and f"{r.knowledge_accuracy:.3f} n={r.n_knowledge}" in row, row
    robustness = load("robustness", project)
    assert (
        len(robustness)
        == len(dom.find("table", id="robustness-table").find_all("tr"))
        - 1
        + len(dom.find("table", id="robustness-benchmark-table").find_all("tr"))
        - 1
    )
    for r in robustness.itertuples():
        row = dom.find("tr", data_model=r.model, data_benchmark=r.benchmark, data_category=r.category).text()
        drop, low, high = (report.fmt(v, signed=True) for v in (r.drop, r.drop_ci_low, r.drop_ci_high))  # '–' for an undefined drop
        expected = f"{r.clean_accuracy:.3f} {r.adversarial_accuracy:.3f} {drop} [{low}, {high}]"
        assert expected in row, row

    classifier = load("classifier_metrics", project)
    matrix = dom.find("table", id="confusion-oof")
    labels = classifier["confusion_matrix"]["labels"]
    for i, row in enumerate(classifier["confusion_matrix"]["rows_true_cols_pred"]):
        for j, value in enumerate(row):
            assert matrix.find("td", data_true=labels[i], data_pred=labels[j]).text() == str(value)
    metrics = dom.find("table", id="classifier-oof-metrics")
    for key in ("accuracy", "macro_f1", "roc_auc"):
        assert metrics.find("td", data_metric=key).text() == f"{classifier[key]:.3f}"
    cv = load("classifier_cv", project)
    table = dom.find("table", id="classifier-cv")
    for name, rows in cv.groupby("candidate"):  # mean ± sd over the folds of the DuckDB table's source
        cell = table.find("tr", data_candidate=name).find("td", data_metric="macro_f1").text()
        assert cell == f"{rows.macro_f1.mean():.3f} ± {rows.macro_f1.std():.3f}"
    splits = load("splits_metrics", project)
    labels_table = load("splits", project)
    shares = dom.find("table", id="splits-table")
    for benchmark, rows in labels_table.groupby("benchmark"):
        share = (rows.predicted_category == "reasoning").mean()
        assert shares.find("tr", data_benchmark=benchmark).find("td", data_metric="share").text() == f"{round(share, 4):.3f}"
    assert f"{splits['study_reasoning_share']:.3f}" in shares.find("tr", data_benchmark="study").text()

    # lineage: the stage and md5 dvc.lock records; the git revision in the header
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["summarise"]
    md5 = next(o["md5"] for o in lock["outs"] if o["path"] == "data/tables/summary.parquet")
    text = next(d.text() for d in dom.find_all("details") if d.find("summary").text().startswith("lineage: data/tables/summary.parquet"))
    assert "stage summarise" in text and md5 in text and "matches dvc.lock" in text
    assert all(d["md5"] in text for d in lock["deps"])
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project, capture_output=True, text=True, check=True).stdout.strip()
    assert dom.find("code", id="git-rev").text() == rev

    # a screenshot (and the page) for the test artefacts
    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = chromium(page, tmp / "profile-shot", "--hide-scrollbars", "--window-size=1280,3000", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.exists(), done.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    shutil.copy(page, ARTEFACTS / "report.html")


@pytest.mark.slow
def test_report_renders_offline_in_headless_chromium(browser, demo, tmp_path):
    check_rendered_report(demo, tmp_path)
