"""Stage label: put every ingested question in a category, reasoning-heavy or knowledge-heavy, with the trained classifier."""

import numpy as np
import pandas as pd

from registry import catalog, classifier, io
from registry.errors import run_stage
from registry.params import load_params
from stages import pin_cpu


def main() -> None:
    """Categorise every question; the expert's category wins where the source has one (label.prefer_expert)."""
    all_params = load_params()
    params = all_params.label
    pin_cpu(all_params.cpu.threads)
    questions = io.load("questions")
    tokenizer, model, meta = classifier.load(catalog.dataset_path("classifier"), quantize=params.quantize)
    scored = classifier.categorise(questions, tokenizer, model, meta, params.batch_size)
    held = io.load("classifier_split").rename(columns={"split": "classifier_split"})
    scored = scored.merge(held, on=["benchmark", "qid"], how="left")

    expert = scored["expert_category"]
    use_expert = expert.notna() & params.prefer_expert
    out = pd.DataFrame(
        {
            **{c: scored[c] for c in ("benchmark", "qid", "question", "context", "options", "answer", "answer_format")},
            "category": np.where(use_expert, expert, scored["category"]),
            "p_reasoning": scored["p_reasoning"],
            "category_source": np.where(use_expert, "expert", "classifier"),
            "predicted_category": scored["category"],
            "expert_category": expert,
            "threshold": scored["threshold"],
            "classifier_split": scored["classifier_split"],
        }
    )

    def share(frame: pd.DataFrame) -> float:
        return round(float((frame["category"] == "reasoning").mean()), 4)

    def agreement(frame: pd.DataFrame) -> float | None:
        frame = frame[frame["expert_category"].notna()]
        return round(float((frame["predicted_category"] == frame["expert_category"]).mean()), 4) if len(frame) else None

    metrics = {
        "questions": len(out),
        "reasoning_share": share(out),
        "reasoning_share_by_benchmark": {str(b): share(g) for b, g in out.groupby("benchmark", sort=True)},
        "reasoning_share_classifier_only": share(out.assign(category=out["predicted_category"])),
        "expert_agreement_test": agreement(out[out["classifier_split"] == "test"]),
        "expert_agreement_all": agreement(out),
        "threshold": meta["threshold"],
    }
    io.save("splits", out)
    io.save("splits_metrics", metrics)
    for b, s in metrics["reasoning_share_by_benchmark"].items():
        print(f"  {b:<26} {s:6.1%} reasoning")
    print(
        f"categorised {len(out)} questions: {metrics['reasoning_share']:.1%} reasoning (study: 32.8%); "
        f"agreement with experts on the held-out test split: {metrics['expert_agreement_test']}"
    )


if __name__ == "__main__":
    run_stage(main)
