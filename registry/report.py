"""`medreg report`: one self-contained HTML page with the DVC plots, the result tables, the classifier and lineage.

The plots are the Vega-Lite specs DVC fills from dvc.yaml (`dvc plots show` without the CDN): the Vega, Vega-Lite and
vega-embed libraries are inlined once (from vl-convert), so the page renders offline. Tables come from the dataset
catalog, lineage (stage, md5s, deps, params) from dvc.lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io as stdio
import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import catalog
from registry.errors import MedregError

REQUIRED = ("summary", "gaps", "robustness", "classifier_metrics", "splits_metrics")
EXTRA_METRICS = ("eval_metrics", "robustness_metrics", "ingest_metrics", "train_data_metrics", "sft_metrics", "grpo_metrics")
CATEGORIES = ("reasoning", "knowledge", "all")
HINT = "run `dvc repro` (or `dvc pull`) first"


@dataclass
class Lineage:
    """Where a file comes from: the stage that wrote it (per dvc.lock), the md5s and what that stage read."""

    path: str
    stage: str | None = None
    output: str | None = None  # the dvc.lock output holding it (the file itself or a directory above it)
    lock_md5: str | None = None
    md5: str | None = None  # the workspace file's md5 (files only)
    deps: list[tuple[str, str | None]] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)

    @property
    def matches(self) -> bool | None:
        """Whether the workspace file is the one dvc.lock records (None: not checkable, e.g. inside a directory output)."""
        return None if self.md5 is None or self.output != self.path else self.md5 == self.lock_md5


@dataclass
class Plot:
    """One DVC plot: its id (a title from dvc.yaml's `plots:` or a file path), the filled Vega-Lite spec, its sources."""

    name: str
    spec: dict[str, Any]
    files: list[str]
    top_level: bool
    lineage: list[Lineage] = field(default_factory=list)


def check_outputs(root: Path) -> None:
    """Refuse (MedregError, one line) when dvc.lock or an output the report reads is missing."""
    if not (root / "dvc.lock").exists():
        raise MedregError(f"{root / 'dvc.lock'} is missing: {HINT}")
    for name in REQUIRED:
        path = catalog.dataset_path(name, root)
        if not path.exists():
            raise MedregError(f"{path} is missing (dataset '{name}'): {HINT}")


def md5_file(path: Path) -> str:
    """The md5 of a file's bytes (what DVC 3 records for a file output)."""
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_info(root: Path) -> dict[str, Any]:
    """Short revision, commit date and whether the work tree has changes; empty when `root` is not a git work tree."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    rev = git("rev-parse", "--short", "HEAD")
    if not rev:
        return {}
    return {"rev": rev, "date": git("log", "-1", "--format=%cd", "--date=format:%Y-%m-%d %H:%M"), "dirty": bool(git("status", "--porcelain"))}


def lineage_index(root: Path) -> tuple[list[tuple], dict[str, str]]:
    """The lineage rows of dvc.lock (registry.db.lineage) and each output's md5."""
    import yaml

    from registry.db import lineage

    lock = yaml.load((root / "dvc.lock").read_text(encoding="utf-8"), Loader=yaml.CSafeLoader) or {}
    outs = {o["path"]: o.get("md5") for entry in (lock.get("stages") or {}).values() for o in entry.get("outs", [])}
    return lineage(lock), outs


def lineage_of(path: str, root: Path, rows: list[tuple], outs: dict[str, str]) -> Lineage:
    """The lineage of one file below `root`: its own output in dvc.lock, else the directory output that holds it."""
    output = path if path in outs else next((o for o in sorted(outs, key=len, reverse=True) if path.startswith(o.rstrip("/") + "/")), None)
    file = root / path
    item = Lineage(path=path, output=output, lock_md5=outs.get(output) if output else None, md5=md5_file(file) if file.is_file() else None)
    for stage, artifact, _, source, kind, md5, value in rows:
        if artifact != output:
            continue
        item.stage = stage
        if kind == "dep":
            item.deps.append((source, md5))
        else:
            item.params.append((source.split(":", 1)[1], value))
    return item


def dvc_plots(root: Path) -> list[Plot]:
    """Every plot DVC defines (dvc.yaml's top-level `plots:` first, then the stages' plot outputs), filled with data."""
    from dvc.render.match import match_defs_renderers
    from dvc.repo import Repo

    with Repo(str(root)) as repo, contextlib.redirect_stderr(stdio.StringIO()):  # DVC's own "failed to load" line: ours says more
        data = repo.plots.show()
        matched = match_defs_renderers(data=data, templates_dir=repo.plots.templates_dir)
    errors = {
        f"{src} is missing" if isinstance(e, FileNotFoundError) else f"{src}: {e!r}"
        for r in matched
        for rev in r.source_errors.values()
        for src, e in rev.items()
    }
    errors |= {f"plot '{r.renderer.name}': {e!r}" for r in matched for e in r.definition_errors.values()}
    errors |= {f"dvc.yaml plots: {d['error']!r}" for rev in data.values() for d in [rev.get("definitions", {})] if "error" in d}
    if errors:
        raise MedregError(f"DVC could not load the plot data ({'; '.join(sorted(errors))}): {HINT}")
    top = (data.get("workspace", {}).get("definitions", {}).get("data", {}).get("dvc.yaml", {}) or {}).get("data", {})
    plots = []
    for r in matched:
        renderer = r.renderer
        if renderer.TYPE != "vega":
            continue
        definition = top.get(renderer.name)
        if definition is None:
            files = [renderer.name]
        else:
            files = [f for axis in ("x", "y") if isinstance(definition.get(axis), dict) for f in definition[axis]]
        plots.append(Plot(renderer.name, renderer.get_filled_template(), list(dict.fromkeys(files)), definition is not None))
    return sorted(plots, key=lambda p: not p.top_level)  # stable: DVC's order within each group


def fmt(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A number for the page: fixed digits, '–' for a missing (NaN/None) value."""
    value = value.item() if hasattr(value, "item") else value  # numpy scalars
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_p(value: Any) -> str:
    """A p-value: 3 significant digits."""
    value = value.item() if hasattr(value, "item") else value
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested metrics object as (dotted key, leaf) pairs."""
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in flatten(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), value)]


def summary_rows(summary) -> list[dict[str, Any]]:
    """The summary (our scorer) as model x benchmark rows with one cell per category (accuracy, CI, n_correct/n); pooled rows last."""
    summary = summary[summary["scorer"] == "medreg"]
    benchmarks = sorted(set(summary["benchmark"]) - {"all"}) + (["all"] if "all" in set(summary["benchmark"]) else [])
    cells = {(r.model, r.benchmark, r.category): r for r in summary.itertuples(index=False)}
    rows = []
    for model in sorted(set(summary["model"])):
        for benchmark in benchmarks:
            row = {"model": model, "benchmark": benchmark, "cells": [cells.get((model, benchmark, c)) for c in CATEGORIES]}
            if any(row["cells"]):
                rows.append(row)
    return rows


def js_bundle() -> str:
    """Vega, Vega-Lite (the newest 5.x: DVC's templates are v5) and vega-embed in one script, safe inside <script>."""
    import vl_convert as vlc

    v5 = [v for v in vlc.get_vegalite_versions() if v.startswith("5.")]
    version = max(v5, key=lambda v: tuple(map(int, v.split(".")))) if v5 else None
    return re.sub(r"</(script)", r"<\\/\1", vlc.javascript_bundle(vl_version=version), flags=re.IGNORECASE)


def script_json(value: Any) -> str:
    """JSON safe to place inside a <script> element (every '<' escaped)."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def build(root: Path) -> str:
    """The report page for the project at `root` (refuses with MedregError when outputs are missing)."""
    import dvc
    import jinja2
    from markupsafe import Markup

    from registry import io

    root = Path(root).resolve()
    check_outputs(root)
    rows, outs = lineage_index(root)

    def lin(name: str) -> Lineage:
        return lineage_of(catalog.dataset_path(name, ".").as_posix(), root, rows, outs)

    plots = dvc_plots(root)
    for plot in plots:
        plot.lineage = [lineage_of(f, root, rows, outs) for f in plot.files]
    summary, gaps, robustness = (io.load(n, root) for n in ("summary", "gaps", "robustness"))
    robustness = robustness.assign(_b=robustness["benchmark"].eq("all"), _c=robustness["category"].map(CATEGORIES.index))
    robustness = robustness.sort_values(["model", "_b", "benchmark", "_c"]).drop(columns=["_b", "_c"])
    extra = []
    for name in EXTRA_METRICS:
        if catalog.dataset_path(name, root).exists():
            extra.append({"name": name, "path": catalog.dataset_path(name, "."), "items": flatten(io.load(name, root)), "lineage": lin(name)})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters.update(fmt=fmt, fmt_p=fmt_p)
    return env.from_string(TEMPLATE).render(
        title=f"medreg report: {root.name}",
        root=root,
        git=git_info(root),
        generated=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        dvc_version=dvc.__version__,
        plots=plots,
        specs=Markup(script_json([p.spec for p in plots])),
        bundle=Markup(js_bundle()),
        categories=CATEGORIES,
        summary_rows=summary_rows(summary),
        gaps=gaps.to_dict("records"),
        robustness=robustness.to_dict("records"),
        classifier=io.load("classifier_metrics", root),
        splits=io.load("splits_metrics", root),
        extra=extra,
        lineage={n: lin(n) for n in REQUIRED},
    )


def write(root: Path, out: Path) -> Path:
    """Build the report and write it to `out` atomically; returns `out`."""
    from registry.io import atomic_path

    html = build(root)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out


TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  :root { --fg: #1d232a; --muted: #5f6b77; --line: #dde3e9; --bg: #f6f8fa; --accent: #2f6fb3; --bad: #b3412f; --good: #2f8a4f; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
  header { padding: 18px 32px 12px; border-bottom: 1px solid var(--line); background: var(--bg); }
  header h1 { margin: 0 0 4px; font-size: 22px; }
  header .meta { color: var(--muted); }
  header .meta code { color: var(--fg); }
  nav { padding: 8px 32px; border-bottom: 1px solid var(--line); position: sticky; top: 0; background: #fff; z-index: 2; }
  nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
  main { padding: 8px 32px 48px; max-width: 1400px; }
  h2 { margin: 32px 0 8px; font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
  h3 { margin: 20px 0 6px; font-size: 15px; }
  p.note { color: var(--muted); margin: 4px 0 10px; max-width: 900px; }
  table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
  th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: baseline; }
  td.l { white-space: nowrap; }
  th { background: var(--bg); font-weight: 600; }
  td.l, th.l { text-align: left; }
  tr.pooled td { background: #fbfbf3; font-weight: 600; }
  .ci { color: var(--muted); font-size: 12px; white-space: nowrap; }
  .n { color: var(--muted); font-size: 12px; }
  .bar { position: relative; height: 6px; width: 120px; background: #eef1f4; margin-top: 3px; margin-left: auto; border-radius: 3px; }
  .bar .range { position: absolute; top: 0; height: 6px; background: #b7cde6; border-radius: 3px; }
  .bar .point { position: absolute; top: -2px; width: 2px; height: 10px; background: var(--accent); }
  .neg { color: var(--bad); }
  .plots { display: flex; flex-wrap: wrap; gap: 18px; }
  figure { margin: 0; padding: 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff; max-width: 100%; }
  figure .vega { min-height: 60px; }
  figcaption { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; color: var(--muted); margin-bottom: 6px; max-width: 520px; }
  details.lineage { margin-top: 6px; font-size: 12px; color: var(--muted); max-width: 640px; }
  details.lineage summary { cursor: pointer; }
  details.lineage table { font-size: 12px; }
  details.lineage td, details.lineage th { padding: 2px 6px; text-align: left; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
  .ok { color: var(--good); } .stale { color: var(--bad); font-weight: 600; }
  .cm td.cell { min-width: 70px; text-align: center; font-weight: 600; }
  .grid2 { display: flex; flex-wrap: wrap; gap: 40px; }
  .error { color: var(--bad); white-space: pre-wrap; }
</style>
</head>
<body>
{%- macro lineage_block(items) %}
<details class="lineage"><summary>lineage:
  {%- for l in items %} <code>{{ l.path }}</code> ← {% if l.stage %}stage <code>{{ l.stage }}</code>{% else %}<span class="stale">no stage in dvc.lock</span>{% endif %}
  {%- if l.matches is true %} <span class="ok" title="the file's md5 is the one dvc.lock records">✓ matches dvc.lock</span>
  {%- elif l.matches is false %} <span class="stale" title="run dvc repro or dvc checkout">✗ differs from dvc.lock</span>{% endif %}
  {%- if not loop.last %};{% endif %}{% endfor %}</summary>
  {%- for l in items %}
  <table>
    <tr><th>file</th><td><code>{{ l.path }}</code>{% if l.md5 %} md5 <code>{{ l.md5 }}</code>{% endif %}</td></tr>
    <tr><th>stage</th><td><code>{{ l.stage or "–" }}</code>{% if l.output and l.output != l.path %} (output <code>{{ l.output }}</code>){% endif %}{% if l.lock_md5 %} dvc.lock md5 <code>{{ l.lock_md5 }}</code>{% endif %}</td></tr>
    {%- for path, md5 in l.deps %}
    <tr><th>{% if loop.first %}deps{% endif %}</th><td><code>{{ path }}</code> <code>{{ md5 or "" }}</code></td></tr>
    {%- endfor %}
    {%- for key, value in l.params %}
    <tr><th>{% if loop.first %}params{% endif %}</th><td><code>{{ key }} = {{ value }}</code></td></tr>
    {%- endfor %}
  </table>
  {%- endfor %}
</details>
{%- endmacro %}
{%- macro ci_cell(acc, lo, hi) %}
<div><b>{{ acc | fmt }}</b> <span class="ci">[{{ lo | fmt }}, {{ hi | fmt }}]</span></div>
{%- if acc == acc and lo == lo and hi == hi %}
<div class="bar"><span class="range" style="left: {{ (lo * 100) | round(1) }}%; width: {{ ((hi - lo) * 100) | round(1) }}%"></span><span class="point" style="left: {{ (acc * 100) | round(1) }}%"></span></div>
{%- endif %}
{%- endmacro %}
<header>
  <h1>{{ title }}</h1>
  <div class="meta">
    {% if git %}git <code id="git-rev">{{ git.rev }}</code>{% if git.dirty %} (with uncommitted changes){% endif %}, committed {{ git.date }} · {% else %}not a git work tree · {% endif %}
    generated {{ generated }} · DVC {{ dvc_version }} · project <code>{{ root }}</code>
  </div>
</header>
<nav>
  <a href="#gaps">Gaps</a><a href="#results">Accuracy</a><a href="#robustness">Robustness</a><a href="#classifier">Classifier</a><a href="#splits">Reasoning shares</a><a href="#plots">Plots</a><a href="#metrics">All metrics</a>
</nav>
<main>

<h2 id="gaps">Knowledge vs reasoning gap</h2>
<p class="note">Per model, accuracy on knowledge-heavy minus reasoning-heavy questions, pooled over benchmarks; 95% bootstrap CI; Fisher's exact and benchmark-stratified CMH p-values.</p>
<table id="gaps-table">
  <tr><th class="l">model</th><th>knowledge</th><th>reasoning</th><th>gap (knowledge − reasoning)</th><th>95% CI</th><th>p (Fisher)</th><th>p (CMH)</th></tr>
  {%- for g in gaps %}
  <tr data-model="{{ g.model }}">
    <td class="l">{{ g.model }}</td>
    <td>{{ g.knowledge_accuracy | fmt }} <span class="n">n={{ g.n_knowledge }}</span></td>
    <td>{{ g.reasoning_accuracy | fmt }} <span class="n">n={{ g.n_reasoning }}</span></td>
    <td class="gap">{{ g.gap | fmt(signed=True) }}</td>
    <td class="ci">[{{ g.gap_ci_low | fmt(signed=True) }}, {{ g.gap_ci_high | fmt(signed=True) }}]</td>
    <td>{{ g.p_fisher | fmt_p }}</td><td>{{ g.p_cmh | fmt_p }}</td>
  </tr>
  {%- endfor %}
</table>
{{ lineage_block([lineage.gaps]) }}

<h2 id="results">Accuracy by model, benchmark and category</h2>
<p class="note">Accuracy with its 95% Wilson score CI (bar: CI range, tick: accuracy, on a 0–1 scale) and correct/n. Rows with benchmark <b>all</b> pool the benchmarks.</p>
<table id="summary-table">
  <tr><th class="l">model</th><th class="l">benchmark</th>{% for c in categories %}<th>{{ c }}</th>{% endfor %}<th>parse failures</th></tr>
  {%- for row in summary_rows %}
  <tr class="{{ 'pooled' if row.benchmark == 'all' else '' }}">
    <td class="l">{{ row.model }}</td><td class="l">{{ row.benchmark }}</td>
    {%- for cell in row.cells %}
    {%- if cell %}
    <td data-model="{{ cell.model }}" data-benchmark="{{ cell.benchmark }}" data-category="{{ cell.category }}" data-accuracy="{{ cell.accuracy | fmt }}">
      {{ ci_cell(cell.accuracy, cell.ci_low, cell.ci_high) }}<div class="n">{{ cell.n_correct }}/{{ cell.n }}</div></td>
    {%- else %}<td>–</td>{% endif %}
    {%- endfor %}
    <td>{{ row.cells[-1].parse_failures if row.cells[-1] else "–" }}</td>
  </tr>
  {%- endfor %}
</table>
{{ lineage_block([lineage.summary]) }}

<h2 id="robustness">Robustness to misleading reasoning traces</h2>
<p class="note">Clean vs adversarial accuracy on the same questions (paired); drop = clean − adversarial with 95% paired bootstrap CI; took bait: share of answers that picked the trace's planted option; flipped: share of clean-correct answers that became wrong.</p>
{%- macro robustness_table(id, rows) %}
<table id="{{ id }}">
  <tr><th class="l">model</th><th class="l">benchmark</th><th class="l">category</th><th>questions</th><th>pairs</th><th>clean</th><th>adversarial</th><th>drop</th><th>95% CI</th><th>took bait</th><th>flipped</th><th>parse failures</th></tr>
  {%- for r in rows %}
  <tr class="{{ 'pooled' if r.category == 'all' else '' }}" data-model="{{ r.model }}" data-benchmark="{{ r.benchmark }}" data-category="{{ r.category }}">
    <td class="l">{{ r.model }}</td><td class="l">{{ r.benchmark }}</td><td class="l">{{ r.category }}</td>
    <td>{{ r.questions }}</td><td>{{ r.pairs }}</td><td>{{ r.clean_accuracy | fmt }}</td><td>{{ r.adversarial_accuracy | fmt }}</td>
    <td class="{{ 'neg' if r.drop > 0 else '' }}">{{ r.drop | fmt(signed=True) }}</td>
    <td class="ci">[{{ r.drop_ci_low | fmt(signed=True) }}, {{ r.drop_ci_high | fmt(signed=True) }}]</td>
    <td>{{ r.took_bait_share | fmt }}</td><td>{{ r.flipped_share | fmt }}</td><td>{{ r.parse_failures }}</td>
  </tr>
  {%- endfor %}
</table>
{%- endmacro %}
<h3>Pooled over benchmarks</h3>
{{ robustness_table("robustness-table", robustness | selectattr("benchmark", "equalto", "all") | list) }}
<details id="robustness-by-benchmark"><summary>Per benchmark ({{ robustness | rejectattr("benchmark", "equalto", "all") | list | length }} rows)</summary>
{{ robustness_table("robustness-benchmark-table", robustness | rejectattr("benchmark", "equalto", "all") | list) }}
</details>
{{ lineage_block([lineage.robustness]) }}

<h2 id="classifier">Reasoning-vs-knowledge classifier</h2>
<p class="note">Candidates compared by stratified {{ classifier.folds }}-fold cross-validation on {{ classifier.n }} expert-labeled questions
(mean ± sd over folds; each candidate's probabilities calibrated and its threshold tuned out of fold). Chosen: <b>{{ classifier.chosen }}</b>
({{ classifier.members | join(" + ") }}), refit on every labeled question; {{ classifier.calibration }} calibration,
ECE {{ classifier.ece | fmt }} ({{ classifier.ece_uncalibrated | fmt }} uncalibrated).</p>
<table id="classifier-cv">
  <tr><th class="l">candidate</th><th>accuracy</th><th>macro F1</th><th>ROC AUC</th><th>knowledge recall</th><th>ECE</th><th>threshold</th></tr>
  {%- for name, c in classifier.cv.items() %}
  <tr data-candidate="{{ name }}"{% if name == classifier.chosen %} class="pooled"{% endif %}><td class="l">{{ name }}</td>
    {%- for key in ("accuracy", "macro_f1", "roc_auc", "knowledge_recall") %}
    <td data-metric="{{ key }}">{{ c[key ~ "_mean"] | fmt }} ± {{ c[key ~ "_sd"] | fmt }}</td>
    {%- endfor %}
    <td>{{ c.ece | fmt }}</td><td>{{ c.threshold | fmt(2) }}</td></tr>
  {%- endfor %}
</table>
<div class="grid2">
<div>
  <h3>Chosen model, out of fold (n={{ classifier.n }})</h3>
  <table id="classifier-oof-metrics">
    <tr><th class="l">accuracy</th><td data-metric="accuracy">{{ classifier.accuracy | fmt }}</td></tr>
    <tr><th class="l">macro F1</th><td data-metric="macro_f1">{{ classifier.macro_f1 | fmt }}</td></tr>
    <tr><th class="l">ROC AUC</th><td data-metric="roc_auc">{{ classifier.roc_auc | fmt }}</td></tr>
    <tr><th class="l">majority baseline</th><td data-metric="majority_baseline">{{ classifier.majority_baseline | fmt }}</td></tr>
    <tr><th class="l">threshold (p_reasoning)</th><td data-metric="threshold">{{ classifier.threshold | fmt }}</td></tr>
  </table>
  <table>
    <tr><th class="l">class</th><th>precision</th><th>recall</th><th>support</th></tr>
    {%- for label, c in classifier.per_class.items() %}
    <tr><td class="l">{{ label }}</td><td>{{ c.precision | fmt }}</td><td>{{ c.recall | fmt }}</td><td>{{ c.support }}</td></tr>
    {%- endfor %}
  </table>
</div>
<div>
  <h3>Confusion matrix, out of fold</h3>
  {%- set cm = classifier.confusion_matrix %}
  <table class="cm" id="confusion-oof">
    <tr><th class="l">true ↓ / predicted →</th>{% for label in cm.labels %}<th>{{ label }}</th>{% endfor %}</tr>
    {%- for row in cm.rows_true_cols_pred %}
    {%- set i = loop.index0 %}
    <tr><th class="l">{{ cm.labels[i] }}</th>
      {%- for v in row %}
      {%- set share = (v / (row | sum)) if row | sum else 0 %}
      <td class="cell" data-true="{{ cm.labels[i] }}" data-pred="{{ cm.labels[loop.index0] }}" style="background: rgba(47, 111, 179, {{ (0.08 + 0.6 * share) | round(2) }})">{{ v }}</td>
      {%- endfor %}
    </tr>
    {%- endfor %}
  </table>
</div>
</div>
{{ lineage_block([lineage.classifier_metrics]) }}

<h2 id="splits">Reasoning share per benchmark</h2>
{%- set whole = splits.reasoning_share_classifier_only %}
<p class="note">Share of each benchmark's questions the classifier puts in the reasoning-heavy category at threshold {{ splits.threshold | fmt(2) }},
with 95% Wilson CIs; the category column of the split uses the expert's label where there is one ({{ splits.reasoning_share | fmt }} reasoning overall).
All {{ splits.questions }} questions: {{ whole.share | fmt }} [{{ whole.ci_low | fmt }}, {{ whole.ci_high | fmt }}]; the study: {{ splits.study_reasoning_share | fmt }}
over 11 benchmarks{% if splits.benchmarks_not_ingested %}, of which these are not ingested here: {{ splits.benchmarks_not_ingested | join(", ") }}{% endif %}.
Agreement with experts out of fold {{ splits.expert_agreement_cv | fmt }} (in sample {{ splits.expert_agreement_in_sample | fmt }}).</p>
<table id="splits-table">
  <tr><th class="l">benchmark</th><th>questions</th><th>reasoning share</th><th>95% CI</th><th class="l"></th></tr>
  {%- for b, s in splits.reasoning_share_classifier_only_by_benchmark.items() %}
  <tr data-benchmark="{{ b }}"><td class="l">{{ b }}</td><td>{{ s.n }}</td><td data-metric="share">{{ s.share | fmt }}</td><td>[{{ s.ci_low | fmt }}, {{ s.ci_high | fmt }}]</td>
    <td class="l"><div class="bar" style="margin-left: 0; width: 200px"><span class="range" style="left: {{ (s.ci_low * 100) | round(1) }}%; width: {{ ((s.ci_high - s.ci_low) * 100) | round(1) }}%"></span><span class="point" style="left: {{ (s.share * 100) | round(1) }}%"></span></div></td></tr>
  {%- endfor %}
  <tr class="pooled" data-benchmark="all"><td class="l">all</td><td>{{ whole.n }}</td><td data-metric="share">{{ whole.share | fmt }}</td><td>[{{ whole.ci_low | fmt }}, {{ whole.ci_high | fmt }}]</td><td></td></tr>
  <tr data-benchmark="study"><td class="l">study (11 benchmarks)</td><td></td><td>{{ splits.study_reasoning_share | fmt }}</td><td></td><td></td></tr>
</table>
{{ lineage_block([lineage.splits_metrics]) }}

<h2 id="plots">Plots</h2>
<p class="note">The plots dvc.yaml defines (as <code>dvc plots show</code> draws them), rendered here with Vega-Lite inlined. Drag or scroll to zoom line charts.</p>
{%- macro figure(p, i) %}
  <figure class="plot" data-plot="{{ i }}">
    <figcaption>{{ p.name }}</figcaption>
    <div class="vega" id="plot-{{ i }}"></div>
    {{ lineage_block(p.lineage) }}
  </figure>
{%- endmacro %}
<div class="plots">
{%- for p in plots if p.top_level %}{{ figure(p, loop.index0) }}{%- endfor %}
</div>
{%- set n_top = plots | selectattr("top_level") | list | length %}
{%- if plots | length > n_top %}
<details id="stage-plots"><summary><h3 style="display: inline">Every plot output the stages declare ({{ plots | length - n_top }})</h3></summary>
<div class="plots">
{%- for p in plots if not p.top_level %}{{ figure(p, loop.index0 + n_top) }}{%- endfor %}
</div>
</details>
{%- endif %}

<h2 id="metrics">All metrics</h2>
<p class="note">The metrics files (<code>dvc metrics show</code>), flattened.</p>
<div class="grid2">
{%- for m in extra %}
<div>
  <h3><code>{{ m.path }}</code></h3>
  <table>
    {%- for key, value in m["items"] %}
    <tr><td class="l"><code>{{ key }}</code></td><td>{{ value | fmt(4) if value is float else value }}</td></tr>
    {%- endfor %}
  </table>
  {{ lineage_block([m.lineage]) }}
</div>
{%- endfor %}
</div>
</main>
<script>{{ bundle }}</script>
<script id="plot-specs" type="application/json">{{ specs }}</script>
<script>
(function () {
  var specs = JSON.parse(document.getElementById("plot-specs").textContent);
  var done = specs.map(function (spec, i) {
    var el = document.getElementById("plot-" + i);
    return window.vegaEmbed(el, spec, { renderer: "svg", actions: false }).catch(function (err) {
      el.className += " error";
      el.textContent = "could not render: " + err;
      throw err;
    });
  });
  Promise.allSettled(done).then(function (results) {
    var ok = results.filter(function (r) { return r.status === "fulfilled"; }).length;
    document.body.setAttribute("data-plots-rendered", ok + "/" + specs.length);
  });
})();
</script>
</body>
</html>
"""  # noqa: E501
