"""The dataset catalog does the I/O: `save(name, data)` validates and writes atomically, `load(name)` reads.

Every dataset is declared once in registry/datasets.yaml (path, pandera schema, table). Parquet column types come
from the pandera schema alone: the Arrow schema is derived from it, so types are declared once.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.parquet as pq

from registry import catalog
from schemas.questions import OPTIONS

_UMASK = os.umask(0o022)
os.umask(_UMASK)
_ARROW = {
    "str": pyarrow.string(),
    "string[pyarrow]": pyarrow.string(),
    "int64": pyarrow.int64(),
    "Int64": pyarrow.int64(),  # nullable integer
    "float64": pyarrow.float64(),
    "bool": pyarrow.bool_(),
}


@contextmanager
def atomic_path(path: Path | str, directory: bool = False) -> Iterator[Path]:
    """Yield a temp file (or empty directory) beside `path`; on success it replaces `path`, on error it is removed.

    A failure at any point leaves `path` as it was: readers never see a half-written file or folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        tmp.chmod((0o777 if directory else 0o666) & ~_UMASK)  # mkstemp/mkdtemp make private files; keep the usual modes
        if directory and path.exists():  # a directory cannot be replaced in one rename: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def schema(name: str) -> pa.DataFrameSchema:
    """The pandera schema a dataset declares (`schema: module.Class` in datasets.yaml)."""
    ref = catalog.dataset(name).schema_ref
    if not ref:
        raise catalog.CatalogError(f"{catalog.display(catalog.DATASETS_YAML)}: dataset '{name}' declares no schema")
    module, cls = ref.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls).to_schema()


def arrow_schema(frame_schema: pa.DataFrameSchema) -> pyarrow.Schema:
    """The parquet layout of a pandera schema: each column's dtype, or the Arrow type its metadata names."""
    fields = []
    for name, column in frame_schema.columns.items():
        arrow = (column.metadata or {}).get("arrow") or _ARROW.get(str(column.dtype))
        if arrow is None:
            raise TypeError(f"column '{name}': no Arrow type for dtype {column.dtype}; declare metadata={{'arrow': ...}}")
        fields.append(pyarrow.field(name, arrow, nullable=column.nullable))
    return pyarrow.schema(fields)


def to_arrow(frame: pd.DataFrame, frame_schema: pa.DataFrameSchema) -> pyarrow.Table:
    """A validated frame as an Arrow table with the schema's column order and types."""
    layout = arrow_schema(frame_schema)
    columns = {}
    for field in layout:
        values = frame[field.name]
        if field.type == OPTIONS:  # letter -> text dict in memory, list of {letter, text} on disk
            values = [None if o is None else [{"letter": k, "text": v} for k, v in o.items()] for o in values]
        columns[field.name] = pyarrow.array(values, type=field.type, from_pandas=True)
    return pyarrow.table(columns, schema=layout)


def from_arrow(table: pyarrow.Table) -> pd.DataFrame:
    """A parquet table as a frame; options come back as ordered letter -> text dicts."""
    frame = table.to_pandas()
    for field in table.schema:
        if pyarrow.types.is_integer(field.type) and frame[field.name].dtype.kind == "f":  # nulls made it float
            frame[field.name] = frame[field.name].astype("Int64")
        if field.type == OPTIONS:
            frame[field.name] = [None if o is None else {x["letter"]: x["text"] for x in o} for o in frame[field.name]]
    return frame


def empty(name: str) -> pd.DataFrame:
    """An empty frame with the columns and types of a dataset's schema (a stage with nothing to write still writes a valid file)."""
    return from_arrow(arrow_schema(schema(name)).empty_table())


def save(name: str, data: Any, root: Path | str = ".", **keys: str) -> Path:
    """Write a declared dataset atomically: parquet validated against its schema, JSON metrics, CSV plot data."""
    path = catalog.dataset_path(name, root, **keys)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame_schema = schema(name)
            if isinstance(data, pd.DataFrame) and data.empty and set(data.columns) == set(frame_schema.columns):
                data = empty(name)  # no rows: the column types come from the schema, not from an empty object frame
            pq.write_table(to_arrow(frame_schema.validate(data, lazy=True), frame_schema), tmp, compression="zstd")
        elif path.suffix == ".json":
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        elif path.suffix == ".csv":
            data.to_csv(tmp, index=False)
        else:
            raise TypeError(f"dataset '{name}' ({path}): save writes .parquet, .json and .csv files")
    return path


def load(name: str, root: Path | str = ".", **keys: str) -> Any:
    """Read a declared dataset: parquet as a frame, JSON as its object; a clear error when it is missing."""
    path = catalog.dataset_path(name, root, **keys)
    if not path.exists():
        raise catalog.CatalogError(f"{path} is missing (dataset '{name}'): run the stage that writes it (`dvc repro`)")
    if path.suffix == ".parquet":
        return from_arrow(pq.read_table(path))
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    raise TypeError(f"dataset '{name}' ({path}): load reads .parquet and .json files")
