"""Stage ingest: catalog + chosen source -> validated data/raw/questions.parquet (+ quarantine, metrics)."""

import sys

from registry import catalog
from registry.ingest import IngestError, ingest, ingest_metrics, quarantine_frame
from registry.io import write_json, write_parquet
from schemas import quarantine, questions


def main() -> int:
    """Run the stage; returns the exit status."""
    params = catalog.load_params()["ingest"]
    source = params["source"]
    root = params["demo_dir"] if source == "demo" else params["mirror_dir"]
    try:
        result = ingest(
            catalog.benchmarks(),
            source=source,
            root=root,
            benchmarks=params["benchmarks"],
            hub_source=params["hub_source"],
            allow_unpinned=params["allow_unpinned"],
            on_invalid=params["on_invalid"],
        )
    except (IngestError, ValueError) as e:
        print(e, file=sys.stderr)
        print("nothing was written; previous outputs are unchanged", file=sys.stderr)
        return 1
    rejected = quarantine_frame(result.problems)
    metrics = ingest_metrics(result, source)
    # validate before writing anything, then write each file atomically
    questions.questions_schema().validate(result.questions)
    quarantine.QuarantineSchema.validate(rejected)
    write_parquet(result.questions, catalog.dataset_path("questions"), questions.ARROW_SCHEMA)
    write_parquet(rejected, catalog.dataset_path("quarantine"), quarantine.ARROW_SCHEMA)
    write_json(metrics, catalog.dataset_path("ingest_metrics"))

    for name, m in metrics["benchmarks"].items():
        print(f"  {name:<26} {m['questions']:>6} questions  ({result.files[name]})")
    for name, reason in result.skipped.items():
        print(f"  {name:<26} skipped: {reason}")
    if len(rejected):
        print(f"  {len(rejected)} invalid row(s) quarantined to {catalog.dataset_path('quarantine')}:")
        for p in result.problems:
            print(f"    {p}")
    print(f"ingested {metrics['questions']} questions from {len(result.files)} benchmark(s) ({source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
