"""One generic loader for every benchmark in the catalog: read upstream rows, normalise, validate."""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import json
import re
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pandera.pandas as pa
from tqdm import tqdm

from registry.catalog import Benchmark, Fields, HubSource, MirrorFile, Source
from registry.errors import MedregError
from schemas.questions import QuestionsSchema
from schemas.vocab import LETTERS

YES_NO_MAYBE = {"A": "yes", "B": "no", "C": "maybe"}
STUDY_CATEGORY = {"true": "reasoning", "1": "reasoning", "false": "knowledge", "0": "knowledge"}  # the study's is_reasoning
GROUP_OVER = 3  # more rows than this with the same problem in one file are reported as one line with the count

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


class IngestError(MedregError):
    """Input failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], hint: str = "", rows_per_file: dict[str, int] | None = None) -> None:
        self.problems = problems
        files = len({p.file for p in problems})
        rows = len({(p.file, p.row) for p in problems})
        lines = [f"ingest failed: {len(problems)} problem(s) in {rows} row(s) of {files} file(s){hint}"]
        groups: dict[tuple[str, str, str], list[Problem]] = {}
        for p in problems:
            groups.setdefault((p.file, p.field, p.check), []).append(p)
        for (file, fld, check), ps in groups.items():
            if len(ps) <= GROUP_OVER:
                lines += [f"  {p}" for p in ps]
                continue
            total = (rows_per_file or {}).get(file)
            every = " — every row: is the field mapping in registry/benchmarks.yaml right?" if total == len(ps) else ""
            example = ", ".join(p.row for p in ps[:3])
            lines.append(f"  {file}: field '{fld}': {check}: {len(ps):,} rows (e.g. {example}){every}")
        super().__init__("\n".join(lines))


@dataclass
class IngestResult:
    """Valid questions, rejected rows, what was skipped and why, and the file each benchmark came from."""

    questions: pd.DataFrame
    problems: list[Problem]
    skipped: dict[str, str]
    files: dict[str, str]
    revisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # hub reads: name -> repository, revision, commit


@dataclass(frozen=True)
class Record:
    """One upstream row: its key (line number, object key or index), the parsed object or why it failed, its raw text."""

    key: str
    value: dict[str, Any] | None
    error: str | None
    raw: str


# ---------------------------------------------------------------- reading upstream files


def _escaped(text: str) -> str:
    """Text decoded with surrogateescape, with invalid bytes shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _bad_byte(text: str, start: int, end: int) -> str | None:
    """Where the first undecodable byte of text[start:end] is, or None when the span is valid UTF-8."""
    for i in range(start, end):
        if "\udc80" <= text[i] <= "\udcff":
            line = text.count("\n", 0, i) + 1
            column = i - (text.rfind("\n", 0, i) + 1) + 1
            return f"not valid UTF-8 (byte 0x{ord(text[i]) - 0xDC00:02x} at line {line}, column {column})"
    return None


def _read_jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            key = str(lineno)
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
                yield Record(key, None, f"not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})", raw)
                continue
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                yield Record(key, None, f"not valid JSON: {e.msg} (column {e.colno})", text)
                continue
            yield Record(key, rec, None, text) if isinstance(rec, dict) else Record(key, None, "a JSON line must be an object", text)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _read_json(path: Path, fmt: str) -> Iterator[Record]:
    """Rows of one JSON object (keyed by id) or one JSON list, each with its own text span, so a bad row is named alone."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    opening, closing = ("{", "}") if fmt == "json_object" else ("[", "]")
    i = _skip_ws(text, 0)
    if i == len(text):
        return  # an empty file: no rows
    try:
        if text[i] != opening:
            raise json.JSONDecodeError(f"expected a JSON {'object' if fmt == 'json_object' else 'list'} at top level", text, i)
        i = _skip_ws(text, i + 1)
        index = 0
        while i < len(text) and text[i] != closing:
            key = str(index)
            if fmt == "json_object":
                key, i = decoder.raw_decode(text, i)
                if not isinstance(key, str):
                    raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
                i = _skip_ws(text, i)
                if text[i : i + 1] != ":":
                    raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
                i = _skip_ws(text, i + 1)
            start = i
            value, i = decoder.raw_decode(text, i)
            raw, bad = text[start:i], _bad_byte(text, start, i)
            if bad:
                yield Record(str(key), None, bad, _escaped(raw))
            else:
                yield Record(str(key), value, None, raw) if isinstance(value, dict) else Record(str(key), None, "row must be a JSON object", raw)
            index += 1
            i = _skip_ws(text, i)
            if text[i : i + 1] == ",":
                i = _skip_ws(text, i + 1)
            elif text[i : i + 1] != closing:
                raise json.JSONDecodeError(f"Expecting ',' or '{closing}'", text, i)
        if i >= len(text):
            raise json.JSONDecodeError(f"Expecting '{closing}'", text, i)
    except json.JSONDecodeError as e:
        line = e.doc[e.pos - e.colno + 1 : e.pos + 80].split("\n")[0]
        yield Record(f"line {e.lineno}", None, f"not valid JSON: {e.msg} (column {e.colno}); the rest of the file cannot be read", _escaped(line))


def read_records(path: Path, fmt: str) -> Iterator[Record]:
    """Yield a Record per upstream row of a jsonl, json_object or json_list file; invalid UTF-8 is decoded per row."""
    yield from _read_jsonl(path) if fmt == "jsonl" else _read_json(path, fmt)


COMMIT = re.compile(r"^[0-9a-f]{40}$")


def resolve_revision(spec: HubSource, twin: Path | None = None) -> str:
    """The commit that a hub source's revision (a branch, tag or commit; null: main) names now.

    On the Hub: `HfApi.dataset_info(...).sha`, skipped for a full commit hash. In a twin (`hub.twin`): the repository's git.
    Resolved once per repository and revision in a process, so every config of one repository is read at one commit
    even if the branch moves meanwhile.
    """
    return _commit(spec.path, spec.revision or "main", twin)


@functools.cache
def _commit(path: str, revision: str, twin: Path | None) -> str:
    where = f"hf://{path}@{revision}"
    if twin is not None:
        repo = twin / path
        if not (repo / ".git").exists():
            raise MedregError(f"hub.twin: {repo} is not a git repository: the twin has no {path}")
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], capture_output=True, text=True)
        if out.returncode:
            raise MedregError(f"{where}: revision '{revision}' is not a branch, tag or commit of {repo}")
        return out.stdout.strip()
    if COMMIT.match(revision):
        return revision
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(path, revision=revision).sha
    except Exception as e:  # not found, offline, auth: name the source, no traceback
        raise MedregError(f"{where}: cannot resolve the revision to a commit: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def read_hub(spec: HubSource, commit: str, twin: Path | None = None) -> Iterator[Record]:
    """Yield a Record per row of `datasets.load_dataset(path, config, split, revision=commit)`.

    A twin is read at that commit: `load_dataset` ignores `revision` for a local folder, so the commit's tree is
    checked out (`git archive`) into a temporary folder and loaded from there with the same call.
    """
    import datasets  # heavy; only the hub source needs it

    if twin is None:
        ds = datasets.load_dataset(spec.path, spec.config, split=spec.split, revision=commit)
    else:
        with tempfile.TemporaryDirectory(prefix="medreg-hub-") as tmp:
            archive = subprocess.run(["git", "-C", str(twin / spec.path), "archive", commit], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            ds = datasets.load_dataset(tmp, spec.config, split=spec.split)
    for i, rec in enumerate(ds):
        yield Record(str(i), dict(rec), None, json.dumps(rec, ensure_ascii=False, default=str))


# ---------------------------------------------------------------- normalising one record


def question_key(text: str) -> str:
    """A stable key of a question's text, the same in every copy: NFC, casefolded, punctuation runs as one space, hashed.

    The study collection's ids are its own and mirror ids are line numbers: neither matches across copies.
    """
    norm = re.sub(r"[\W_]+", " ", unicodedata.normalize("NFC", text).casefold()).strip()
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


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


def parse_options(value: Any) -> dict[str, str]:
    """Options as an ordered letter->text dict, from a mapping, a list, or their JSON/Python text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = ast.literal_eval(value)  # the study collection stores dicts as Python repr text
    if isinstance(value, list | tuple):
        value = dict(zip(LETTERS, value, strict=False))
    if not isinstance(value, dict):
        raise ValueError(f"must be a letter->text mapping, got {type(value).__name__}")
    return {clean_text(k).upper(): clean_text(v) for k, v in value.items() if v is not None}  # Arrow structs fill absent letters with null


def normalise(rec: dict[str, Any], entry: Source, fields: Fields) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Map one upstream record to our columns; returns (row, [(upstream field, failed check), ...])."""
    row: dict[str, Any] = {"context": None, "expert_category": None, "meta": None}
    errors: list[tuple[str, str]] = []

    def take(upstream: str | None, required: bool = True) -> Any:
        if upstream is None:
            return None
        try:
            return _get(rec, upstream)
        except KeyError:
            if required:
                errors.append((upstream, "required field missing"))
            return None

    if fields.id:
        qid = take(fields.id)
        row["qid"] = clean_text(qid) if qid is not None else None
    question = take(fields.question)
    row["question"] = clean_text(question) if question is not None else None
    context = take(fields.context, required=False)
    if context is not None:
        row["context"] = clean_text("\n".join(map(str, context)) if isinstance(context, list) else context) or None

    options = take(fields.options) if fields.options else dict(YES_NO_MAYBE) if entry.answer_format == "yes_no_maybe" else None
    try:
        row["options"] = parse_options(options) if options is not None else None
    except (ValueError, SyntaxError) as e:
        errors.append((fields.options or "options", f"options {e}"))
        row["options"] = None
    opts = row["options"] or {}
    if len(opts) > entry.max_options:
        errors.append((fields.options or "options", f"{len(opts)} options, more than this benchmark's {entry.max_options}"))

    if fields.answer:
        answer = take(fields.answer)
        row["answer"] = clean_text(answer).upper() if answer is not None else None
    else:
        text = take(fields.answer_text)
        by_text = {v.casefold(): k for k, v in opts.items()}
        row["answer"] = by_text.get(clean_text(text).casefold()) if text is not None else None
        if text is not None and row["answer"] is None:
            errors.append((fields.answer_text, f"'{text}' is not one of the options {list(opts.values())}"))

    if fields.expert_category:
        raw_label = take(fields.expert_category, required=False)
        if raw_label is not None:
            row["expert_category"] = entry.expert_categories.get(raw_label)
            if row["expert_category"] is None:
                errors.append((fields.expert_category, f"'{raw_label}' is not one of {list(entry.expert_categories)}"))

    if fields.study_category:
        flag = take(fields.study_category, required=False)
        if flag is not None:
            row["study_category"] = STUDY_CATEGORY.get(str(flag).strip().casefold())
            if row["study_category"] is None:
                errors.append((fields.study_category, f"'{flag}' is not a boolean (true/false)"))
    if fields.study_p_reasoning:
        prob = take(fields.study_p_reasoning, required=False)
        if prob is not None:
            try:
                row["study_p_reasoning"] = float(prob)
            except (TypeError, ValueError):
                errors.append((fields.study_p_reasoning, f"'{prob}' is not a number"))

    for column in ("reasoning", "response"):  # training data
        upstream = getattr(fields, column)
        if upstream:
            value = take(upstream)
            row[column] = clean_text(value) if value is not None else None

    meta = {k: rec[k] for k in fields.meta if k in rec}
    row["meta"] = json.dumps(meta, ensure_ascii=False, default=str) if meta else None
    row["n_options"] = len(opts)
    row["answer_format"] = entry.answer_format
    return row, errors


# ---------------------------------------------------------------- the loader


def _vanished(name: str, file: str, why: str, held: dict[str, int], reading: Reading) -> str:
    before = f" ({held[name]:,} questions in the previous output)" if name in held else ""
    return f"{file}: {why}: {reading.what} '{name}'{before} would vanish; restore the file, or allow it with {reading.params}.allow_drop: [{name}]"


def _held_before(previous: pd.DataFrame | None, source: str) -> dict[str, int]:
    """Count the previous output's questions per benchmark, if it came from the same kind of source (demo, mirror, hub).

    Pointing the same source at another directory (a new mirror copy) keeps the guard; switching demo <-> mirror does not.
    """
    if previous is None or previous.empty:
        return {}
    same = previous[previous["source"] == source]
    return {str(k): int(v) for k, v in same.groupby("benchmark").size().items()}


@dataclass(frozen=True)
class Reading:
    """How to read catalog entries from one source: where its files lie and which file or Hub dataset each entry uses."""

    source: str  # demo | mirror | hub
    root: Path
    file_of: Callable[[Source], MirrorFile | None]
    hub_of: Callable[[Source], HubSource | None]
    allow_unpinned: bool
    what: str = "benchmark"  # the name column, and the word in messages
    params: str = "ingest"  # the params section, named in messages
    twin: Path | None = None  # hub.twin: a local twin of the Hub that every hub source reads from


def hub_record(hub: HubSource, commit: str, twin: Path | None) -> dict[str, Any]:
    """What a hub read is pinned by after the fact: repository, config, split, the revision asked for, the commit read."""
    where = {"twin": str(twin)} if twin is not None else {}
    return {"path": hub.path, "config": hub.config, "split": hub.split, "revision": hub.revision, "commit": commit, **where}


class Loaded(NamedTuple):
    """What `load_rows` read: rows, parse problems, skipped entries, files, rows per file, vanished, hub revisions read."""

    rows: pd.DataFrame
    problems: list[Problem]
    skipped: dict[str, str]
    files: dict[str, str]
    counted: dict[str, int]
    vanished: list[str]
    revisions: dict[str, dict[str, Any]]


def file_records(root: Path, spec: MirrorFile) -> Iterator[Record]:
    """Rows of one demo/mirror file, kept (keys_in) or dropped (keys_not_in) by the keys of another JSON object file."""
    records = read_records(root / spec.file, spec.format)
    for ref, keep in ((spec.keys_in, True), (spec.keys_not_in, False)):
        if ref:
            path = root / ref
            if not path.is_file():
                raise MedregError(f"{path}: missing; {root / spec.file} takes its rows by this file's keys")
            keys = set(json.loads(path.read_text(encoding="utf-8")))
            records = _filtered(records, keys, keep)
    return records


def _filtered(records: Iterator[Record], keys: set[str], keep: bool) -> Iterator[Record]:
    return (r for r in records if (r.key in keys) == keep)


def load_rows(
    entries: Mapping[str, Source],
    names: list[str],
    reading: Reading,
    columns: list[str],
    explicit: bool = False,
    allow_drop: list[str] | None = None,
    held: dict[str, int] | None = None,
) -> Loaded:
    """Read and normalise every chosen entry: rows, parse problems, skipped, files, rows per file, vanished, hub revisions.

    An entry named in params (`explicit`), or `held` by the previous output, must not vanish silently unless `allow_drop`
    lists it: its missing or empty file is reported in `vanished`.
    """
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    skipped: dict[str, str] = {}
    files: dict[str, str] = {}
    counted: dict[str, int] = {}
    vanished: list[str] = []
    revisions: dict[str, dict[str, Any]] = {}
    held, allow_drop, source = held or {}, allow_drop or [], reading.source
    for name in tqdm(names, desc=f"{reading.params} ({source})", unit=reading.what):
        entry = entries[name]
        guarded = (explicit or name in held) and name not in allow_drop
        if source in ("demo", "mirror"):
            spec = reading.file_of(entry)
            if spec is None:
                if explicit:
                    raise MedregError(f"{reading.params}: {reading.what} '{name}' has no {source} file in the catalog")
                skipped[name] = f"the catalog has no {source} file for it"
                continue
            path = reading.root / spec.file
            display, fields = str(path), entry.fields
            if not path.is_file():
                if guarded:
                    vanished.append(_vanished(name, display, "file is missing", held, reading))
                else:
                    skipped[name] = f"not in the {source} directory (no file {display})"
                continue
            records: Iterator[Record] = file_records(reading.root, spec)
        else:
            hub = reading.hub_of(entry)
            if hub is None:
                if explicit:
                    raise MedregError(f"{reading.params}: {reading.what} '{name}' has no hub source in the catalog")
                skipped[name] = "the catalog declares no hub source for it"
                continue
            asked = f"hf://{hub.path}@{hub.revision or 'main'}/{hub.config or 'default'}/{hub.split}"
            if hub.revision is None and not reading.allow_unpinned:
                allow = f"{reading.params}.allow_unpinned"
                raise MedregError(f"{asked}: {reading.what} '{name}': the hub revision is not pinned (name a branch or commit, or set {allow}: true)")
            commit = resolve_revision(hub, reading.twin)
            revisions[name] = hub_record(hub, commit, reading.twin)
            display = f"hf://{hub.path}@{commit}/{hub.config or 'default'}/{hub.split}"
            fields, records = hub.fields or entry.fields, read_hub(hub, commit, reading.twin)
        n = 0
        try:
            for rec in records:
                n += 1
                if rec.value is None:
                    problems.append(Problem(name, display, rec.key, "<row>", rec.error or "unreadable", None, rec.raw))
                    continue
                row, errors = normalise(rec.value, entry, fields)
                row.setdefault("qid", rec.key)
                if errors:
                    problems += [Problem(name, display, rec.key, f, c, row.get("qid"), rec.raw) for f, c in errors]
                    continue
                rows.append({reading.what: name, **row, "source": source, "source_file": display, "source_row": rec.key, "_raw": rec.raw})
        except Exception as e:  # an unreadable file, or the hub (network, auth, missing config): name it, no bare traceback
            if source == "hub" or isinstance(e, OSError):
                raise MedregError(f"{display}: {reading.what} '{name}': cannot read: {type(e).__name__}: {e}") from e
            raise
        if n == 0:
            if name not in allow_drop:
                vanished.append(_vanished(name, display, "no rows (the file is empty)", held, reading))
            else:
                skipped[name] = f"no rows in {display} (allowed by {reading.params}.allow_drop)"
            continue
        files[name], counted[display] = display, n
    df = pd.DataFrame(rows, columns=[*columns, "_raw"])
    kinds = {"n_options": "int64", "options": "object", "study_p_reasoning": "float64"}
    if df.empty:  # every row was rejected: give the empty table the schema's types
        df = df.astype({c: kinds.get(c, "str") for c in df.columns})
    else:  # a column no chosen source fills (the study's labels outside the collection; `response` in m23k_clean): typed null
        df = df.astype({c: kinds.get(c, "str") for c in df.columns if df[c].isna().all() and c != "options"})
    return Loaded(df, problems, skipped, files, counted, vanished, revisions)


def schema_problems(df: pd.DataFrame, schema: pa.DataFrameSchema, what: str = "benchmark") -> list[Problem]:
    """Validate lazily against a schema; one Problem per failing row and check (duplicates beyond the first occurrence)."""
    schema = copy.deepcopy(schema)
    schema.report_duplicates = "exclude_first"  # the first occurrence of a duplicate id stays valid
    try:
        schema.validate(df.drop(columns="_raw"), lazy=True)
        return []
    except pa.errors.SchemaErrors as e:
        cases = e.failure_cases
    problems = []
    for (index, check), group in cases.dropna(subset=["index"]).groupby(["index", "check"], sort=False):
        row = df.loc[index]
        column = group["column"].dropna()
        fld = _CHECK_FIELD.get(str(check)) or (str(column.iloc[0]) if len(column) else "<row>")
        failed = "duplicate (" + ", ".join(schema.unique or []) + ")" if check == "multiple_fields_uniqueness" else str(check)
        problems.append(Problem(row[what], row["source_file"], row["source_row"], fld, failed, row["qid"], row["_raw"]))
    unplaced = cases[cases["index"].isna()]
    if len(unplaced):  # table-level failures (wrong dtype, missing column): a bug of ours, not of the input
        raise RuntimeError(f"table does not fit its schema:\n{unplaced.to_string()}")
    return problems


def with_expert_labels(
    df: pd.DataFrame, catalog: Mapping[str, Benchmark], names: list[str], reading: Reading, columns: list[str], hub_source: str
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Fill `expert_category` from the hub source each benchmark's `expert_labels` names, matching questions by their text.

    The study collection has no expert labels (MedXpertQA's `question_type` is in its authors' release, not in the
    collection); the classifier trains on these. Returns the rows and the revisions read.
    """
    wanted = {n: catalog[n].hub[hub_source].expert_labels for n in names}
    missing = [f"{n}.hub.{hub_source}.expert_labels: {s}" for n, s in wanted.items() if s not in catalog[n].hub]
    if missing:
        raise MedregError(f"registry/benchmarks.yaml: not a hub source of the benchmark: {', '.join(missing)}")
    labels_of = lambda e: e.hub[e.hub[hub_source].expert_labels]  # noqa: E731
    labels_reading = Reading("hub", reading.root, reading.file_of, labels_of, reading.allow_unpinned, twin=reading.twin)
    loaded = load_rows(catalog, names, labels_reading, columns, explicit=True)
    experts = loaded.rows.dropna(subset=["expert_category"])
    by_text = {(b, question_key(q)): c for b, q, c in zip(experts["benchmark"], experts["question"], experts["expert_category"], strict=True)}
    found = [by_text.get((b, question_key(q))) for b, q in zip(df["benchmark"], df["question"], strict=True)]
    df = df.assign(expert_category=[e if pd.isna(f) else f for e, f in zip(df["expert_category"], found, strict=True)])
    return df, loaded.revisions


def ingest(
    catalog: dict[str, Benchmark],
    source: str,
    root: Path | str,
    benchmarks: list[str] | str = "all",
    hub_source: str = "study",
    allow_unpinned: bool = False,
    on_invalid: str = "fail",
    allow_drop: list[str] | None = None,
    previous: pd.DataFrame | None = None,
    twin: Path | None = None,
) -> IngestResult:
    """Load, normalise and validate the chosen benchmarks; raise IngestError if rows are invalid and on_invalid is fail.

    `previous` is the last output: a benchmark it held from the same kind of source whose file is now missing or empty
    is refused, not dropped (as is one named in `benchmarks`), unless `allow_drop` lists it.
    """
    root = Path(root)
    if source != "hub" and not root.is_dir():
        raise MedregError(f"ingest.{source}_dir: {root} does not exist or is not a directory")
    names = list(catalog) if benchmarks == "all" else list(benchmarks)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise MedregError(f"ingest.benchmarks: unknown benchmark(s) {unknown} (the catalog has {', '.join(catalog)})")
    reading = Reading(source, root, lambda e: e.mirror, lambda e: e.hub.get(hub_source), allow_unpinned, twin=twin)
    columns = list(QuestionsSchema.to_schema().columns)
    df, problems, skipped, files, counted, vanished, revisions = load_rows(
        catalog, names, reading, columns, benchmarks != "all", allow_drop or [], _held_before(previous, source)
    )
    if source == "hub":
        labels = [n for n in files if catalog[n].hub[hub_source].expert_labels]
        if labels:
            df, label_reads = with_expert_labels(df, catalog, labels, reading, columns, hub_source)
            revisions = {**revisions, **{f"{n}.expert_labels": r for n, r in label_reads.items()}}
    if not files and not vanished:
        looked = ", ".join(catalog[n].mirror.file for n in names[:3]) + (", ..." if len(names) > 3 else "")
        where = f"hub source '{hub_source}'" if source == "hub" else f"{root} (looked for {looked})"
        raise MedregError(f"ingest.{source}_dir: no benchmark found in {where}" if source != "hub" else f"ingest: no benchmark has a {where}")
    problems += schema_problems(df, QuestionsSchema.to_schema())
    if vanished:  # refused whatever on_invalid says; bad rows are reported in the same message
        raise MedregError("\n".join(vanished + ([str(IngestError(problems, "", counted))] if problems else [])))
    if problems and on_invalid == "fail":
        raise IngestError(problems, " (ingest.on_invalid=fail; 'quarantine' keeps the valid rows)", counted)
    bad = {(p.file, p.row) for p in problems}
    keep = [(f, r) not in bad for f, r in zip(df["source_file"], df["source_row"], strict=True)]
    questions = df[keep].drop(columns="_raw").reset_index(drop=True)
    return IngestResult(questions, problems, skipped, files, revisions)


def quarantine_frame(problems: list[Problem]) -> pd.DataFrame:
    """One row per rejected input row, all its reasons joined one per line, with the row's raw text."""
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
    return pd.DataFrame(rows, columns=["benchmark", "qid", "source_file", "source_row", "errors", "raw"], dtype="str")


def irregular_options(options: pd.Series) -> pd.Series:
    """True where letters are not A, B, C... in order or an option text is empty (kept as upstream has it)."""
    return options.map(lambda o: list(o) != list(LETTERS[: len(o)]) or "" in o.values())


def ingest_metrics(result: IngestResult, source: str) -> dict[str, Any]:
    """Row counts per benchmark, skipped benchmarks by name with reason, rejected rows."""
    q = result.questions
    per_benchmark = {}
    for name in result.files:
        b = q[q["benchmark"] == name]
        per_benchmark[name] = {
            "questions": len(b),
            "expert_labeled": int(b["expert_category"].notna().sum()),
            "duplicate_texts": int(b["question"].duplicated().sum()),
            "irregular_options": int(irregular_options(b["options"]).sum()),
        }
    return {
        "source": source,
        "questions": len(q),
        "benchmarks": per_benchmark,
        "skipped": result.skipped,
        "n_skipped": len(result.skipped),
        "quarantined_rows": len({(p.file, p.row) for p in result.problems}),
        "revisions": result.revisions,
    }
