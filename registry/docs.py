"""Numbers in the documentation, generated from the outputs and checked against them (`medreg docs`).

A number in README.md or docs/*.md is written with its source, so nobody types it:

    <!--=eval.json:smollm2-135m-sft.accuracy:pct-->29.2%<!--/-->

`FILE:KEY:FORMAT`: a git-tracked metrics file of data/metrics/ (available in every clone, CI included), a dotted key
inside it, and how to print the value. A block between `<!--=block:NAME-->` and `<!--/-->` is written whole by the
generator NAME (the quickstart's expected output, the results schema, `bench:NAME` a bench/results table). `medreg docs` rewrites every value and
block; `medreg docs --check` lists the ones that differ (a test runs it), so a number changed by hand fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import MedregError

MARKER = re.compile(r"<!--=(?P<source>[^>]*?)-->(?P<value>.*?)<!--/-->", re.DOTALL)
METRICS_DIR = Path("data/metrics")
FORMATS: dict[str, Callable[[Any], str]] = {
    "pct": lambda v: f"{v:.1%}",
    "pct0": lambda v: f"{v:.0%}",
    "int": lambda v: f"{int(v):,}",
    "f2": lambda v: f"{v:.2f}",
    "f3": lambda v: f"{v:.3f}",
    "raw": str,
}


@dataclass(frozen=True)
class Mismatch:
    """A generated value the document does not hold."""

    file: Path
    line: int
    source: str
    found: str
    expected: str


def doc_files(root: Path) -> list[Path]:
    """The user documentation: README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def lookup(root: Path, source: str) -> str:
    """The text for an inline source `FILE:KEY:FORMAT` (FILE below data/metrics/)."""
    try:
        file, key, fmt = source.split(":")
    except ValueError:
        raise MedregError(f"doc marker <!--={source}-->: expected FILE:KEY:FORMAT (e.g. eval.json:smollm2-135m-sft.accuracy:pct)") from None
    path = root / METRICS_DIR / file
    if not path.is_file():
        raise MedregError(f"doc marker <!--={source}-->: no metrics file {path.relative_to(root)}: run `dvc repro`")
    value: Any = json.loads(path.read_text(encoding="utf-8"))
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise MedregError(f"doc marker <!--={source}-->: {path.relative_to(root)} has no key '{key}'")
        value = value[part]
    if fmt not in FORMATS:
        raise MedregError(f"doc marker <!--={source}-->: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    return FORMATS[fmt](value)


def generate(root: Path, source: str, blocks: dict[str, Callable[[Path], str]]) -> str:
    """The text a marker's source generates: a block's whole content, or an inline value."""
    if source.startswith("block:"):
        name = source.removeprefix("block:")
        if name.startswith("bench:"):  # a table a bench/ script wrote
            return "\n" + bench_block(root, name.removeprefix("bench:")).rstrip("\n") + "\n"
        if name not in blocks:
            raise MedregError(f"doc marker <!--={source}-->: no block generator '{name}' (known: {', '.join(blocks)})")
        return "\n" + blocks[name](root).rstrip("\n") + "\n"
    return lookup(root, source)


def render(text: str, root: Path, blocks: dict[str, Callable[[Path], str]]) -> tuple[str, list[tuple[int, str, str, str]]]:
    """`text` with every marker's value regenerated, and (line, source, found, expected) for each that changed."""
    changed = []

    def replace(match: re.Match) -> str:
        expected = generate(root, match["source"], blocks)
        if match["value"] != expected:
            changed.append((text.count("\n", 0, match.start()) + 1, match["source"], match["value"], expected))
        return f"<!--={match['source']}-->{expected}<!--/-->"

    return MARKER.sub(replace, text), changed


def update(root: Path, check: bool = False, blocks: dict[str, Callable[[Path], str]] | None = None) -> list[Mismatch]:
    """Regenerate every marker of the documentation; with `check`, only report what differs. Returns the differences."""
    blocks = BLOCKS if blocks is None else blocks
    found = []
    for path in doc_files(root):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        new, changed = render(text, root, blocks)
        found += [Mismatch(path, line, source, old, expected) for line, source, old, expected in changed]
        if changed and not check:
            path.write_text(new, encoding="utf-8")
    return found


# ---------------------------------------------------------------------------------------------------- block generators


def schema_block(root: Path) -> str:
    """The results schema: every table and view of the results database, its description and its columns'."""
    from registry import db

    lines = []
    for table, doc in sorted({**db.catalog_docs(), "lineage": db.LINEAGE_DOC}.items()):
        lines += [f"### `{table}`", "", doc.description or "", "", "| column | description |", "|---|---|"]
        lines += [f"| `{column}` | {text.replace('|', '/')} |" for column, text in doc.columns.items()]
        lines.append("")
    return "\n".join(lines)


def bench_block(root: Path, name: str) -> str:
    """The table `bench/NAME_bench.py` last wrote to bench/results/NAME.md (machine, date and load are in it)."""
    path = root / "bench" / "results" / f"{name}.md"
    if not path.is_file():
        raise MedregError(f"doc marker <!--=block:bench:{name}-->: no {path.relative_to(root)}: run `python bench/{name}_bench.py`")
    return path.read_text(encoding="utf-8")


def accuracy_block(root: Path) -> str:
    """The expected output of the quickstart's accuracy query, from data/metrics/eval.json (what the query reads)."""
    from registry.cli import render as render_table

    metrics = json.loads((root / METRICS_DIR / "eval.json").read_text(encoding="utf-8"))
    rows = [(model, m["n"], m["accuracy"], m["accuracy_ci_low"], m["accuracy_ci_high"]) for model, m in sorted(metrics.items())]
    return "```\n" + render_table(["model", "n", "accuracy", "ci_low", "ci_high"], rows, "table") + "```"


ACCURACY_SQL = (
    "select model, n, round(accuracy, 4) accuracy, round(ci_low, 4) ci_low, round(ci_high, 4) ci_high from summary "
    "where benchmark = 'all' and category = 'all' and scorer = 'medreg' order by model"
)

BLOCKS: dict[str, Callable[[Path], str]] = {"schema": schema_block, "accuracy": accuracy_block}
