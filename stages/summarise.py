"""Stage summarise: eval tables over every evaluated model (accuracy by category with CIs, gaps) and the study's numbers."""

import pandas as pd

from registry import catalog, io, stats
from registry.errors import run_stage
from registry.params import load_params


def main() -> None:
    """Summarise the predictions of every model in evaluate.models."""
    params = load_params().evaluate
    preds = pd.concat([io.load("predictions", model=name) for name in params.models], ignore_index=True)
    boot = params.bootstrap
    summary = stats.summarise(preds, boot.n, boot.seed)
    gaps = stats.gaps(preds, boot.n, boot.seed)
    io.save("summary", summary)
    io.save("gaps", gaps)
    io.save("study_references", pd.DataFrame([r.model_dump() for r in catalog.references()]))

    pooled = summary[(summary["benchmark"] == "all") & (summary["scorer"] == "medreg")]
    huatuo = summary[(summary["benchmark"] == "all") & (summary["scorer"] == "huatuo") & (summary["category"] == "all")].set_index("model")
    metrics = {}
    for model, g in pooled.groupby("model", sort=False):
        acc = dict(zip(g["category"], g["accuracy"].round(4), strict=True))
        everything = g[g["category"] == "all"].iloc[0]
        metrics[str(model)] = {
            "n": int(everything["n"]),
            **{c: acc.get(c) for c in ("all", "knowledge", "reasoning")},
            "think_format": round(float(everything["think_format"]), 4),
            "huatuo": round(float(huatuo.loc[model, "accuracy"]), 4),  # HuatuoGPT-o1's scorer on the same completions
        }
    io.save("eval_metrics", metrics)
    plot = pooled[pooled["category"] != "all"].rename(columns={"model": "group", "category": "series"})
    io.save("eval_plot", plot[["group", "series", "accuracy", "ci_low", "ci_high"]])

    for r in gaps.itertuples():
        print(
            f"  {r.model:<28} knowledge {r.knowledge_accuracy:6.1%} (n={r.n_knowledge})  reasoning {r.reasoning_accuracy:6.1%} (n={r.n_reasoning})  "
            f"gap {r.gap:+.1%} [{r.gap_ci_low:+.1%}, {r.gap_ci_high:+.1%}]  p_fisher {r.p_fisher:.3f}  p_cmh {r.p_cmh:.3f}"
        )
    for model, m in metrics.items():
        print(f"  {model:<28} accuracy {m['all']:6.1%} (medreg scorer)  {m['huatuo']:6.1%} (HuatuoGPT-o1 scorer)")
    print(f"summary: {len(summary)} rows over {len(params.models)} model(s), scorers medreg and huatuo")


if __name__ == "__main__":
    run_stage(main)
