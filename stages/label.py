"""Stage label: label every ingested question reasoning-heavy or knowledge-heavy with the trained classifier."""

import sys

import numpy as np
import pandas as pd

from registry import catalog, classifier
from registry.io import read_parquet, write_json, write_parquet
from schemas import splits


def main() -> int:
    """Run the stage; returns the exit status."""
    params = catalog.load_params()["label"]
    questions = read_parquet(catalog.dataset_path("questions"))
    tokenizer, model, meta = classifier.load(catalog.dataset_path("classifier"), quantize=params["quantize"])
    labeled = classifier.label_frame(questions, tokenizer, model, meta, params["batch_size"])
    held = read_parquet(catalog.dataset_path("classifier_split"))
    labeled = labeled.merge(held.rename(columns={"split": "classifier_split"}), on=["benchmark", "qid"], how="left")

    expert = labeled["expert_label"]
    use_expert = expert.notna() & params["prefer_expert"]
    out = pd.DataFrame(
        {
            "benchmark": labeled["benchmark"],
            "qid": labeled["qid"],
            "p_reasoning": labeled["p_reasoning"],
            "predicted_label": labeled["label"],
            "expert_label": expert,
            "label": np.where(use_expert, expert, labeled["label"]),
            "label_source": np.where(use_expert, "expert", "classifier"),
            "threshold": labeled["threshold"],
            "classifier_split": labeled["classifier_split"],
        }
    )
    splits.LabelsSchema.validate(out)

    def share(frame: pd.DataFrame) -> float:
        return round(float((frame["label"] == "reasoning").mean()), 4)

    def agreement(frame: pd.DataFrame) -> float | None:
        frame = frame[frame["expert_label"].notna()]
        return round(float((frame["predicted_label"] == frame["expert_label"]).mean()), 4) if len(frame) else None

    metrics = {
        "questions": len(out),
        "reasoning_share": share(out),
        "reasoning_share_by_benchmark": {b: share(g) for b, g in out.groupby("benchmark", sort=True)},
        "reasoning_share_classifier_only": share(out.assign(label=out["predicted_label"])),
        "expert_agreement_test": agreement(out[out["classifier_split"] == "test"]),
        "expert_agreement_all": agreement(out),
        "threshold": meta["threshold"],
    }
    write_parquet(out, catalog.dataset_path("splits"), splits.LABELS_ARROW)
    write_json(metrics, catalog.dataset_path("splits_metrics"))
    for b, s in metrics["reasoning_share_by_benchmark"].items():
        print(f"  {b:<26} {s:6.1%} reasoning")
    print(
        f"labeled {len(out)} questions: {metrics['reasoning_share']:.1%} reasoning (study: 32.8%); "
        f"agreement with experts on the held-out test split: {metrics['expert_agreement_test']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
