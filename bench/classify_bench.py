"""Labeling throughput of every classifier candidate on CPU over the real mirror questions.

Each compared candidate of params.yaml (classifier.compare) is fit on the mirror's expert-labeled questions (a
fine-tune for one epoch on 64 of them: the weights differ from the pipeline's, the compute per question does not),
saved, loaded as the label stage loads it (label.quantize) and timed labeling every mirror question; so is the
pipeline's own models/classifier if present. An ensemble's rate follows from its members' (1 / sum of 1 / rate; printed
for each pair of selectable candidates). A row below the 60 questions/s floor is marked.
Usage: python bench/classify_bench.py [--limit N] [--only NAME ...]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import catalog, classifier  # noqa: E402
from registry.ingest import ingest  # noqa: E402
from registry.params import load_params  # noqa: E402
from tests.conftest import MIRROR  # noqa: E402

FLOOR = 60.0  # questions/s the labeling model must keep on 2 cores


def timed(model: classifier.LabelingModel, questions, batch_size: int) -> float:
    start = time.perf_counter()
    model.predict_proba(questions, batch_size)
    return len(questions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="label only the first N mirror questions")
    parser.add_argument("--only", nargs="*", default=None, help="candidates to time (default: classifier.compare)")
    args = parser.parse_args()
    if not MIRROR.is_dir():
        raise SystemExit(f"needs the real mirror at {MIRROR}")
    params = load_params()
    torch.set_num_threads(params.cpu.threads)
    questions = ingest(catalog.benchmarks(), "mirror", MIRROR).questions
    labeled = questions[questions["expert_category"].notna()].reset_index(drop=True)
    y = (labeled["expert_category"] == "reasoning").astype(int).to_numpy()
    questions = questions.iloc[: args.limit].reset_index(drop=True)
    quantize = params.label.quantize
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or params.classifier.compare:
            spec = params.classifier.candidates[name]
            if spec.kind == "finetune":
                spec_fit, sub = spec.model_copy(update={"epochs": 1}), np.r_[np.flatnonzero(y == 0)[:32], np.flatnonzero(y == 1)[:32]]
            else:
                spec_fit, sub = spec, np.arange(len(y))
            fitted = classifier.head(spec_fit, 0).fit(classifier.inputs(spec_fit, labeled.iloc[sub]), y[sub])
            folder = Path(tmp) / name
            classifier.LabelingModel({name: (spec, fitted)}, classifier.Calibrator("none"), 0.5, {}).save(folder, "")
            model = classifier.LabelingModel.load(folder, quantize=quantize)
            rows.append(
                (name, spec.kind, "int8" if quantize and spec.kind == "finetune" else "fp32", timed(model, questions, params.label.batch_size))
            )
        pipeline = catalog.dataset_path("classifier")
        if (pipeline / classifier.META).exists():
            model = classifier.LabelingModel.load(pipeline, quantize=quantize)
            rows.append(
                (
                    f"pipeline: {model.meta.get('chosen')}",
                    "+".join(s.kind for s, _ in model.members.values()),
                    "as labeled",
                    timed(model, questions, params.label.batch_size),
                )
            )
    print(
        f"{len(questions)} mirror questions, {params.cpu.threads} torch threads, "
        f"label.batch_size {params.label.batch_size}, label.quantize {quantize}"
    )
    print(f"{'candidate':<28} {'kind':<18} {'weights':<10} {'questions/s':>12}")
    for name, kind, weights, qps in rows:
        print(f"{name:<28} {kind:<18} {weights:<10} {qps:>12.1f}{'  below the 60/s floor' if qps < FLOOR else ''}")
    rate = {r[0]: r[3] for r in rows if r[0] in params.classifier.candidates and params.classifier.candidates[r[0]].selectable}
    pairs = [(a, b) for i, a in enumerate(rate) for b in list(rate)[i + 1 :]]
    print("ensembles (probability average): " + ", ".join(f"{a}+{b} {1 / (1 / rate[a] + 1 / rate[b]):.1f}/s" for a, b in pairs))


if __name__ == "__main__":
    main()
