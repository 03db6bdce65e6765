"""Stage adversarial@<model>: the model answers after a misleading trace (prefill or turn protocol)."""

import sys

from registry import catalog
from registry.adversarial import RECONSIDER_CUE, evaluate_adversarial
from registry.backends import BackendError, make_backend
from registry.evaluate import CompletionCache, generation_settings, select_questions
from registry.io import read_parquet, write_parquet
from schemas.adversarial import ADVERSARIAL_ARROW, AdversarialPredictionsSchema


def main(name: str) -> int:
    """Evaluate model `name` on the adversarial traces; returns the exit status."""
    params = catalog.load_params()
    ev, protocol = params["evaluate"], params["adversarial"]["protocol"]
    runtime = ev["runtime"]
    try:
        model = catalog.model(name)
        rows = select_questions(read_parquet(catalog.dataset_path("questions")), read_parquet(catalog.dataset_path("splits")), **ev["questions"])
        traces = read_parquet(catalog.dataset_path("adversarial_traces"))
        if traces.merge(rows, on=["benchmark", "qid"]).empty:
            raise ValueError("no adversarial traces for the selected questions (all dropped?): see data/metrics/adversarial_traces.json")
        backend = runtime["backend"] or model["backend"]
        preds = evaluate_adversarial(
            model,
            rows,
            traces,
            lambda: make_backend(model, runtime),
            backend,
            generation_settings(model, ev["generation"]),
            CompletionCache(catalog.dataset_path("adversarial_completions", model=name)),
            runtime["batch_size"],
            protocol,
            params["adversarial"]["cue"] or RECONSIDER_CUE,
        )
    except (BackendError, catalog.CatalogError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    AdversarialPredictionsSchema.validate(preds, lazy=True)
    write_parquet(preds, catalog.dataset_path("adversarial_predictions", model=name), ADVERSARIAL_ARROW)
    for split, g in preds.groupby("split"):
        print(f"  {split:<10} n={len(g):>4}  accuracy {g['correct'].mean():6.1%}  took the bait {g['took_bait'].mean():6.1%}")
    print(f"{name} ({protocol}): adversarial accuracy {preds['correct'].mean():.1%} on {len(preds)} question x trace pairs")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m stages.adversarial MODEL_NAME")
    sys.exit(main(sys.argv[1]))
