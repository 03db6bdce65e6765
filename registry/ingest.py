"""One generic loader for every benchmark in the catalog: read upstream rows, normalise, validate."""

from __future__ import annotations

import ast
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from tqdm import tqdm

from schemas.questions import LETTERS, questions_schema

SOURCES = ("demo", "mirror", "hub")
YES_NO_MAYBE = {"A": "yes", "B": "no", "C": "maybe"}
DEFAULT_MAX_OPTIONS = 10

# which field a dataframe-wide pandera check is about (column checks name their column)
_CHECK_FIELD = {
    "multiple_fields_uniqueness": "qid",
    "answer is one of the option letters": "answer",
    "n_options equals the number of options": "n_options",
}


@dataclass(frozen=True)
class Problem:
    """One failed check on one input row."""

    benchmark: str
    file: str
    row: str
    field: str
    check: str
    qid: str | None = None
    raw: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.row}: field '{self.field}': {self.check}"


class IngestError(Exception):
    """Input failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], hint: str = "") -> None:
        self.problems = problems
        files = len({p.file for p in problems})
        rows = len({(p.file, p.row) for p in problems})
        lines = [f"ingest failed: {len(problems)} problem(s) in {rows} row(s) of {files} file(s){hint}"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass
class IngestResult:
    """Valid questions, rejected rows, and what was skipped and why."""

    questions: pd.DataFrame
    problems: list[Problem]
    skipped: dict[str, str]
    files: dict[str, str]


# ---------------------------------------------------------------- reading upstream files


def read_records(path: Path, fmt: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """Yield (row key, record) per upstream row; a record that does not parse comes as an error str."""
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    yield str(lineno), f"not valid JSON ({e.msg} at column {e.colno})"
                    continue
                yield str(lineno), rec if isinstance(rec, dict) else "a JSON line must be an object"
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        yield f"line {e.lineno}", f"not valid JSON ({e.msg} at column {e.colno})"
        return
    if fmt == "json_object" and isinstance(data, dict):
        items = ((str(k), v) for k, v in data.items())
    elif fmt == "json_list" and isinstance(data, list):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        yield "-", f"expected a JSON {'object' if fmt == 'json_object' else 'list'} at top level"
        return
    for key, rec in items:
        yield key, rec if isinstance(rec, dict) else "row must be a JSON object"


def read_hub(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (row index, record) from `datasets.load_dataset` with the pinned id/config/split/revision."""
    import datasets  # heavy; only the hub source needs it

    ds = datasets.load_dataset(spec["path"], spec.get("config"), split=spec["split"], revision=spec["revision"])
    for i, rec in enumerate(ds):
        yield str(i), dict(rec)


# ---------------------------------------------------------------- normalising one record


def clean_text(value: Any) -> str:
    """NFC-normalise and strip; non-str values are rendered with str()."""
    return unicodedata.normalize("NFC", value if isinstance(value, str) else str(value)).strip()


def _get(rec: dict[str, Any], dotted: str) -> Any:
    """rec['a']['b'] for 'a.b'; KeyError if any step is missing."""
    value: Any = rec
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _parse_options(value: Any) -> dict[str, str]:
    """Options as an ordered letter->text dict, from a mapping, a list, or their JSON/Python text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = ast.literal_eval(value)  # the study collection stores dicts as Python repr text
    if isinstance(value, (list, tuple)):
        value = dict(zip(LETTERS, value, strict=False))
    if not isinstance(value, dict):
        raise ValueError(f"must be a letter->text mapping, got {type(value).__name__}")
    return {clean_text(k).upper(): clean_text(v) for k, v in value.items()}


def normalise(rec: dict[str, Any], entry: dict[str, Any], fields: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Map one upstream record to our columns; returns (row, [(upstream field, failed check), ...])."""
    row: dict[str, Any] = {"context": None, "expert_label": None, "meta": None}
    errors: list[tuple[str, str]] = []

    def take(key: str, required: bool = True) -> Any:
        if key not in fields:
            return None
        try:
            return _get(rec, fields[key])
        except KeyError:
            if required:
                errors.append((fields[key], "required field missing"))
            return None

    if "id" in fields:
        qid = take("id")
        row["qid"] = clean_text(qid) if qid is not None else None
    question = take("question")
    row["question"] = clean_text(question) if question is not None else None
    context = take("context", required=False)
    if context is not None:
        row["context"] = clean_text("\n".join(map(str, context)) if isinstance(context, list) else context) or None

    yes_no_maybe = entry["answer_format"] == "yes_no_maybe"
    options = take("options") if "options" in fields else dict(YES_NO_MAYBE) if yes_no_maybe else None
    try:
        row["options"] = _parse_options(options) if options is not None else None
    except (ValueError, SyntaxError) as e:
        errors.append((fields["options"], f"options {e}"))
        row["options"] = None
    opts = row["options"] or {}
    max_options = entry.get("max_options", DEFAULT_MAX_OPTIONS)
    if len(opts) > max_options:
        errors.append((fields.get("options", "options"), f"{len(opts)} options, more than this benchmark's {max_options}"))

    if "answer" in fields:
        answer = take("answer")
        row["answer"] = clean_text(answer).upper() if answer is not None else None
    else:
        text = take("answer_text")
        by_text = {v.casefold(): k for k, v in opts.items()}
        row["answer"] = by_text.get(clean_text(text).casefold()) if text is not None else None
        if text is not None and row["answer"] is None:
            errors.append((fields["answer_text"], f"'{text}' is not one of the options {list(opts.values())}"))

    if "expert_label" in fields:
        raw_label = take("expert_label", required=False)
        labels = entry.get("expert_labels", {})
        if raw_label is not None:
            row["expert_label"] = labels.get(raw_label)
            if row["expert_label"] is None:
                errors.append((fields["expert_label"], f"'{raw_label}' is not one of {list(labels)}"))

    meta = {k: rec[k] for k in fields.get("meta", []) if k in rec}
    row["meta"] = json.dumps(meta, ensure_ascii=False, default=str) if meta else None
    row["n_options"] = len(opts)
    row["answer_format"] = entry["answer_format"]
    return row, errors


# ---------------------------------------------------------------- the loader


def _source_of(name: str, entry: dict[str, Any], source: str, root: Path, hub_source: str, allow_unpinned: bool):
    """(display path, fields, row iterator) for one benchmark, or (reason, None, None) when it is skipped."""
    if source in ("demo", "mirror"):
        path = root / entry["mirror"]["file"]
        if not path.is_file():
            return f"not in the {source} directory (no file {path})", None, None
        return str(path), entry["fields"], read_records(path, entry["mirror"]["format"])
    spec = entry["hub"].get(hub_source)
    if spec is None:
        return f"the catalog declares no hub source '{hub_source}' for it", None, None
    if spec["revision"] is None and not allow_unpinned:
        raise IngestError([Problem(name, f"hf://{spec['path']}", "-", "revision", "unpinned revision (set ingest.allow_unpinned: true to accept)")])
    display = f"hf://{spec['path']}@{spec['revision'] or 'main'}/{spec.get('config') or 'default'}/{spec['split']}"
    return display, spec.get("fields", entry["fields"]), read_hub(spec)


def load_rows(
    catalog: dict[str, dict[str, Any]], source: str, root: Path, names: list[str], hub_source: str, allow_unpinned: bool
) -> tuple[pd.DataFrame, list[Problem], dict[str, str], dict[str, str]]:
    """Read and normalise every chosen benchmark; returns (rows, parse problems, skipped, files)."""
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    skipped: dict[str, str] = {}
    files: dict[str, str] = {}
    for name in tqdm(names, desc=f"ingest ({source})", unit="benchmark"):
        entry = catalog[name]
        display, fields, records = _source_of(name, entry, source, root, hub_source, allow_unpinned)
        if records is None:
            skipped[name] = display
            continue
        files[name] = display
        try:
            for key, rec in records:
                if isinstance(rec, str):
                    problems.append(Problem(name, display, key, "<row>", rec))
                    continue
                row, errors = normalise(rec, entry, fields)
                row.setdefault("qid", key)
                raw = json.dumps(rec, ensure_ascii=False, default=str)
                if errors:
                    problems += [Problem(name, display, key, f, c, row.get("qid"), raw) for f, c in errors]
                    continue
                rows.append({"benchmark": name, **row, "source": source, "source_file": display, "source_row": key, "_raw": raw})
        except Exception as e:  # unreadable file or unreachable hub: name it, never a bare traceback
            if isinstance(e, IngestError):
                raise
            raise IngestError([Problem(name, display, "-", "<source>", f"cannot read: {type(e).__name__}: {e}")]) from e
    columns = [*questions_schema().columns, "_raw"]
    return pd.DataFrame(rows, columns=columns), problems, skipped, files


def schema_problems(df: pd.DataFrame) -> list[Problem]:
    """Validate lazily against the questions schema; one Problem per failing row and check."""
    try:
        questions_schema().validate(df.drop(columns="_raw"), lazy=True)
        return []
    except pa.errors.SchemaErrors as e:
        cases = e.failure_cases
    problems = []
    for (index, check), group in cases.dropna(subset=["index"]).groupby(["index", "check"], sort=False):
        row = df.loc[index]
        column = group["column"].dropna()
        fld = _CHECK_FIELD.get(str(check)) or (str(column.iloc[0]) if len(column) else "<row>")
        what = "duplicate (benchmark, qid)" if check == "multiple_fields_uniqueness" else str(check)
        problems.append(Problem(row["benchmark"], row["source_file"], row["source_row"], fld, what, row["qid"], row["_raw"]))
    unplaced = cases[cases["index"].isna()]
    if len(unplaced):  # table-level failures (wrong dtype, missing column): a bug of ours, not of the input
        raise RuntimeError(f"questions table does not fit its schema:\n{unplaced.to_string()}")
    return problems


def ingest(
    catalog: dict[str, dict[str, Any]],
    source: str,
    root: Path | str,
    benchmarks: list[str] | str = "all",
    hub_source: str = "study",
    allow_unpinned: bool = False,
    on_invalid: str = "fail",
) -> IngestResult:
    """Load, normalise and validate the chosen benchmarks; raise IngestError if invalid rows and on_invalid=fail."""
    if source not in SOURCES:
        raise ValueError(f"ingest.source must be one of {SOURCES}, got '{source}'")
    if on_invalid not in ("fail", "quarantine"):
        raise ValueError(f"ingest.on_invalid must be 'fail' or 'quarantine', got '{on_invalid}'")
    names = list(catalog) if benchmarks == "all" else list(benchmarks)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise ValueError(f"ingest.benchmarks: unknown benchmark(s) {unknown}; the catalog has {list(catalog)}")
    df, problems, skipped, files = load_rows(catalog, source, Path(root), names, hub_source, allow_unpinned)
    problems += schema_problems(df)
    if problems and on_invalid == "fail":
        raise IngestError(problems, hint=" (ingest.on_invalid=fail; 'quarantine' keeps the valid rows)")
    bad = {(p.file, p.row) for p in problems}
    keep = [(f, r) not in bad for f, r in zip(df["source_file"], df["source_row"], strict=True)]
    questions = df[keep].drop(columns="_raw").reset_index(drop=True)
    return IngestResult(questions, problems, skipped, files)


def quarantine_frame(problems: list[Problem]) -> pd.DataFrame:
    """One row per rejected input row, all its reasons joined one per line."""
    by_row: dict[tuple[str, str], list[Problem]] = {}
    for p in problems:
        by_row.setdefault((p.file, p.row), []).append(p)
    rows = [
        {
            "benchmark": ps[0].benchmark,
            "qid": ps[0].qid,
            "source_file": file,
            "source_row": row,
            "errors": "\n".join(f"{p.field}: {p.check}" for p in ps),
            "raw": ps[0].raw,
        }
        for (file, row), ps in by_row.items()
    ]
    return pd.DataFrame(rows, columns=["benchmark", "qid", "source_file", "source_row", "errors", "raw"]).astype("str")


def irregular_options(options: pd.Series) -> pd.Series:
    """True where letters are not A, B, C... in order or an option text is empty (kept as upstream has it)."""
    return options.map(lambda o: list(o) != list(LETTERS[: len(o)]) or "" in o.values())


def ingest_metrics(result: IngestResult, source: str) -> dict[str, Any]:
    """Row counts per benchmark, skipped benchmarks by name with reason, rejected rows."""
    q = result.questions
    counts = q["benchmark"].value_counts()
    per_benchmark = {
        name: {
            "questions": int(counts.get(name, 0)),
            "expert_labeled": int(q.loc[q["benchmark"] == name, "expert_label"].notna().sum()),
            "duplicate_texts": int(q.loc[q["benchmark"] == name, "question"].duplicated().sum()),
            "irregular_options": int(irregular_options(q.loc[q["benchmark"] == name, "options"]).sum()),
        }
        for name in result.files
    }
    return {
        "source": source,
        "questions": len(q),
        "benchmarks": per_benchmark,
        "skipped": result.skipped,
        "n_skipped": len(result.skipped),
        "quarantined_rows": len({(p.file, p.row) for p in result.problems}),
    }
