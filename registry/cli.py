"""The `medreg` command line: query results with SQL, list tables, browse the benchmark catalog."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pandas as pd

from registry import catalog, db


def project_root() -> Path:
    """The nearest directory upward from the cwd that holds dvc.yaml (else the cwd)."""
    cwd = Path.cwd()
    return next((d for d in (cwd, *cwd.parents) if (d / "dvc.yaml").exists()), cwd)


def _open(db_path: str | None):
    """Connect read-only and move to the project root, against which the views' parquet paths resolve."""
    root = project_root()
    path = Path(db_path).resolve() if db_path else catalog.dataset_path("results_db", root)
    os.chdir(root)
    try:
        return db.connect(path)
    except db.QueryError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


def _print(df: pd.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", force_ascii=False, default_handler=str))
    elif not len(df):
        click.echo(f"(no rows; columns: {', '.join(df.columns)})")
    else:  # cut every cell (MAP and long text included) so a wide table stays readable
        cells = df.map(lambda v: str(v) if len(str(v)) <= 60 else str(v)[:57] + "...")
        click.echo(cells.to_string(index=False))


@click.group()
@click.version_option(package_name="medreg")
def main() -> None:
    """medreg: versioned biomedical QA benchmarks, splits, models and results.

    \b
    Example:
      medreg tables
      medreg query "select benchmark, count(*) from questions group by all"
    """


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Database file (default: the catalog's results_db).")
def query(sql: str, fmt: str, db_path: str | None) -> None:
    """Run read-only SQL (SELECT/EXPLAIN) on the results database and print the result.

    A write statement or a bad query exits with status 2 and DuckDB's message.

    \b
    Example:
      medreg query "select benchmark, count(*) n from questions group by all order by n desc"
      medreg query --format csv "select qid, answer from questions where benchmark = 'medqa'" > medqa.csv
    """
    con = _open(db_path)
    try:
        frames = db.query(con, sql)
    except db.QueryError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    for df in frames:
        _print(df, fmt)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Database file (default: the catalog's results_db).")
def tables(fmt: str, db_path: str | None) -> None:
    """List the tables and views of the results database with their row counts.

    \b
    Example:
      medreg tables
    """
    _print(db.tables(_open(db_path)), fmt)


@main.command()
@click.option("--dir", "mirror_dir", type=click.Path(file_okay=False), help="Also show which files a mirror directory has.")
def benchmarks(mirror_dir: str | None) -> None:
    """List the benchmark catalog (registry/benchmarks.yaml); it is linted first.

    \b
    Example:
      medreg benchmarks --dir ../shared/benchmarks
    """
    try:
        entries = catalog.benchmarks()
    except catalog.CatalogError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    rows = []
    for name, e in entries.items():
        study = e["hub"]["study"]
        row = {
            "name": name,
            "format": e["answer_format"],
            "hub": f"{study['path']}/{study.get('config', '')}",
            "mirror file": e["mirror"]["file"],
        }
        if mirror_dir:
            row["in dir"] = "yes" if (Path(mirror_dir) / e["mirror"]["file"]).is_file() else "no"
        rows.append(row)
    _print(pd.DataFrame(rows), "table")


def _read_any(path: Path) -> pd.DataFrame:
    """A table from .jsonl/.json (JSON lines), .csv or .parquet."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except ValueError as e:
        raise click.ClickException(f"{path}: cannot read: {e}") from e
    raise click.ClickException(f"{path}: unsupported input type '{suffix}' (use .jsonl, .csv or .parquet)")


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), help="Classifier dir (default: the pipeline's).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quantize/--no-quantize", default=True, show_default=True, help="Dynamic int8 inference on CPU.")
def classify(input_path: Path, output_path: Path, model_dir: Path | None, batch_size: int, quantize: bool) -> None:
    """Label the questions of INPUT reasoning-heavy or knowledge-heavy and write OUTPUT.

    INPUT is JSONL, CSV or parquet with a `question` field and optional `options`
    (a letter->text mapping or its JSON). OUTPUT (.parquet or .jsonl) keeps every input
    column and adds p_reasoning, label and threshold.

    \b
    Example:
      medreg classify my_questions.jsonl labeled.parquet
      medreg classify exam.csv exam_labeled.jsonl --model models/classifier
    """
    from registry import classifier

    if output_path.suffix.lower() not in (".parquet", ".jsonl"):
        raise click.ClickException(f"{output_path}: output must end in .parquet or .jsonl")
    df = _read_any(input_path)
    if "question" not in df.columns:
        raise click.ClickException(f"{input_path}: no 'question' column (columns: {', '.join(map(str, df.columns))})")
    bad = [i for i, q in enumerate(df["question"], start=1) if not isinstance(q, str) or not q.strip()]
    if bad:
        rows = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise click.ClickException(f"{input_path}: row(s) {rows}: field 'question' is empty or not text")
    model_dir = model_dir or catalog.dataset_path("classifier", project_root())
    try:
        tokenizer, model, meta = classifier.load(model_dir, quantize=quantize)
    except (FileNotFoundError, OSError) as e:
        raise click.ClickException(str(e)) from e
    out = classifier.label_frame(df, tokenizer, model, meta, batch_size)
    from registry.io import atomic_path

    with atomic_path(output_path) as tmp:
        if output_path.suffix.lower() == ".parquet":
            out.to_parquet(tmp, index=False)
        else:
            out.to_json(tmp, orient="records", lines=True, force_ascii=False)
    click.echo(f"wrote {len(out)} rows to {output_path}: {(out['label'] == 'reasoning').mean():.1%} reasoning")


@main.command()
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Lint this catalog file instead.")
def models(path: Path | None) -> None:
    """List the model catalog (registry/models.yaml), linted first; a bad entry exits 2 with its name.

    \b
    Example:
      medreg models
      medreg models --file my_models.yaml
    """
    try:
        entries = catalog.models(path) if path else catalog.models()
    except catalog.CatalogError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    rows = []
    for name, e in entries.items():
        kind, spec = next(iter(e["source"].items()))
        where = {"hub": lambda s: f"{s['id']}@{s['revision'] or 'UNPINNED'}", "endpoint": lambda s: f"{s['base_url']} {s['model']}"}
        rows.append(
            {
                "name": name,
                "family": e["family"],
                "size": e["size"],
                "backend": e["backend"],
                "source": f"{kind}: {where.get(kind, lambda s: s['path'])(spec)}",
                "max_new_tokens": e["generation"]["max_new_tokens"],
            }
        )
    click.echo(pd.DataFrame(rows).to_string(index=False))


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

    from registry.adversarial import RECONSIDER_CUE, adversarial_chat
    from registry.backends import BackendError, model_location, render_chat
    from registry.io import read_parquet
    from registry.prompts import build_chat

    root = project_root()
    os.chdir(root)
    params = catalog.load_params()
    try:
        model = catalog.model(model_name)
        location, revision = model_location(model, root, params["evaluate"]["runtime"]["allow_unpinned"])
    except (catalog.CatalogError, BackendError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    questions = read_parquet(catalog.dataset_path("questions"))
    row = questions[(questions["benchmark"] == benchmark) & (questions["qid"] == qid)]
    if row.empty:
        click.echo(f"error: no question {benchmark}/{qid} in {catalog.dataset_path('questions')}", err=True)
        sys.exit(2)
    row = row.iloc[0].to_dict()
    chat = build_chat(row, model["chat"])
    if trace_index is not None:
        traces = read_parquet(catalog.dataset_path("adversarial_traces"))
        hit = traces[(traces["benchmark"] == benchmark) & (traces["qid"] == qid) & (traces["trace_index"] == trace_index)]
        if hit.empty:
            click.echo(f"error: no trace {trace_index} for {benchmark}/{qid} in {catalog.dataset_path('adversarial_traces')}", err=True)
            sys.exit(2)
        adv = params["adversarial"]
        chat = adversarial_chat(row, hit.iloc[0]["trace"], model["chat"], protocol or adv["protocol"], adv["cue"] or RECONSIDER_CUE)
    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    text = render_chat(tokenizer, chat, model["chat"].get("template_kwargs"))
    click.echo(text, nl=False)
    if tokens:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        click.echo("\n\n" + " ".join(f"{i}:{tokenizer.decode([i])!r}" for i in ids))
