"""The `medreg` command line: query results with SQL, list tables, browse the catalogs, classify, show prompts.

Start-up stays light: heavy modules (pandas, pydantic, torch) are imported inside the commands that need them.
Exit status: 0 done; 2 refused (bad SQL, input, catalog or params: the message says what and where); 1 a bug.
"""

from __future__ import annotations

import csv
import io as stdio
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from registry.errors import EXIT_REFUSED, MedregError


class Group(click.Group):
    """The `medreg` group: `-h`/`--help`, full command descriptions, one error style.

    Every refusal is one line on stderr, `error: <what> — <next step>`, and exit status 2: a MedregError, a click
    usage error (next step: `medreg CMD -h`) and a DVC failure (DVC's log lines held back; registry/dvcerrors.py).
    Errors are reported by the outermost group only, so subgroups (`medreg s3`) share it.
    """

    group_class = type  # subgroups are Groups too

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:
            if parent is not None or isinstance(e, click.exceptions.NoArgsIsHelpError):
                raise
            _refuse(e)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is not None:
            return super().invoke(ctx)
        from registry import dvcerrors

        dvc_log = None
        try:
            with dvcerrors.captured() as dvc_log:
                result = super().invoke(ctx)
            for text in dvc_log.texts():
                click.echo(f"warning: {text}", err=True)
            return result
        except MedregError as e:
            context = "\n".join(dvc_log.texts()) if dvc_log else ""
            click.echo(f"error: {dvcerrors.explain(str(e), context)}", err=True)
            raise click.exceptions.Exit(EXIT_REFUSED) from None
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.ClickException as e:
            _refuse(e)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands, each with the whole first paragraph of its help (click cuts it at 45 characters)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, first_paragraph(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows, col_max=16)


def first_paragraph(command: click.Command) -> str:
    """A command's description for `medreg --help`: the first paragraph of its help, on one line."""
    text = command.help or command.short_help or ""
    return " ".join(text.split("\n\n")[0].replace("\b", "").split())


def _refuse(e: click.ClickException) -> None:
    """A click error in medreg's style: `error: <message> — see `medreg CMD -h``, exit status 2."""
    ctx = getattr(e, "ctx", None)
    path = " ".join(["medreg", *ctx.command_path.split()[1:]]) if ctx is not None else "medreg"
    click.echo(f"error: {e.format_message().rstrip('.')} — see `{path} -h`", err=True)
    raise click.exceptions.Exit(EXIT_REFUSED) from None


def project_root() -> Path:
    """The nearest directory upward from the working directory that holds dvc.yaml (else the working directory)."""
    cwd = Path.cwd().resolve()
    return next((d for d in (cwd, *cwd.parents) if (d / "dvc.yaml").exists()), cwd)


def default_db() -> Path:
    """The results database the dataset catalog declares, below the project root (read without the typed catalog: start-up)."""
    import yaml

    root = project_root()
    with (Path(__file__).parent / "datasets.yaml").open(encoding="utf-8") as f:
        return root / yaml.load(f, Loader=yaml.CSafeLoader)["datasets"]["results_db"]["path"]


def _cell(value: Any) -> Any:
    """A JSON-ready value: NaN is null, MAPs stay objects, dates and decimals become text."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)


def _text(value: Any, digits: int | None = 6) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NULL"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}g}"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    """A result as text: an aligned table (wide cells cut), CSV, JSON (a list of records) or JSON lines."""
    if fmt == "json":
        return json.dumps([{c: _cell(v) for c, v in zip(columns, row, strict=True)} for row in rows], ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps({c: _cell(v) for c, v in zip(columns, row, strict=True)}, ensure_ascii=False) + "\n" for row in rows)
    if fmt == "csv":
        buf = stdio.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _text(v, digits=None) for v in row] for row in rows])
        return buf.getvalue()
    if not rows:
        return f"(no rows; columns: {', '.join(columns)})\n"
    cells = [[t if len(t) <= 60 else t[:57] + "..." for t in map(_text, row)] for row in rows]
    cells = [[c.replace("\n", " ") for c in row] for row in cells]
    widths = [max(len(columns[i]), *(len(r[i]) for r in cells)) for i in range(len(columns))]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(columns), *map(line, cells)]) + "\n"


def print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    """Print a result as an aligned table (wide cells cut), CSV, JSON records or JSON lines (`emit` also writes files)."""
    click.echo(render(columns, rows, fmt), nl=False)


# ------------------------------------------------------------------ the output convention of every command that prints data

FORMATS = ("table", "csv", "json", "jsonl", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}


def data_output(command):
    """`--format` and `-o/--out` for a command that prints data; the command passes them on to `emit`."""
    command = click.option(
        "-o",
        "--out",
        "out_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the result to this file (atomically) instead of printing it; the format: --format, else the suffix "
        "(.csv, .json, .jsonl, .parquet).",
    )(command)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        help="table (the default on screen), csv, json (a list of records), jsonl (a record a line) or parquet (needs -o).",
    )(command)


def output_format(fmt: str | None, out_path: Path | None) -> str:
    """The format to write: --format, else the suffix of -o, else table. Check it before the work: a refusal is a usage error."""
    ctx = click.get_current_context(silent=True)
    if out_path is None:
        if fmt == "parquet":
            raise click.UsageError("--format parquet writes a file: add -o FILE.parquet", ctx)
        return fmt or "table"
    if fmt:
        return fmt
    found = SUFFIX_FORMATS.get(out_path.suffix.lower())
    if found is None:
        shown = f"'{out_path.suffix}'" if out_path.suffix else "no suffix"
        raise click.UsageError(f"-o {out_path}: {shown} names no format: end it in .csv, .json, .jsonl or .parquet, or give --format", ctx)
    return found


def frame_rows(frame) -> tuple[list[str], list[tuple]]:
    """A DataFrame's column names and rows as Python values (numpy scalars unboxed, NaN/NA/NaT None, times ISO text)."""
    import numpy as np
    import pandas as pd

    def py(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return [py(x) for x in v.tolist()]
        if isinstance(v, dict):
            return {k: py(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [py(x) for x in v]
        if v is None or v is pd.NA or v is pd.NaT:
            return None
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        if isinstance(v, np.generic):
            v = v.item()
        return None if isinstance(v, float) and math.isnan(v) else v

    return [str(c) for c in frame.columns], [tuple(py(v) for v in row) for row in frame.itertuples(index=False, name=None)]


def arrow_table(columns: list[str], rows: list[tuple]):
    """Rows as an Arrow table, each column typed from its values (a column mixing types: text)."""
    import pyarrow as pa

    if len(set(columns)) < len(columns):
        raise MedregError(f"parquet needs distinct column names, got {', '.join(columns)}: name them apart (`select a, b as b2`)")

    def mapping(values: list[Any]):  # dicts (DuckDB's MAP) as an Arrow map, not a struct of every key seen
        present = [v for v in values if v is not None]
        keys, items = pa.array([k for d in present for k in d]).type, pa.array([x for d in present for x in d.values()]).type
        keys, items = (pa.string() if pa.types.is_null(t) else t for t in (keys, items))
        return pa.array([None if v is None else list(v.items()) for v in values], type=pa.map_(keys, items))

    arrays = []
    for i in range(len(columns)):
        values = [row[i] for row in rows]
        try:
            is_map = any(v is not None for v in values) and all(isinstance(v, dict) for v in values if v is not None)
            arrays.append(mapping(values) if is_map else pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if v is None else _text(v, digits=None) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=list(columns))


def emit(data: Any, fmt: str | None, out_path: Path | None, note: str = "") -> None:
    """Print `data` (a DataFrame, or (columns, rows)) in `fmt`, or write it to `out_path` atomically.

    Writing prints one line, `wrote N rows to PATH` (and `note`). Parquet keeps a DataFrame's column types.
    """
    fmt = output_format(fmt, out_path)
    frame = None if isinstance(data, tuple) else data
    if frame is not None and fmt == "parquet" and out_path is not None:
        columns, rows = [str(c) for c in frame.columns], range(len(frame))
    else:
        columns, rows = frame_rows(frame) if frame is not None else data
    if out_path is None:
        click.echo(render(columns, rows, fmt), nl=False)
        return
    from registry.io import atomic_path

    with atomic_path(out_path) as tmp:
        if fmt == "parquet" and frame is not None:
            frame.to_parquet(tmp, index=False)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(arrow_table(columns, rows), tmp)
        else:
            tmp.write_text(render(columns, rows, fmt), encoding="utf-8")
    click.echo(f"wrote {len(rows)} rows to {out_path}{note}")


def _database_at(rev: str) -> Path:
    """A temporary copy of the results database as commit, tag or experiment `rev` recorded it (dvc.api: cache, then remote)."""
    import shutil
    import tempfile

    import dvc.api

    root = project_root()
    rel = default_db().relative_to(root)
    out = Path(tempfile.mkdtemp(prefix="medreg-db-")) / rel.name
    try:
        with dvc.api.open(str(rel), repo=str(root), rev=rev, mode="rb") as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    except Exception as e:  # noqa: BLE001 (unknown revision, output not in cache or remote: one line)
        raise MedregError(f"--rev {rev}: cannot read {rel}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return out


def _open(db_path: Path | None):
    from registry import db

    return db.connect(db_path or default_db())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medreg")
def main() -> None:
    """medreg: versioned biomedical QA benchmarks, reasoning/knowledge splits, models and results.

    \b
    Example:
      medreg tables
      medreg query "select benchmark, count(*) from questions group by all"

    Commands that print data take --format table|csv|json|jsonl|parquet and -o/--out FILE (written atomically; the
    format from the suffix when --format is not given). A refusal is one line, `error: <what> — <next step>`, on
    stderr with exit status 2; `medreg CMD -h` shows a command's options and examples.
    """


# Superseded by `data_output` (--format and -o) and `emit`; kept for callers written before them.
FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
DB = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), help="Database file (default: the project's data/results.duckdb)."
)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("sql")
@data_output
@DB
@click.option("--rev", help="The database of this commit, tag or DVC experiment (e.g. one run with --temp), from the DVC cache or remote.")
def query(sql: str, fmt: str | None, out_path: Path | None, db_path: Path | None, rev: str | None) -> None:
    """Run read-only SQL (SELECT/EXPLAIN) on the results database and print the result; SQL '-' reads standard input.

    The database is opened read-only with no file access: a write, a file read or a bad query exits with status 2
    and DuckDB's message. SQL may start with a `--` comment. Works from any directory with --db. SQL that reads the
    table `experiments` also sees the project's DVC experiments (`medreg experiments -h` has its columns). With -o
    the SQL must be one statement: its result is written.

    \b
    Example:
      medreg query "select benchmark, count(*) n from questions group by all order by n desc"
      medreg query --format csv "select qid, answer from questions where benchmark = 'medqa'" > medqa.csv
      medreg query --db /elsewhere/results.duckdb - < report.sql
      medreg query 'select experiment, status, "params.evaluate.bootstrap.seed" from experiments order by timestamp'
      medreg query --rev rehearsal "select distinct source_file from questions"
      medreg query -o medqa.parquet "select * from questions where benchmark = 'medqa'"
    """
    from registry import db

    output_format(fmt, out_path)
    if rev:
        db_path = _database_at(rev)
    con = _open(db_path)
    sql = sys.stdin.read() if sql == "-" else sql
    _register_experiments(con, sql)
    results = db.query(con, sql)
    if out_path and len(results) > 1:
        raise click.UsageError(f"-o writes one result; the SQL has {len(results)} statements: run them one at a time")
    for columns, rows in results:
        emit((columns, rows), fmt, out_path)


@main.command()
@click.argument("table", required=False)
@click.option("--columns", "show_columns", is_flag=True, help="List columns instead: name, type and what it means (of TABLE, or of every table).")
@data_output
@DB
def tables(table: str | None, show_columns: bool, fmt: str | None, out_path: Path | None, db_path: Path | None) -> None:
    """List the tables and views of the results database, with row counts and descriptions; or their columns.

    The descriptions come from the pandera schemas (schemas/) and the dataset catalog (registry/datasets.yaml), stored
    as DuckDB comments: `select * from duckdb_columns()` shows them in any DuckDB client too.

    \b
    Example:
      medreg tables
      medreg tables --columns summary
      medreg tables --columns --format csv -o columns.csv
    """
    from registry import db

    output_format(fmt, out_path)
    if table and not show_columns:
        raise click.UsageError("TABLE goes with --columns (e.g. medreg tables --columns summary)")
    emit(db.columns(_open(db_path), table) if show_columns else db.tables(_open(db_path)), fmt, out_path)


@main.command()
@click.option("--dir", "mirror_dir", type=click.Path(file_okay=False, path_type=Path), help="Also show which files a mirror directory has.")
@data_output
def benchmarks(mirror_dir: Path | None, fmt: str | None, out_path: Path | None) -> None:
    """List the benchmark catalog (registry/benchmarks.yaml); a malformed entry exits 2 with its file, line and key.

    \b
    Example:
      medreg benchmarks --dir ../shared/benchmarks
      medreg benchmarks --format json
    """
    from registry import catalog

    output_format(fmt, out_path)
    if mirror_dir and not mirror_dir.is_dir():
        raise MedregError(f"{mirror_dir}: no such directory — give --dir the benchmark mirror (params.yaml ingest.mirror_dir)")
    rows = []
    for name, e in catalog.benchmarks().items():
        study = e.hub["study"]
        terms = e.license if e.redistribute else f"{e.license}, not redistributable"
        row = [name, e.answer_format, terms, f"{study.path}/{study.config or ''}", e.mirror.file]
        if mirror_dir:
            row.append("yes" if (mirror_dir / e.mirror.file).is_file() else "no")
        rows.append(tuple(row))
    emit((["name", "format", "license", "hub", "mirror file", *(["in dir"] if mirror_dir else [])], rows), fmt, out_path)


@main.command()
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Check this catalog file instead.")
@data_output
def models(path: Path | None, fmt: str | None, out_path: Path | None) -> None:
    """List the model catalog (registry/models.yaml), validated first; a bad entry exits 2 naming file, line and key.

    \b
    Example:
      medreg models
      medreg models --file my_models.yaml
      medreg models -o models.csv
    """
    from registry import catalog

    output_format(fmt, out_path)
    rows = []
    for name, e in (catalog.models(path) if path else catalog.models()).items():
        s = e.source
        where = f"{s.hub.id}@{s.hub.revision or 'UNPINNED'}" if s.hub else f"{s.endpoint.base_url} {s.endpoint.model}" if s.endpoint else s.local.path
        rows.append((name, e.family, e.size, e.backend, f"{s.kind}: {where}", e.generation.max_new_tokens))
    emit((["name", "family", "size", "backend", "source", "max_new_tokens"], rows), fmt, out_path)


def read_table(path: Path):
    """A frame from .jsonl (JSON lines), .json (a list of objects, or an object keyed by id), .csv or .parquet.

    JSON problems are named by line (JSON lines) or by the line of the bad row (JSON files).
    """
    import pandas as pd

    from registry.ingest import read_records

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        fmt = "jsonl"
        if suffix == ".json":
            head = path.read_bytes().lstrip()[:1]
            fmt = "json_object" if head == b"{" else "json_list"
        records = list(read_records(path, fmt))
        bad = [r for r in records if r.value is None]
        if bad:
            what = "line" if fmt == "jsonl" else "row"
            raise MedregError(
                "\n".join(f"{path}: {what} {r.key}: {r.error}" for r in bad[:20]) + (f"\n... {len(bad) - 20} more" if len(bad) > 20 else "")
            )
        return pd.DataFrame([r.value for r in records])
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise MedregError(f"{path}: unsupported input type '{suffix}' (use .jsonl, .json, .csv or .parquet)")


DEMO_HINT = "train on real expert labels: `medreg run -p mirror` (ingest.source mirror or hub), or pass --model"


def provenance(meta: dict[str, Any], folder: Path) -> tuple[str, str | None]:
    """Which labels trained a saved classifier (its medreg.json): one line, and a warning when it is the demo's."""
    metrics = meta.get("metrics") or {}
    chosen = meta.get("chosen", "?")
    members = meta.get("members") or {}
    what = f"{chosen} ({' + '.join(members)})" if len(members) > 1 or (members and chosen not in members) else chosen
    labels = meta.get("training_labels")
    n = (labels or {}).get("n", meta.get("n_fit", metrics.get("n")))
    if labels:
        per = ", ".join(f"{b} {k}" for b, k in labels.get("benchmarks", {}).items())
        source = f"{'/'.join(labels.get('source', [])) or '?'} questions: {per}"
    else:
        source = "source not recorded: saved before classifiers recorded it"
    scores = []
    if "macro_f1" in metrics:
        scores.append(f"macro-F1 {metrics['macro_f1']:.3f}")
    if "accuracy" in metrics:
        scores.append(f"agreement with the experts {metrics['accuracy']:.1%}")
    cv = f"; out-of-fold ({metrics.get('folds', '?')}-fold CV): {', '.join(scores)}" if scores else ""
    line = f"classifier {folder}: {what}, trained on {n} expert labels ({source}){cv}; threshold {meta.get('threshold', float('nan')):.2f}"
    warning = None
    if labels and "demo" in labels.get("source", []):
        warning = f"this is the demo classifier, trained on the project's {n} demo labels: its categories are not research results — {DEMO_HINT}"
    elif not labels and isinstance(n, int) and n < 100:
        warning = f"probably the demo classifier ({n} labels, source not recorded): its categories are not research results — {DEMO_HINT}"
    return line, warning


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_output
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), help="Classifier dir (default: the pipeline's).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quantize/--no-quantize", default=True, show_default=True, help="Dynamic int8 inference of fine-tuned encoders on CPU.")
def classify(input_path: Path, fmt: str | None, out_path: Path | None, model_dir: Path | None, batch_size: int, quantize: bool) -> None:
    """Put the questions of INPUT in a category, reasoning-heavy or knowledge-heavy; print them, or write them with -o.

    INPUT is JSON lines, a JSON list (or object) of records, CSV or parquet with a `question` field and optional
    `options` (a letter->text mapping or its JSON). The result keeps every input column and adds p_reasoning,
    category and threshold; -o writes .parquet, .jsonl, .json or .csv (the suffix, or --format). First, on stderr:
    which labels trained the classifier (their source, how many, its cross-validated macro-F1 and agreement with the
    experts), and a warning when it is the demo classifier.

    \b
    Example:
      medreg classify my_questions.jsonl -o labeled.parquet
      medreg classify exam.csv -o exam_labeled.csv --model models/classifier
      medreg classify exam.csv --format json > exam_labeled.json
    """
    from registry import catalog, classifier

    output_format(fmt, out_path)
    df = read_table(input_path)
    if "question" not in df.columns:
        raise MedregError(f"{input_path}: no 'question' column (columns: {', '.join(map(str, df.columns))})")
    bad = [i for i, q in enumerate(df["question"], start=1) if not isinstance(q, str) or not q.strip()]
    if bad:
        rows = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise MedregError(f"{input_path}: row(s) {rows}: field 'question' is empty or not text")
    folder = model_dir or catalog.dataset_path("classifier", project_root())
    model = classifier.LabelingModel.load(folder, quantize=quantize)
    line, warning = provenance(model.meta, folder)
    click.echo(line, err=True)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    out = classifier.categorise(df, model, batch_size)
    share = f"{(out['category'] == 'reasoning').mean():.1%} reasoning"
    emit(out, fmt, out_path, note=f": {share}")
    if out_path is None:
        click.echo(f"{len(out)} rows: {share}", err=True)


@main.command()
@click.argument("model_name")
@click.argument("benchmark")
@click.argument("qid")
@click.option("--trace", "trace_index", type=int, default=None, help="Show the adversarial prompt with this trace index.")
@click.option("--protocol", type=click.Choice(["prefill", "turn"]), default=None, help="Adversarial protocol (default: params).")
@click.option("--tokens", is_flag=True, help="Also print the token ids and, for each, the decoded token.")
def prompt(model_name: str, benchmark: str, qid: str, trace_index: int | None, protocol: str | None, tokens: bool) -> None:
    """Print the exact text a model is sent for one question: chat template applied, clean or adversarial.

    \b
    Example:
      medreg prompt smollm2-135m-instruct medqa 16
      medreg prompt smollm2-135m-instruct medqa 16 --trace 0 --protocol turn --tokens
    """
    from transformers import AutoTokenizer

    from registry import catalog, io
    from registry.adversarial import RECONSIDER_CUE, adversarial_chat
    from registry.backends import model_location, render_chat
    from registry.params import load_params
    from registry.prompts import build_chat

    root = project_root()
    params = load_params(root / "params.yaml")
    model = catalog.model(model_name)
    location, revision = model_location(model, root, params.evaluate.runtime.allow_unpinned)
    questions = io.load("questions", root)
    row = questions[(questions["benchmark"] == benchmark) & (questions["qid"] == qid)]
    if row.empty:
        raise MedregError(f"no question {benchmark}/{qid} in {catalog.dataset_path('questions', root)}")
    row = row.iloc[0].to_dict()
    chat = build_chat(row, model.chat)
    if trace_index is not None:
        traces = io.load("adversarial_traces", root)
        hit = traces[(traces["benchmark"] == benchmark) & (traces["qid"] == qid) & (traces["trace_index"] == trace_index)]
        if hit.empty:
            raise MedregError(f"no trace {trace_index} for {benchmark}/{qid} in {catalog.dataset_path('adversarial_traces', root)}")
        adv = params.adversarial
        chat = adversarial_chat(row, hit.iloc[0]["trace"], model.chat, protocol or adv.protocol, adv.cue or RECONSIDER_CUE)
    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    text = render_chat(tokenizer, chat, model.chat.template_kwargs)
    click.echo(text, nl=False)
    if tokens:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        click.echo("\n\n" + " ".join(f"{i}:{tokenizer.decode([i])!r}" for i in ids))


@main.command()
@click.argument("name")
@click.option("--version", help="Exact version, vMAJOR.MINOR.PATCH (default: bump the last one).")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), default="minor", show_default=True)
@click.option("--stage", help="Also assign this stage (e.g. dev, prod) to the new version.")
@click.option("-r", "--remote", help="Remote that must hold the outputs (default: the project's default remote).")
@click.option("--push", is_flag=True, help="Push the new git tags to origin.")
@click.option("-m", "--message", help="Tag message.")
@click.option("--allow-restricted", is_flag=True, help="Release even though the outputs hold rows of benchmarks that may not be redistributed.")
def release(
    name: str, version: str | None, bump: str, stage: str | None, remote: str | None, push: bool, message: str | None, allow_restricted: bool
) -> None:
    """Version an artifact of dvc.yaml with a GTO git tag NAME@vX.Y.Z (and a stage), at HEAD.

    Refused, tagging nothing, while the artifact or anything it depends on is stale, dvc.yaml / dvc.lock / params.yaml
    have uncommitted changes, or its outputs are not in the remote (`dvc push` first): a tag must always pull.
    Also refused while its outputs hold question text of a benchmark with `redistribute: false` in
    registry/benchmarks.yaml (GPQA, Lancet, NEJM, MedBullets; the questions, the split, the results database),
    unless --allow-restricted (the remote and its tags stay private).

    \b
    Example:
      dvc repro && git commit -am "new split" && dvc push
      medreg release reasoning-knowledge-split --bump minor --stage prod
      medreg release benchmark-questions --allow-restricted -r private   # holds GPQA rows: a private remote only
      dvc import <this repo> data/splits/labels.parquet --rev reasoning-knowledge-split@v1.1.0   # elsewhere
    """
    from registry import publish

    for tag in publish.release(project_root(), name, version, bump, stage, remote, push, message, allow_restricted):
        click.echo(f"tagged {tag}")


@main.command()
@data_output
def artifacts(fmt: str | None, out_path: Path | None) -> None:
    """List the artifacts dvc.yaml declares, with their latest versions and stages (GTO).

    \b
    Example:
      medreg artifacts
      medreg artifacts --format json
    """
    import gto.api

    from registry import publish

    output_format(fmt, out_path)
    root = project_root()
    declared = publish.artifacts(root)
    shown = gto.api.show(str(root)) if declared else {}  # {name: {version, stage: {stage: version}, ...}}
    rows = []
    for name, entry in declared.items():
        row = shown.get(name) or {}
        stages = ", ".join(f"{k}={v}" for k, v in (row.get("stage") or {}).items() if v) or "-"
        rows.append((name, entry.get("type", ""), row.get("version") or "-", stages, entry["path"]))
    emit((["artifact", "type", "latest", "stages", "path"], rows), fmt, out_path)


@main.command()
@click.argument("targets", nargs=-1)
@click.option("-r", "--remote", help="Remote to pull from (default: the project's default remote).")
@click.option("-j", "--jobs", type=int, help="Parallel downloads.")
def pull(targets: tuple[str, ...], remote: str | None, jobs: int | None) -> None:
    """`dvc pull`, naming any object of the remote whose bytes do not match their hash (never checked out).

    DVC's output is shown once it succeeds; a failure is one `error:` line with the next step (an unreachable S3
    remote: `medreg s3 start`; an unknown remote: `dvc remote list`), not DVC's log.

    \b
    Example:
      medreg pull                       # everything dvc.lock records
      medreg pull -r s3 data/splits/labels.parquet
    """
    from registry import publish

    publish.pull(project_root(), list(targets), remote, jobs)


def _split(root: Path, rev: str | None, repo: str | None) -> tuple[Any, str]:
    """The reasoning/knowledge split (a pyarrow Table) and its version: a tag or commit of a registry, or the workspace's."""
    import pyarrow.parquet as pq

    from registry import api, catalog, publish

    if rev or repo:
        return api.read_split(repo or str(root), rev), rev or "HEAD"
    path = catalog.dataset_path("splits", root)
    if not path.exists():
        raise MedregError(f"{path} is missing: run `dvc repro label` or `medreg pull {api.split_path()}`")
    return pq.read_table(path), publish.version_of(root)


@main.command("export-hf")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rev", help="Version of the split to export (a tag, branch or commit; default: the workspace's file).")
@click.option("--repo", help="Registry to read from with --rev (default: this project).")
@click.option("--include-restricted", is_flag=True, help="Export rows of benchmarks that may not be redistributed too (a private copy).")
@click.option("--drop-restricted", is_flag=True, help="Leave out the benchmarks that may not be redistributed.")
def export_hf(out: Path, rev: str | None, repo: str | None, include_restricted: bool, drop_restricted: bool) -> None:
    """Write the reasoning/knowledge split as a Hugging Face dataset folder, loadable with `datasets.load_dataset`.

    Parquet per benchmark and category, a dataset card with YAML metadata (license, task, language, size, tags),
    configs (one per benchmark, default `all`; splits reasoning and knowledge) and the version:
    `datasets.load_dataset(OUT, "medqa")["reasoning"]`. Refused, writing nothing, when the split holds rows of a
    benchmark with `redistribute: false` in registry/benchmarks.yaml (GPQA, Lancet, NEJM, MedBullets): pass
    --drop-restricted to export without them, or --include-restricted for a copy you keep private.

    \b
    Example:
      medreg export-hf hf/medreg-split
      medreg export-hf hf/v1 --rev reasoning-knowledge-split@v1.0.0
      medreg export-hf hf/public --drop-restricted       # without GPQA, Lancet, NEJM, MedBullets
      medreg export-hf hf/private --include-restricted   # everything; the card says which terms forbid publishing
    """
    if include_restricted and drop_restricted:
        raise click.UsageError("give one of --include-restricted and --drop-restricted")
    from registry import publish

    root = project_root()
    table, version = _split(root, rev, repo)
    restricted_rows = "include" if include_restricted else "drop" if drop_restricted else "refuse"
    counts = publish.export_hf(table, out, version, repo or root.name, restricted_rows)
    for benchmark, c in counts.items():
        click.echo(f"  {benchmark:<26} {c['reasoning']:>6} reasoning {c['knowledge']:>6} knowledge")
    for benchmark, terms in publish.restricted(table.column("benchmark").unique().to_pylist()).items():
        click.echo(f"  {benchmark:<26} {'included' if include_restricted else 'left out'}: may not be redistributed ({terms})")
    click.echo(f"wrote {out} (version {version})")


@main.command("export")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["lm-eval", "inspect"]))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rev", help="Version of the split to export (a tag, branch or commit; default: the workspace's file).")
@click.option("--repo", help="Registry to read from with --rev (default: this project).")
@click.option("--benchmarks", help="Comma-separated benchmarks (default: all).")
@click.option("--prompt", "style", type=click.Choice(["strict", "direct", "cot"]), default="strict", show_default=True, help="medreg's prompt style.")
@click.option("--include-restricted", is_flag=True, help="Export rows of benchmarks that may not be redistributed too (a private copy).")
@click.option("--drop-restricted", is_flag=True, help="Leave out the benchmarks that may not be redistributed.")
def export_(
    fmt: str, out: Path, rev: str | None, repo: str | None, benchmarks: str | None, style: str, include_restricted: bool, drop_restricted: bool
) -> None:
    """Write the split as lm-evaluation-harness tasks (YAML) or Inspect tasks (medreg_tasks.py), questions as JSON lines.

    Tasks medreg_<benchmark>_<category> and medreg_<benchmark>, and medreg_reasoning, medreg_knowledge and medreg
    (lm-eval groups; Inspect tasks). The prompt is medreg's (--prompt), the answer letter is read by a regex close to
    medreg's extraction, the metric is exact match (docs/interop.md). OUT is replaced only if an export wrote it.
    Refused, writing nothing, when the chosen benchmarks include one with `redistribute: false` in
    registry/benchmarks.yaml: pass --drop-restricted, or --include-restricted for a copy you keep private.

    \b
    Example:
      medreg export lm-eval tasks/lm-eval
      lm_eval --model hf --model_args pretrained=MODEL --apply_chat_template --include_path tasks/lm-eval --tasks medreg_medqa_reasoning
      medreg export inspect tasks/inspect --benchmarks medqa,pubmedqa --prompt cot
      medreg export lm-eval tasks/v1 --rev reasoning-knowledge-split@v1.0.0
    """
    if include_restricted and drop_restricted:
        raise click.UsageError("give one of --include-restricted and --drop-restricted")
    from registry import interop, publish

    root = project_root()
    table, version = _split(root, rev, repo)
    known = sorted(table.column("benchmark").unique().to_pylist())
    wanted = [b.strip() for b in benchmarks.split(",") if b.strip()] if benchmarks else known
    found = publish.restricted([b for b in wanted if b in known])
    if found and not (include_restricted or drop_restricted):
        raise MedregError(f"refusing to export: {publish.restricted_message(found, 'the split', 'export')}")
    if drop_restricted:
        wanted = [b for b in wanted if b not in found]
    write = interop.export_lm_eval if fmt == "lm-eval" else interop.export_inspect
    export = write(table, out, version, style, wanted)
    for name, n in export.tasks.items():
        click.echo(f"  {name:<40} {n:>6} questions")
    if export.groups:
        click.echo(f"  groups: {', '.join(export.groups)}")
    for benchmark, terms in found.items():
        click.echo(f"  {benchmark:<26} {'included' if include_restricted else 'left out'}: may not be redistributed ({terms})")
    click.echo(f"wrote {export.out} ({fmt}, split {version}, prompt {style})")
    click.echo(f"run: {export.command}")


@main.group()
def s3() -> None:
    """An S3 remote on this machine: moto's server on 127.0.0.1 with authentication, for the DVC remote 's3'.

    \b
    Example:
      medreg s3 start && dvc push -r s3    # or: make s3-up
      medreg s3 stop                       # or: make s3-down (the server keeps objects in memory: they go)
    """


def _s3_state() -> Path:
    import os

    return Path(os.environ.get("MEDREG_STATE_DIR") or Path.home() / ".cache" / "medreg") / "s3server.json"


@s3.command("start")
@click.option("--port", type=int, default=5555, show_default=True, help="Port on 127.0.0.1.")
@click.option("--default/--no-default", "make_default", default=True, show_default=True, help="Make 's3' this clone's default remote.")
def s3_start(port: int, make_default: bool) -> None:
    """Start the server (or reuse the running one) and write its endpoint and credentials to .dvc/config.local.

    Run it in every clone that should use the server: the credentials live only in that uncommitted file (and in
    ~/.cache/medreg/s3server.json, mode 600), never in .dvc/config.

    \b
    Example:
      medreg s3 start --port 5555 && dvc push
    """
    import json
    import os

    from dvc.repo import Repo

    from registry import s3server

    state = _s3_state()
    server = None
    if state.exists():
        server = s3server.S3Server(**json.loads(state.read_text()))
        try:
            server.client().head_bucket(Bucket=server.bucket)
            click.echo(f"reusing the server at {server.endpoint} (pid {server.pid})")
        except Exception:  # noqa: BLE001 (gone or unreachable: start a new one)
            server = None
    if server is None:
        state.parent.mkdir(parents=True, exist_ok=True)
        server = s3server.start(port, log=state.with_name("moto.log"))
        state.write_text(json.dumps(server.__dict__) + "\n")
        os.chmod(state, 0o600)
        click.echo(f"started moto's S3 server at {server.endpoint} (pid {server.pid}), bucket '{server.bucket}'")
    with Repo(project_root()) as repo, repo.config.edit("local") as conf:
        conf["remote"]["s3"] = {
            "endpointurl": server.endpoint,
            "access_key_id": server.access_key_id,
            "secret_access_key": server.secret_access_key,
        }
        if make_default:
            conf["core"]["remote"] = "s3"
    click.echo(f"remote 's3' configured in .dvc/config.local{' (default)' if make_default else ''}")


@s3.command("stop")
def s3_stop() -> None:
    """Stop the server `medreg s3 start` started (its objects go with it).

    \b
    Example:
      medreg s3 stop
    """
    import json

    from registry import s3server

    state = _s3_state()
    if not state.exists():
        raise MedregError(f"no server recorded in {state}: nothing to stop")
    pid = json.loads(state.read_text())["pid"]
    state.unlink()
    click.echo(f"stopped the server (pid {pid})" if s3server.stop(pid) else f"the server (pid {pid}) was not running")


def _profiles() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "profiles").glob("*.yaml"))  # registry.params.PROFILES, without importing it


@main.command()
@click.option("--profile", "-p", "profiles", multiple=True, type=click.Choice(_profiles()), help="Profile to apply (repeatable; later ones win).")
@click.option("--set-param", "-S", "overrides", multiple=True, metavar="KEY=VALUE", help="A params value after the profiles (as dvc exp run -S).")
@click.option("--name", "-n", help="Experiment name.")
@click.option("--temp", is_flag=True, help="Run in a temporary directory: the workspace is untouched; results in the experiment.")
@click.option("--queue", is_flag=True, help="Queue the experiment (start with `dvc queue start`).")
@click.option("--dry-run", is_flag=True, help="Print the dvc exp run command after checking the params it composes; run nothing.")
def run(profiles: tuple[str, ...], overrides: tuple[str, ...], name: str | None, temp: bool, queue: bool, dry_run: bool) -> None:
    """Run the pipeline as a DVC experiment with profiles (registry/profiles/NAME.yaml) chosen at launch.

    The profiles become `dvc exp run -S key=value` overrides: params.yaml stays as committed, and the experiment's
    own params.yaml records every value and `profile` (e.g. paper+rehearsal); `dvc exp show` and `medreg experiments`
    list it. The composed params are validated first, so a bad value is refused before anything runs. Profiles: mirror
    (the real data offline, on CPU), paper (the study's recipe on Llama-3.1-8B-Instruct, 8 GPUs), rehearsal (the
    paper profile at toy scale on CPU, after paper).

    \b
    Example:
      medreg run -p mirror
      medreg run -p paper -S evaluate.questions.limit=100 -n paper-100
      medreg run -p paper -p rehearsal -S hub.twin=$PWD/.hub-twin --temp
    """
    from registry.params import profile_overrides

    root = project_root()
    try:
        sets = [*profile_overrides(list(profiles), root / "params.yaml"), *overrides] if profiles else list(overrides)
    except ValueError as e:
        raise MedregError(str(e)) from None
    _composed(root, sets)
    cmd = ["dvc", "exp", "run", *(["-n", name] if name else []), *(["--temp"] if temp else []), *(["--queue"] if queue else [])]
    cmd += [a for s in sets for a in ("-S", s)]
    click.echo(shlex.join(cmd))
    if not dry_run:  # a failure: one `error:` line with the next step, not DVC's log (the stages' own output is shown)
        from registry.dvcerrors import run_dvc

        run_dvc(cmd[1:], root, what="dvc exp run", live=True)


@main.command()
@click.option(
    "-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default="report.html", show_default=True, help="HTML file to write."
)
def report(out_path: Path) -> None:
    """Write one self-contained HTML report: the DVC plots, the result tables with CIs, the classifier and lineage.

    The page needs no network (the chart library is inlined): open it in any browser or mail it. It reads the
    pipeline's outputs (tables, metrics, plot data, dvc.lock); a missing one exits 2: run `dvc repro` or `dvc pull`.

    \b
    Example:
      medreg report
      medreg report -o /tmp/medreg-report.html && xdg-open /tmp/medreg-report.html
    """
    from registry import report as html_report

    click.echo(html_report.write(project_root(), out_path))


def _register_experiments(con, sql: str) -> None:
    """When `sql` reads `experiments`, make DVC's experiments that table: an in-memory frame, the database untouched."""
    from registry import experiments

    if experiments.referenced(con, sql):
        con.register(experiments.TABLE, experiments.frame(project_root()))


@main.command("experiments")
@click.option("--rev", "revs", multiple=True, help="Baseline commit (repeatable; default: HEAD, every branch and tag).")
@click.option("--all-commits", "-A", is_flag=True, help="Every commit is a baseline.")
@click.option(
    "--columns",
    type=click.Choice(["changed", "all"]),
    help="changed (the default on screen): the fixed columns and the params and metrics whose values differ between rows; "
    "all (the default with -o): every column.",
)
@data_output
def experiments_(revs: tuple[str, ...], all_commits: bool, columns: str | None, fmt: str | None, out_path: Path | None) -> None:
    """List DVC's experiments and their baseline commits: a row each, a column per param and metric.

    Queued, running and failed experiments are listed with their status. The same table is `experiments` in
    `medreg query`. Columns: experiment (name; a baseline's branch, tag or short sha; workspace), kind
    (workspace | baseline | experiment), rev, baseline_rev, timestamp, status (success | queued | running | failed),
    error, then `params.<key>` (params.yaml, nested keys joined by dots), `params.<file>:<key>` (other params files)
    and `metrics.<file>:<key>`; lists and mappings are JSON text, a missing value NULL.

    \b
    Example:
      dvc exp run --queue -S evaluate.bootstrap.seed=1 && dvc exp run --queue -S evaluate.bootstrap.seed=2
      dvc queue start -j 2 && dvc queue status
      medreg experiments
      medreg experiments --all-commits -o experiments.parquet
      medreg query 'select experiment, "metrics.data/metrics/eval.json:smollm2-135m-sft.accuracy" from experiments'
    """
    from registry import experiments

    output_format(fmt, out_path)
    df = experiments.frame(project_root(), list(revs) or None, all_commits)
    if (columns or ("all" if out_path else "changed")) == "changed":
        varying = [c for c in df.columns[len(experiments.FIXED) :] if df[c].astype("string").nunique() > 1]
        df = df[[*experiments.FIXED, *varying]]
    emit(df, fmt, out_path)


def _composed(root: Path, sets: list[str]) -> None:
    """Apply `-S` overrides to copies of the params files they name, and validate the result; nothing is written.

    A bad key or value is refused in one line before anything runs (the params models, and the catalog for an
    override of registry/models.yaml).
    """
    import shutil
    import tempfile

    from dvc.utils.hydra import apply_overrides

    from registry import catalog
    from registry.params import load_params

    by_file: dict[str, list[str]] = {"params.yaml": []}
    for s in sets:
        target, _, override = s.partition(":") if ":" in s.partition("=")[0] else ("params.yaml", "", s)
        by_file.setdefault(target, []).append(override)
    with tempfile.TemporaryDirectory() as tmp:
        composed = {}
        for target, overrides in by_file.items():
            composed[target] = Path(tmp) / target
            composed[target].parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / target, composed[target])
            try:
                apply_overrides(composed[target], overrides)
            except Exception as e:  # noqa: BLE001 (Hydra's parse errors: name the override)
                why = str(e.__cause__ or e).strip().splitlines()[0]
                raise MedregError(f"-S: {why} ({target} has no such key, or the value does not parse)") from None
        models_yaml = composed.get("registry/models.yaml")
        if models_yaml:
            catalog.models.__wrapped__(models_yaml)  # the catalog's own validation of the entries, uncached
        try:
            load_params(composed["params.yaml"], models_yaml)  # a value the params models refuse: one line naming the key
        except MedregError as e:
            raise MedregError(str(e).replace(str(composed["params.yaml"]), "params.yaml (with the -S values)")) from None


@main.command("eval")
@click.option("--model", "spec", required=True, metavar="SPEC", help="hf:ID@REVISION, a checkpoint folder, or openai:BASE_URL.")
@click.option("--name", help="Its name in the results (default: from the spec; '-eval' added if the catalog has that name).")
@click.option("--benchmarks", help="Comma-separated benchmarks (default: params evaluate.questions.benchmarks, i.e. every ingested one).")
@click.option("--limit", type=click.IntRange(min=1), help="Questions per benchmark (default: params evaluate.questions.limit).")
@click.option("--adversarial", is_flag=True, help="Also answer after misleading reasoning traces: the robustness table.")
@click.option("--prompt", "prompt_style", type=click.Choice(["direct", "cot", "strict"]), default="direct", show_default=True,
              help="direct: the answer letter; cot: reason, then answer; strict: HuatuoGPT-o1's 'The answer is X.' prompt.")  # fmt: skip
@click.option("--system", help="System prompt (default: none).")
@click.option("--think", type=click.Choice(["keep", "strip"]), default="keep", show_default=True, help="strip: read the answer after </think>.")
@click.option("--backend", type=click.Choice(["transformers", "vllm"]), help="For Hub or folder weights (default: transformers).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--served-model", help="openai: the served model's name (default: the one the server lists).")
@click.option("--api-key-env", help="openai: the environment variable that holds the API key.")
@click.option("--allow-unpinned", is_flag=True, help="Accept hf:ID without @REVISION (whatever main is today: not reproducible).")
@click.option("--dry-run", is_flag=True, help="Print the dvc exp run command after checking it; run nothing.")
@data_output
def eval_(
    spec: str,
    name: str | None,
    benchmarks: str | None,
    limit: int | None,
    adversarial: bool,
    prompt_style: str,
    system: str | None,
    think: str,
    backend: str | None,
    max_new_tokens: int,
    served_model: str | None,
    api_key_env: str | None,
    allow_unpinned: bool,
    dry_run: bool,
    fmt: str | None,
    out_path: Path | None,
) -> None:
    """Evaluate any model on the registry's benchmarks without editing YAML: a DVC experiment, results in SQL.

    The model (Hub weights at a revision, a checkpoint folder, or an OpenAI-compatible server) is registered in the
    experiment's copy of registry/models.yaml and evaluated by the pipeline's own stages: same prompts, backends,
    completion cache, grading, statistics and tables as a catalog model. The experiment `eval-NAME` (`dvc exp show`)
    versions what was evaluated with its results; the accuracy table is printed at the end, and every table of that
    run is `medreg query --rev eval-NAME`. Stages already built are reused: run `dvc repro` once first. Running it
    again with the same name replaces that experiment.

    \b
    Example:
      medreg eval --model models/llm/smollm2-135m-instruct --benchmarks medqa,pubmedqa --limit 8 --max-new-tokens 32
      medreg eval --model hf:meta-llama/Llama-3.1-8B-Instruct@0e9e39f --backend vllm --limit 50 --adversarial
      medreg eval --model openai:http://127.0.0.1:8000/v1 --prompt strict --limit 100
      medreg query --rev eval-smollm2-135m-instruct-eval "select benchmark, qid, extracted, correct from predictions"
    """
    import subprocess

    from registry import adhoc, catalog

    root = project_root()
    suggested, entry = adhoc.entry(
        spec, prompt=prompt_style, backend=backend, max_new_tokens=max_new_tokens, system=system, think=think,
        served_model=served_model, api_key_env=api_key_env, root=root,
    )  # fmt: skip
    known = catalog.models(root / "registry/models.yaml")
    if name is None:
        name = suggested if suggested not in known else f"{suggested}-eval"
    elif name in known:
        raise MedregError(f"--name {name}: the catalog has a model of that name; choose another")
    chosen = [b.strip() for b in benchmarks.split(",") if b.strip()] if benchmarks else None
    unknown = sorted(set(chosen or []) - set(catalog.benchmarks()))
    if unknown:
        raise MedregError(f"--benchmarks: no benchmark named {', '.join(unknown)} (known: {', '.join(catalog.benchmarks())})")
    sets = adhoc.overrides(name, entry, chosen, limit, adversarial, allow_unpinned)
    _composed(root, sets)
    experiment = f"eval-{name}"
    cmd = ["dvc", "exp", "run", "--temp", "-n", experiment, *(a for s in sets for a in ("-S", s))]
    click.echo(shlex.join(cmd))
    if dry_run:
        return
    subprocess.run(["dvc", "exp", "remove", experiment], cwd=root, capture_output=True)  # a previous run of this name
    from registry.dvcerrors import run_dvc

    run_dvc(cmd[1:], root, what=f"dvc exp run (experiment {experiment})", live=True)
    from registry import db

    con = db.connect(_database_at(experiment))
    sql = (
        "select benchmark, category, n, n_correct, round(accuracy, 4) accuracy, round(ci_low, 4) ci_low, round(ci_high, 4) ci_high "
        f"from summary where model = '{name}' and scorer = 'medreg' order by benchmark = 'all', benchmark, category = 'all', category"
    )
    emit(db.query(con, sql)[0], fmt, out_path)
    click.echo(f"every table of this run: medreg query --rev {experiment} \"select * from summary where model = '{name}'\"", err=True)


@main.command()
@data_output
def timings(fmt: str | None, out_path: Path | None) -> None:
    """Show how long each stage's last run took here: seconds, throughput, cache hits, resumption.

    Timings differ on every run, so they stay out of git, dvc.lock, the metrics and the results database (a rebuild
    reproduces those byte for byte): each stage writes data/timings/STAGE.json when it runs, on this machine only.

    \b
    Example:
      medreg timings
      medreg timings --format json -o timings.json
    """
    import datetime

    from registry import catalog

    folder = catalog.dataset_path("timings", project_root(), stage="-").parent
    files = sorted(folder.glob("*.json"))
    if not files:
        raise MedregError(f"{folder}: no timings yet: stages write them when they run (`dvc repro`)")
    rows = []
    for path in files:
        values = json.loads(path.read_text(encoding="utf-8"))
        finished = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        seconds = values.pop("seconds", None)
        rows.append((path.stem, finished, seconds, json.dumps(values, sort_keys=True)))
    emit((["stage", "finished_utc", "seconds", "details"], rows), fmt, out_path)


@main.command("docs")
@click.option("--check", is_flag=True, help="Only report the numbers that differ (exit 2 if any); write nothing.")
def docs_(check: bool) -> None:
    """Regenerate every number in README.md and docs/*.md from the outputs it names (data/metrics, the schemas).

    A number in the documentation is written with its source, `<!--=FILE:KEY:FORMAT-->VALUE<!--/-->` (FILE in
    data/metrics/), or is a block a generator writes whole (`<!--=block:NAME-->`): the expected output of the
    quickstart, the results schema, the bench tables. After `dvc repro` changes a result, `medreg docs` updates the
    pages; `--check` (run by the tests) lists each page and line whose number no longer matches.

    \b
    Example:
      medreg docs --check
      medreg docs && git diff README.md docs/
    """
    from registry import docs

    root = project_root()
    found = docs.update(root, check=check)
    for m in found:
        click.echo(f"{m.file.relative_to(root)}:{m.line}: {m.source}: {m.found.strip()!r} -> {m.expected.strip()!r}"[:300], err=check)
    if check and found:
        raise MedregError(f"{len(found)} number(s) in the documentation differ from the outputs: run `medreg docs`")
    click.echo(f"{len(found)} number(s) {'differ' if check else 'updated'}" if found else "the documentation matches the outputs")
