"""The `medreg` command line: query results with SQL, list tables, browse the catalogs, classify, show prompts.

Start-up stays light: heavy modules (pandas, pydantic, torch) are imported inside the commands that need them.
Exit status: 0 done; 2 refused (bad SQL, input, catalog or params: the message says what and where); 1 a bug.
"""

from __future__ import annotations

import csv
import io as stdio
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from registry.errors import EXIT_REFUSED, MedregError


class Group(click.Group):
    """Click group that turns a MedregError into `error: ...` on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MedregError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_REFUSED)


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


def print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    """Print a result as an aligned table (wide cells cut), CSV or JSON records."""
    if fmt == "json":
        click.echo(json.dumps([{c: _cell(v) for c, v in zip(columns, row, strict=True)} for row in rows], ensure_ascii=False))
    elif fmt == "csv":
        buf = stdio.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _text(v, digits=None) for v in row] for row in rows])
        click.echo(buf.getvalue(), nl=False)
    elif not rows:
        click.echo(f"(no rows; columns: {', '.join(columns)})")
    else:
        cells = [[t if len(t) <= 60 else t[:57] + "..." for t in map(_text, row)] for row in rows]
        cells = [[c.replace("\n", " ") for c in row] for row in cells]
        widths = [max(len(columns[i]), *(len(r[i]) for r in cells)) for i in range(len(columns))]
        numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(columns))]

        def line(values: list[str]) -> str:
            return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

        click.echo("\n".join([line(columns), *map(line, cells)]))


def _open(db_path: Path | None):
    from registry import db

    return db.connect(db_path or default_db())


@click.group(cls=Group)
@click.version_option(package_name="medreg")
def main() -> None:
    """medreg: versioned biomedical QA benchmarks, reasoning/knowledge splits, models and results.

    \b
    Example:
      medreg tables
      medreg query "select benchmark, count(*) from questions group by all"
    """


FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
DB = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), help="Database file (default: the project's data/results.duckdb)."
)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("sql")
@FORMAT
@DB
def query(sql: str, fmt: str, db_path: Path | None) -> None:
    """Run read-only SQL (SELECT/EXPLAIN) on the results database and print the result; SQL '-' reads standard input.

    The database is opened read-only with no file access: a write, a file read or a bad query exits with status 2
    and DuckDB's message. SQL may start with a `--` comment. Works from any directory with --db.

    \b
    Example:
      medreg query "select benchmark, count(*) n from questions group by all order by n desc"
      medreg query --format csv "select qid, answer from questions where benchmark = 'medqa'" > medqa.csv
      medreg query --db /elsewhere/results.duckdb - < report.sql
    """
    from registry import db

    con = _open(db_path)
    for columns, rows in db.query(con, sys.stdin.read() if sql == "-" else sql):
        print_rows(columns, rows, fmt)


@main.command()
@FORMAT
@DB
def tables(fmt: str, db_path: Path | None) -> None:
    """List the tables and views of the results database with their row counts.

    \b
    Example:
      medreg tables
      medreg tables --db data/results.duckdb --format json
    """
    from registry import db

    print_rows(*db.tables(_open(db_path)), fmt)


@main.command()
@click.option("--dir", "mirror_dir", type=click.Path(file_okay=False, path_type=Path), help="Also show which files a mirror directory has.")
def benchmarks(mirror_dir: Path | None) -> None:
    """List the benchmark catalog (registry/benchmarks.yaml); a malformed entry exits 2 with its file, line and key.

    \b
    Example:
      medreg benchmarks --dir ../shared/benchmarks
    """
    from registry import catalog

    rows = []
    for name, e in catalog.benchmarks().items():
        study = e.hub["study"]
        row = [name, e.answer_format, f"{study.path}/{study.config or ''}", e.mirror.file]
        if mirror_dir:
            row.append("yes" if (mirror_dir / e.mirror.file).is_file() else "no")
        rows.append(tuple(row))
    print_rows(["name", "format", "hub", "mirror file", *(["in dir"] if mirror_dir else [])], rows, "table")


@main.command()
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Check this catalog file instead.")
def models(path: Path | None) -> None:
    """List the model catalog (registry/models.yaml), validated first; a bad entry exits 2 naming file, line and key.

    \b
    Example:
      medreg models
      medreg models --file my_models.yaml
    """
    from registry import catalog

    rows = []
    for name, e in (catalog.models(path) if path else catalog.models()).items():
        s = e.source
        where = f"{s.hub.id}@{s.hub.revision or 'UNPINNED'}" if s.hub else f"{s.endpoint.base_url} {s.endpoint.model}" if s.endpoint else s.local.path
        rows.append((name, e.family, e.size, e.backend, f"{s.kind}: {where}", e.generation.max_new_tokens))
    print_rows(["name", "family", "size", "backend", "source", "max_new_tokens"], rows, "table")


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


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), help="Classifier dir (default: the pipeline's).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quantize/--no-quantize", default=True, show_default=True, help="Dynamic int8 inference on CPU.")
def classify(input_path: Path, output_path: Path, model_dir: Path | None, batch_size: int, quantize: bool) -> None:
    """Put the questions of INPUT in a category, reasoning-heavy or knowledge-heavy, and write OUTPUT.

    INPUT is JSON lines, a JSON list (or object) of records, CSV or parquet with a `question` field and optional
    `options` (a letter->text mapping or its JSON). OUTPUT (.parquet or .jsonl) keeps every input column and adds
    p_reasoning, category and threshold.

    \b
    Example:
      medreg classify my_questions.jsonl labeled.parquet
      medreg classify exam.csv exam_labeled.jsonl --model models/classifier
    """
    from registry import catalog, classifier
    from registry.io import atomic_path

    if output_path.suffix.lower() not in (".parquet", ".jsonl"):
        raise MedregError(f"{output_path}: output must end in .parquet or .jsonl")
    df = read_table(input_path)
    if "question" not in df.columns:
        raise MedregError(f"{input_path}: no 'question' column (columns: {', '.join(map(str, df.columns))})")
    bad = [i for i, q in enumerate(df["question"], start=1) if not isinstance(q, str) or not q.strip()]
    if bad:
        rows = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise MedregError(f"{input_path}: row(s) {rows}: field 'question' is empty or not text")
    tokenizer, model, meta = classifier.load(model_dir or catalog.dataset_path("classifier", project_root()), quantize=quantize)
    out = classifier.categorise(df, tokenizer, model, meta, batch_size)
    with atomic_path(output_path) as tmp:
        if output_path.suffix.lower() == ".parquet":
            out.to_parquet(tmp, index=False)
        else:
            out.to_json(tmp, orient="records", lines=True, force_ascii=False)
    click.echo(f"wrote {len(out)} rows to {output_path}: {(out['category'] == 'reasoning').mean():.1%} reasoning")


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


PROFILES = Path(__file__).parent / "profiles"


def _merge(base: Any, overlay: Any, prefix: str, changed: list[str]) -> None:
    """Deep-merge `overlay` into the round-trip mapping `base` (comments kept), recording each changed key."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{prefix}{key}.", changed)
        elif base.get(key) != value:
            base[key] = value
            changed.append(f"{prefix}{key}")


@main.command()
@click.argument("name", type=click.Choice(sorted(p.stem for p in PROFILES.glob("*.yaml"))))
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), help="params file (default: the project's).")
def profile(name: str, params_path: Path | None) -> None:
    """Apply a params profile (registry/profiles/NAME.yaml) to params.yaml: its values replace the current ones.

    The result is validated before params.yaml is rewritten (comments kept); `git diff params.yaml` shows the
    change, and `dvc repro` (or `dvc exp run`) runs it. Profiles: mirror (the real data offline, on CPU) and paper
    (the study's recipe on Llama-3.1-8B-Instruct, 8 GPUs).

    \b
    Example:
      medreg profile mirror && dvc repro
      medreg profile paper --params params.yaml
    """
    from ruamel.yaml import YAML

    from registry import catalog
    from registry.io import atomic_path
    from registry.params import load_params

    path = params_path or project_root() / "params.yaml"
    yaml = YAML(typ="rt")
    yaml.width = 4096  # keep long lines as they are
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    data = catalog.load_yaml(path)
    changed: list[str] = []
    _merge(data, catalog.load_yaml(PROFILES / f"{name}.yaml"), "", changed)
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            yaml.dump(data, f)
        load_params(tmp)  # refuse, leaving params.yaml as it was, if the result is not valid
    click.echo(f"{path}: applied profile {name}: {len(changed)} value(s) changed ({', '.join(changed)})")
