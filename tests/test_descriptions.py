"""Self-describing results: every schema column has a description, and the results database carries them as comments."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import duckdb
import pandas as pd
import pandera.pandas as pa
import pyarrow.parquet as pq
import pytest

import schemas
from registry import catalog, db, io

LOCK = {  # a dvc.lock with one SFT checkpoint, so the lineage table and the checkpoints view have rows
    "stages": {
        "sft": {
            "deps": [{"path": "data/train/sft.parquet", "md5": "a" * 32}],
            "params": {"params.yaml": {"sft.epochs": 1}},
            "outs": [{"path": "models/checkpoints/sft", "md5": "b" * 32 + ".dir"}],
        }
    }
}


def models() -> list[type[pa.DataFrameModel]]:
    """Every pandera DataFrameModel defined in the schemas package."""
    found = []
    for info in pkgutil.iter_modules(schemas.__path__):
        module = importlib.import_module(f"schemas.{info.name}")
        found += [
            obj
            for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, pa.DataFrameModel) and obj is not pa.DataFrameModel and obj.__module__ == module.__name__
        ]
    return found


def test_every_schema_column_has_a_description():
    assert len(models()) >= 14
    missing = []
    for model in models():
        schema = model.to_schema()
        if not (model.__doc__ or "").strip() or not schema.description:
            missing.append(f"{model.__module__}.{model.__name__}: no docstring")
        missing += [f"{model.__module__}.{model.__name__}.{c}" for c, col in schema.columns.items() if not (col.description or "").strip()]
    assert not missing, "pa.Field(description=...) missing: " + ", ".join(missing)


def test_no_integer_flags_and_one_type_per_column_name():
    """Flags are BOOLEAN, not 0/1 integers; a column name means one kind of value in every table (a share is not a count)."""
    kinds: dict[str, dict[str, str]] = {}
    for model in models():
        for name, col in model.to_schema().columns.items():
            for check in col.checks:
                allowed = (check.statistics or {}).get("allowed_values")
                assert allowed is None or set(allowed) != {0, 1}, f"{model.__name__}.{name}: a 0/1 integer flag; declare Series[bool]"
            dtype = str(col.dtype)
            kind = "bool" if dtype == "bool" else "int" if "int" in dtype.lower() else "float" if "float" in dtype else dtype
            kinds.setdefault(name, {})[model.__name__] = kind
    mixed = {n: k for n, k in kinds.items() if len(set(k.values())) > 1}
    assert not mixed, f"one column name, several kinds of value: {mixed}"


def small_sources(root: Path) -> dict[str, list[Path]]:
    """Every catalog table as a parquet file: no rows, but a clean and an adversarial prediction (booleans) and a question."""
    sources = {}
    for name, entry in catalog.datasets().items():
        if not entry.table:
            continue
        path = root / f"{entry.table}.parquet"
        pq.write_table(io.arrow_schema(io.schema(name)).empty_table(), path)
        sources[entry.table] = [path]
    row = {"model": "m", "backend": "transformers", "benchmark": "b", "qid": "1", "category": "reasoning", "answer": "A",
           "prompt_hash": "0" * 16, "completion": "Answer: B", "extracted": "B", "correct": False, "parse_failed": False,
           "extraction_rule": "answer phrase", "huatuo_first": "B", "huatuo_last": "B", "huatuo_rule": "answer phrase",
           "think_format": False, "tokens": 3}  # fmt: skip
    adversarial = row | {"trace_index": 0, "target": "B", "protocol": "prefill", "cue": "Wait,", "took_bait": True}
    for name, frame in (("predictions", row), ("adversarial_predictions", adversarial)):
        schema = io.schema(name)
        pq.write_table(io.to_arrow(schema.validate(pd.DataFrame([frame])), schema), sources[catalog.dataset(name).table][0])
    return sources


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("db")
    sources = small_sources(root)
    path = root / "one" / "results.duckdb"
    path.parent.mkdir()
    db.build(path, sources, catalog.views(), db.lineage(LOCK), db.catalog_docs())
    return root, sources, path


def test_every_table_view_and_column_of_the_database_is_described(built):
    _, _, path = built
    con = db.connect(path)
    header, tables = db.tables(con)
    assert header == ["name", "type", "rows", "description"]
    names = {t[0] for t in tables}
    assert names == {e.table for e in catalog.datasets().values() if e.table} | set(catalog.views()) | {"lineage"}
    assert [t[0] for t in tables if not (t[3] or "").strip()] == []
    assert {t[0]: t[3] for t in tables}["summary"] == catalog.dataset("summary").description
    header, columns = db.columns(con)
    assert header == ["table", "column", "type", "description"]
    assert {c[0] for c in columns} == names
    undocumented = [f"{t}.{c}" for t, c, _, d in columns if not (d or "").strip()]
    assert not undocumented, f"columns without a comment: {undocumented}"
    assert len(columns) > 200


def test_comments_come_from_the_schemas_the_catalog_and_the_tables_a_view_reads(built):
    _, _, path = built
    con = db.connect(path)
    described = {(t, c): (kind, d) for t, c, kind, d in db.columns(con)[1]}
    fold = described[("splits", "fold")][1]
    assert fold == io.schema("splits").columns["fold"].description and fold.startswith("1-based cross-validation fold")
    assert described[("lineage", "input_md5")][1] == db.LINEAGE_DOC.columns["input_md5"]
    view = catalog.view_entries()["checkpoints"]
    assert described[("checkpoints", "checkpoint")][1] == view.columns["checkpoint"]
    assert described[("checkpoints", "stage")][1] == db.LINEAGE_DOC.columns["stage"]  # taken over unchanged: as in lineage
    assert described[("questions_labeled", "category")][1] == described[("splits", "category")][1]
    assert described[("questions_labeled", "n_options")][1] == described[("questions", "n_options")][1]
    assert con.execute("SELECT comment FROM duckdb_views() WHERE view_name = 'checkpoints'").fetchone()[0] == view.description
    assert db.columns(con, "summary")[1][0][:2] == ("summary", "model")  # one table, in column order
    with pytest.raises(db.QueryError, match="no table or view named 'nope'"):
        db.columns(con, "nope")


def test_flags_are_booleans_in_sql(built):
    _, _, path = built
    con = db.connect(path)
    types = {(t, c): kind for t, c, kind, _ in db.columns(con)[1]}
    flags = [("predictions", "correct"), ("predictions", "parse_failed"), ("predictions", "think_format"), ("adversarial_predictions", "took_bait")]
    assert {f: types[f] for f in flags} == dict.fromkeys(flags, "BOOLEAN")
    assert types[("summary", "parse_failures")] == "BIGINT" and types[("summary", "think_format_share")] == "DOUBLE"
    assert types[("robustness", "took_bait_share")] == "DOUBLE" and types[("robustness", "flipped_share")] == "DOUBLE"
    assert con.execute("SELECT avg(correct::int), count_if(took_bait) FROM adversarial_predictions").fetchone() == (0.0, 1)


def test_a_database_with_comments_is_still_byte_reproducible(built):
    root, sources, path = built
    again = root / "two" / "results.duckdb"
    again.parent.mkdir()
    db.build(again, sources, catalog.views(), db.lineage(LOCK), db.catalog_docs())
    assert again.read_bytes() == path.read_bytes()


def test_describe_in_medreg_query_shows_the_column_comments():
    """DuckDB's own DESCRIBE leaves comments out; `medreg query "describe T"` adds them as a last column."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER, b VARCHAR)")
    con.execute("COMMENT ON COLUMN t.a IS 'what a is'")
    *described, listed = db.query(con, 'describe t; SHOW "t"; show tables')
    for columns, rows in described:
        assert columns[-1] == "comment" and [(r[0], r[-1]) for r in rows] == [("a", "what a is"), ("b", None)]
    assert listed[0] == ["name"]  # not a table's description: unchanged


def test_a_check_reports_its_message_whichever_model_is_built_first():
    """A subclass built before its parent (or after) reports the same check text: refusals do not depend on build order."""
    from schemas.eval import PredictionsSchema
    from schemas.training import SelectedSchema, TrainingRowsSchema

    texts = [{c.error for c in m.to_schema().checks} for m in (SelectedSchema, TrainingRowsSchema, PredictionsSchema)]
    assert {"answer is one of the option letters", "sft rows have reasoning"} <= texts[0] & texts[1]
    assert "correct means the extracted answer equals the gold answer" in {c.error for c in PredictionsSchema.to_schema().checks}
