"""params.yaml as typed models: every section validated once, at stage start, with errors that name the key.

params.yaml is the one place for every knob's value (DVC tracks it); these models say what each knob may be.
Names given in params (benchmarks, models) are checked against the catalogs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from registry import catalog
from registry.catalog import Strict
from schemas.vocab import Backend, Protocol, Source

PARAMS_YAML = "params.yaml"
PROFILES = Path(__file__).parent / "profiles"  # NAME.yaml: values that replace params.yaml's, chosen at launch (`medreg run --profile`)


def _names(value: Any, what: str, all_ok: bool = False, empty_ok: bool = False, info: ValidationInfo | None = None) -> Any:
    """'all' (if all_ok), [] (if empty_ok) or a non-empty list of distinct names of the benchmark or model catalog.

    The model catalog is registry/models.yaml, or the file the validation context names (`models_yaml`: a copy with
    an experiment's overrides applied, as `medreg eval` checks before it runs).
    """
    if (all_ok and value == "all") or (empty_ok and value == []):
        return value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be {'all or ' if all_ok else ''}a non-empty list of {what} names, got {value!r}")
    models_yaml = ((info.context if info else None) or {}).get("models_yaml") or catalog.MODELS_YAML
    known = catalog.names({"benchmark": catalog.BENCHMARKS_YAML, "model": models_yaml}.get(what, catalog.TRAINING_YAML))
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown} (known: {', '.join(known)})")
    if len(set(value)) != len(value):
        raise ValueError(f"lists a {what} twice: {value}")
    return value


def _model(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a model name, got {value!r}")
    return _names([value], "model", info=info)[0]


Benchmarks = Annotated[Literal["all"] | list[str], BeforeValidator(lambda v: _names(v, "benchmark", all_ok=True))]
SomeBenchmarks = Annotated[list[str], BeforeValidator(lambda v: _names(v, "benchmark", empty_ok=True))]
TrainingDatasets = Annotated[Literal["all"] | list[str], BeforeValidator(lambda v: _names(v, "training dataset", all_ok=True))]
Models = Annotated[list[str], BeforeValidator(lambda v, info: _names(v, "model", info=info))]
SomeModels = Annotated[list[str], BeforeValidator(lambda v, info: _names(v, "model", empty_ok=True, info=info))]
ModelName = Annotated[str, BeforeValidator(_model)]


class Ingest(Strict):
    """Where questions come from and what happens to bad rows or vanished benchmarks."""

    source: Source
    demo_dir: str
    mirror_dir: str
    benchmarks: Benchmarks
    hub_source: Literal["study", "original"]
    allow_unpinned: bool
    allow_drop: SomeBenchmarks  # benchmarks that may vanish (file deleted or empty) without failing
    on_invalid: Literal["fail", "quarantine"]


class Candidate(Strict):
    """One classifier candidate: its kind, input text and the knobs that kind reads (the others keep their defaults)."""

    kind: Literal["finetune", "frozen", "tfidf", "features", "length"]
    text: Literal["question", "question_options"] = "question"  # finetune, frozen, tfidf
    base_model: str | None = None  # finetune, frozen: packaged:<package>, a local folder or a Hub id
    max_length: int = Field(default=256, gt=0)  # finetune, frozen: tokens
    layer: int = -1  # frozen: the hidden layer whose mean over tokens is the feature vector (-1 = last)
    C: float = Field(default=1.0, gt=0)  # logistic-regression inverse regularisation (all kinds but finetune)
    epochs: int = Field(default=4, gt=0)  # finetune
    learning_rate: float = Field(default=5.0e-5, gt=0)
    batch_size: int = Field(default=16, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup: float = Field(default=0.1, ge=0, lt=1)  # fraction of the steps
    class_weights: Literal["balanced", "none"] = "balanced"  # every kind
    selectable: bool = True  # false: cross-validated and reported, never the labeling model (e.g. too slow to label)

    @model_validator(mode="after")
    def _encoder(self) -> Candidate:
        if self.kind in ("finetune", "frozen") and not self.base_model:
            raise ValueError(f"kind {self.kind} needs base_model")
        return self


class CrossValidation(Strict):
    """Stratified k-fold cross-validation over every expert-labeled question."""

    folds: int = Field(ge=2)
    seed: int


class Ensemble(Strict):
    """The probability average of the best `size` selectable candidates (by cross-validated macro-F1); 0 = none."""

    size: int = Field(ge=0)

    @field_validator("size")
    @classmethod
    def _size(cls, v: int) -> int:
        if v == 1:
            raise ValueError("must be 0 (no ensemble) or at least 2")
        return v


class Classifier(Strict):
    """The reasoning-vs-knowledge classifier: candidates compared by cross-validation, the chosen one refit on all labels."""

    candidates: dict[str, Candidate]
    compare: list[str]  # the candidates cross-validated (the others stay defined, one -S away)
    select: str  # best (highest cross-validated macro-F1 of the selectable) | ensemble | a compared candidate
    ensemble: Ensemble
    cv: CrossValidation
    calibration: Literal["sigmoid", "isotonic", "none"]  # fit on out-of-fold probabilities
    threshold: Literal["tune"] | float  # tune: max out-of-fold macro-F1
    device: Literal["cpu", "cuda"]
    seed: int

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if v != "tune" and not 0 < v < 1:
            raise ValueError(f"must be 'tune' or a number in (0, 1), got {v!r}")
        return v

    @field_validator("compare")
    @classmethod
    def _compare(cls, v: list[str], info: ValidationInfo) -> list[str]:
        known = info.data.get("candidates", {})
        unknown = [name for name in v if name not in known]
        if unknown or not v or len(set(v)) != len(v):
            raise ValueError(f"must list distinct candidates of classifier.candidates ({', '.join(known)}), got {v!r}")
        return v

    @model_validator(mode="after")
    def _select(self) -> Classifier:
        if self.select not in ("best", "ensemble", *self.compare):
            raise ValueError(f"select: must be best, ensemble or a compared candidate ({', '.join(self.compare)}), got {self.select!r}")
        if self.select == "ensemble" and self.ensemble.size == 0:
            raise ValueError("select: ensemble needs ensemble.size >= 2")
        return self


class Label(Strict):
    """Categorising every question with the trained classifier."""

    source: Literal["classifier", "study"]  # study: the study collection's is_reasoning / reasoning_prob (hub source study)
    prefer_expert: bool  # category = the expert's where the source has one
    batch_size: int = Field(gt=0)
    quantize: bool


class Questions(Strict):
    """Which questions are evaluated: benchmarks, a per-benchmark limit in a seeded order."""

    benchmarks: Benchmarks
    limit: int | None = Field(gt=0)  # per benchmark; null = all
    seed: int


class GenerationOverrides(Strict):
    """Overrides of a model's catalog generation defaults; null keeps the default."""

    max_new_tokens: int | None = Field(gt=0)
    temperature: float | None = Field(ge=0)
    top_p: float | None = Field(gt=0, le=1)
    top_k: int | None = Field(ge=0)  # 0: off
    repetition_penalty: float | None = Field(gt=0)  # 1.0: off
    seed: int


# vllm.LLM arguments the pipeline sets itself, and where: evaluate.runtime.vllm must not repeat them
VLLM_SET_ELSEWHERE = {
    "model": "the model catalog",
    "revision": "the model catalog",
    "tensor_parallel_size": "evaluate.runtime.tensor_parallel_size",
    "seed": "evaluate.generation.seed",
    "dtype": "evaluate.runtime.dtype",
}
Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class Runtime(Strict):
    """How generation runs: backend override, batching, parallelism, endpoint limits."""

    backend: Backend | None  # null = each model's catalog default
    batch_size: int = Field(gt=0)  # transformers: prompts per generate call; transformers and openai: per cache flush
    flush_every: int = Field(gt=0)  # vllm: prompts per LLM.chat call and cache flush (vLLM schedules them itself)
    tensor_parallel_size: int = Field(gt=0)
    concurrency: int = Field(gt=0)
    max_retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    allow_unpinned: bool
    dtype: Dtype = "auto"  # both local backends; auto: float32 on CPU, the checkpoint's dtype on a GPU
    vllm: dict[str, Any]  # extra vllm.LLM arguments on every platform
    vllm_cpu: dict[str, Any] = {}  # added on CPU (KV cache size, eager mode)
    vllm_cuda: dict[str, Any] = {}  # added on a GPU (gpu_memory_utilization)

    @field_validator("vllm", "vllm_cpu", "vllm_cuda")
    @classmethod
    def _not_twice(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for key in sorted(v):
            if key in VLLM_SET_ELSEWHERE:
                raise ValueError(f"{key} is set in {VLLM_SET_ELSEWHERE[key]}, not in evaluate.runtime.{info.field_name}")
        return v

    def vllm_args(self, cuda: bool) -> dict[str, Any]:
        """Extra vllm.LLM arguments on this platform: `vllm`, then `vllm_cuda` or `vllm_cpu` over it."""
        return self.vllm | (self.vllm_cuda if cuda else self.vllm_cpu)


class Bootstrap(Strict):
    """Percentile bootstrap resamples and their seed: the CIs of the knowledge-reasoning gap and the adversarial drop."""

    n: int = Field(gt=0)
    seed: int


class Evaluate(Strict):
    """Clean evaluation: models, questions, generation overrides, runtime, bootstrap."""

    models: Models
    prompt: Literal["direct", "cot", "strict"] | None  # null: each model's catalog chat.prompt
    questions: Questions
    generation: GenerationOverrides
    runtime: Runtime
    bootstrap: Bootstrap


class Traces(Strict):
    """Misleading traces: from a generator model (validated, retried) or from the study collection."""

    source: Literal["model", "study"]
    generator: ModelName
    per_question: int = Field(gt=0)
    max_attempts: int = Field(gt=0)
    retry_temperature: float = Field(gt=0)
    seed: int
    generation: GenerationOverrides


class Adversarial(Strict):
    """Adversarial evaluation: models (may be none), protocol, cue, traces."""

    models: SomeModels
    protocol: Protocol
    cue: str | None  # null: the default cue
    traces: Traces

    @field_validator("models")
    @classmethod
    def _evaluated(cls, v: list[str], info: ValidationInfo) -> list[str]:
        clean = (info.context or {}).get("evaluated", [])
        missing = [m for m in v if m not in clean]
        if missing:
            raise ValueError(f"{missing} not in evaluate.models: the clean run is the baseline of the adversarial one")
        return v


class Selection(Strict):
    """Which training rows of one kind are kept: the reasoning-heavy ones by the registry's classifier."""

    min_p_reasoning: float | None = Field(ge=0, le=1)  # keep p_reasoning >= this; null: no threshold
    top_share: float | None = Field(gt=0, le=1)  # then the most reasoning-heavy share; null: all
    max_rows: int | None = Field(gt=0)  # then at most this many; null: all


class Decontamination(Strict):
    """Overlap with any ingested evaluation question that removes a training row."""

    ngram: int = Field(ge=3)  # lower-cased word n-grams (open-r1 and s1: 8)
    min_ngram_share: float = Field(ge=0, le=1)  # share of a row's n-grams found in one evaluation question; 0: any
    common: int | None = Field(ge=2)  # an n-gram in this many evaluation questions is stock phrasing, not evidence
    min_ratio: float | None = Field(gt=0, le=100)  # rapidfuzz ratio of the question texts (m1: 95); null: off


class TrainData(Strict):
    """Where the training datasets come from (registry/training.yaml) and how they are selected."""

    source: Source
    demo_dir: str
    mirror_dir: str  # holds benchmarks/ and training/, like ../shared
    datasets: TrainingDatasets
    allow_unpinned: bool
    select: dict[Literal["sft", "rl"], Selection]
    decontaminate: Decontamination

    @field_validator("select")
    @classmethod
    def _both(cls, v: dict) -> dict:
        if set(v) != {"sft", "rl"}:
            raise ValueError(f"needs an entry for sft and for rl, got {sorted(v)}")
        return v


class Lora(Strict):
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the saved checkpoint."""

    r: int = Field(gt=0)
    alpha: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"]


class Trainer(Strict):
    """What SFT and GRPO share: steps, optimiser, precision, checkpoints to resume from."""

    base_model: ModelName  # the catalog model whose weights are trained
    model: ModelName  # the catalog entry of the result (its chat settings build the prompts)
    max_steps: int | None = Field(gt=0)  # null: train `epochs`
    epochs: float = Field(gt=0)
    learning_rate: float = Field(gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"]
    warmup: float = Field(ge=0, lt=1)  # share of the steps
    grad_accum: int = Field(gt=0)
    bf16: bool  # GPU
    gradient_checkpointing: bool
    save_steps: int = Field(gt=0)  # trainer checkpoints to resume a killed run from
    seed: int
    lora: Lora | None
    launch: str  # what runs the stage module: python, or e.g. accelerate launch --config_file registry/accelerate/zero3.yaml


class Sft(Trainer):
    """Supervised fine-tuning on data/train/sft.parquet (TRL SFTTrainer)."""

    batch_size: int = Field(gt=0)  # sequences per device
    max_length: int = Field(gt=0)
    max_reasoning_words: int | None = Field(gt=0)  # keep the last whole sentences of each reasoning within this; null: all
    packing: bool
    padding_free: bool


class Rewards(Strict):
    """Weights of the reward functions (registry/rewards.py)."""

    accuracy: float = Field(ge=0)
    format: float = Field(ge=0)
    tags: float = Field(ge=0)


class VllmMemory(Strict):
    """The share of memory a colocated vLLM engine reserves: of RAM on CPU, of GPU memory on a GPU."""

    cpu: float = Field(gt=0, lt=1)
    cuda: float = Field(gt=0, lt=1)


class Grpo(Trainer):
    """GRPO on data/train/rl.parquet (TRL GRPOTrainer), a share of the prompts adversarial."""

    prompts_per_step: int = Field(gt=0)  # per device and accumulation step
    num_generations: int = Field(ge=2)
    max_completion_length: int = Field(gt=0)
    temperature: float = Field(gt=0)
    beta: float = Field(ge=0)  # KL penalty; 0 = no reference model
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"]
    adversarial_share: float = Field(ge=0, le=1)  # RL prompts that get a misleading trace (stage rl_traces)
    traces: Traces  # how those traces are made (source: model)
    rewards: Rewards
    use_vllm: bool  # generate with vLLM (the CPU build here, CUDA on a GPU node)
    vllm_mode: Literal["colocate", "server"]  # server: GPU only (weights go over NCCL)
    vllm_memory: VllmMemory  # colocate: what the engine reserves


class Cpu(Strict):
    """Torch on CPU."""

    threads: int = Field(gt=0)  # torch threads on CPU: training and inference are bit-identical for a given count


class Hub(Strict):
    """Where hub sources are read from."""

    twin: Path | None  # null: the Hugging Face Hub; else a local twin laid out like it (owner/name git repositories)

    @field_validator("twin")
    @classmethod
    def _twin(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"{v} is not a directory (build one with: python tests/fixtures/hub/build.py {v})")
        return v


class Params(Strict):
    """Every section of params.yaml."""

    profile: str  # the profiles applied at launch, joined by '+' (params.yaml itself: demo)
    cpu: Cpu
    hub: Hub
    ingest: Ingest
    classifier: Classifier
    label: Label
    evaluate: Evaluate
    adversarial: Adversarial
    train_data: TrainData
    sft: Sft
    grpo: Grpo


def load_params(path: Path | str = PARAMS_YAML, models_yaml: Path | None = None) -> Params:
    """params.yaml, validated: a CatalogError names each bad key (e.g. `classifier.split.test`).

    Model names are checked against registry/models.yaml, or against `models_yaml` (a copy with overrides applied).
    """
    data = catalog.load_yaml(path)
    evaluated = data.get("evaluate", {}).get("models", []) if isinstance(data, dict) else []
    context = {"evaluated": evaluated if isinstance(evaluated, list) else [], "models_yaml": models_yaml}
    return catalog.check(Params, data, path, context=context)


def override_value(value: Any) -> str:
    """A value in Hydra's override grammar (what `dvc exp run -S key=value` parses)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    text = re.sub(r"(\\+)(?='|$)", lambda m: m[1] * 2, text)  # Hydra: backslashes escape only before a quote (or the end)
    return "'" + text.replace("'", "\\'") + "'"


def _leaves(base: Any, overlay: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in overlay.items():
        here = base.get(key) if isinstance(base, dict) else None
        if isinstance(value, dict) and value and isinstance(here, dict):
            _leaves(here, value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


def profile_overrides(names: list[str], params_path: Path | str = PARAMS_YAML) -> list[str]:
    """`dvc exp run -S` overrides applying registry/profiles/NAME.yaml in order (later profiles win), and `profile`.

    A mapping in a profile merges into the params' mapping key by key; any other value replaces the params' value.
    """
    base = catalog.load_yaml(Path(params_path))
    leaves: dict[str, Any] = {}
    for name in names:
        path = PROFILES / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
            raise ValueError(f"--profile {name}: no {path} (profiles: {known})")
        _leaves(base, catalog.load_yaml(path) or {}, "", leaves)
    leaves["profile"] = "+".join(names)
    return [f"{key}={override_value(value)}" for key, value in leaves.items()]
