"""Time the pipeline on this machine: full demo `dvc repro`, no-op `dvc repro`, ingest of the real mirror.

Usage: python bench/ingest_bench.py [--repeat N]   (prints a table; the mirror row needs ../shared/benchmarks)
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import catalog  # noqa: E402
from registry.ingest import ingest  # noqa: E402
from tests.conftest import MIRROR, copy_project, run  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dvc(project: Path, *args: str) -> None:
    result = run(["dvc", *args], project)
    if result.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    full, noop, exp = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            project = copy_project(Path(tmp) / "proj")
            full.append(timed(lambda project=project: dvc(project, "repro")))
            noop.append(timed(lambda project=project: dvc(project, "repro")))
            if MIRROR.is_dir():
                exp.append(timed(lambda p=project: dvc(p, "exp", "run", "-S", "ingest.source=mirror", "-S", f"ingest.mirror_dir={MIRROR}")))
    rows.append(("dvc repro, demo, from scratch (all stages)", full, ""))
    rows.append(("dvc repro, nothing changed", noop, ""))
    if MIRROR.is_dir():
        n = len(ingest(catalog.benchmarks(), "mirror", MIRROR).questions)
        lib = [timed(lambda: ingest(catalog.benchmarks(), "mirror", MIRROR)) for _ in range(args.repeat)]
        rows.append(("ingest real mirror (library call)", lib, f"{n} questions, {n / statistics.median(lib):,.0f} q/s"))
        rows.append(("dvc exp run ingest, source=mirror", exp, ""))
    else:
        rows.append(("ingest real mirror", [], f"skipped: no mirror at {MIRROR}"))

    print(f"{'what':<44} {'median s':>9} {'min s':>7} {'max s':>7}  note")
    for what, times, note in rows:
        if times:
            print(f"{what:<44} {statistics.median(times):>9.2f} {min(times):>7.2f} {max(times):>7.2f}  {note}")
        else:
            print(f"{what:<44} {'-':>9} {'-':>7} {'-':>7}  {note}")


if __name__ == "__main__":
    main()
