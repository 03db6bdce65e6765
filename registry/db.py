"""The results database: a self-contained DuckDB file holding a copy of every catalog table, opened sealed.

The tables are copied in (not views over parquet paths), so the file works from any directory or machine, and a
query needs no file access at all: `connect` opens it read-only with external access disabled and the configuration
locked, which the engine itself enforces. (Views over parquet would need the files readable, and DuckDB's
`allowed_paths` grants writing them too: `EXPLAIN ANALYZE COPY ... TO '<an allowed parquet>'` overwrote one.)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from registry.errors import MedregError

READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
SEALED = {
    "enable_external_access": False,  # no file, network or extension access: COPY, read_csv, glob, ATTACH, INSTALL refused
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # and no SET can undo that
}


class QueryError(MedregError):
    """A refused or failing query; the message is DuckDB's or names the refused statement."""


def lineage(lock: dict[str, Any], skip: set[str] = frozenset()) -> list[tuple]:
    """Lineage rows from a dvc.lock: each output of each stage, with every dependency (md5) and parameter (value) it had.

    Columns: stage, artifact, artifact_md5, input, input_kind (dep | param), input_md5, param_value (JSON).
    Outputs in `skip` are left out (and a stage with no other output).
    """
    rows = []
    for stage, entry in (lock.get("stages") or {}).items():
        inputs = [(d["path"], "dep", d.get("md5"), None) for d in entry.get("deps", [])]
        for file, values in (entry.get("params") or {}).items():
            inputs += [(f"{file}:{key}", "param", None, json.dumps(value, sort_keys=True)) for key, value in values.items()]
        for out in entry.get("outs", []):
            if out["path"] not in skip:
                rows += [(stage, out["path"], out.get("md5"), *i) for i in inputs]
    return rows


LINEAGE_COLUMNS = "stage VARCHAR, artifact VARCHAR, artifact_md5 VARCHAR, input VARCHAR, input_kind VARCHAR, input_md5 VARCHAR, param_value VARCHAR"


def build(db_path: Path | str, sources: dict[str, list[Path]], views: dict[str, str], lineage_rows: list[tuple] | None = None) -> dict[str, int]:
    """(Re)create the database: one table per name from its parquet files, the `lineage` table, then the views.

    A column named `options` (a list of {letter, text} in parquet) becomes a MAP, so `options['A']` works in SQL.
    Returns row counts.
    """
    from registry.io import atomic_path

    counts = {}
    with atomic_path(db_path) as tmp, tempfile.TemporaryDirectory(dir=Path(db_path).parent) as work:
        built = Path(work) / Path(db_path).name  # DuckDB stores the catalog name (the file's stem): the final name, not a temp one
        con = duckdb.connect(str(built))
        try:
            con.execute(f"CREATE TABLE lineage ({LINEAGE_COLUMNS})")
            if lineage_rows:
                con.executemany("INSERT INTO lineage VALUES (?, ?, ?, ?, ?, ?, ?)", lineage_rows)
            counts["lineage"] = len(lineage_rows or [])
            for table, paths in sources.items():
                files = ", ".join("'" + Path(p).resolve().as_posix().replace("'", "''") + "'" for p in paths)
                scan = f"read_parquet([{files}], union_by_name = true)"
                columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
                select = "* REPLACE (map_from_entries(options) AS options)" if "options" in columns else "*"
                con.execute(f'CREATE TABLE "{table}" AS SELECT {select} FROM {scan}')
                counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for view, sql in views.items():
                con.execute(f'CREATE VIEW "{view}" AS {sql}')
                counts[view] = con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0]
        finally:
            con.close()
        stabilise(built)
        os.replace(built, tmp)
    return counts


def stabilise(path: Path) -> None:
    """Make a freshly written DuckDB file a function of its content: a rebuild anywhere gives the same bytes (DVC hash).

    DuckDB 2.0 writes a random 16-byte database identifier into the main header; replace it with a digest of the data
    blocks and recompute the header checksum (DuckDB's: 5381 XOR each 64-bit word × 0xbf58476d1ce4e5b9).
    """
    with open(path, "r+b") as f:
        header = bytearray(f.read(HEADER_SIZE))
        if header[8:12] != b"DUCK" or _checksum(header[8:]) != struct.unpack("<Q", header[:8])[0]:
            raise QueryError(f"{path}: not a DuckDB file with the expected main header (DuckDB {duckdb.__version__} changed its format?)")
        digest = hashlib.md5(usedforsecurity=False)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        header[IDENTIFIER] = digest.digest()
        header[:8] = struct.pack("<Q", _checksum(header[8:]))
        f.seek(0)
        f.write(header)


HEADER_SIZE = 4096  # DuckDB's main header block; its first 8 bytes are the checksum of the rest
IDENTIFIER = slice(124, 140)  # the database identifier inside it (DuckDB 1.4+)


def _checksum(data: bytes) -> int:
    result = 5381
    for (word,) in struct.iter_unpack("<Q", data):
        result ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return result


def connect(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the database read-only and sealed (see the module docstring)."""
    if not Path(db_path).is_file():
        raise QueryError(f"{db_path} does not exist: run `dvc repro` (or `dvc pull`) first")
    try:
        return duckdb.connect(str(db_path), read_only=True, config=dict(SEALED))
    except duckdb.Error as e:
        raise QueryError(f"{db_path}: {e}") from None


def query(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[list[str], list[tuple[Any, ...]]]]:
    """Run read-only SQL (SELECT, EXPLAIN; several separated by ';'); (column names, rows) per statement.

    The engine refuses any write or file access; refusing other statement kinds here only gives a clearer message.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(str(e)) from None
    if not statements:
        raise QueryError("empty query")
    for st in statements:
        if st.type not in READ_ONLY_STATEMENTS:
            raise QueryError(f"refused: {st.type.name} statements are not allowed; the results database is read-only")
    results = []
    try:
        for st in statements:
            cur = con.execute(st.query)
            results.append(([d[0] for d in cur.description], cur.fetchall()))
    except duckdb.Error as e:
        raise QueryError(str(e)) from None
    return results


def tables(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every table and view with its row count."""
    names = con.execute("SELECT table_name, table_type FROM information_schema.tables ORDER BY table_name").fetchall()
    rows = [(n, "view" if t == "VIEW" else "table", con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n, t in names]
    return ["name", "type", "rows"], rows
