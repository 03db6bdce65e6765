"""Stage train_classifier: choose the reasoning-vs-knowledge classifier by cross-validation and refit it.

Candidates are compared by stratified k-fold cross-validation on every expert-labeled question; the chosen one is
calibrated on its out-of-fold probabilities, its threshold tuned there, and it is refit on all labeled rows.
"""

import json

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from registry import catalog, classifier, io
from registry.errors import MedregError, run_stage
from registry.live import Live
from registry.params import Classifier, load_params
from stages import pin_cpu

SCORES = ("accuracy", "macro_f1", "roc_auc", "knowledge_recall")


def assess(p: np.ndarray, y: np.ndarray, fold: np.ndarray, params: Classifier) -> dict:
    """Calibrate out-of-fold probabilities fold by fold, pick the threshold on them, score every fold."""
    calibrated = classifier.cross_calibrated(p, y, fold, params.calibration)
    threshold = classifier.tune_threshold(y, calibrated) if params.threshold == "tune" else float(params.threshold)
    per_fold = []
    for k in np.unique(fold):
        m = classifier.evaluate(y[fold == k], calibrated[fold == k], threshold)
        per_fold.append({"fold": int(k), "n": m["n"], **{s: m[s] for s in SCORES[:3]}, "knowledge_recall": m["per_class"]["knowledge"]["recall"]})
    summary = {
        f"{s}_{stat}": float(fn([f[s] for f in per_fold])) for s in SCORES for stat, fn in (("mean", np.mean), ("sd", lambda v: np.std(v, ddof=1)))
    }
    ece = {"ece": classifier.expected_calibration_error(y, calibrated), "ece_uncalibrated": classifier.expected_calibration_error(y, p)}
    return {"calibrated": calibrated, "threshold": threshold, "per_fold": per_fold, "summary": summary | ece | {"threshold": threshold}}


def model_card(params: Classifier, chosen: str, members: list[str], table: pd.DataFrame, metrics: dict) -> str:
    """The model card: what was compared, what was chosen, its cross-validated quality and calibration."""

    def cells(r: pd.Series) -> str:
        return " | ".join(f"{r[f'{s}_mean']:.3f} ± {r[f'{s}_sd']:.3f}" for s in SCORES)

    rows = "\n".join(f"| {r.candidate}{' (chosen)' if r.candidate == chosen else ''} | {cells(r)} | {r.ece:.3f} |" for _, r in table.iterrows())
    specs = "\n".join(f"- `{m}`: {json.dumps(params.candidates[m].model_dump(exclude_defaults=True))}" for m in members)
    return f"""# medreg reasoning-vs-knowledge classifier

Expert labels: MedXpertQA `question_type` (Reasoning -> reasoning, Understanding -> knowledge), {metrics["n"]} questions.
Candidates compared by stratified {params.cv.folds}-fold cross-validation (seed {params.cv.seed}); each candidate's
probabilities calibrated ({params.calibration}) and its threshold tuned for macro-F1 on out-of-fold predictions.

| candidate | accuracy | macro-F1 | ROC-AUC | knowledge recall | ECE |
|---|---|---|---|---|---|
{rows}

Chosen: **{chosen}** ({"average of " + ", ".join(members) if len(members) > 1 else members[0]}), refit on all {metrics["n"]} labeled
questions; P(reasoning) calibrated with {params.calibration} scaling fit on its out-of-fold probabilities; threshold {metrics["threshold"]:.2f}.
{specs}

Out-of-fold (each question scored by a model that did not see it): accuracy {metrics["accuracy"]:.3f}
(majority baseline {metrics["majority_baseline"]:.3f}), macro-F1 {metrics["macro_f1"]:.3f}, ROC-AUC {metrics["roc_auc"]:.3f},
knowledge recall {metrics["per_class"]["knowledge"]["recall"]:.3f}; expected calibration error {metrics["ece"]:.3f}
({metrics["ece_uncalibrated"]:.3f} before calibration). No held-out test split: cross-validation is the estimate.

Study reference: PubMedBERT, 81% agreement with experts (Thapa et al. 2025).
"""


def main() -> None:
    """Cross-validate every compared candidate (and the ensemble of the best), choose, calibrate, refit, write."""
    all_params = load_params()
    params = all_params.classifier
    pin_cpu(all_params.cpu.threads)
    questions = io.load("questions")
    labeled = questions[questions["expert_category"].notna()].reset_index(drop=True)
    counts = labeled["expert_category"].value_counts()
    if len(counts) < 2 or counts.min() < params.cv.folds:
        raise MedregError(
            f"train_classifier: {params.cv.folds}-fold cross-validation (classifier.cv.folds) needs at least {params.cv.folds} expert "
            f"categories of each kind in {catalog.dataset_path('questions')}, found {counts.to_dict()}"
        )
    y = (labeled["expert_category"] == "reasoning").astype(int).to_numpy()
    fold = classifier.folds_of(y, params.cv.folds, params.cv.seed)

    x, raw, results = {}, {}, {}
    for name in params.compare:
        spec = params.candidates[name]
        print(f"cross-validating {name} ({spec.kind})", flush=True)
        x[name] = classifier.inputs(spec, labeled, params.device)
        raw[name] = classifier.out_of_fold(spec, x[name], y, fold, params.seed, params.device)
        results[name] = assess(raw[name], y, fold, params)
    selectable = [n for n in params.compare if params.candidates[n].selectable]
    ranked = sorted(selectable, key=lambda n: -results[n]["summary"]["macro_f1_mean"])
    members_of = {n: [n] for n in params.compare}
    if params.ensemble.size and len(ranked) >= 2:
        best = ranked[: params.ensemble.size]
        members_of["ensemble"] = best
        raw["ensemble"] = np.mean([raw[n] for n in best], axis=0)
        results["ensemble"] = assess(raw["ensemble"], y, fold, params)
        selectable.append("ensemble")
    if params.select == "best":
        chosen = max(selectable, key=lambda n: results[n]["summary"]["macro_f1_mean"])  # first of equals
    elif params.select not in results:
        raise MedregError(f"train_classifier: classifier.select {params.select}: no ensemble was formed (fewer than 2 selectable candidates)")
    else:
        chosen = params.select

    table = pd.DataFrame([{"candidate": n, **r["summary"]} for n, r in results.items()])
    print(table[["candidate", "accuracy_mean", "macro_f1_mean", "roc_auc_mean", "knowledge_recall_mean", "ece"]].round(3).to_string(index=False))
    cv_rows = [
        {
            "candidate": n,
            "kind": params.candidates[n].kind if n in params.candidates else "ensemble",
            "members": ",".join(members_of[n]),
            "selectable": n in selectable,
            "chosen": n == chosen,
            **f,
            "threshold": r["threshold"],
            "ece": r["summary"]["ece"],
        }
        for n, r in results.items()
        for f in r["per_fold"]
    ]
    with Live(dir=catalog.dataset_path("classifier_live").as_posix(), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for k in range(1, params.cv.folds + 1):
            live.step = k
            for row in (r for r in cv_rows if r["fold"] == k):
                live.log_metric(f"{row['candidate']}/macro_f1", row["macro_f1"])
            live.make_summary()

    members = {}
    for name in members_of[chosen]:
        spec = params.candidates[name]
        print(f"refitting {name} on all {len(y)} labeled questions", flush=True)
        members[name] = (spec, classifier.head(spec, params.seed, params.device).fit(x[name], y))
    result = results[chosen]
    metrics = {
        "chosen": chosen,
        "members": members_of[chosen],
        **classifier.evaluate(y, result["calibrated"], result["threshold"]),
        "ece": result["summary"]["ece"],
        "ece_uncalibrated": result["summary"]["ece_uncalibrated"],
        "calibration": params.calibration,
        "folds": params.cv.folds,
        "cv": {n: r["summary"] for n, r in results.items()},
    }
    calibrator = classifier.Calibrator(params.calibration).fit(raw[chosen], y)
    training_labels = {  # which labels trained it (`medreg classify` says so, and warns when they are the demo's)
        "source": sorted(labeled["source"].unique().tolist()),  # where ingest read the questions: demo | mirror | hub
        "benchmarks": {str(b): int(n) for b, n in labeled["benchmark"].value_counts().sort_index().items()},
        "n": len(y),
    }
    meta = {"chosen": chosen, "n_fit": len(y), "training_labels": training_labels, "params": params.model_dump(), "metrics": metrics}
    model = classifier.LabelingModel(members, calibrator, result["threshold"], meta, params.device)
    model.save(catalog.dataset_path("classifier"), model_card(params, chosen, members_of[chosen], table, metrics))
    io.save(
        "classifier_split",
        pd.DataFrame({"benchmark": labeled["benchmark"], "qid": labeled["qid"], "fold": fold, "p_reasoning_oof": result["calibrated"]}),
    )
    io.save("classifier_cv", pd.DataFrame(cv_rows))
    io.save("classifier_metrics", metrics)

    prec, rec, _ = precision_recall_curve(y, result["calibrated"])
    frac, mean = calibration_curve(y, result["calibrated"], n_bins=10, strategy="uniform")
    io.save("classifier_pr_plot", pd.DataFrame({"recall": rec, "precision": prec}))
    io.save("classifier_calibration_plot", pd.DataFrame({"mean_predicted": mean, "fraction_reasoning": frac}))
    print(
        f"chosen {chosen}: out-of-fold accuracy {metrics['accuracy']:.3f} (majority {metrics['majority_baseline']:.3f}), "
        f"macro-F1 {metrics['macro_f1']:.3f}, ROC-AUC {metrics['roc_auc']:.3f}, ECE {metrics['ece']:.3f} "
        f"(uncalibrated {metrics['ece_uncalibrated']:.3f}), threshold {result['threshold']:.2f}; refit on {len(y)} questions"
    )


if __name__ == "__main__":
    run_stage(main)
