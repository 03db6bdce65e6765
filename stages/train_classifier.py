"""Stage train_classifier: fine-tune the reasoning-vs-knowledge classifier on expert-labeled questions."""

import numpy as np
import pandas as pd
from dvclive import Live
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from registry import catalog, classifier, io
from registry.errors import MedregError, run_stage
from registry.params import Classifier, load_params
from stages import pin_cpu


def model_card(params: Classifier, metrics: dict, n: dict) -> str:
    """A short model card: data, handling of class imbalance, test metrics."""
    t = metrics["test"]
    return f"""# medreg reasoning-vs-knowledge classifier

Base encoder: `{params.base_model}`; input: `{params.text}` (max_length {params.max_length}).
Trained on expert labels (MedXpertQA `question_type`: Reasoning -> reasoning, Understanding -> knowledge):
train {n["train"]}, validation {n["val"]}, test {n["test"]} questions (seeded stratified split, seed {params.seed}).

Class imbalance: {"class-weighted cross-entropy (balanced weights)" if params.class_weights == "balanced" else "unweighted loss"};
decision threshold {t["threshold"]:.2f} ({"tuned on validation for macro-F1" if params.threshold == "tune" else "fixed by params"}).
Epoch kept: best validation ROC-AUC of {params.epochs}.

| test metric | value |
|---|---|
| accuracy | {t["accuracy"]:.3f} |
| macro-F1 | {t["macro_f1"]:.3f} |
| ROC-AUC | {t["roc_auc"] if t["roc_auc"] is None else round(t["roc_auc"], 3)} |
| majority-class baseline | {t["majority_baseline"]:.3f} |
| reasoning precision / recall | {t["per_class"]["reasoning"]["precision"]:.3f} / {t["per_class"]["reasoning"]["recall"]:.3f} |
| knowledge precision / recall | {t["per_class"]["knowledge"]["precision"]:.3f} / {t["per_class"]["knowledge"]["recall"]:.3f} |

Study reference: PubMedBERT, 81% agreement with experts (Thapa et al. 2025).
"""


def main() -> None:
    """Train on the expert-labeled questions; write the model, its split, metrics, plots and DVCLive logs."""
    all_params = load_params()
    params = all_params.classifier
    pin_cpu(all_params.cpu.threads)
    questions = io.load("questions")
    labeled = questions[questions["expert_category"].notna()].reset_index(drop=True)
    if labeled["expert_category"].nunique() < 2:
        found = labeled["expert_category"].value_counts().to_dict()
        raise MedregError(f"train_classifier: needs expert categories of both kinds in {catalog.dataset_path('questions')}, found {found}")
    y_all = (labeled["expert_category"] == "reasoning").astype(int).to_numpy()
    split = classifier.split_labeled(labeled["expert_category"], params.split, params.seed)
    texts = [classifier.question_text(q, o, params.text) for q, o in zip(labeled["question"], labeled["options"], strict=True)]
    part = {name: np.flatnonzero(split.to_numpy() == name) for name in ("train", "val", "test")}
    pick = {name: ([texts[i] for i in idx], y_all[idx]) for name, idx in part.items()}

    with Live(dir=catalog.dataset_path("classifier_live").as_posix(), save_dvc_exp=False, dvcyaml=None, report=None) as live:

        def on_epoch(epoch: int, logged: dict) -> None:
            live.step = epoch
            for key, value in logged.items():
                live.log_metric(key, value)
            live.make_summary()

        tokenizer, model = classifier.train(*pick["train"], *pick["val"], params, on_epoch)
        p = {name: classifier.predict_proba(model, tokenizer, pick[name][0], params.max_length) for name in ("val", "test")}
        threshold = classifier.tune_threshold(pick["val"][1], p["val"]) if params.threshold == "tune" else float(params.threshold)
        metrics = {name: classifier.evaluate(pick[name][1], p[name], threshold) for name in ("val", "test")}
        live.summary.update(test_accuracy=metrics["test"]["accuracy"], test_macro_f1=metrics["test"]["macro_f1"])

    n = {name: len(idx) for name, idx in part.items()}
    meta = {"labels": list(classifier.CLASSES), "threshold": threshold, "params": params.model_dump(), "metrics": metrics, "n": n}
    classifier.save(catalog.dataset_path("classifier"), tokenizer, model, meta, model_card(params, metrics, n))
    io.save("classifier_split", pd.DataFrame({"benchmark": labeled["benchmark"], "qid": labeled["qid"], "split": split}))
    io.save("classifier_metrics", {**metrics["test"], "val": metrics["val"], "n": n})

    y_test, p_test = pick["test"][1], p["test"]
    prec, rec, _ = precision_recall_curve(y_test, p_test)
    frac_pos, mean_pred = calibration_curve(y_test, p_test, n_bins=10, strategy="quantile")
    io.save("classifier_pr_plot", pd.DataFrame({"recall": rec, "precision": prec}))
    io.save("classifier_calibration_plot", pd.DataFrame({"mean_predicted": mean_pred, "fraction_reasoning": frac_pos}))
    t = metrics["test"]
    print(
        f"test: accuracy {t['accuracy']:.3f} (majority {t['majority_baseline']:.3f}), macro-F1 {t['macro_f1']:.3f}, "
        f"ROC-AUC {t['roc_auc']}, threshold {threshold:.2f}, n={n}"
    )


if __name__ == "__main__":
    run_stage(main)
