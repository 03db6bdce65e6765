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
import re
import struct
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

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


def lineage(lock: dict[str, Any], stages: set[str] | None = None, skip: set[str] = frozenset()) -> list[tuple]:
    """Lineage rows from a dvc.lock: each output of each stage, with every dependency (md5) and parameter (value) it had.

    Columns: stage, artifact, artifact_md5, input, input_kind (dep | param), input_md5, param_value (JSON).
    Only the `stages` named, if given (those of dvc.yaml: the lock keeps removed ones); outputs in `skip` are left out
    (and a stage with no other output).
    """
    rows = []
    for stage, entry in (lock.get("stages") or {}).items():
        if stages is not None and stage not in stages:
            continue
        inputs = [(d["path"], "dep", d.get("md5"), None) for d in entry.get("deps", [])]
        for file, values in (entry.get("params") or {}).items():
            inputs += [(f"{file}:{key}", "param", None, json.dumps(value, sort_keys=True)) for key, value in values.items()]
        for out in entry.get("outs", []):
            if out["path"] not in skip:
                rows += [(stage, out["path"], out.get("md5"), *i) for i in inputs]
    return rows


class Doc(NamedTuple):
    """What a table or view of the database holds (its comment) and what each of its columns means (column comments)."""

    description: str | None
    columns: dict[str, str]


LINEAGE = [  # name, type, description: the lineage table's columns, described here once
    ("stage", "VARCHAR", "DVC stage that wrote the artifact (dvc.yaml name; foreach stages as name@item)."),
    ("artifact", "VARCHAR", "Path of the stage output (file or folder), relative to the project root."),
    ("artifact_md5", "VARCHAR", "DVC md5 of the output as recorded in dvc.lock (a folder's ends in .dir)."),
    ("input", "VARCHAR", "A dependency path, or file:key of a parameter (e.g. params.yaml:evaluate.models)."),
    ("input_kind", "VARCHAR", "dep (a file or folder the stage read) or param (a parameter it read)."),
    ("input_md5", "VARCHAR", "DVC md5 of the dependency as recorded in dvc.lock; null for parameters."),
    ("param_value", "VARCHAR", "The parameter's value as JSON; null for file dependencies."),
]
LINEAGE_COLUMNS = ", ".join(f"{name} {kind}" for name, kind, _ in LINEAGE)
LINEAGE_DOC = Doc(
    "every output of every DVC stage with each dependency (md5) and parameter (value) it was built from (dvc.lock)",
    {name: description for name, _, description in LINEAGE},
)


def catalog_docs() -> dict[str, Doc]:
    """Descriptions of every catalog table and view, from their one source each.

    A table: its dataset's description (registry/datasets.yaml, else the pandera model's docstring) and the
    `description` of each column of its pandera model (schemas/). A view: its catalog description and the columns it
    names itself; a view column it takes over unchanged is described as in its table (see `build`).
    """
    from registry import catalog, io

    docs = {}
    for name, entry in catalog.datasets().items():
        if entry.table and entry.schema_ref:
            schema = io.schema(name)
            docs[entry.table] = Doc(
                entry.description or schema.description, {c: col.description for c, col in schema.columns.items() if col.description}
            )
    for name, view in catalog.view_entries().items():
        docs[name] = Doc(view.description, dict(view.columns))
    return docs


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment(con: duckdb.DuckDBPyConnection, name: str, kind: str, doc: Doc | None, inherited: dict[str, str] | None = None) -> None:
    """COMMENT ON the table or view `name` and its columns: the doc's own descriptions, else `inherited` ones."""
    if doc and doc.description:
        con.execute(f'COMMENT ON {kind} "{name}" IS {_quote(doc.description)}')
    columns = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [name]).fetchall()]
    for column in columns:
        text = (doc.columns.get(column) if doc else None) or (inherited or {}).get(column)
        if text:
            con.execute(f'COMMENT ON COLUMN "{name}"."{column}" IS {_quote(text)}')


def _read_by(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, str]:
    """Column comments of the tables a view's SQL reads (FROM / JOIN, in order of appearance; the first one wins)."""
    inherited: dict[str, str] = {}
    for table in dict.fromkeys(re.findall(r'\b(?:FROM|JOIN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', sql, re.IGNORECASE)):
        rows = con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ? AND comment IS NOT NULL", [table]).fetchall()
        for column, comment in rows:
            inherited.setdefault(column, comment)
    return inherited


def build(
    db_path: Path | str,
    sources: dict[str, list[Path]],
    views: dict[str, str],
    lineage_rows: list[tuple] | None = None,
    docs: dict[str, Doc] | None = None,
) -> dict[str, int]:
    """(Re)create the database: one table per name from its parquet files, the `lineage` table, then the views.

    A column named `options` (a list of {letter, text} in parquet) becomes a MAP, so `options['A']` works in SQL.
    `docs` (table or view name -> Doc, e.g. `catalog_docs()`) become COMMENTs on the tables, views and columns, which
    `columns` (and `duckdb_columns()`, `duckdb_tables()`, `duckdb_views()` in SQL) list; the lineage table's are defined
    here. A view column without a description of its own takes the comment of the same column in the first table its
    SQL reads that has one. Returns row counts.
    """
    from registry.io import atomic_path

    docs = docs or {}
    counts = {}
    with atomic_path(db_path) as tmp, tempfile.TemporaryDirectory(dir=Path(db_path).parent) as work:
        built = Path(work) / Path(db_path).name  # DuckDB stores the catalog name (the file's stem): the final name, not a temp one
        con = duckdb.connect(str(built))
        try:
            con.execute(f"CREATE TABLE lineage ({LINEAGE_COLUMNS})")
            if lineage_rows:
                con.executemany("INSERT INTO lineage VALUES (?, ?, ?, ?, ?, ?, ?)", lineage_rows)
            counts["lineage"] = len(lineage_rows or [])
            _comment(con, "lineage", "TABLE", LINEAGE_DOC)
            for table, paths in sources.items():
                files = ", ".join("'" + Path(p).resolve().as_posix().replace("'", "''") + "'" for p in paths)
                scan = f"read_parquet([{files}], union_by_name = true)"
                columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
                select = "* REPLACE (map_from_entries(options) AS options)" if "options" in columns else "*"
                con.execute(f'CREATE TABLE "{table}" AS SELECT {select} FROM {scan}')
                counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                _comment(con, table, "TABLE", docs.get(table))
            for view, sql in views.items():
                con.execute(f'CREATE VIEW "{view}" AS {sql}')
                counts[view] = con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0]
                _comment(con, view, "VIEW", docs.get(view), _read_by(con, sql))
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
            columns, rows = [d[0] for d in cur.description], cur.fetchall()
            described = DESCRIBE.fullmatch(st.query) if columns[:1] == ["column_name"] else None
            if described is not None:  # DuckDB's DESCRIBE of a table leaves out its column comments: add them
                comments = dict(con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?", [described["name"]]).fetchall())
                columns, rows = [*columns, "comment"], [(*row, comments.get(row[0])) for row in rows]
            results.append((columns, rows))
    except duckdb.Error as e:
        raise QueryError(str(e)) from None
    return results


DESCRIBE = re.compile(r'\s*(?:describe|show)\s+"?(?P<name>\w+)"?\s*;?\s*', re.IGNORECASE)  # DESCRIBE t, SHOW "t"


def tables(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every table and view with its row count and description (its COMMENT)."""
    names = con.execute("SELECT table_name, table_type, TABLE_COMMENT FROM information_schema.tables ORDER BY table_name").fetchall()
    rows = [(n, "view" if t == "VIEW" else "table", con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0], c) for n, t, c in names]
    return ["name", "type", "rows", "description"], rows


COLUMNS_SQL = """
SELECT c.table_name, c.column_name, c.data_type, c.comment
FROM duckdb_columns() c
JOIN (SELECT database_name, schema_name, table_name FROM duckdb_tables() WHERE NOT internal
      UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal) t USING (database_name, schema_name, table_name)
WHERE c.database_name = current_database() AND ($table IS NULL OR c.table_name = $table)
ORDER BY c.table_name, c.column_index
"""


def columns(con: duckdb.DuckDBPyConnection, table: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every column of every table and view (or of `table` only): (table, column, type, description) rows, in table order.

    The description is the column's COMMENT, which `build` sets from the pandera models' field descriptions (schemas/),
    the catalog's view descriptions and the lineage table's own; the tables' and views' descriptions are in `tables`.
    An unknown `table` is a QueryError naming the known ones.
    """
    rows = con.execute(COLUMNS_SQL, {"table": table}).fetchall()
    if table is not None and not rows:
        known = ", ".join(r[0] for r in tables(con)[1])
        raise QueryError(f"no table or view named '{table}' (known: {known})")
    return ["table", "column", "type", "description"], rows
