"""Stage robustness: clean vs adversarial accuracy on the same questions, per model, benchmark and split."""

import sys

import pandas as pd

from registry import catalog
from registry.adversarial import robustness
from registry.io import read_parquet, write_json, write_parquet
from schemas.adversarial import ROBUSTNESS_ARROW, RobustnessSchema


def main() -> int:
    """Run the stage; returns the exit status."""
    params = catalog.load_params()
    clean_models = params["evaluate"]["models"]
    clean, adv = [], []
    for name in params["adversarial"]["models"]:
        if name not in clean_models:
            print(f"error: adversarial model '{name}' is not in evaluate.models: its clean accuracy is the baseline", file=sys.stderr)
            return 1
        clean.append(read_parquet(catalog.dataset_path("predictions", model=name)))
        adv.append(read_parquet(catalog.dataset_path("adversarial_predictions", model=name)))
    boot = params["evaluate"]["bootstrap"]
    table = RobustnessSchema.validate(robustness(pd.concat(clean), pd.concat(adv), boot["n"], boot["seed"]))
    write_parquet(table, catalog.dataset_path("robustness"), ROBUSTNESS_ARROW)

    pooled = table[table["benchmark"] == "all"]
    metrics = {
        m: {
            r.split: {"clean": round(r.clean_accuracy, 4), "adversarial": round(r.adversarial_accuracy, 4), "took_bait": round(r.took_bait, 4)}
            for r in g.itertuples()
        }
        for m, g in pooled.groupby("model", sort=False)
    }
    write_json(metrics, catalog.dataset_path("robustness_metrics"))
    plot = pooled[pooled["split"] != "all"].melt(
        id_vars=["model", "split"], value_vars=["clean_accuracy", "adversarial_accuracy"], var_name="series", value_name="accuracy"
    )
    plot = plot.assign(group=plot["model"] + " / " + plot["split"], series=plot["series"].str.replace("_accuracy", ""))
    path = catalog.dataset_path("robustness_plots") / "clean_vs_adversarial.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot[["group", "series", "accuracy"]].assign(ci_low=None, ci_high=None).to_csv(path, index=False)
    for r in pooled.itertuples():
        print(
            f"  {r.model:<28} {r.split:<10} clean {r.clean_accuracy:6.1%} -> adversarial {r.adversarial_accuracy:6.1%}  "
            f"drop {r.drop:+.1%} [{r.drop_ci_low:+.1%}, {r.drop_ci_high:+.1%}]  took the bait {r.took_bait:6.1%}  flipped {r.flipped:6.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
