"""Stage build_db: copy every catalog table into data/results.duckdb, plus the catalog's views."""

import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from registry import catalog, db, io
from registry.errors import MedregError, run_stage
from registry.params import load_params


def current(stage: str, models: dict[str, list[str]]) -> bool:
    """False for a stage of a model no longer in its params list (the lock keeps `evaluate@<model>` of a dropped model)."""
    name, _, item = stage.partition("@")
    return not item or item in models.get(name, [item])


def main() -> None:
    """Build the results database from the datasets that declare a `table` (per-model ones: one file per model).

    The `lineage` table comes from dvc.lock, which `dvc repro` has updated for every stage before this one; it is not
    a declared dependency (this stage's own run rewrites it), so it is as fresh as the last build. Every output it
    lists reproduces byte for byte (timings are kept out of the metrics), so the database does too.
    """
    params = load_params()
    models = {"evaluate": params.evaluate.models, "adversarial": params.adversarial.models}
    sources, empty = {}, Path(tempfile.mkdtemp(prefix="medreg-empty-"))
    for name, entry in catalog.datasets().items():
        if entry.table:
            names = models[entry.per_model] if entry.per_model else [None]
            sources[entry.table] = [catalog.dataset_path(name, **({"model": m} if m else {})) for m in names]
            if not names:  # no model in that list (e.g. no adversarial one): the table exists, empty, with its columns
                sources[entry.table] = [empty / f"{name}.parquet"]
                pq.write_table(io.to_arrow(io.empty(name), io.schema(name)), sources[entry.table][0])
    missing = [str(p) for paths in sources.values() for p in paths if not p.exists()]
    if missing:
        raise MedregError(f"missing: {', '.join(missing)}: run their stages first (`dvc repro`)")
    path = catalog.dataset_path("results_db")
    lock = Path("dvc.lock")  # as `dvc repro` leaves it: every stage before this one is recorded
    locked = yaml.safe_load(lock.read_text()) if lock.exists() else {}
    stages = {s for s in locked.get("stages") or {} if current(s, models)}
    rows = db.lineage(locked, stages, skip={path.as_posix()}) if locked else []  # not this stage's own previous output
    try:
        counts = db.build(path, sources, catalog.views(), rows, db.catalog_docs())  # descriptions: schemas/ fields, datasets.yaml
    finally:
        shutil.rmtree(empty)
    for table, n in counts.items():
        print(f"  {table:<24} {n:>8} rows")
    print(f"wrote {path}")


if __name__ == "__main__":
    run_stage(main)
