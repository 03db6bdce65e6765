"""The results database: a DuckDB file with one view per parquet dataset, queried read-only."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pandas as pd

from registry import catalog
from registry.io import atomic_path

READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class QueryError(Exception):
    """A refused or failing query; the message is DuckDB's or names the refused statement."""


def build(db_path: Path | str, root: Path | str = ".", models: dict[str, list[str]] | None = None) -> dict[str, int]:
    """(Re)create the database with a view per catalog dataset that has a `table`; returns row counts.

    A dataset with `per_model: <section>` becomes one view over the files of `models[<section>]` (e.g. evaluate.models).
    """
    counts = {}
    db_path = Path(db_path).resolve()
    with atomic_path(db_path) as tmp, contextlib.chdir(root):  # views name parquet paths relative to the root
        tmp.unlink()  # DuckDB refuses an existing empty file
        con = duckdb.connect(str(tmp))
        try:
            for name, entry in catalog.datasets().items():
                table = entry.get("table")
                if not table:
                    continue
                # relative paths: resolved against the project root at query time
                per_model = entry.get("per_model")
                paths = [entry["path"].format(model=m) for m in (models or {}).get(per_model, [])] if per_model else [entry["path"]]
                for rel_path in paths:
                    if not Path(rel_path).exists():
                        raise FileNotFoundError(f"dataset '{name}' ({rel_path}) is missing: run its stage first")
                if not paths:
                    continue
                files = ", ".join(f"'{p}'" for p in paths)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
                counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for view, sql in catalog.views().items():
                con.execute(f"CREATE VIEW {view} AS {sql}")
                counts[view] = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
        finally:
            con.close()
    return counts


def connect(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the database read-only; query it with the project root as cwd (views use relative paths)."""
    if not Path(db_path).exists():
        raise QueryError(f"{db_path} does not exist: run `dvc repro` first")
    return duckdb.connect(str(db_path), read_only=True)


def query(con: duckdb.DuckDBPyConnection, sql: str) -> list[pd.DataFrame]:
    """Run read-only SQL (SELECT, EXPLAIN; several separated by ';'); one frame per statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(str(e)) from e
    if not statements:
        raise QueryError("empty query")
    for st in statements:
        if st.type not in READ_ONLY_STATEMENTS:
            raise QueryError(f"refused: {st.type.name} statements are not allowed; the results database is read-only")
    try:
        return [con.execute(st.query).df() for st in statements]
    except duckdb.Error as e:
        raise QueryError(str(e)) from e


def tables(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every table and view with its row count."""
    names = con.execute("SELECT table_name, table_type FROM information_schema.tables ORDER BY table_name").fetchall()
    rows = [(n, "view" if t == "VIEW" else "table", con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n, t in names]
    return pd.DataFrame(rows, columns=["name", "type", "rows"])
