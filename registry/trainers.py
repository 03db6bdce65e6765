"""What the SFT and GRPO stages share: trainer arguments from params, resumable runs, DVCLive logging, the saved checkpoint.

A run writes trainer checkpoints (weights and optimiser state) to `models/checkpoints/.runs/<stage>/`, a scratch folder
that is neither a DVC output nor in git: a killed run resumes from its last checkpoint when its fingerprint (params,
training data, base weights) is unchanged, and the folder is removed once the final weights are saved. It is not a DVC
output because it disappears after a successful run (an output that vanishes would make the stage look stale).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from registry import catalog
from registry.backends import model_location
from registry.catalog import Model
from registry.errors import MedregError
from registry.io import atomic_path
from registry.params import Grpo, Params, Trainer, load_params

RUNS = Path("models/checkpoints/.runs")


RUN_DEPENDENT = {"vllm_logp_difference_max", "processes"}  # in data/metrics only: the checkpoint's bytes stay reproducible


@dataclass
class Setup:
    """What a training stage starts from: params, the catalog entries of its base and of its result, the base weights."""

    stage: str
    params: Params
    p: Trainer
    base: Model
    target: Model
    location: str
    revision: str | None
    tokenizer: Any
    out: Path

    def load_model(self) -> Any:
        """The base weights, in bf16 where params say so (GPUs), else fp32."""
        import torch
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if self.p.bf16 else torch.float32
        return AutoModelForCausalLM.from_pretrained(self.location, revision=self.revision, dtype=dtype)

    def save(self, trainer: Any, digests: dict[str, str], metrics: dict[str, Any], folder: Path, datasets: list[str] | None = None) -> bool:
        """Save the final checkpoint with its model card; True in the process that writes the other outputs.

        `datasets`: what it was trained on, for the card (`dataset_ids` of the training rows).
        """
        params = self.p.model_dump()
        metrics = {k: v for k, v in metrics.items() if k not in RUN_DEPENDENT}
        meta = {"model": self.target.name, "base": self.base.name, "inputs": digests, "params": params, "metrics": metrics}
        text = card(self.target, self.base, self.stage, digests, params, metrics, datasets or [])
        save_checkpoint(trainer, self.tokenizer, self.out, text, meta, folder / "final")
        return is_main(trainer)


def setup(stage: str) -> Setup:
    """Params (validated), CPU pinning, the base model's weights and tokenizer, and a check of the output's catalog entry."""
    from transformers import AutoTokenizer

    from stages import pin_cpu

    params = load_params()
    p = getattr(params, stage)
    pin_cpu(params.cpu.threads)
    out = catalog.dataset_path(f"{stage}_checkpoint")
    target, base = catalog.model(p.model), catalog.model(p.base_model)
    check_output(target, f"{stage}.model", out)
    location, revision = model_location(base, allow_unpinned=params.evaluate.runtime.allow_unpinned)
    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    return Setup(stage, params, p, base, target, location, revision, tokenizer, out)


def md5(path: Path | str) -> str:
    """MD5 of a file, or of a folder's files (names and contents, sorted): what DVC would record, for model cards."""
    path, digest = Path(path), hashlib.md5()  # noqa: S324 - a content fingerprint, as in dvc.lock
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with file.open("rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def finish(folder: Path) -> None:
    """Remove a run's scratch folder once its final weights are saved."""
    shutil.rmtree(folder, ignore_errors=True)


def check_output(model: Model, key: str, expected: Path) -> None:
    """The catalog entry named by `<stage>.model` must point at the folder the stage writes."""
    if not model.source.local or Path(model.source.local.path) != expected:
        raise MedregError(f"{key}: catalog model '{model.name}' must have source local path {expected} (the folder this stage writes)")


def run_dir(stage: str, fingerprint: dict[str, Any]) -> tuple[Path, bool]:
    """The scratch folder of a run and whether to resume: only when a checkpoint of the same fingerprint is there.

    Under a multi-process launch the main process prepares the folder while the others wait, then all read it.
    """
    state = process_state()
    folder = RUNS / stage
    stamp = folder / "run.json"
    if state.is_main_process and not (stamp.exists() and json.loads(stamp.read_text()) == fingerprint):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        stamp.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    state.wait_for_everyone()
    complete = [c for c in folder.glob("checkpoint-*") if (c / "trainer_state.json").exists()]  # a kill mid-save leaves no state
    last = max(complete, key=lambda c: int(c.name.split("-")[1]), default=None)
    if last is not None and state.is_main_process:
        print(f"{stage}: resuming from {last} (a previous run of the same params and inputs stopped there)")
    return folder, last is not None


def cpu_group() -> bool:
    """True under a multi-process launch on CPU (torchrun sets WORLD_SIZE): the processes form a gloo group."""
    import torch

    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state() -> Any:
    """Accelerate's state of this process, joined to the group the trainer will use.

    A plain `PartialState()` under torchrun on CPU sees no group: every process would think it is the main one (and
    prepare the run folder at once). With `backend="gloo"`, as the trainer asks, it joins the group first.
    """
    from accelerate import PartialState

    return PartialState(backend="gloo") if cpu_group() else PartialState()


def is_main(trainer: Any) -> bool:
    """True in the process that writes outputs (always, without `accelerate launch`)."""
    return trainer.accelerator.is_main_process


def trainer_args(p: Trainer, output_dir: Path) -> dict[str, Any]:
    """TrainingArguments common to SFTConfig and GRPOConfig, from the stage's params."""
    import torch

    return {
        "output_dir": str(output_dir),
        "max_steps": p.max_steps or -1,
        "num_train_epochs": p.epochs,
        "learning_rate": p.learning_rate,
        "lr_scheduler_type": p.lr_scheduler,
        "warmup_steps": p.warmup,  # below 1: a share of the steps
        "gradient_accumulation_steps": p.grad_accum,
        "bf16": p.bf16,
        "use_cpu": not torch.cuda.is_available(),
        # several CPU processes (torchrun) form one gloo group; a lone process must not ask for one (no group to join)
        "ddp_backend": "gloo" if cpu_group() else None,
        "gradient_checkpointing": p.gradient_checkpointing,
        "save_strategy": "steps",
        "save_steps": p.save_steps,
        "save_total_limit": 1,
        "seed": p.seed,
        "data_seed": p.seed,
        "logging_steps": 1,
        "report_to": "none",  # DVCLive is attached explicitly (live_callback), with its own folder per stage
        "disable_tqdm": False,
    }


def lora_config(p: Trainer) -> Any:
    """A peft LoraConfig from params, or None for full fine-tuning."""
    if p.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=p.lora.r, lora_alpha=p.lora.alpha, lora_dropout=p.lora.dropout, target_modules=p.lora.target_modules, task_type="CAUSAL_LM")


def live_callback(folder: Path | str, resume: bool) -> list[Any]:
    """Transformers' DVCLive callback writing to `folder` (metrics.json, plots/), not creating DVC experiments itself.

    Only the main process logs (a list with the callback, or an empty one), so a multi-process run logs each step once.
    """
    from transformers.integrations import DVCLiveCallback

    from registry.live import Live

    if not process_state().is_main_process:
        return []
    return [DVCLiveCallback(live=Live(dir=str(folder), save_dvc_exp=False, dvcyaml=None, report=None, resume=resume))]


def save_checkpoint(trainer: Any, tokenizer: Any, out: Path, card_text: str, meta: dict[str, Any], staging: Path) -> None:
    """Final weights only (gathered across processes; LoRA merged), tokenizer, medreg.json and a README.md model card.

    Every process takes part in `save_model` (ZeRO-3 and FSDP gather the shards); the main process then swaps the
    folder in atomically, so `out` is either the previous checkpoint or the complete new one.
    """
    trainer.save_model(str(staging))
    if not trainer.accelerator.is_main_process:
        return
    if hasattr(trainer.model, "merge_and_unload"):  # peft saved only the adapters: save the merged weights instead
        trainer.model.merge_and_unload().save_pretrained(staging)
        for adapter in staging.glob("adapter_*"):
            adapter.unlink()
    tokenizer.init_kwargs.pop("local_files_only", None)  # a property of the run, not of the checkpoint
    tokenizer.save_pretrained(staging)
    (staging / "training_args.bin").unlink(missing_ok=True)  # pickled arguments: neither weights nor reproducible bytes
    (staging / "medreg.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (staging / "README.md").write_text(card_text)
    with atomic_path(out, directory=True) as tmp:
        for file in staging.iterdir():
            file.replace(tmp / file.name)


def dataset_ids(rows: Any) -> list[str]:
    """What training rows came from, as the card's `datasets` lists it.

    The Hub id of hub rows (their source_file is hf://<id>@<commit>/...), else the training catalog's name.
    """
    pairs = zip(rows["dataset"], rows["source_file"], strict=True)
    return sorted({f.removeprefix("hf://").split("@", 1)[0] if str(f).startswith("hf://") else d for d, f in pairs})


def card(
    target: Model,
    base: Model,
    stage: str,
    data: dict[str, str],
    params: dict[str, Any],
    metrics: dict[str, Any],
    datasets: list[str],
    results: list[dict[str, Any]] | None = None,
) -> str:
    """A model card: Hub YAML metadata, what it is, the base it was trained from, the md5 of each input, params, metrics.

    The YAML: `base_model` (the base's Hub id, else its catalog name), `library_name`, `license` (the catalog's, of the
    model or else its base, when known), `tags`, `datasets`, and a `model-index` only with `results` (rows of
    benchmark, category, accuracy); the training stages have none: evaluation runs after training.
    """
    meta: dict[str, Any] = {"base_model": base.source.hub.id if base.source.hub else base.name, "library_name": "transformers"}
    if target.license or base.license:
        meta["license"] = target.license or base.license
    meta |= {"pipeline_tag": "text-generation", "tags": ["medreg", stage, "medical", "biomedical", "reasoning"], "datasets": datasets}
    if results:
        meta["model-index"] = [
            {
                "name": target.name,
                "results": [
                    {
                        "task": {"type": "question-answering", "name": "multiple-choice question answering"},
                        "dataset": {"name": r["benchmark"], "type": r["benchmark"]},
                        "metrics": [{"type": "accuracy", "name": f"accuracy ({r['category']})", "value": r["accuracy"]}],
                    }
                    for r in results
                ],
            }
        ]
        evaluated = "Results above (`model-index`); every number is in the results database (`medreg query`)."
    else:
        evaluated = (
            "No evaluation results yet: the pipeline evaluates a checkpoint after training it. Once it has, see\n"
            f"`medreg query \"SELECT * FROM summary WHERE model = '{target.name}'\"`."
        )
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in data.items())
    return f"""---
{yaml.safe_dump(meta, sort_keys=False)}---

# {target.title} ({target.name})

Trained from `{base.name}` by the medreg pipeline (`dvc repro`); every input below is versioned by DVC (`dvc.lock`).

{evaluated}

| input | md5 |
|---|---|
{rows}

## Params

```json
{json.dumps(params, indent=2, default=str)}
```

## Metrics

```json
{json.dumps(metrics, indent=2, default=str)}
```
"""


def vllm_args(p: Grpo) -> dict[str, Any]:
    """GRPOConfig's vLLM settings from params; colocate in one plain process gets the distributed variables vLLM reads.

    TRL's colocated engine uses vLLM's `external_launcher`: every training process holds an engine and joins a
    torch.distributed group through RANK/WORLD_SIZE/MASTER_*; torchrun sets them, a plain `python` run gets rank 0 of 1.
    """
    import torch

    if not p.use_vllm:
        return {"use_vllm": False}
    cuda = torch.cuda.is_available()
    if p.vllm_mode == "server" and not cuda:
        raise MedregError("grpo.vllm_mode: server sends weights to the vLLM server over NCCL (GPU only); on CPU use colocate")
    if p.vllm_mode == "colocate" and "RANK" not in os.environ:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return {"use_vllm": True, "vllm_mode": p.vllm_mode, "vllm_gpu_memory_utilization": p.vllm_memory.cuda if cuda else p.vllm_memory.cpu}


def grpo_trainer(p: Grpo, **kwargs: Any) -> Any:
    """TRL's GRPOTrainer; a colocated vLLM engine on CPU computes in the training dtype and syncs by `sync_cpu_weights`."""
    import torch
    import trl.generation.vllm_generation as vllm_generation
    from trl import GRPOTrainer

    if not (p.use_vllm and p.vllm_mode == "colocate" and not torch.cuda.is_available()):
        return GRPOTrainer(**kwargs)
    llm = vllm_generation.LLM  # TRL passes no dtype: on CPU vLLM's `auto` would run a float32 checkpoint in bfloat16
    vllm_generation.LLM = functools.partial(llm, dtype="bfloat16" if p.bf16 else "float32")
    try:
        trainer = GRPOTrainer(**kwargs)
    finally:
        vllm_generation.LLM = llm
    trainer.vllm_generation.sync_weights = types.MethodType(sync_cpu_weights, trainer.vllm_generation)
    return trainer


def sync_cpu_weights(self: Any) -> None:
    """TRL's colocate weight sync, for vLLM's CPU build: replaces `VLLMGeneration.sync_weights`.

    After loading, vLLM's CPU linear layers pack their weights into oneDNN handles and leave an empty Parameter without a
    `weight_loader` (`UnquantizedLinearMethod.process_weights_after_loading` -> `dispatch_cpu_unquantized_gemm(...,
    remove_weight=True)`), so TRL's per-tensor `model.load_weights` fails (`'Parameter' object has no attribute
    'weight_loader'`) and would not reach the packed copy anyway. vLLM's in-place reload (`Worker.reload_weights`)
    restores the recorded parameters, loads, and packs again; a tied lm_head it does not pack again (a documented
    limit of vllm/model_executor/model_loader/reload), so that is done here.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    worker = self.llm.llm_engine.model_executor.driver_worker
    worker.reload_weights(weights_iterator=self._iter_named_params(), is_checkpoint_format=True)
    for module in worker.model_runner.get_model().modules():
        if isinstance(module, ParallelLMHead) and hasattr(module, "cpu_linear"):
            module.quant_method.process_weights_after_loading(module)
    self.llm.reset_prefix_cache()
