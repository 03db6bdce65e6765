"""Stage label: put every ingested question in a category, reasoning-heavy or knowledge-heavy, with the trained classifier."""

import json

import numpy as np
import pandas as pd

from registry import catalog, classifier, io
from registry.errors import MedregError, run_stage
from registry.params import load_params
from registry.stats import wilson_ci
from stages import pin_cpu

STUDY_SHARE = 0.328  # Thapa et al. 2025: reasoning-heavy share of the 11 benchmarks' questions


def share(categories: pd.Series) -> dict[str, float]:
    """Reasoning share with its 95% Wilson score CI."""
    k, n = int((categories == "reasoning").sum()), len(categories)
    low, high = wilson_ci(k, n)
    return {"share": round(k / n, 4), "ci_low": round(low, 4), "ci_high": round(high, 4), "n": n}


def study_agreement(out: pd.DataFrame) -> dict | None:
    """How often our classifier's category equals the study collection's own label (is_reasoning), where one was ingested."""
    studied = out[out["study_category"].notna()]
    if studied.empty:
        return None
    agree = studied["predicted_category"] == studied["study_category"]
    by = {str(b): {"agreement": round(float(a.mean()), 4), "n": len(a)} for b, a in agree.groupby(studied["benchmark"], sort=True)}
    return {"agreement": round(float(agree.mean()), 4), "n": len(studied), "by_benchmark": by}


def study_split(scored: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The study's own split (label.source study): the collection's is_reasoning, reasoning_prob and reasoning_threshold."""
    missing = scored[scored["study_category"].isna()]
    if len(missing):
        counts = ", ".join(f"{b} ({n})" for b, n in missing.groupby("benchmark").size().items())
        raise MedregError(
            f"label.source: study: {len(missing)} question(s) have no study label: {counts}; "
            "the study's split comes with ingest.source: hub and ingest.hub_source: study (else label.source: classifier)"
        )
    threshold = scored["meta"].map(lambda m: json.loads(m).get("reasoning_threshold") if isinstance(m, str) else None)
    if threshold.isna().any():
        row = scored[threshold.isna()].iloc[0]
        raise MedregError(f"label.source: study: question {row['benchmark']}/{row['qid']} has no reasoning_threshold in its meta")
    return scored["study_category"], scored["study_p_reasoning"], threshold.astype("float64")


def main() -> None:
    """Categorise every question: the classifier's, the expert's where the source has one (label.prefer_expert), or the study's.

    label.source study takes the collection's own split; our classifier's agreement with it is reported either way.
    """
    all_params = load_params()
    params = all_params.label
    pin_cpu(all_params.cpu.threads)
    questions = io.load("questions")
    model = classifier.LabelingModel.load(catalog.dataset_path("classifier"), quantize=params.quantize, device=all_params.classifier.device)
    scored = classifier.categorise(questions, model, params.batch_size)
    folds = io.load("classifier_split")
    scored = scored.merge(folds, on=["benchmark", "qid"], how="left")

    expert = scored["expert_category"]
    use_expert = expert.notna() & params.prefer_expert
    category = pd.Series(np.where(use_expert, expert, scored["category"]), index=scored.index)
    source = pd.Series(np.where(use_expert, "expert", "classifier"), index=scored.index)
    p_reasoning, threshold = scored["p_reasoning"], scored["threshold"]
    if params.source == "study":
        category, p_reasoning, threshold = study_split(scored)
        source = pd.Series("study", index=scored.index)
    out = pd.DataFrame(
        {
            **{c: scored[c] for c in ("benchmark", "qid", "question", "context", "options", "answer", "answer_format")},
            "category": category,
            "p_reasoning": p_reasoning,
            "category_source": source,
            "predicted_category": scored["category"],
            "expert_category": expert,
            "study_category": scored["study_category"],
            "study_p_reasoning": scored["study_p_reasoning"],
            "threshold": threshold,
            "fold": scored["fold"].astype("Int64"),
        }
    )
    labeled = scored[expert.notna()]
    oof = np.where(labeled["p_reasoning_oof"] >= model.threshold, "reasoning", "knowledge")
    by_benchmark = {str(b): g for b, g in out.groupby("benchmark", sort=True)}
    missing = [b for b in catalog.benchmarks() if b not in by_benchmark]
    metrics = {
        "source": params.source,
        "questions": len(out),
        "reasoning_share": share(out["category"])["share"],
        "reasoning_share_by_benchmark": {b: share(g["category"])["share"] for b, g in by_benchmark.items()},
        "reasoning_share_classifier_only": share(out["predicted_category"]),
        "reasoning_share_classifier_only_by_benchmark": {b: share(g["predicted_category"]) for b, g in by_benchmark.items()},
        "study_reasoning_share": STUDY_SHARE,
        "benchmarks_not_ingested": missing,
        "expert_agreement_cv": round(float((oof == labeled["expert_category"]).mean()), 4) if len(labeled) else None,
        "expert_agreement_in_sample": round(float((labeled["category"] == labeled["expert_category"]).mean()), 4) if len(labeled) else None,
        "study_agreement": study_agreement(out),
        "threshold": model.threshold,
    }
    io.save("splits", out)
    io.save("splits_metrics", metrics)
    for b, s in metrics["reasoning_share_classifier_only_by_benchmark"].items():
        print(f"  {b:<26} {s['share']:6.1%} reasoning [{s['ci_low']:.1%}, {s['ci_high']:.1%}] of {s['n']} (classifier)")
    whole = metrics["reasoning_share_classifier_only"]
    print(
        f"categorised {len(out)} questions: classifier {whole['share']:.1%} reasoning [{whole['ci_low']:.1%}, {whole['ci_high']:.1%}] "
        f"(study: {STUDY_SHARE:.1%} over 11 benchmarks; not ingested here: {', '.join(missing) or 'none'}); "
        f"agreement with experts out of fold: {metrics['expert_agreement_cv']}"
    )
    if metrics["study_agreement"]:
        study = metrics["study_agreement"]
        print(f"split: {params.source}; our classifier agrees with the study's labels on {study['agreement']:.1%} of {study['n']} questions")


if __name__ == "__main__":
    run_stage(main)
