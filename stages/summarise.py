"""Stage summarise: eval tables over every evaluated model (accuracy by split with CIs, knowledge-vs-reasoning gaps)."""

import sys

import pandas as pd

from registry import catalog
from registry.evaluate import gaps, summarise
from registry.io import read_parquet, write_json, write_parquet
from schemas.eval import GAPS_ARROW, SUMMARY_ARROW, GapsSchema, SummarySchema


def main() -> int:
    """Run the stage; returns the exit status."""
    params = catalog.load_params()["evaluate"]
    frames = []
    for name in params["models"]:
        path = catalog.dataset_path("predictions", model=name)
        if not path.exists():
            print(f"error: {path} is missing: run `dvc repro evaluate@{name}`", file=sys.stderr)
            return 1
        frames.append(read_parquet(path))
    preds = pd.concat(frames, ignore_index=True)
    boot = params["bootstrap"]
    summary = SummarySchema.validate(summarise(preds, boot["n"], boot["seed"]))
    gap = GapsSchema.validate(gaps(preds, boot["n"], boot["seed"]))
    write_parquet(summary, catalog.dataset_path("summary"), SUMMARY_ARROW)
    write_parquet(gap, catalog.dataset_path("gaps"), GAPS_ARROW)

    pooled = summary[summary["benchmark"] == "all"]
    metrics = {}
    for model, g in pooled.groupby("model", sort=False):
        acc = dict(zip(g["split"], g["accuracy"].round(4), strict=True))
        metrics[model] = {"n": int(g.loc[g["split"] == "all", "n"].iloc[0]), **{s: acc.get(s) for s in ("all", "knowledge", "reasoning")}}
    write_json(metrics, catalog.dataset_path("eval_metrics"))
    plot = pooled[pooled["split"] != "all"].rename(columns={"model": "group", "split": "series"})[
        ["group", "series", "accuracy", "ci_low", "ci_high"]
    ]
    plot_path = catalog.dataset_path("eval_plots") / "accuracy_by_split.csv"
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot.to_csv(plot_path, index=False)

    for r in gap.itertuples():
        print(
            f"  {r.model:<28} knowledge {r.knowledge_accuracy:6.1%} (n={r.n_knowledge})  reasoning {r.reasoning_accuracy:6.1%} (n={r.n_reasoning})  "
            f"gap {r.gap:+.1%} [{r.gap_ci_low:+.1%}, {r.gap_ci_high:+.1%}]  p_fisher {r.p_fisher:.3f}  p_cmh {r.p_cmh:.3f}"
        )
    print(f"summary: {len(summary)} rows over {len(params['models'])} model(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
