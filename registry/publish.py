"""Publishing the registry: artifact versions (GTO tags), release checks, pulls that name damaged objects, HF export.

Artifacts are declared in dvc.yaml (`artifacts:`); a version is a git tag `name@vX.Y.Z` made by GTO on a commit whose
dvc.lock records the artifact's outputs, so `dvc artifacts get`, `dvc import --rev name@vX.Y.Z` and `dvc.api` read
exactly those bytes from the remote. A release is refused while the artifact or anything it depends on is stale, the
pipeline files are uncommitted, hub data was read at a revision not resolved to a commit, or the outputs are not in
the remote.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def release_blockers(root: Path, name: str, remote: str | None = None) -> list[str]:
    """Why artifact `name` cannot be released now (empty when it can).

    Uncommitted pipeline files, hub data not resolved to a commit, stale stages, or outputs missing from the remote
    (`remote`, else the default).
    """
    from dvc.repo import Repo

    path = artifact(root, name)["path"]
    blockers = []
    unresolved = unresolved_revisions(root)
    if unresolved:
        blockers.append(f"built from hub data at an unresolved revision: {'; '.join(unresolved)}")
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
    root: Path, name: str, version: str | None, bump: str, stage: str | None, remote: str | None, push: bool, message: str | None
) -> list[str]:
    """Tag artifact `name` at HEAD with GTO (a version, and a stage when given) after the checks; returns the tags made."""
    import gto.api
    from gto.exceptions import GTOException

    blockers = release_blockers(root, name, remote)
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


EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception)\b")
CORRUPTED = re.compile(r"corrupted cache file '.*?files/md5/([0-9a-f]{2})/([0-9a-f]{30,})'")


def pull(root: Path, targets: list[str], remote: str | None, jobs: int | None) -> None:
    """`dvc pull` that names every object whose downloaded bytes do not match its hash; those are never checked out.

    DVC checks the hash (`verify = true` on the remotes) but says only "Checkout failed ... Is your cache up to date?".
    """
    cmd = [sys.executable, "-m", "dvc", "pull", "-v", *(["-r", remote] if remote else []), *(["-j", str(jobs)] if jobs else []), *targets]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    damaged, errors = [], []
    for line in proc.stdout:  # -v: DVC's debug log (where the hash check speaks) and its tracebacks are dropped
        if (m := CORRUPTED.search(line)) is not None:
            damaged.append(m.group(1) + m.group(2))
        elif " DEBUG: " in line or line.startswith(("Traceback", " ", "\t")) or EXCEPTION_LINE.match(line):
            continue
        elif "ERROR: " in line:
            errors.append(line.rstrip())
            sys.stderr.write(line)
        else:
            sys.stdout.write(line)
    if proc.wait() == 0:
        return
    if damaged:
        where = _paths_of(root, set(damaged))
        shown = "; ".join(f"{h} ({where.get(h, 'a file inside a directory output')})" for h in sorted(set(damaged)))
        raise MedregError(
            f"{len(set(damaged))} object(s) in the remote do not match their hash and were not used: {shown}. "
            "Delete them from the remote and `dvc push` again from a clone that has good copies"
        )
    raise MedregError(next((e.split("ERROR: ", 1)[1] for e in errors if "ERROR: " in e), f"dvc pull exited with {proc.returncode}"))


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


def export_hf(split, out: Path, version: str, source: str) -> dict[str, dict[str, int]]:
    """Write the split as a Hugging Face dataset folder: `<benchmark>/<category>.parquet` and README.md.

    The card's YAML `configs`: one per benchmark plus a default `all`, splits reasoning and knowledge (a category a
    benchmark has no question in is left out), and the version.

    Returns row counts per benchmark and category.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from registry.io import atomic_path

    counts: dict[str, dict[str, int]] = {}
    with atomic_path(out, directory=True) as tmp:
        for benchmark in sorted(split.column("benchmark").unique().to_pylist()):
            for category in ("reasoning", "knowledge"):
                rows = split.filter(pc.and_(pc.equal(split["benchmark"], benchmark), pc.equal(split["category"], category)))
                counts.setdefault(benchmark, {})[category] = rows.num_rows
                if rows.num_rows:  # no file for an empty category: `datasets` cannot read a parquet file of 0 rows
                    (tmp / benchmark).mkdir(exist_ok=True)
                    pq.write_table(rows, tmp / benchmark / f"{category}.parquet", compression="zstd")
        (tmp / "README.md").write_text(_card(counts, version, source), encoding="utf-8")
    return counts


def _card(counts: dict[str, dict[str, int]], version: str, source: str) -> str:
    """The dataset card: YAML front matter Hugging Face `datasets` reads (configs, data_files), then the text."""
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
    front = yaml.safe_dump({"pretty_name": "medreg reasoning/knowledge split", "configs": configs, "version": version}, sort_keys=False)
    rows = "\n".join(f"| {b} | {c['reasoning']} | {c['knowledge']} |" for b, c in counts.items())
    total = {k: sum(c[k] for c in counts.values()) for k in ("reasoning", "knowledge")}
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
`cv_fold` (the cross-validation fold of an expert-labelled question; the classifier was refit on all of them).

```python
from datasets import load_dataset
medqa = load_dataset("path/to/this/folder", "medqa")  # splits: reasoning, knowledge
```

Licences are those of the source benchmarks (see the project's `registry/benchmarks.yaml`).
"""
