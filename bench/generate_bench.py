"""Generation throughput of the transformers backend on CPU with the default model: one prompt at a time vs batched.

Same 16 demo questions (rendered with the model's chat template), greedy; three regimes: direct answers (max 32 new
tokens), step-by-step answers (max 128; the tiny model still stops early), both dominated by prompt processing, and
exactly 128 new tokens per prompt (`=`, ignore_eos as in vLLM's throughput benchmark), dominated by decoding.
tokens/s counts new tokens up to each reply's end-of-turn. On a GPU machine with vLLM installed (`--vllm`) it adds vLLM on the
same prompts. Needs the converted checkpoint (`dvc repro convert_models`). Usage: python bench/generate_bench.py
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import catalog, io  # noqa: E402
from registry.backends import Generation, TransformersBackend, VLLMBackend, model_location  # noqa: E402
from registry.evaluate import select_questions  # noqa: E402
from registry.prompts import build_chat  # noqa: E402
from stages import pin_cpu  # noqa: E402


def run(model_name: str, max_new_tokens: int, ignore_eos: bool, n_prompts: int, batch_sizes: list[int], use_vllm: bool) -> list[tuple]:
    """Time one catalog model on the same prompts at each batch size (and vLLM); rows of (run, prompt tokens, new tokens, s)."""
    model = catalog.model(model_name)
    questions = io.load("questions")
    labels = questions[["benchmark", "qid"]].assign(category="knowledge")
    rows = select_questions(questions, labels, "all", None, 0).sample(n=n_prompts, random_state=0)
    chats = [build_chat(r, model.chat) for r in rows.to_dict("records")]
    gen = Generation(max_new_tokens=max_new_tokens, ignore_eos=ignore_eos)
    location, revision = model_location(model)
    backend = TransformersBackend(location, revision, batch_size=1)
    prompt_tokens = sum(len(backend.tokenizer(backend.render(c), add_special_tokens=False)["input_ids"]) for c in chats)
    backend.generate(chats[:2], gen)  # warm-up
    results = []
    for bs in batch_sizes:
        backend.batch_size = bs
        t0 = time.perf_counter()
        done = backend.generate(chats, gen)
        results.append((f"{model_name} | transformers, batch {bs}", prompt_tokens, sum(c.tokens for c in done), time.perf_counter() - t0))
    if use_vllm:
        v = VLLMBackend(location, revision)
        v.generate(chats[:2], gen)
        t0 = time.perf_counter()
        done = v.generate(chats, gen)
        results.append((f"{model_name} | vllm", prompt_tokens, sum(c.tokens for c in done), time.perf_counter() - t0))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--vllm", action="store_true", help="also run vLLM (GPU machine with the gpu extra)")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    pin_cpu(2)  # as the stages run (params cpu.threads)
    # direct answers (the demo eval: prefill-bound) and step-by-step answers (decode-bound, like reasoning models)
    # and a fixed 128-token output (ignore_eos, the method of vLLM's throughput benchmark): decoding dominates
    scenarios = [("smollm2-135m-instruct", 32, False), ("smollm2-135m-instruct-cot", 128, False), ("smollm2-135m-instruct-cot", 128, True)]
    print(f"{args.prompts} demo prompts per run, greedy; tokens/s = new tokens (to each reply's end) / wall time\n")
    print(f"| {'model | run':<52} | max new | prompt tok | new tok | seconds | new tok/s | vs batch 1 |")
    print(f"|{'-' * 54}|--------:|-----------:|--------:|--------:|----------:|-----------:|")
    for name, max_new, ignore_eos in scenarios:
        results = run(name, max_new, ignore_eos, args.prompts, sizes, args.vllm)
        base = results[0][2] / results[0][3]
        for label, prompt_tok, new_tok, seconds in results:
            rate, cap = new_tok / seconds, f"{max_new}{'=' if ignore_eos else ''}"
            print(f"| {label:<52} | {cap:>7} | {prompt_tok:>10} | {new_tok:>7} | {seconds:>7.1f} | {rate:>9.1f} | {rate / base:>9.1f}x |", flush=True)


if __name__ == "__main__":
    main()
