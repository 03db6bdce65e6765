"""Stage build_db: expose every parquet dataset of the catalog as a view in data/results.duckdb."""

import sys

from registry import catalog, db


def main() -> int:
    """Run the stage; returns the exit status."""
    path = catalog.dataset_path("results_db")
    try:
        params = catalog.load_params()
        counts = db.build(path, models={section: params[section]["models"] for section in ("evaluate", "adversarial")})
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    for table, n in counts.items():
        print(f"  {table:<24} {n:>8} rows")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
