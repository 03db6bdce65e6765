"""Which backend evaluates faster: the whole generation of an evaluate stage, engine start included, per backend.

For each question set — the demo's 24 evaluated questions, and a seeded sample of the real mirror (../shared/benchmarks,
all benchmarks, the same per-benchmark share as the whole mirror) — and each backend, it builds the backend as the
stage does (params.yaml's evaluate.runtime: batch_size for transformers, flush_every and vllm/vllm_cpu for vLLM),
generates every answer through `Generator` into an empty cache, and times both. The mirror row projects the whole
mirror (3,641 questions) from the sample's seconds per question. The answers of both backends are compared.
Where the time goes: `--max-new-tokens 1` times the prompts' prefill alone (one new token each); the stage's own
max_new_tokens minus that is the decoding.
Usage: python bench/eval_bench.py [--mirror-sample 240] [--model smollm2-135m-instruct] [--dtype auto] [--backends transformers,vllm]
       [--max-new-tokens N]
Native CPU kernels (faster, bfloat16 above all, but not bit-stable across CPUs): ATEN_CPU_CAPABILITY=avx512 MKL_CBWR=AUTO DNNL_MAX_CPU_ISA=ALL
"""

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import catalog  # noqa: E402
from registry.evaluate import evaluate, select_questions  # noqa: E402
from registry.generation import CompletionCache, Generator, generation_settings  # noqa: E402
from registry.ingest import ingest  # noqa: E402
from registry.params import load_params  # noqa: E402
from stages import pin_cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIRROR_QUESTIONS = 3641


def question_sets(sample: int) -> dict:
    """The demo's evaluated questions (params' limit) and a seeded, benchmark-stratified sample of the mirror."""
    params = load_params(ROOT / "params.yaml")
    demo = ingest(catalog.benchmarks(), "demo", ROOT / "data/demo").questions
    labels = demo[["benchmark", "qid"]].assign(category="reasoning")
    sets = {"demo": select_questions(demo, labels, "all", params.evaluate.questions.limit, 0)}
    mirror_dir = ROOT / params.ingest.mirror_dir
    if mirror_dir.is_dir():
        mirror = ingest(catalog.benchmarks(), "mirror", mirror_dir).questions
        share = sample / len(mirror)
        picked = pd.concat(g.sample(max(1, round(len(g) * share)), random_state=0) for _, g in mirror.groupby("benchmark"))
        sets[f"mirror sample (of {len(mirror)})"] = picked.assign(category="reasoning").reset_index(drop=True)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror-sample", type=int, default=240)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--backends", default="transformers,vllm", help="the first is the reference for 'same answers'")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the stage's (the model's catalog setting)")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    pin_cpu(params.cpu.threads)
    model = catalog.model(args.model)
    gen = generation_settings(model, params.evaluate.generation)
    if args.max_new_tokens is not None:
        gen = dataclasses.replace(gen, max_new_tokens=args.max_new_tokens)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start; model {args.model}, "
          f"dtype {args.dtype}, max_new_tokens {gen.max_new_tokens}; seconds include building the backend\n")  # fmt: skip
    header = "questions | n | backend | start s | generate s | stage s | s/question | new tokens | projected whole mirror | same answers as the first"
    print(f"| {header} |")
    print("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for label, rows in question_sets(args.mirror_sample).items():
        answers = {}
        names = args.backends.split(",")
        for backend in names:
            runtime = params.evaluate.runtime.model_copy(update={"backend": backend, "dtype": args.dtype})
            with tempfile.TemporaryDirectory() as tmp:
                generator = Generator(model, runtime, gen, CompletionCache(Path(tmp) / "c.jsonl"), "bench", root=ROOT)
                t0 = time.perf_counter()
                generator.backend()
                started = time.perf_counter() - t0
                preds = evaluate(generator, rows)
                total = time.perf_counter() - t0
            answers[backend] = preds["extracted"].fillna("-").tolist()
            same = sum(a == b for a, b in zip(answers[backend], answers[names[0]], strict=True)) / len(rows)
            per_q = total / len(rows)
            projected = f"{(started + (total - started) / len(rows) * MIRROR_QUESTIONS) / 60:.0f} min" if label != "demo" else ""
            seconds = [f"{started:.0f}", f"{total - started:.0f}", f"{total:.0f}", f"{per_q:.2f}"]
            row = [label, len(rows), backend, *seconds, int(preds["tokens"].sum()), projected, f"{same:.3f}"]
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
            del generator


if __name__ == "__main__":
    main()
