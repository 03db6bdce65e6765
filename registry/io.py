"""Atomic file writing and typed parquet reading shared by all stages."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(df: pd.DataFrame, path: Path | str, schema: pa.Schema) -> None:
    """Write `df` with the given Arrow schema (zstd), atomically."""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_json(obj: Any, path: Path | str) -> None:
    """Write pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_parquet(path: Path | str) -> pd.DataFrame:
    """Read a pipeline parquet; MAP columns come back as ordered dicts."""
    table = pq.read_table(path)
    df = table.to_pandas()
    for field in table.schema:
        if pa.types.is_map(field.type):
            df[field.name] = df[field.name].map(lambda kv: dict(kv) if kv is not None else None)
    return df
