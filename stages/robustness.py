"""Stage robustness: clean vs adversarial accuracy on the same questions, per model, benchmark and category."""

import pandas as pd

from registry import io, stats
from registry.errors import run_stage
from registry.params import load_params


def main() -> None:
    """Pair every adversarial answer with the clean answer to the same question (models of adversarial.models)."""
    params = load_params()
    names = params.adversarial.models  # each is in evaluate.models (params validation)
    clean = pd.concat([io.load("predictions", model=name) for name in names], ignore_index=True)
    adv = pd.concat([io.load("adversarial_predictions", model=name) for name in names], ignore_index=True)
    boot = params.evaluate.bootstrap
    table = stats.robustness(clean, adv, boot.n, boot.seed)
    io.save("robustness", table)

    pooled = table[table["benchmark"] == "all"]
    metrics = {
        str(m): {
            r.category: {"clean": round(r.clean_accuracy, 4), "adversarial": round(r.adversarial_accuracy, 4), "took_bait": round(r.took_bait, 4)}
            for r in g.itertuples()
        }
        for m, g in pooled.groupby("model", sort=False)
    }
    io.save("robustness_metrics", metrics)
    plot = pooled[pooled["category"] != "all"].melt(
        id_vars=["model", "category"], value_vars=["clean_accuracy", "adversarial_accuracy"], var_name="series", value_name="accuracy"
    )
    plot = plot.assign(group=plot["model"] + " / " + plot["category"], series=plot["series"].str.replace("_accuracy", ""))
    io.save("robustness_plot", plot[["group", "series", "accuracy"]].assign(ci_low=None, ci_high=None))
    for r in pooled.itertuples():
        print(
            f"  {r.model:<28} {r.category:<10} clean {r.clean_accuracy:6.1%} -> adversarial {r.adversarial_accuracy:6.1%}  "
            f"drop {r.drop:+.1%} [{r.drop_ci_low:+.1%}, {r.drop_ci_high:+.1%}]  took the bait {r.took_bait:6.1%}  flipped {r.flipped:6.1%}"
        )


if __name__ == "__main__":
    run_stage(main)
