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
@click.option("--rev", help="The database of this commit, tag or DVC experiment (e.g. one run with --temp), from the DVC cache or remote.")
def query(sql: str, fmt: str, db_path: Path | None, rev: str | None) -> None:
    """Run read-only SQL (SELECT/EXPLAIN) on the results database and print the result; SQL '-' reads standard input.

    The database is opened read-only with no file access: a write, a file read or a bad query exits with status 2
    and DuckDB's message. SQL may start with a `--` comment. Works from any directory with --db. SQL that reads the
    table `experiments` also sees the project's DVC experiments (`medreg experiments --help` has its columns).

    \b
    Example:
      medreg query "select benchmark, count(*) n from questions group by all order by n desc"
      medreg query --format csv "select qid, answer from questions where benchmark = 'medqa'" > medqa.csv
      medreg query --db /elsewhere/results.duckdb - < report.sql
      medreg query 'select experiment, status, "params.evaluate.bootstrap.seed" from experiments order by timestamp'
      medreg query --rev rehearsal "select distinct source_file from questions"
    """
    from registry import db

    if rev:
        db_path = _database_at(rev)
    con = _open(db_path)
    sql = sys.stdin.read() if sql == "-" else sql
    _register_experiments(con, sql)
    for columns, rows in db.query(con, sql):
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
@click.option("--quantize/--no-quantize", default=True, show_default=True, help="Dynamic int8 inference of fine-tuned encoders on CPU.")
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
    model = classifier.LabelingModel.load(model_dir or catalog.dataset_path("classifier", project_root()), quantize=quantize)
    out = classifier.categorise(df, model, batch_size)
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


@main.command()
@click.argument("name")
@click.option("--version", help="Exact version, vMAJOR.MINOR.PATCH (default: bump the last one).")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), default="minor", show_default=True)
@click.option("--stage", help="Also assign this stage (e.g. dev, prod) to the new version.")
@click.option("-r", "--remote", help="Remote that must hold the outputs (default: the project's default remote).")
@click.option("--push", is_flag=True, help="Push the new git tags to origin.")
@click.option("-m", "--message", help="Tag message.")
def release(name: str, version: str | None, bump: str, stage: str | None, remote: str | None, push: bool, message: str | None) -> None:
    """Version an artifact of dvc.yaml with a GTO git tag NAME@vX.Y.Z (and a stage), at HEAD.

    Refused, tagging nothing, while the artifact or anything it depends on is stale, dvc.yaml / dvc.lock / params.yaml
    have uncommitted changes, or its outputs are not in the remote (`dvc push` first): a tag must always pull.

    \b
    Example:
      dvc repro && git commit -am "new split" && dvc push
      medreg release reasoning-knowledge-split --bump minor --stage prod
      dvc import <this repo> data/splits/labels.parquet --rev reasoning-knowledge-split@v1.1.0   # elsewhere
    """
    from registry import publish

    for tag in publish.release(project_root(), name, version, bump, stage, remote, push, message):
        click.echo(f"tagged {tag}")


@main.command()
def artifacts() -> None:
    """List the artifacts dvc.yaml declares, with their latest versions and stages (GTO).

    \b
    Example:
      medreg artifacts
    """
    import gto.api

    from registry import publish

    root = project_root()
    declared = publish.artifacts(root)
    shown = gto.api.show(str(root)) if declared else {}  # {name: {version, stage: {stage: version}, ...}}
    click.echo(f"{'artifact':<28} {'type':<8} {'latest':<10} {'stages':<20} path")
    for name, entry in declared.items():
        row = shown.get(name) or {}
        stages = ", ".join(f"{k}={v}" for k, v in (row.get("stage") or {}).items() if v) or "-"
        click.echo(f"{name:<28} {entry.get('type', ''):<8} {row.get('version') or '-':<10} {stages:<20} {entry['path']}")


@main.command()
@click.argument("targets", nargs=-1)
@click.option("-r", "--remote", help="Remote to pull from (default: the project's default remote).")
@click.option("-j", "--jobs", type=int, help="Parallel downloads.")
def pull(targets: tuple[str, ...], remote: str | None, jobs: int | None) -> None:
    """`dvc pull`, naming any object of the remote whose bytes do not match their hash (never checked out).

    \b
    Example:
      medreg pull                       # everything dvc.lock records
      medreg pull -r s3 data/splits/labels.parquet
    """
    from registry import publish

    publish.pull(project_root(), list(targets), remote, jobs)


@main.command("export-hf")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rev", help="Version of the split to export (a tag, branch or commit; default: the workspace's file).")
@click.option("--repo", help="Registry to read from with --rev (default: this project).")
def export_hf(out: Path, rev: str | None, repo: str | None) -> None:
    """Write the reasoning/knowledge split as a Hugging Face dataset folder, loadable with `datasets.load_dataset`.

    Parquet per benchmark and category, a dataset card with YAML configs (one per benchmark, default `all`; splits
    reasoning and knowledge) and the version: `datasets.load_dataset(OUT, "medqa")["reasoning"]`.

    \b
    Example:
      medreg export-hf hf/medreg-split
      medreg export-hf hf/v1 --rev reasoning-knowledge-split@v1.0.0
    """
    import pyarrow.parquet as pq

    from registry import api, catalog, publish

    root = project_root()
    if rev or repo:
        table = api.read_split(repo or str(root), rev)
        version = rev or "HEAD"
    else:
        path = catalog.dataset_path("splits", root)
        if not path.exists():
            raise MedregError(f"{path} is missing: run `dvc repro label` or `medreg pull {api.split_path()}`")
        table, version = pq.read_table(path), publish.version_of(root)
    counts = publish.export_hf(table, out, version, repo or root.name)
    for benchmark, c in counts.items():
        click.echo(f"  {benchmark:<26} {c['reasoning']:>6} reasoning {c['knowledge']:>6} knowledge")
    click.echo(f"wrote {out} (version {version})")


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
    import shutil
    import subprocess
    import tempfile

    from dvc.utils.hydra import apply_overrides

    from registry.params import load_params, profile_overrides

    root = project_root()
    try:
        sets = [*profile_overrides(list(profiles), root / "params.yaml"), *overrides] if profiles else list(overrides)
    except ValueError as e:
        raise MedregError(str(e)) from None
    with tempfile.TemporaryDirectory() as tmp:
        composed = Path(tmp) / "params.yaml"
        shutil.copy(root / "params.yaml", composed)
        try:
            apply_overrides(composed, sets)
        except Exception as e:  # noqa: BLE001 (Hydra's parse errors: name the override)
            why = str(e.__cause__ or e).strip().splitlines()[0]
            raise MedregError(f"-S: {why} (params.yaml has no such key, or the value does not parse)") from None
        load_params(composed)  # a value the params models refuse: one line naming the key, nothing run
    cmd = ["dvc", "exp", "run", *(["-n", name] if name else []), *(["--temp"] if temp else []), *(["--queue"] if queue else [])]
    cmd += [a for s in sets for a in ("-S", s)]
    click.echo(shlex.join(cmd))
    if not dry_run:
        sys.exit(subprocess.run(cmd, cwd=root).returncode)


@main.command()
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default="report.html", show_default=True, help="HTML file to write."
)
def report(out_path: Path) -> None:
    """Write one self-contained HTML report: the DVC plots, the result tables with CIs, the classifier and lineage.

    The page needs no network (the chart library is inlined): open it in any browser or mail it. It reads the
    pipeline's outputs (tables, metrics, plot data, dvc.lock); a missing one exits 2: run `dvc repro` or `dvc pull`.

    \b
    Example:
      medreg report
      medreg report --out /tmp/medreg-report.html && xdg-open /tmp/medreg-report.html
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
    default="changed",
    show_default=True,
    help="changed: the fixed columns and the params and metrics whose values differ between rows.",
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every column to .parquet, .csv or .jsonl.")
@FORMAT
def experiments_(revs: tuple[str, ...], all_commits: bool, columns: str, out_path: Path | None, fmt: str) -> None:
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
      medreg experiments --all-commits --out experiments.parquet
      medreg query 'select experiment, "metrics.data/metrics/eval.json:smollm2-135m-sft.all" from experiments'
    """
    from registry import experiments
    from registry.io import atomic_path

    suffix = out_path.suffix.lower() if out_path else None
    if suffix not in (None, ".parquet", ".csv", ".jsonl"):
        raise MedregError(f"{out_path}: output must end in .parquet, .csv or .jsonl")
    df = experiments.frame(project_root(), list(revs) or None, all_commits)
    if out_path:
        with atomic_path(out_path) as tmp:
            if suffix == ".parquet":
                df.to_parquet(tmp, index=False)
            elif suffix == ".csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_json(tmp, orient="records", lines=True, date_format="iso", force_ascii=False)
        click.echo(f"wrote {len(df)} rows, {len(df.columns)} columns to {out_path}")
        return
    if columns == "changed":
        varying = [c for c in df.columns[len(experiments.FIXED) :] if df[c].astype("string").nunique() > 1]
        df = df[[*experiments.FIXED, *varying]]
    table = json.loads(df.to_json(orient="split", index=False, date_format="iso", date_unit="s"))
    print_rows(table["columns"], [tuple(r) for r in table["data"]], fmt)
