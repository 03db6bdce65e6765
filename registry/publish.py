"""Publishing the registry: artifact versions (GTO tags), release checks, pulls that name damaged objects, HF export.

Artifacts are declared in dvc.yaml (`artifacts:`); a version is a git tag `name@vX.Y.Z` made by GTO on a commit whose
dvc.lock records the artifact's outputs, so `dvc artifacts get`, `dvc import --rev name@vX.Y.Z` and `dvc.api` read
exactly those bytes from the remote. A release is refused while the artifact or anything it depends on is stale, the
pipeline files are uncommitted, hub data was read at a revision not resolved to a commit, the outputs are not in
the remote, or they hold rows of a benchmark whose terms forbid redistribution (registry/benchmarks.yaml
`redistribute: false`) and the release was not explicitly allowed; `export_hf` refuses such rows the same way.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from registry.errors import MedregError

PIPELINE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")


def artifacts(root: Path) -> dict[str, dict[str, Any]]:
    """The `artifacts:` section of dvc.yaml: name -> {path, type, desc, labels, meta}."""
    return (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("artifacts") or {}


def artifact(root: Path, name: str) -> dict[str, Any]:
    """One declared artifact; an unknown name is refused with the known ones."""
    known = artifacts(root)
    if name not in known:
        raise MedregError(f"dvc.yaml: no artifact '{name}' (artifacts: {', '.join(sorted(known))})")
    return known[name]


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if out.returncode:
        raise MedregError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


HUB_READS = ("data/metrics/ingest.json", "data/metrics/train_data.json")  # where ingest and select_training record hub reads


def unresolved_revisions(root: Path) -> list[str]:
    """Hub reads in the pipeline's outputs that are not pinned to a commit after the fact (every artifact descends from them)."""
    from registry.ingest import COMMIT

    found = []
    for rel in HUB_READS:
        path = root / rel
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        if metrics.get("source") != "hub":
            continue
        revisions = metrics.get("revisions")
        if not revisions:
            found.append(f"{rel}: read from the hub with no revisions recorded (re-run the stage)")
        found += [f"{rel}: {n} ({r.get('path')}@{r.get('revision')})" for n, r in (revisions or {}).items() if not COMMIT.match(str(r.get("commit")))]
    return found


CONTENT_COLUMNS = ("question", "context", "options", "raw")  # a table with `benchmark` and one of these holds benchmark text
RESTRICTED_OPTIONS = {
    "export": "pass --drop-restricted to export without them, or --include-restricted if you may publish them (e.g. a private copy)",
    "release": "pass --allow-restricted if the remote and its tags stay private",
}


def restricted(benchmarks: Iterable[str]) -> dict[str, str]:
    """Of these benchmarks, those whose rows may not be redistributed, with their terms (name -> terms).

    `redistribute: false` in registry/benchmarks.yaml, or not in it at all (terms unknown).
    """
    from registry import catalog

    entries, found = catalog.benchmarks(), {}
    for name in sorted(set(benchmarks)):
        entry = entries.get(name)
        if entry is None:
            found[name] = f"not in {catalog.display(catalog.BENCHMARKS_YAML)}: terms unknown"
        elif not entry.redistribute:
            found[name] = f"{entry.license}: {entry.license_note}" if entry.license_note else entry.license
    return found


def restricted_message(found: dict[str, str], what: str, action: Literal["export", "release"]) -> str:
    """One line: which benchmarks, their terms, and the flags that override."""
    from registry import catalog

    shown = "; ".join(f"{b} ({t})" for b, t in found.items())
    where = f"{catalog.display(catalog.BENCHMARKS_YAML)} redistribute: false"
    return f"{what} holds rows of benchmarks whose terms do not allow redistribution ({where}): {shown}; {RESTRICTED_OPTIONS[action]}"


def held_benchmarks(path: Path) -> set[str]:
    """Benchmarks whose rows (question text, options, raw upstream text) an output file or folder holds.

    Its parquet files and DuckDB tables with a `benchmark` column and one of CONTENT_COLUMNS (aggregates, predictions
    and model weights hold none).
    """
    import pyarrow.parquet as pq

    from registry import db

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    found: set[str] = set()
    for file in files:
        if file.suffix == ".parquet":
            names = pq.read_schema(file).names
            if "benchmark" in names and set(CONTENT_COLUMNS) & set(names):
                found.update(pq.read_table(file, columns=["benchmark"]).column(0).unique().to_pylist())
        elif file.suffix == ".duckdb":
            con = db.connect(file)
            try:
                columns = con.execute(
                    "SELECT table_name, list(column_name) FROM information_schema.columns c"
                    " JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)"
                    " WHERE t.table_type = 'BASE TABLE' GROUP BY table_name"
                ).fetchall()
                for table, cols in columns:
                    if "benchmark" in cols and set(CONTENT_COLUMNS) & set(cols):
                        found.update(r[0] for r in con.execute(f'SELECT DISTINCT benchmark FROM "{table}"').fetchall())
            finally:
                con.close()
    return {b for b in found if b is not None}


def release_blockers(root: Path, name: str, remote: str | None = None, allow_restricted: bool = False) -> list[str]:
    """Why artifact `name` cannot be released now (empty when it can).

    Uncommitted pipeline files, hub data not resolved to a commit, rows of benchmarks that may not be redistributed
    (unless `allow_restricted`), stale stages, or outputs missing from the remote (`remote`, else the default).
    """
    from dvc.repo import Repo

    path = artifact(root, name)["path"]
    blockers = []
    unresolved = unresolved_revisions(root)
    if unresolved:
        blockers.append(f"built from hub data at an unresolved revision: {'; '.join(unresolved)}")
    found = {} if allow_restricted else restricted(held_benchmarks(root / path))
    if found:
        blockers.append(restricted_message(found, path, "release"))
    dirty = [line[3:] for line in _git(root, "status", "--porcelain", "--", *PIPELINE_FILES).splitlines()]
    if dirty:
        blockers.append(f"uncommitted changes to {', '.join(dirty)}: commit them, so the tag records these outputs")
    with Repo(root) as repo:
        stale = repo.status(targets=[path], with_deps=True)
        if stale:
            blockers.append(f"stale: {', '.join(sorted(stale))} (run `dvc repro {path}` and commit dvc.lock)")
            return blockers
        try:
            missing = repo.status(targets=[path], cloud=True, remote=remote)
        except Exception as e:  # noqa: BLE001 (any failure to reach the remote refuses the release, with its reason)
            raise MedregError(f"cannot check remote '{remote or repo.config['core'].get('remote')}': {str(e).splitlines()[0]}") from None
        if missing:
            shown = ", ".join(f"{p} ({s})" for p, s in sorted(missing.items()))
            blockers.append(f"not in the remote: {shown} (run `dvc push{' -r ' + remote if remote else ''} {path}`)")
    return blockers


def release(
    root: Path,
    name: str,
    version: str | None,
    bump: str,
    stage: str | None,
    remote: str | None,
    push: bool,
    message: str | None,
    allow_restricted: bool = False,
) -> list[str]:
    """Tag artifact `name` at HEAD with GTO (a version, and a stage when given) after the checks; returns the tags made."""
    import gto.api
    from gto.exceptions import GTOException

    blockers = release_blockers(root, name, remote, allow_restricted)
    if blockers:
        raise MedregError(f"refusing to release '{name}': " + "; ".join(blockers))
    if version and not re.fullmatch(r"v\d+\.\d+\.\d+", version):
        raise MedregError(f"--version {version}: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")
    before = set(_git(root, "tag", "--list").split())
    kwargs = {f"bump_{bump}": True} if not version else {}
    try:
        gto.api.register(str(root), name, ref="HEAD", version=version, message=message, push=push, **kwargs)
        if stage:
            gto.api.assign(str(root), name, stage, ref="HEAD", message=message, push=push, skip_registration=True)
    except GTOException as e:  # e.g. this commit already has a version, or the version exists
        raise MedregError(f"gto: {e}") from None
    return sorted(set(_git(root, "tag", "--list").split()) - before)


CORRUPTED = re.compile(r"corrupted cache file '.*?files/md5/([0-9a-f]{2})/([0-9a-f]{30,})'")
PULL_STEPS = {"not-cached": "the remote lacks them: `dvc push` from a clone that has them (or `dvc repro` there), then pull again"}


def pull(root: Path, targets: list[str], remote: str | None, jobs: int | None) -> None:
    """`dvc pull` that names every object whose downloaded bytes do not match its hash; those are never checked out.

    DVC checks the hash (`verify = true` on the remotes) but says only "Checkout failed ... Is your cache up to date?".
    Any other failure is one MedregError with the next step (registry/dvcerrors.py): DVC's own log lines are not shown.
    """
    from registry.dvcerrors import run_dvc

    damaged: list[str] = []

    def on_debug(line: str) -> None:
        if (m := CORRUPTED.search(line)) is not None:
            damaged.append(m.group(1) + m.group(2))

    args = ["pull", *(["-r", remote] if remote else []), *(["-j", str(jobs)] if jobs else []), *targets]
    try:
        run_dvc(args, root, on_debug, PULL_STEPS, what="dvc pull")
    except MedregError:
        if not damaged:
            raise
        where = _paths_of(root, set(damaged))
        shown = "; ".join(f"{h} ({where.get(h, 'a file inside a directory output')})" for h in sorted(set(damaged)))
        raise MedregError(
            f"{len(set(damaged))} object(s) in the remote do not match their hash and were not used: {shown}"
            " — delete them from the remote and `dvc push` again from a clone that has good copies"
        ) from None


def _paths_of(root: Path, hashes: set[str]) -> dict[str, str]:
    """Output paths in dvc.lock with these md5s (directory outputs list a .dir hash, not their files')."""
    lock = yaml.safe_load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {}
    found = {}
    for entry in (lock.get("stages") or {}).values():
        for out in entry.get("outs", []):
            if out.get("md5", "").removesuffix(".dir") in hashes:
                found[out["md5"].removesuffix(".dir")] = out["path"]
    return found


def version_of(root: Path, rev: str = "HEAD") -> str:
    """A human version string for `rev`: the tags on it, else its short sha."""
    tags = _git(root, "tag", "--points-at", rev).split()
    sha = _git(root, "rev-parse", "--short", rev).strip()
    return f"{', '.join(tags)} ({sha})" if tags else sha


def export_hf(
    split, out: Path, version: str, source: str, restricted_rows: Literal["refuse", "include", "drop"] = "refuse"
) -> dict[str, dict[str, int]]:
    """Write the split as a Hugging Face dataset folder: `<benchmark>/<category>.parquet` and README.md.

    The card's YAML: licence, task, language, size and tags metadata, `configs` (one per benchmark plus a default
    `all`, splits reasoning and knowledge; a category a benchmark has no question in is left out) and the version.
    Rows of benchmarks that may not be redistributed (`restricted`) are refused (a MedregError naming them, writing
    nothing), included (`include`: the card says so) or left out (`drop`: the card names them).

    Returns row counts per benchmark and category.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from registry.io import atomic_path

    found = restricted(split.column("benchmark").unique().to_pylist())
    if found and restricted_rows == "refuse":
        raise MedregError(f"refusing to export: {restricted_message(found, 'the split', 'export')}")
    dropped = found if restricted_rows == "drop" else {}
    counts: dict[str, dict[str, int]] = {}
    with atomic_path(out, directory=True) as tmp:
        for benchmark in sorted(set(split.column("benchmark").unique().to_pylist()) - set(dropped)):
            for category in ("reasoning", "knowledge"):
                rows = split.filter(pc.and_(pc.equal(split["benchmark"], benchmark), pc.equal(split["category"], category)))
                counts.setdefault(benchmark, {})[category] = rows.num_rows
                if rows.num_rows:  # no file for an empty category: `datasets` cannot read a parquet file of 0 rows
                    (tmp / benchmark).mkdir(exist_ok=True)
                    pq.write_table(rows, tmp / benchmark / f"{category}.parquet", compression="zstd")
        if not counts:
            raise MedregError(f"nothing to export: every benchmark of the split was left out ({', '.join(dropped)})")
        (tmp / "README.md").write_text(_card(counts, version, source, dropped, {} if dropped else found), encoding="utf-8")
    return counts


SIZE_CATEGORIES = (
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
    (10**10, "1B<n<10B"),
    (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
)


def size_category(n: int) -> str:
    """Hugging Face's `size_categories` bucket for `n` rows."""
    return next((label for bound, label in SIZE_CATEGORIES if n < bound), "n>1T")


def _licences(benchmarks: Iterable[str]) -> dict[str, tuple[str, str, bool]]:
    """Per benchmark: (licence id, terms, may be redistributed), from registry/benchmarks.yaml ('unknown' for others)."""
    from registry import catalog

    entries = catalog.benchmarks()
    return {
        b: (entries[b].license, entries[b].license_note, entries[b].redistribute) if b in entries else ("unknown", "not in the catalog", False)
        for b in benchmarks
    }


def _card(counts: dict[str, dict[str, int]], version: str, source: str, dropped: dict[str, str], included: dict[str, str]) -> str:
    """The dataset card: YAML front matter the Hub and `datasets` read (licence, task, size, configs), then the text."""
    configs = [
        {
            "config_name": "all",
            "default": True,
            "data_files": [{"split": c, "path": f"*/{c}.parquet"} for c in ("reasoning", "knowledge")],
        }
    ]
    configs += [
        {"config_name": b, "data_files": [{"split": c, "path": f"{b}/{c}.parquet"} for c in ("reasoning", "knowledge") if n[c]]}
        for b, n in counts.items()
    ]
    licences = _licences(counts)
    ids = {lic for lic, _, _ in licences.values()}
    meta = {
        "pretty_name": "medreg reasoning/knowledge split",
        "license": ids.pop() if len(ids) == 1 and "unknown" not in ids else "other",
        "language": ["en"],
        "task_categories": ["question-answering"],
        "task_ids": ["multiple-choice-qa"],
        "size_categories": [size_category(sum(sum(c.values()) for c in counts.values()))],
        "tags": ["medical", "biomedical", "reasoning"],
    }
    front = yaml.safe_dump({**meta, "configs": configs, "version": version}, sort_keys=False)
    rows = "\n".join(f"| {b} | {c['reasoning']} | {c['knowledge']} |" for b, c in counts.items())
    total = {k: sum(c[k] for c in counts.values()) for k in ("reasoning", "knowledge")}
    terms = "\n".join(f"| {b} | `{lic}` | {note} | {'yes' if ok else '**no**'} |" for b, (lic, note, ok) in licences.items())
    notes = ""
    if included:
        notes += (
            "\n**Restricted rows included** (`--include-restricted`): the terms of "
            + ", ".join(included)
            + " do not allow redistribution; keep this copy private.\n"
        )
    if dropped:
        notes += "\nLeft out, their terms do not allow redistribution: " + "; ".join(f"{b} ({t})" for b, t in dropped.items()) + ".\n"
    return f"""---
{front}---

# medreg reasoning/knowledge split

Every question of the ingested biomedical QA benchmarks, each labelled reasoning-heavy or knowledge-heavy
(Thapa et al. 2025, "Disentangling Reasoning and Knowledge in Medical LLMs"). Version **{version}** of `{source}`.

| benchmark | reasoning | knowledge |
|---|---:|---:|
{rows}
| **total** | **{total["reasoning"]}** | **{total["knowledge"]}** |

Columns: `benchmark`, `qid`, `question`, `context` (PubMedQA abstracts; else null), `options` (list of
`{{letter, text}}`), `answer` (the gold letter), `answer_format`, `category` (reasoning | knowledge), `p_reasoning` (the
classifier's probability), `category_source` (expert | classifier), `predicted_category`, `expert_category`,
`study_category` and `study_p_reasoning` (the study collection's own label and probability, where ingested from it), `threshold`,
`fold` (the cross-validation fold of an expert-labelled question; the classifier was refit on all of them).

```python
from datasets import load_dataset
medqa = load_dataset("path/to/this/folder", "medqa")  # splits: reasoning, knowledge
```

## Licences

Each benchmark keeps its own licence and terms (the project's `registry/benchmarks.yaml`); the card's `license` is
`other` when they differ.

| benchmark | license | terms | redistributable |
|---|---|---|---|
{terms}
{notes}"""
