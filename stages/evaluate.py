"""Stage evaluate@<model>: ask one catalog model every selected question; write its scored predictions."""

import sys

from registry import catalog
from registry.backends import BackendError, make_backend
from registry.evaluate import CompletionCache, evaluate, generation_settings, select_questions
from registry.io import read_parquet, write_parquet
from schemas.eval import PREDICTIONS_ARROW, PredictionsSchema


def main(name: str) -> int:
    """Evaluate model `name` under the `evaluate` params; returns the exit status."""
    params = catalog.load_params()["evaluate"]
    try:
        model = catalog.model(name)
        rows = select_questions(read_parquet(catalog.dataset_path("questions")), read_parquet(catalog.dataset_path("splits")), **params["questions"])
        gen = generation_settings(model, params["generation"])
        runtime = params["runtime"]
        backend = runtime["backend"] or model["backend"]
        cache = CompletionCache(catalog.dataset_path("completions", model=name))
        if cache.torn:
            print(f"{cache.path}: dropped {cache.torn} torn line(s) left by an interrupted run")
        print(f"{name}: {len(rows)} questions, backend {backend}, {gen}")
        preds = evaluate(model, rows, lambda: make_backend(model, runtime), backend, gen, cache, runtime["batch_size"])
    except (BackendError, catalog.CatalogError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    PredictionsSchema.validate(preds, lazy=True)
    write_parquet(preds, catalog.dataset_path("predictions", model=name), PREDICTIONS_ARROW)
    for (bench, split), g in preds.groupby(["benchmark", "split"]):
        print(f"  {bench:<24} {split:<10} n={len(g):>4}  accuracy {g['correct'].mean():6.1%}  unparsed {g['parse_failed'].mean():6.1%}")
    print(f"{name}: accuracy {preds['correct'].mean():.1%} on {len(preds)} questions; {int(preds['tokens'].sum())} tokens generated")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m stages.evaluate MODEL_NAME")
    sys.exit(main(sys.argv[1]))
