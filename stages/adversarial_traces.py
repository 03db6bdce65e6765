"""Stage adversarial_traces: misleading reasoning traces toward a wrong option, per selected question (versioned)."""

from pathlib import Path

import pandas as pd

from registry import catalog, io
from registry.adversarial import TRACE_COLUMNS, generate_traces, study_traces
from registry.errors import MedregError, run_stage
from registry.evaluate import select_questions
from registry.generation import CompletionCache, Generator, generation_settings, pinned_weights
from registry.ingest import hub_record, read_hub, resolve_revision
from registry.params import load_params
from stages import pin_cpu


def from_study(rows: pd.DataFrame, allow_unpinned: bool, twin: Path | None = None) -> tuple[pd.DataFrame, int, dict[str, dict]]:
    """Traces shipped with zou-lab/BioMed-R1-Eval for the selected questions, matched by question text.

    Returns (traces, unusable traces, per benchmark: questions, matched, unmatched, ambiguous, traces, unusable and the
    revision read: repository, revision asked for, commit).
    """
    out, report = [], {}
    for bench, g in rows.groupby("benchmark"):
        entry = catalog.benchmarks()[str(bench)]
        spec = entry.hub["study"]
        if spec.revision is None and not allow_unpinned:
            raise MedregError(f"benchmark '{bench}': the study collection's revision is not pinned (evaluate.runtime.allow_unpinned)")
        commit = resolve_revision(spec, twin)
        found, match = study_traces(read_hub(spec, commit, twin), str(bench), spec.fields or entry.fields, g.to_dict("records"))
        out += found
        report[str(bench)] = {"questions": match.questions, "matched": match.matched, "unmatched": match.unmatched,
                              "ambiguous": match.ambiguous, "traces": match.traces, "unusable": match.unusable,
                              "revision": hub_record(spec, commit, twin)}  # fmt: skip
        print(f"  {bench:<26} {match.matched} of {match.questions} questions in the study collection ({match.unmatched} unmatched); "
              f"{match.traces} traces, {match.unusable} unusable")  # fmt: skip
    if rows.empty or not any(r["matched"] for r in report.values()):
        counts = ", ".join(f"{b}: {r['questions']}" for b, r in report.items()) or "no questions selected"
        raise MedregError(
            f"adversarial.traces.source: study: none of the selected questions ({counts}) is in the study collection; "
            "use adversarial.traces.source: model"
        )
    return pd.DataFrame(out, columns=TRACE_COLUMNS), sum(r["unusable"] for r in report.values()), report


def touch(path: Path) -> None:
    """Create the declared cache output if it is not there (nothing generated: nothing cached)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def main() -> None:
    """Write the traces for the clean evaluation's questions, from a generator model or from the study's collection."""
    params = load_params()
    ev, adv = params.evaluate, params.adversarial.traces
    rows = select_questions(io.load("questions"), io.load("splits"), ev.questions.benchmarks, ev.questions.limit, ev.questions.seed)
    study: dict[str, dict[str, int]] = {}
    if not params.adversarial.models:  # nothing to evaluate adversarially (e.g. `medreg eval` without --adversarial)
        traces, dropped = pd.DataFrame(columns=TRACE_COLUMNS), 0
        touch(catalog.dataset_path("traces_cache"))
    elif adv.source == "study":
        traces, dropped, study = from_study(rows, ev.runtime.allow_unpinned, params.hub.twin)
        touch(catalog.dataset_path("traces_cache"))  # a declared output: nothing generated, so nothing cached (kept if there)
    else:
        pin_cpu(params.cpu.threads)
        model = catalog.model(adv.generator)
        cache = CompletionCache(catalog.dataset_path("traces_cache"))
        weights = pinned_weights(catalog.dataset_path("model_pins") / f"{model.name}.json")
        generator = Generator(model, ev.runtime, generation_settings(model, adv.generation), cache, weights)
        traces, off_target = generate_traces(rows, generator, adv.per_question, adv.max_attempts, adv.retry_temperature, adv.seed)
        dropped = len(off_target)
    traces = traces.sort_values(["benchmark", "qid", "trace_index"]).reset_index(drop=True)
    io.save("adversarial_traces", traces)
    metrics = {
        "source": adv.source,
        "generator": None if not params.adversarial.models else adv.generator if adv.source == "model" else "study",
        "questions": len(rows),
        "traces": len(traces),
        "dropped": dropped,
        "questions_with_trace": int(traces.groupby(["benchmark", "qid"]).ngroups),
        "mean_attempts": round(float(traces["attempts"].mean()), 3) if len(traces) else None,
        "traces_by_benchmark": {str(k): int(v) for k, v in traces.groupby("benchmark").size().items()},
    }
    if study:
        metrics["study_match"] = study
        metrics["unmatched_questions"] = sum(r["unmatched"] for r in study.values())
    io.save("adversarial_traces_metrics", metrics)
    print(f"{len(traces)} traces for {metrics['questions_with_trace']} of {len(rows)} questions; {dropped} dropped (off target)")


if __name__ == "__main__":
    run_stage(main)
