"""Stage ingest: catalog + chosen source -> validated data/raw/questions.parquet (+ quarantine, metrics)."""

from pathlib import Path

from registry import catalog, io
from registry.errors import run_stage
from registry.ingest import ingest, ingest_metrics, quarantine_frame
from registry.params import load_params


def main() -> None:
    """Ingest the benchmarks chosen in params; refuse, writing nothing, if rows are invalid or a benchmark would vanish."""
    params = load_params()
    p = params.ingest
    previous = io.load("questions") if catalog.dataset_path("questions").exists() else None
    result = ingest(
        catalog.benchmarks(),
        source=p.source,
        root=Path(p.demo_dir if p.source == "demo" else p.mirror_dir),
        benchmarks=p.benchmarks,
        hub_source=p.hub_source,
        allow_unpinned=p.allow_unpinned,
        on_invalid=p.on_invalid,
        allow_drop=p.allow_drop,
        previous=previous,
        twin=params.hub.twin,
    )
    rejected = quarantine_frame(result.problems)
    metrics = ingest_metrics(result, p.source)
    io.save("questions", result.questions)
    io.save("quarantine", rejected)
    io.save("ingest_metrics", metrics)

    for name, m in metrics["benchmarks"].items():
        print(f"  {name:<26} {m['questions']:>6} questions  ({result.files[name]})")
    for name, reason in result.skipped.items():
        print(f"  {name:<26} skipped: {reason}")
    if len(rejected):
        print(f"  {len(rejected)} invalid row(s) quarantined to {catalog.dataset_path('quarantine')}:")
        for problem in result.problems:
            print(f"    {problem}")
    print(f"ingested {metrics['questions']} questions from {len(result.files)} benchmark(s) ({p.source})")


if __name__ == "__main__":
    run_stage(main)
