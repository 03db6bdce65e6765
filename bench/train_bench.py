"""Training throughput on this machine: SFT trained tokens/s and GRPO seconds per step, under different settings.

Each setting runs in its own process (the CPU-kernel pinning of stages/__init__.py must be chosen before torch loads),
on the demo's selected training data (`dvc repro select_training rl_traces` first) with the embedded SmolLM2-135M
(SFT) and the SFT checkpoint (GRPO; `dvc repro sft`). Prints a table with peak memory (resident set) per process.

Usage: python bench/train_bench.py [--sft-steps 6] [--grpo-steps 2] [--only sft|grpo] [--setting SUBSTRING ...]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIVE = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "DNNL_MAX_CPU_ISA": "ALL"}  # this machine's own (AVX-512) kernels

SFT = {  # name: (SFTConfig overrides, env)
    "TRL defaults (gradient checkpointing, padded batches)": ({"gradient_checkpointing": True}, {}),
    "no gradient checkpointing": ({}, {}),
    "+ padding-free (the demo's setting)": ({"padding_free": True, "max_length": None}, {}),
    "+ packing (bfd)": ({"packing": True}, {}),
    "no gradient checkpointing, native AVX-512 kernels (not bit-stable)": ({}, NATIVE),
    "padding-free, native AVX-512 kernels (not bit-stable)": ({"padding_free": True, "max_length": None}, NATIVE),
    "padding-free, native kernels, bf16 autocast (not bit-stable)": ({"padding_free": True, "max_length": None, "bf16": True}, NATIVE),
    "padding-free, 2 processes (torchrun, gloo; same global batch)": ({"padding_free": True, "max_length": None}, {"LAUNCH": "torchrun"}),
}
GRPO = {  # name: (prompts, generations, completion tokens, overrides, env)
    "anchor shape 8 x 2 x 64, TRL defaults: gradient checkpointing (the demo's setting)": (8, 2, 64, {"gradient_checkpointing": True}, {}),
    "anchor shape 8 x 2 x 64, no gradient checkpointing": (8, 2, 64, {}, {}),
    "anchor shape 8 x 2 x 64, native AVX-512 kernels (not bit-stable)": (8, 2, 64, {"gradient_checkpointing": True}, NATIVE),
    "anchor shape 8 x 2 x 64, native kernels, bf16 autocast (not bit-stable)": (8, 2, 64, {"gradient_checkpointing": True, "bf16": True}, NATIVE),
    "anchor shape 8 x 2 x 64, vLLM colocate float32 (the pipeline's weight sync)": (8, 2, 64, {"gradient_checkpointing": True, "use_vllm": True}, {}),
    "anchor shape 8 x 2 x 64, vLLM colocate bfloat16 generation (the pipeline's weight sync)": (
        8,
        2,
        64,
        {"gradient_checkpointing": True, "use_vllm": True, "vllm_dtype": "bfloat16"},
        {},
    ),
    "8 x 4 x 128, TRL defaults (gradient checkpointing)": (8, 4, 128, {"gradient_checkpointing": True}, {}),
    "8 x 4 x 128, native AVX-512 kernels (not bit-stable)": (8, 4, 128, {"gradient_checkpointing": True}, NATIVE),
}


def sft_worker(overrides: dict, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from registry import catalog, io, training
    from registry.params import load_params
    from stages import pin_cpu

    params = load_params(ROOT / "params.yaml")
    pin_cpu(params.cpu.threads)
    location = ROOT / catalog.model(params.sft.base_model).source.local.path
    tokenizer = AutoTokenizer.from_pretrained(location)
    rows = io.load("sft_data", ROOT)
    target = catalog.model(params.sft.model)
    examples = [training.sft_example(r, target.chat, params.sft.max_reasoning_words) for r in rows.to_dict("records")]
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:  # the same global batch, split over the processes
        overrides = {**overrides, "ddp_backend": "gloo"}
    args = {"output_dir": "/tmp/medreg-bench-sft", "max_steps": steps, "per_device_train_batch_size": params.sft.batch_size // processes,
            "learning_rate": params.sft.learning_rate, "use_cpu": True, "bf16": False, "report_to": "none", "logging_steps": 1,
            "save_strategy": "no", "max_length": params.sft.max_length, "seed": 0, "gradient_checkpointing": False, **overrides}  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=Dataset.from_list(examples), processing_class=tokenizer)
    result = trainer.train()
    tokens = max(entry.get("num_tokens", 0) for entry in trainer.state.log_history)
    return {"seconds": result.metrics["train_runtime"], "tokens": tokens, "tokens_per_s": tokens / result.metrics["train_runtime"]}


def grpo_worker(prompts: int, generations: int, length: int, overrides: dict, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from registry import catalog, io, rewards, trainers, training
    from registry.params import load_params
    from stages import pin_cpu

    params = load_params(ROOT / "params.yaml")
    pin_cpu(params.cpu.threads)
    vllm_dtype = overrides.pop("vllm_dtype", "float32")
    p = params.grpo.model_copy(update={"use_vllm": overrides.pop("use_vllm", False), "vllm_mode": "colocate", "bf16": vllm_dtype == "bfloat16"})
    location = ROOT / catalog.dataset_path("sft_checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(location)
    target = catalog.model(params.grpo.model)
    data = [training.rl_example(r, target.chat, tokenizer) for r in io.load("rl_data", ROOT).to_dict("records")]
    args = {"output_dir": "/tmp/medreg-bench-grpo", "max_steps": steps, "per_device_train_batch_size": prompts * generations,
            "num_generations": generations, "max_completion_length": length, "learning_rate": 1e-6, "use_cpu": True, "bf16": False,
            "report_to": "none", "logging_steps": 1, "save_strategy": "no", "seed": 0, "gradient_checkpointing": False,
            "reward_weights": [1.0, 0.5, 0.25], **trainers.vllm_args(p), **overrides}  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    funcs = [rewards.accuracy, rewards.think_format, rewards.tags]
    config = GRPOConfig(**args)
    if p.bf16:  # bfloat16 generation in vLLM only: the trainer stays float32
        config.bf16 = False
    dataset = Dataset.from_list(data)
    trainer = trainers.grpo_trainer(p, model=model, reward_funcs=funcs, args=config, train_dataset=dataset, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = (time.perf_counter() - start) / steps
    logged = [e for e in trainer.state.log_history if "completions/mean_length" in e]
    generated = sum(e["completions/mean_length"] * prompts * generations for e in logged) / len(logged)
    zero = sum(e.get("frac_reward_zero_std", 1.0) for e in logged) / len(logged)
    return {"seconds_per_step": seconds, "generated_tokens_per_step": generated, "frac_reward_zero_std": zero}


def child(kind: str, name: str, steps: int) -> dict:
    import stages  # noqa: F401 - sets the stages' CPU-kernel pins in this environment, which the child inherits unless overridden

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    table = SFT if kind == "sft" else GRPO
    env.update(table[name][-1])
    launch = ["torchrun", "--standalone", "--nproc_per_node", "2"] if env.pop("LAUNCH", None) == "torchrun" else [sys.executable]
    cmd = [*launch, __file__, "--worker", kind, "--name", name, "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, cwd="/tmp", capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} / {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sft-steps", type=int, default=6)
    parser.add_argument("--grpo-steps", type=int, default=2)
    parser.add_argument("--only", choices=["sft", "grpo"])
    parser.add_argument("--setting", action="append", default=[], help="run only the settings whose name contains this (repeatable)")
    parser.add_argument("--worker", choices=["sft", "grpo"], help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker == "sft":
            got = sft_worker(SFT[args.name][0], args.steps)
        else:
            got = grpo_worker(*GRPO[args.name][:4], args.steps)
        got["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(got))
        return
    picked = [name for name in [*SFT, *GRPO] if not args.setting or any(part in name for part in args.setting)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start\n")
    if args.only != "grpo":
        print(f"SFT, {args.sft_steps} steps on the demo's sft.parquet (batch and max_length from params), SmolLM2-135M, 2 threads")
        print(f"| {'setting':<64} | trained tokens/s | seconds | peak RSS GB |")
        for name in [n for n in SFT if n in picked]:
            r = child("sft", name, args.sft_steps)
            print(f"| {name:<64} | {r['tokens_per_s']:>16.1f} | {r['seconds']:>7.1f} | {r['peak_rss_gb']:>11.1f} |", flush=True)
    if args.only != "sft":
        print(f"\nGRPO, {args.grpo_steps} steps on the demo's rl.parquet from the SFT checkpoint (prompts x generations x completion tokens)")
        print(f"| {'setting':<64} | s/step | generated tok/step | generated tok/s | zero-spread share | peak RSS GB |")
        for name in [n for n in GRPO if n in picked]:
            r = child("grpo", name, args.grpo_steps)
            rate = r["generated_tokens_per_step"] / r["seconds_per_step"]
            print(f"| {name:<64} | {r['seconds_per_step']:>6.1f} | {r['generated_tokens_per_step']:>18.0f} | {rate:>15.1f} "
                  f"| {r['frac_reward_zero_std']:>17.2f} | {r['peak_rss_gb']:>11.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
