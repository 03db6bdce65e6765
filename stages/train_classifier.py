"""Stage train_classifier: fine-tune the reasoning-vs-knowledge classifier on expert-labeled questions."""

import sys

import numpy as np
import pandas as pd
from dvclive import Live
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from registry import catalog, classifier
from registry.io import read_parquet, write_json, write_parquet
from schemas import splits


def model_card(params: dict, metrics: dict, n: dict) -> str:
    """A short model card: data, handling of class imbalance, test metrics."""
    t = metrics["test"]
    return f"""# medreg reasoning-vs-knowledge classifier

Base encoder: `{params["base_model"]}`; input: `{params["text"]}` (max_length {params["max_length"]}).
Trained on expert labels (MedXpertQA `question_type`: Reasoning -> reasoning, Understanding -> knowledge):
train {n["train"]}, validation {n["val"]}, test {n["test"]} questions (seeded stratified split, seed {params["seed"]}).

Class imbalance: {"class-weighted cross-entropy (balanced weights)" if params["class_weights"] == "balanced" else "unweighted loss"};
decision threshold {t["threshold"]:.2f} ({"tuned on validation for macro-F1" if params["threshold"] == "tune" else "fixed by params"}).
Epoch kept: best validation ROC-AUC of {params["epochs"]}.

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


def main() -> int:
    """Run the stage; returns the exit status."""
    params = catalog.load_params()["classifier"]
    questions = read_parquet(catalog.dataset_path("questions"))
    labeled = questions[questions["expert_label"].notna()].reset_index(drop=True)
    if labeled["expert_label"].nunique() < 2:
        print(
            f"train_classifier: need expert labels of both classes, found {labeled['expert_label'].value_counts().to_dict()}",
            file=sys.stderr,
        )
        return 1
    y_all = (labeled["expert_label"] == "reasoning").astype(int).to_numpy()
    split = classifier.split_labeled(labeled["expert_label"], params["split"], params["seed"])
    texts = [classifier.question_text(q, o, params["text"]) for q, o in zip(labeled["question"], labeled["options"], strict=True)]
    part = {name: np.flatnonzero(split.to_numpy() == name) for name in ("train", "val", "test")}
    pick = {name: ([texts[i] for i in idx], y_all[idx]) for name, idx in part.items()}

    with Live(dir=catalog.dataset_path("classifier_live").as_posix(), save_dvc_exp=False, dvcyaml=None, report=None) as live:

        def on_epoch(epoch: int, logged: dict) -> None:
            live.step = epoch
            for key, value in logged.items():
                live.log_metric(key, value)
            live.make_summary()

        tokenizer, model = classifier.train(*pick["train"], *pick["val"], params, on_epoch)
        p = {name: classifier.predict_proba(model, tokenizer, pick[name][0], params["max_length"]) for name in ("val", "test")}
        threshold = classifier.tune_threshold(pick["val"][1], p["val"]) if params["threshold"] == "tune" else float(params["threshold"])
        metrics = {name: classifier.evaluate(pick[name][1], p[name], threshold) for name in ("val", "test")}
        live.summary.update(test_accuracy=metrics["test"]["accuracy"], test_macro_f1=metrics["test"]["macro_f1"])

    n = {name: len(idx) for name, idx in part.items()}
    meta = {"labels": list(classifier.LABELS), "threshold": threshold, "params": params, "metrics": metrics, "n": n}
    classifier.save(catalog.dataset_path("classifier"), tokenizer, model, meta, model_card(params, metrics, n))
    split_frame = pd.DataFrame({"benchmark": labeled["benchmark"], "qid": labeled["qid"], "split": split}).astype("str")
    splits.ClassifierSplitSchema.validate(split_frame)
    write_parquet(split_frame, catalog.dataset_path("classifier_split"), splits.CLASSIFIER_SPLIT_ARROW)
    write_json({**metrics["test"], "val": metrics["val"], "n": n}, catalog.dataset_path("classifier_metrics"))

    y_test, p_test = pick["test"][1], p["test"]
    prec, rec, _ = precision_recall_curve(y_test, p_test)
    frac_pos, mean_pred = calibration_curve(y_test, p_test, n_bins=10, strategy="quantile")
    plots = catalog.dataset_path("classifier_plots")
    plots.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"recall": rec, "precision": prec}).to_csv(plots / "precision_recall.csv", index=False)
    pd.DataFrame({"mean_predicted": mean_pred, "fraction_reasoning": frac_pos}).to_csv(plots / "calibration.csv", index=False)
    t = metrics["test"]
    print(
        f"test: accuracy {t['accuracy']:.3f} (majority {t['majority_baseline']:.3f}), macro-F1 {t['macro_f1']:.3f}, "
        f"ROC-AUC {t['roc_auc']}, threshold {threshold:.2f}, n={n}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
