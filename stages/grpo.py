"""Stage grpo: GRPO (TRL GRPOTrainer) from the SFT checkpoint on the RL prompts, a share adversarial -> models/checkpoints/grpo."""

import statistics

from registry import catalog, io, rewards, trainers, training
from registry.adversarial import RECONSIDER_CUE
from registry.backends import pin, pin_digest
from registry.errors import MedregError, run_stage


def main() -> None:
    """Train grpo.base_model on data/train/rl.parquet, prefilling the traces of data/train/rl_traces.parquet."""
    from datasets import Dataset
    from trl import GRPOConfig

    s = trainers.setup("grpo")
    p, tokenizer = s.p, s.tokenizer
    rows = io.load("rl_data")
    if rows.empty:
        raise MedregError("grpo: data/train/rl.parquet has no prompts: see data/metrics/train_data.json and train_data.select.rl")
    traces = io.load("rl_traces").set_index(["dataset", "qid"])["trace"].to_dict()
    cue = s.params.adversarial.cue or RECONSIDER_CUE
    prompts = [training.rl_example(r, s.target.chat, tokenizer, traces.get((r["dataset"], r["qid"])), cue) for r in rows.to_dict("records")]
    digests = {
        "data/train/rl.parquet": trainers.md5(catalog.dataset_path("rl_data")),
        "data/train/rl_traces.parquet": trainers.md5(catalog.dataset_path("rl_traces")),
        s.base.name: pin_digest(pin(s.base)),
    }
    folder, resume = trainers.run_dir("grpo", {"params": p.model_dump(), "inputs": digests})
    weights = p.rewards.model_dump()
    config = GRPOConfig(
        **trainers.trainer_args(p, folder),
        per_device_train_batch_size=p.prompts_per_step * p.num_generations,
        num_generations=p.num_generations,
        max_completion_length=p.max_completion_length,
        temperature=p.temperature,
        beta=p.beta,
        loss_type=p.loss_type,
        reward_weights=list(weights.values()),
        **trainers.vllm_args(p),
    )
    trainer = trainers.grpo_trainer(
        p,
        model=s.load_model(),
        reward_funcs=[rewards.REWARDS[name] for name in weights],
        args=config,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
        peft_config=trainers.lora_config(p),
        callbacks=trainers.live_callback(catalog.dataset_path("grpo_live"), resume),
    )
    result = trainer.train(resume_from_checkpoint=resume or None)
    steps = [entry for entry in trainer.state.log_history if "reward" in entry]

    def logged(key: str) -> list[float]:
        return [entry[key] for entry in steps if key in entry]

    def mean(key: str) -> float | None:
        return round(statistics.fmean(logged(key)), 4) if logged(key) else None

    metrics = {
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "prompts": len(prompts),
        "adversarial_prompts": sum(x["adversarial"] for x in prompts),
        "reward_first": round(steps[0]["reward"], 4) if steps else None,
        "reward_last": round(steps[-1]["reward"], 4) if steps else None,
        "reward_mean": mean("reward"),
        **{f"{name}_mean": mean(f"rewards/{rewards.REWARDS[name].__name__}/mean") for name in weights},
        "frac_reward_zero_std_mean": mean("frac_reward_zero_std"),
        "steps_with_reward_spread": sum(entry.get("frac_reward_zero_std", 1.0) < 1.0 for entry in steps),
        "completion_length_mean": mean("completions/mean_length"),
        # vLLM's log-probs of its samples vs the trainer's: near 0 only while the engine has the trained weights
        "vllm_logp_difference_max": max(logged("sampling/sampling_logp_difference/max"), default=None),
    }
    timings = {
        "seconds": round(result.metrics["train_runtime"], 1),
        "seconds_per_step": round(result.metrics["train_runtime"] / max(trainer.state.global_step, 1), 1),
        "resumed": bool(resume),
    }
    if not s.save(trainer, digests, metrics, folder, trainers.dataset_ids(rows)):
        return
    io.save("grpo_metrics", metrics)
    io.save("timings", timings, stage="grpo")
    trainers.finish(folder)
    print(f"grpo: {metrics['steps']} steps, reward {metrics['reward_first']} -> {metrics['reward_last']}, "
          f"zero-spread groups {metrics['frac_reward_zero_std_mean']}; wrote {s.out}")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
