"""Stage robustness: clean vs adversarial accuracy on the same questions, per model, benchmark and category."""

import pandas as pd

from registry import io, stats
from registry.errors import run_stage
from registry.params import load_params

METRICS = {  # robustness.json key -> robustness table column
    "clean": "clean_accuracy",
    "adversarial": "adversarial_accuracy",
    "drop": "drop",
    "drop_ci_low": "drop_ci_low",
    "drop_ci_high": "drop_ci_high",
    "took_bait_share": "took_bait_share",
}


def robustness_metrics(pooled: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """The DVC metrics of data/metrics/robustness.json: per model and category (pooled over benchmarks), flat keys.

    clean and adversarial accuracy on the same pairs, the drop with its 95% paired bootstrap CI, took_bait_share.
    """
    return {
        str(m): {r["category"]: {key: None if pd.isna(r[col]) else round(float(r[col]), 4) for key, col in METRICS.items()} for _, r in g.iterrows()}
        for m, g in pooled.groupby("model", sort=False)
    }


def main() -> None:
    """Pair every adversarial answer with the clean answer to the same question (models of adversarial.models)."""
    params = load_params()
    names = params.adversarial.models  # each is in evaluate.models (params validation)
    if names:
        clean = pd.concat([io.load("predictions", model=name) for name in names], ignore_index=True)
        adv = pd.concat([io.load("adversarial_predictions", model=name) for name in names], ignore_index=True)
        boot = params.evaluate.bootstrap
        table = stats.robustness(clean, adv, boot.n, boot.seed)
    else:  # nothing evaluated adversarially (`medreg eval` without --adversarial): an empty table
        table = io.empty("robustness")
    io.save("robustness", table)

    pooled = table[table["benchmark"] == "all"]
    metrics = robustness_metrics(pooled)
    io.save("robustness_metrics", metrics)
    plot = pooled[pooled["category"] != "all"].melt(
        id_vars=["model", "category"], value_vars=["clean_accuracy", "adversarial_accuracy"], var_name="series", value_name="accuracy"
    )
    plot = plot.assign(group=plot["model"] + " / " + plot["category"], series=plot["series"].str.replace("_accuracy", ""))
    io.save("robustness_plot", plot[["group", "series", "accuracy"]].assign(ci_low=None, ci_high=None))
    for r in pooled.itertuples():
        print(
            f"  {r.model:<28} {r.category:<10} clean {r.clean_accuracy:6.1%} -> adversarial {r.adversarial_accuracy:6.1%}  "
            f"drop {r.drop:+.1%} [{r.drop_ci_low:+.1%}, {r.drop_ci_high:+.1%}]  "
            f"took the bait {r.took_bait_share:6.1%}  flipped {r.flipped_share:6.1%}"
        )


if __name__ == "__main__":
    run_stage(main)
