"""Stage sft: supervised fine-tuning (TRL SFTTrainer) on the selected reasoning-heavy rows -> models/checkpoints/sft."""

from registry import catalog, io, trainers, training
from registry.backends import pin, pin_digest
from registry.errors import MedregError, run_stage


def main() -> None:
    """Train sft.base_model on data/train/sft.parquet; resume a killed run from its last trainer checkpoint."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    s = trainers.setup("sft")
    p, tokenizer = s.p, s.tokenizer
    rows = io.load("sft_data")
    examples = [training.sft_example(r, s.target.chat, p.max_reasoning_words) for r in rows.to_dict("records")]
    lengths = [len(tokenizer(tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False))["input_ids"]) for e in examples]
    fits = [e for e, n in zip(examples, lengths, strict=True) if n <= p.max_length]
    if not fits:
        raise MedregError(f"sft.max_length: none of the {len(examples)} SFT rows fits in {p.max_length} tokens (shortest: {min(lengths, default=0)})")
    digests = {"data/train/sft.parquet": trainers.md5(catalog.dataset_path("sft_data")), s.base.name: pin_digest(pin(s.base))}
    folder, resume = trainers.run_dir("sft", {"params": p.model_dump(), "inputs": digests})

    config = SFTConfig(
        **trainers.trainer_args(p, folder),
        per_device_train_batch_size=p.batch_size,
        max_length=None if p.padding_free and not p.packing else p.max_length,
        packing=p.packing,
        padding_free=p.padding_free,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(
        model=s.load_model(),
        args=config,
        train_dataset=Dataset.from_list(fits),
        processing_class=tokenizer,
        peft_config=trainers.lora_config(p),
        callbacks=trainers.live_callback(catalog.dataset_path("sft_live"), resume),
    )
    result = trainer.train(resume_from_checkpoint=resume or None)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    metrics = {
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "examples": len(fits),
        "too_long_dropped": len(examples) - len(fits),
        "first_loss": round(logs[0]["loss"], 4) if logs else None,
        "last_loss": round(logs[-1]["loss"], 4) if logs else None,
        "train_loss": round(result.training_loss, 4),
        "trained_tokens": int(logs[-1].get("num_tokens", 0)) if logs else 0,
    }
    seconds = round(result.metrics["train_runtime"], 1)
    timings = {
        "seconds": seconds,
        "tokens_per_second": None if resume else round(metrics["trained_tokens"] / max(seconds, 1e-9), 1),
        "resumed": bool(resume),
    }
    if not s.save(trainer, digests, metrics, folder, trainers.dataset_ids(rows)):
        return
    io.save("sft_metrics", metrics)
    io.save("timings", timings, stage="sft")
    trainers.finish(folder)
    print(f"sft: {metrics['steps']} steps on {len(fits)} rows, loss {metrics['first_loss']} -> {metrics['last_loss']}; wrote {s.out}")


if __name__ == "__main__":
    run_stage(main)
