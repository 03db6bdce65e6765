"""Generation throughput: transformers vs vLLM (the real engine: the CPU build here, CUDA on a GPU node), float32 and bfloat16.

The same demo evaluation prompts (rendered with the model's chat template) for every run, greedy; three workloads:
  eval  the evaluation's real workload: the model's catalog max_new_tokens (32), stopping at the end of each answer
  cot   step-by-step answers (the -cot entry, max 128 new tokens), stopping at the end of each answer
  =128  exactly 128 new tokens per prompt (ignore_eos, the method of vLLM's throughput benchmark): decoding only
Batch b: transformers pads b prompts per `generate` call; vLLM gets b prompts per call and schedules them itself.
tokens/s = new tokens (up to each reply's end) / wall time of the run; engine start is timed apart (model load for
transformers; process spawn, weights, KV cache for vLLM). vLLM runs with params.yaml's evaluate.runtime (vllm, and
vllm_cpu or vllm_cuda). Needs the converted checkpoint (`dvc repro convert_models`).
Usage: python bench/generate_bench.py [--prompts 64] [--batch-sizes 1,16,64] [--dtypes float32,bfloat16]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import catalog, io  # noqa: E402
from registry.backends import Generation, TransformersBackend, VLLMBackend, model_location, on_cuda  # noqa: E402
from registry.evaluate import select_questions  # noqa: E402
from registry.params import load_params  # noqa: E402
from registry.prompts import build_chat  # noqa: E402
from stages import pin_cpu  # noqa: E402

WORKLOADS = [
    ("eval", "smollm2-135m-instruct", None, False),
    ("cot", "smollm2-135m-instruct-cot", None, False),
    ("=128", "smollm2-135m-instruct", 128, True),
]


def prompts(model_name: str, n: int) -> list:
    """`n` demo evaluation questions (cycled if the demo has fewer), as the model's chats."""
    model = catalog.model(model_name)
    questions = io.load("questions")
    rows = select_questions(questions, questions[["benchmark", "qid"]].assign(category="knowledge"), "all", None, 0).to_dict("records")
    return [build_chat(rows[i % len(rows)], model.chat) for i in range(n)]


def timed(backend, chats: list, gen: Generation, batch: int) -> tuple[int, float]:
    """New tokens and seconds for `chats` in calls of `batch` prompts."""
    t0, tokens = time.perf_counter(), 0
    for start in range(0, len(chats), batch):
        tokens += sum(c.tokens for c in backend.generate(chats[start : start + batch], gen))
    return tokens, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-one-prompts", type=int, default=8, help="prompts for batch 1 runs (decoding one at a time is slow)")
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--backends", default="transformers,vllm")
    args = parser.parse_args()
    sizes, dtypes, names = [int(b) for b in args.batch_sizes.split(",")], args.dtypes.split(","), args.backends.split(",")
    params = load_params()
    pin_cpu(params.cpu.threads)
    location, revision = model_location(catalog.model("smollm2-135m-instruct"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {'CUDA' if on_cuda() else 'no GPU'}; "
          f"load average {os.getloadavg()[0]:.1f} at start; greedy; tokens/s = new tokens / wall s\n")  # fmt: skip
    print("| backend | dtype | start s | workload | batch | prompts | new tokens | seconds | new tok/s |")
    print("|---|---|--:|---|--:|--:|--:|--:|--:|")
    for name in names:
        for dtype in dtypes:
            t0 = time.perf_counter()
            if name == "vllm":
                rt = params.evaluate.runtime
                backend = VLLMBackend(location, revision, seed=0, llm_kwargs=rt.vllm_args(on_cuda()), dtype=dtype)
            else:
                backend = TransformersBackend(location, revision, batch_size=1, dtype=dtype)
            start = time.perf_counter() - t0
            for workload, model_name, max_new, ignore_eos in WORKLOADS:
                model = catalog.model(model_name)
                gen = Generation(max_new_tokens=max_new or model.generation.max_new_tokens, ignore_eos=ignore_eos)
                chats = prompts(model_name, args.prompts)
                backend.generate(chats[:2], gen)  # warm-up
                for batch in sizes:
                    run = chats[: args.batch_one_prompts] if batch == 1 else chats
                    if name == "transformers":
                        backend.batch_size = batch
                    tokens, seconds = timed(backend, run, gen, batch)
                    row = [name, dtype, f"{start:.0f}", workload, batch, len(run), tokens, f"{seconds:.1f}", f"{tokens / seconds:.1f}"]
                    print("| " + " | ".join(map(str, row)) + " |", flush=True)
            del backend


if __name__ == "__main__":
    main()
