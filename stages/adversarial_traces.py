"""Stage adversarial_traces: misleading reasoning traces toward a wrong option, per selected question (versioned)."""

import sys

import pandas as pd

from registry import catalog
from registry.adversarial import generate_traces, study_traces
from registry.backends import BackendError, make_backend
from registry.evaluate import CompletionCache, generation_settings, select_questions
from registry.ingest import read_hub
from registry.io import read_parquet, write_json, write_parquet
from schemas.adversarial import TRACES_ARROW, TracesSchema


def from_study(rows: pd.DataFrame, allow_unpinned: bool) -> tuple[pd.DataFrame, int]:
    """Traces shipped with zou-lab/BioMed-R1-Eval for the selected questions; returns (traces, traces without a wrong target)."""
    out, unusable = [], 0
    for bench, g in rows.groupby("benchmark"):
        entry = catalog.benchmarks()[bench]
        spec = entry["hub"]["study"]
        if spec["revision"] is None and not allow_unpinned:
            raise BackendError(f"benchmark '{bench}': study collection revision is not pinned")
        fields = spec.get("fields", entry["fields"])
        options_of = {r["qid"]: r for r in g.to_dict("records")}
        found = study_traces(read_hub(spec), bench, fields.get("id"), options_of)
        unusable += 3 * len(g) - len(found)
        out += found
    return pd.DataFrame(out), unusable


def main() -> int:
    """Run the stage; returns the exit status."""
    params = catalog.load_params()
    ev, adv = params["evaluate"], params["adversarial"]["traces"]
    rows = select_questions(read_parquet(catalog.dataset_path("questions")), read_parquet(catalog.dataset_path("splits")), **ev["questions"])
    runtime = ev["runtime"]
    try:
        if adv["source"] == "study":
            traces, dropped_n = from_study(rows, runtime["allow_unpinned"])
        elif adv["source"] == "model":
            model = catalog.model(adv["generator"])
            backend = runtime["backend"] or model["backend"]
            traces, dropped = generate_traces(
                rows,
                model["name"],
                lambda: make_backend(model, runtime),
                backend,
                generation_settings(model, adv["generation"]),
                CompletionCache(catalog.dataset_path("traces_cache")),
                adv["per_question"],
                adv["max_attempts"],
                adv["retry_temperature"],
                adv["seed"],
                runtime["batch_size"],
            )
            dropped_n = len(dropped)
        else:
            raise ValueError(f"adversarial.traces.source must be study or model, got '{adv['source']}'")
    except (BackendError, catalog.CatalogError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    traces = TracesSchema.validate(traces.sort_values(["benchmark", "qid", "trace_index"]).reset_index(drop=True))
    write_parquet(traces, catalog.dataset_path("adversarial_traces"), TRACES_ARROW)
    metrics = {
        "source": adv["source"],
        "generator": adv["generator"] if adv["source"] == "model" else "study",
        "questions": len(rows),
        "traces": len(traces),
        "dropped": dropped_n,
        "questions_with_trace": int(traces.groupby(["benchmark", "qid"]).ngroups),
        "mean_attempts": round(float(traces["attempts"].mean()), 3) if len(traces) else None,
        "traces_by_benchmark": traces.groupby("benchmark").size().to_dict(),
    }
    write_json(metrics, catalog.dataset_path("adversarial_traces_metrics"))
    print(f"{len(traces)} traces for {metrics['questions_with_trace']} of {len(rows)} questions; {dropped_n} dropped (off target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
