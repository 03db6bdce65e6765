"""Start-up cost of `medreg query` against a bare Python DuckDB call answering the same GROUP BY.

Usage: python bench/query_bench.py [--repeat N]   (after `dvc repro`: needs data/results.duckdb and the questions parquet)
Each command runs as a fresh process, interleaved, N times; the table shows medians and the ratio to the bare call.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL = "select benchmark, count(*) n from {table} group by all order by n desc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    db, parquet = ROOT / "data/results.duckdb", ROOT / "data/raw/questions.parquet"
    if not db.exists() or not parquet.exists():
        raise SystemExit("run `dvc repro` first (needs data/results.duckdb and data/raw/questions.parquet)")
    medreg = shutil.which("medreg") or str(Path(sys.executable).parent / "medreg")
    bare = "import duckdb; print(duckdb.connect({db!r}, read_only=True).execute({sql!r}).fetchall())"
    on_parquet = f"import duckdb; print(duckdb.sql({SQL.format(table=repr(str(parquet)))!r}).fetchall())"
    commands = {
        "bare DuckDB on the parquet (python -c)": [sys.executable, "-c", on_parquet],
        "bare DuckDB on results.duckdb (python -c)": [sys.executable, "-c", bare.format(db=str(db), sql=SQL.format(table="questions"))],
        "medreg query (table output)": [medreg, "query", "--db", str(db), SQL.format(table="questions")],
        "medreg query --format json": [medreg, "query", "--db", str(db), "--format", "json", SQL.format(table="questions")],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[next(iter(commands))])
    print(f"{'command':<44} {'median s':>9} {'min s':>7} {'vs bare parquet':>16}")
    for name, t in times.items():
        print(f"{name:<44} {statistics.median(t):>9.3f} {min(t):>7.3f} {statistics.median(t) / base:>15.2f}x")


if __name__ == "__main__":
    main()
