"""DVC experiments as one flat table: a row per baseline commit and per experiment, a column per param and metric.

The records are DVC's own (`Repo.experiments.show`, exactly what `dvc exp show --json` prints), so queued, running
and failed experiments are there with their status. `flatten` turns them into one DataFrame:

- `experiment`: the experiment's name; a baseline's branch or tag (else its short sha); `workspace`
- `kind`: workspace | baseline | experiment
- `rev`: the full commit sha (NULL for the workspace); `baseline_rev`: the commit an experiment (or the workspace) is based on
- `timestamp`: commit time, local (queued: when it was queued; NULL for the workspace)
- `status`: success | queued | running | failed, as DVC reports it (experiments only; NULL for baselines and the workspace)
- `error`: why DVC could not read the record or a params/metrics file, else NULL
- `params.<key>`: a key of params.yaml, nested keys joined by dots (`dvc exp run -S key=value` names the same key)
- `params.<file>:<key>`: a key of another params file, e.g. `params.registry/models.yaml:models.smollm2-135m-sft.size`
- `metrics.<file>:<key>`: a metric, e.g. `metrics.data/metrics/eval.json:smollm2-135m-sft.accuracy`

Values keep their type per column: all booleans -> BOOLEAN, all integers -> BIGINT, numbers -> DOUBLE, text -> VARCHAR;
lists and mappings are JSON text, and so is a column mixing types (its strings as they are). A key a record does not
have is NULL: queued experiments have no metrics yet; a failed one shows whatever metrics files its run left (DVC's
record). Column names hold dots, so SQL quotes them: `select "params.evaluate.bootstrap.seed" ...`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.errors import MedregError

TABLE = "experiments"
FIXED = ["experiment", "kind", "rev", "baseline_rev", "timestamp", "status", "error"]
DEFAULT_PARAMS = "params.yaml"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _leaves(data: Any, prefix: str) -> dict[str, Any]:
    """`{prefix}a.b` -> value for each leaf of nested mappings; lists and empty mappings are leaves."""
    if not isinstance(data, dict) or not data:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _file_columns(kind: str, results: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Columns of one record's params or metrics ({file: {"data": ..., "error": ...}}), and the files' errors."""
    columns: dict[str, Any] = {}
    errors = []
    for file, result in (results or {}).items():
        result = result or {}
        error = result.get("error")
        if error:
            errors.append(f"{kind} {file}: {(error.get('msg') or error.get('type')) if isinstance(error, dict) else error}")
        if "data" not in result:
            continue
        head = "params." if kind == "params" and file == DEFAULT_PARAMS else f"{kind}.{file}:"
        for key, value in _leaves(result["data"], "").items():
            columns[head + key if key else head.rstrip(".:")] = value
    return columns, errors


def _row(state: dict[str, Any], kind: str, name: str | None, baseline_rev: str | None, status: str | None) -> dict[str, Any]:
    data = state.get("data") or {}
    params, param_errors = _file_columns("params", data.get("params"))
    metrics, metric_errors = _file_columns("metrics", data.get("metrics"))
    errors = ([(state["error"] or {}).get("msg") or "error"] if state.get("error") else []) + param_errors + metric_errors
    rev = state.get("rev")
    return {
        "experiment": name,
        "kind": kind,
        "rev": None if kind == "workspace" else rev,
        "baseline_rev": baseline_rev,
        "timestamp": data.get("timestamp"),
        "status": status,
        "error": "; ".join(errors) or None,
        **params,
        **metrics,
    }


def rows(records: list[dict[str, Any]], head: str | None = None) -> list[dict[str, Any]]:
    """One dict per workspace, baseline and experiment of `dvc exp show --json`-shaped records (ExpState.dumpd())."""
    out = []
    for state in records:
        rev = state.get("rev")
        if rev == "workspace":
            out.append(_row(state, "workspace", "workspace", head, None))
            continue
        out.append(_row(state, "baseline", state.get("name") or (rev or "")[:7], rev, None))
        for exp_range in state.get("experiments") or []:
            revs = exp_range.get("revs") or []
            if not revs:
                continue
            tip = revs[0]  # the newest commit of the experiment (more only for legacy checkpoint experiments)
            executor = exp_range.get("executor") or {}
            name = tip.get("name") or exp_range.get("name") or (tip.get("rev") or "")[:7]
            out.append(_row(tip, "experiment", name, rev, executor.get("state") or "success"))
    return out


def _typed(values: list[Any]):
    """A column keeping its values' type: booleans, integers, floats or text; anything else (or a mix) as JSON text."""
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Int64")
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pd.array([float("nan") if v is None else float(v) for v in values], dtype="float64")
    if all(isinstance(v, str) for v in present):
        return pd.array(values, dtype="string")
    return pd.array([None if v is None else v if isinstance(v, str) else _json(v) for v in values], dtype="string")


def flatten(records: list[dict[str, Any]], head: str | None = None):
    """The experiments DataFrame (columns: see the module docstring) of `dvc exp show --json`-shaped records."""
    import pandas as pd

    table = rows(records, head)
    columns = list(dict.fromkeys([*FIXED, *(c for r in table for c in r if c.startswith("params.")), *(c for r in table for c in r)]))
    frame = pd.DataFrame({c: _typed([r.get(c) for r in table]) for c in columns if c not in ("timestamp",)}, index=range(len(table)))
    frame.insert(FIXED.index("timestamp"), "timestamp", pd.to_datetime(pd.Series([r["timestamp"] for r in table], dtype="object"), format="ISO8601"))
    return frame[columns]


def collect(root: Path | str, revs: list[str] | None = None, all_commits: bool = False) -> tuple[list[dict[str, Any]], str | None]:
    """DVC's experiment records (as `dvc exp show --json` prints them) and the HEAD sha of the project at `root`.

    Baselines: `revs`, else HEAD with every branch and tag; `all_commits`: every commit. Reading only: DVC keeps a
    cache of each commit's record under .dvc/tmp/exps/cache, as `dvc exp show` does.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            states = repo.experiments.show(revs=revs or ["HEAD"], all_branches=not revs, all_tags=not revs, all_commits=all_commits, num=1)
            head = None if repo.scm.no_commits else repo.scm.get_rev()
            records = json.loads(json.dumps([s.dumpd() for s in states], default=_iso))  # as `dvc exp show --json` prints them
    except DvcException as e:
        raise MedregError(f"{Path(root).resolve()}: cannot read DVC experiments: {e}") from None
    return records, head


def frame(root: Path | str, revs: list[str] | None = None, all_commits: bool = False):
    """The experiments table of the project at `root` (see `collect` for which baselines)."""
    return flatten(*collect(root, revs, all_commits))


def referenced(con, sql: str) -> bool:
    """Whether any statement of `sql` reads a table named `experiments` (any case)."""
    import re

    try:
        return any(TABLE in {n.lower() for n in con.get_table_names(st.query)} for st in con.extract_statements(sql))
    except Exception:  # noqa: BLE001 - unparsable SQL: let the query report it; guess from the text
        return re.search(rf"\b{TABLE}\b", sql, re.IGNORECASE) is not None
