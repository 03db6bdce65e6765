"""Reading the registry from other projects, by version.

    from registry.api import load_split
    reasoning = load_split(benchmark="medqa", category="reasoning", rev="reasoning-knowledge-split@v1.0.0",
                           repo="https://github.com/ORG/medreg")           # or a local path; MEDREG_REPO by default
    ds = load_split(category="knowledge", rev="...", format="datasets")    # a Hugging Face datasets.Dataset

The data comes through `dvc.api` from the registry's DVC remote (credentials from the environment, e.g.
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for S3), so a tag always gives the same bytes.
"""

from __future__ import annotations

import io
import os
from typing import Any, Literal

from registry.errors import MedregError

CATEGORIES = ("reasoning", "knowledge")


def split_path() -> str:
    """Where the split lives in the registry: the dataset catalog's `splits` entry (declared once)."""
    from registry import catalog

    return catalog.dataset("splits").path


def read_split(repo: str | None = None, rev: str | None = None, remote: str | None = None):
    """The whole published split at `rev` as a pyarrow Table (one row per question)."""
    import dvc.api
    import pyarrow.parquet as pq

    path = split_path()
    repo = repo or os.environ.get("MEDREG_REPO")
    if not repo:
        raise MedregError("load_split: say which registry to read: repo=<git URL or path> (or set MEDREG_REPO)")
    try:
        data = dvc.api.read(path, repo=repo, rev=rev, remote=remote, mode="rb")
    except Exception as e:  # noqa: BLE001 (DVC raises many types: bad rev, no remote, missing object)
        raise MedregError(f"cannot read {path} from {repo} at {rev or 'the default branch'}: {str(e).splitlines()[0]}") from None
    return pq.read_table(io.BytesIO(data))


def load_split(
    benchmark: str | list[str] | None = None,
    category: Literal["reasoning", "knowledge"] | None = None,
    rev: str | None = None,
    repo: str | None = None,
    remote: str | None = None,
    format: Literal["pandas", "datasets"] = "pandas",  # noqa: A002 (the name users expect)
) -> Any:
    """Questions of the reasoning/knowledge split at version `rev`: a pandas DataFrame or a datasets.Dataset.

    `rev`: a tag such as `reasoning-knowledge-split@v1.0.0`, a branch or a commit. Optionally only some benchmarks
    and one category.

    Columns: benchmark, qid, question, context, options (list of {letter, text}), answer, answer_format, category,
    p_reasoning, category_source, predicted_category, expert_category, study_category, study_p_reasoning, threshold, fold
    (`cv_fold` in splits published before it was renamed).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if category is not None and category not in CATEGORIES:
        raise MedregError(f"load_split: category must be one of {', '.join(CATEGORIES)}, not {category!r}")
    if format not in ("pandas", "datasets"):
        raise MedregError(f"load_split: format must be 'pandas' or 'datasets', not {format!r}")
    table = read_split(repo, rev, remote)
    if benchmark is not None:
        wanted = [benchmark] if isinstance(benchmark, str) else list(benchmark)
        unknown = sorted(set(wanted) - set(table.column("benchmark").unique().to_pylist()))
        if unknown:
            raise MedregError(f"load_split: benchmark {', '.join(unknown)} not in the split at {rev or 'the default branch'}")
        table = table.filter(pc.is_in(table["benchmark"], value_set=pa.array(wanted)))
    if category is not None:
        table = table.filter(pc.equal(table["category"], category))
    if format == "datasets":
        import datasets

        return datasets.Dataset(table)
    return table.to_pandas()
