"""Stage summarise: eval tables over every evaluated model (accuracy by category with CIs, gaps) and the study's numbers."""

import pandas as pd

from registry import catalog, io, stats
from registry.errors import run_stage
from registry.params import load_params


def _round(value: object) -> float | None:
    """A metric value rounded to 4 decimals; None for a missing one (NaN or absent)."""
    return None if value is None or pd.isna(value) else round(float(value), 4)


def eval_metrics(summary: pd.DataFrame, gaps: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """The DVC metrics of data/metrics/eval.json: per model, results pooled over benchmarks (our scorer), flat keys.

    n; accuracy with its 95% Wilson CI (accuracy_ci_low, accuracy_ci_high); knowledge and reasoning accuracy; the gap
    (knowledge minus reasoning) with its 95% bootstrap CI; huatuo (HuatuoGPT-o1's scorer on the same completions);
    think_format_share. Flat, so `dvc exp show` and `medreg experiments` have one readable column per number.
    """
    pooled = summary[summary["benchmark"] == "all"].set_index(["model", "scorer", "category"])
    by_gap = gaps.set_index("model")
    metrics = {}
    for model in dict.fromkeys(summary.loc[summary["benchmark"] == "all", "model"]):
        cell = pooled.loc[(model, "medreg", "all")]
        acc = {
            c: _round(pooled.loc[(model, "medreg", c), "accuracy"]) if (model, "medreg", c) in pooled.index else None
            for c in ("knowledge", "reasoning")
        }
        gap = by_gap.loc[model] if model in by_gap.index else {}
        metrics[str(model)] = {
            "n": int(cell["n"]),
            "accuracy": _round(cell["accuracy"]),
            "accuracy_ci_low": _round(cell["ci_low"]),
            "accuracy_ci_high": _round(cell["ci_high"]),
            **acc,
            "gap": _round(gap.get("gap")),
            "gap_ci_low": _round(gap.get("gap_ci_low")),
            "gap_ci_high": _round(gap.get("gap_ci_high")),
            "huatuo": _round(pooled.loc[(model, "huatuo", "all"), "accuracy"]),  # HuatuoGPT-o1's scorer on the same completions
            "think_format_share": _round(cell["think_format_share"]),
        }
    return metrics


def main() -> None:
    """Summarise the predictions of every model in evaluate.models."""
    params = load_params().evaluate
    preds = pd.concat([io.load("predictions", model=name) for name in params.models], ignore_index=True)
    boot = params.bootstrap
    summary = stats.summarise(preds)
    gaps = stats.gaps(preds, boot.n, boot.seed)
    io.save("summary", summary)
    io.save("gaps", gaps)
    io.save("study_references", pd.DataFrame([r.model_dump() for r in catalog.references()]))

    pooled = summary[(summary["benchmark"] == "all") & (summary["scorer"] == "medreg")]
    metrics = eval_metrics(summary, gaps)
    io.save("eval_metrics", metrics)
    plot = pooled[pooled["category"] != "all"].rename(columns={"model": "group", "category": "series"})
    io.save("eval_plot", plot[["group", "series", "accuracy", "ci_low", "ci_high"]])

    for r in gaps.itertuples():
        print(
            f"  {r.model:<28} knowledge {r.knowledge_accuracy:6.1%} (n={r.n_knowledge})  reasoning {r.reasoning_accuracy:6.1%} (n={r.n_reasoning})  "
            f"gap {r.gap:+.1%} [{r.gap_ci_low:+.1%}, {r.gap_ci_high:+.1%}]  p_fisher {r.p_fisher:.3f}  p_cmh {r.p_cmh:.3f}"
        )
    for model, m in metrics.items():
        print(
            f"  {model:<28} accuracy {m['accuracy']:6.1%} [{m['accuracy_ci_low']:.1%}, {m['accuracy_ci_high']:.1%}] (medreg scorer)  "
            f"{m['huatuo']:6.1%} (HuatuoGPT-o1 scorer)"
        )
    print(f"summary: {len(summary)} rows over {len(params.models)} model(s), scorers medreg and huatuo")


if __name__ == "__main__":
    run_stage(main)
