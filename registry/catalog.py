"""Load and lint the declarative catalogs (benchmarks.yaml, datasets.yaml) and params.yaml."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).parent
BENCHMARKS_YAML = PACKAGE_DIR / "benchmarks.yaml"
DATASETS_YAML = PACKAGE_DIR / "datasets.yaml"

ANSWER_FORMATS = ("letter", "yes_no_maybe")
FILE_FORMATS = ("jsonl", "json_object", "json_list")
FIELD_KEYS = ("id", "question", "context", "options", "answer", "answer_text", "expert_label", "meta")


class CatalogError(ValueError):
    """A catalog entry is malformed; the message names the file and the entry."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate entry '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open() as f:  # an open file lets YAML errors name the path
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError) as e:
        raise CatalogError(f"{path}: cannot read: {e}") from e
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at top level")
    return data


def _lint_fields(where: str, fields: Any) -> list[str]:
    if not isinstance(fields, dict):
        return [f"{where}: 'fields' must be a mapping"]
    errors = [f"{where}: unknown field key '{k}' (known: {', '.join(FIELD_KEYS)})" for k in fields if k not in FIELD_KEYS]
    if "question" not in fields:
        errors.append(f"{where}: fields.question is required")
    if "answer" not in fields and "answer_text" not in fields:
        errors.append(f"{where}: fields.answer or fields.answer_text is required")
    return errors


def lint_benchmarks(data: dict[str, Any], path: Path | str = BENCHMARKS_YAML) -> dict[str, dict[str, Any]]:
    """Check every benchmark entry; raise CatalogError listing all problems, else return the entries."""
    entries = data.get("benchmarks")
    if not isinstance(entries, dict) or not entries:
        raise CatalogError(f"{path}: 'benchmarks' must be a non-empty mapping")
    errors: list[str] = []
    for name, entry in entries.items():
        where = f"{path}: benchmark '{name}'"
        if not isinstance(entry, dict):
            errors.append(f"{where}: entry must be a mapping")
            continue
        for key in ("title", "license", "answer_format", "fields", "mirror", "hub"):
            if key not in entry:
                errors.append(f"{where}: missing '{key}'")
        if entry.get("answer_format", ANSWER_FORMATS[0]) not in ANSWER_FORMATS:
            errors.append(f"{where}: answer_format must be one of {ANSWER_FORMATS}")
        if "fields" in entry:
            errors += _lint_fields(where, entry["fields"])
        if entry.get("answer_format") == "letter" and "options" not in entry.get("fields", {}):
            errors.append(f"{where}: lettered benchmarks need fields.options")
        mirror = entry.get("mirror", {})
        if not isinstance(mirror, dict) or "file" not in mirror or mirror.get("format") not in FILE_FORMATS:
            errors.append(f"{where}: mirror needs 'file' and 'format' (one of {FILE_FORMATS})")
        hub = entry.get("hub", {})
        if not isinstance(hub, dict) or "study" not in hub:
            errors.append(f"{where}: hub needs a 'study' source")
        for hub_name, spec in hub.items() if isinstance(hub, dict) else []:
            if not isinstance(spec, dict) or not {"path", "split", "revision"} <= spec.keys():
                errors.append(f"{where}: hub.{hub_name} needs path, split and revision")
            elif "fields" in spec:
                errors += _lint_fields(f"{where}: hub.{hub_name}", spec["fields"])
    if errors:
        raise CatalogError("\n".join(errors))
    return entries


@cache
def benchmarks(path: Path = BENCHMARKS_YAML) -> dict[str, dict[str, Any]]:
    """The benchmark catalog, linted."""
    return lint_benchmarks(_load_yaml(path), path)


@cache
def datasets(path: Path = DATASETS_YAML) -> dict[str, dict[str, Any]]:
    """The dataset catalog: name -> {path, schema?, table?, description}."""
    entries = _load_yaml(path).get("datasets", {})
    for name, entry in entries.items():
        if "path" not in entry:
            raise CatalogError(f"{path}: dataset '{name}': missing 'path'")
    return entries


@cache
def views(path: Path = DATASETS_YAML) -> dict[str, str]:
    """Derived views of the results database: name -> SELECT over the dataset tables."""
    return _load_yaml(path).get("views", {}) or {}


def dataset_path(name: str, root: Path | str = ".", **parts: str) -> Path:
    """Path of a declared dataset, relative to the project root `root`; `parts` fill per-model paths ({model})."""
    try:
        return Path(root) / datasets()[name]["path"].format(**parts)
    except KeyError as e:
        raise CatalogError(f"{DATASETS_YAML}: no dataset named '{name}' or no value for {e}") from None


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    """The project's params.yaml (all knobs of the pipeline)."""
    return _load_yaml(Path(path))


MODELS_YAML = PACKAGE_DIR / "models.yaml"
BACKENDS = ("transformers", "vllm", "openai")
SOURCE_KINDS = {"hub": ("id", "revision"), "endpoint": ("base_url", "model", "api_key_env"), "local": ("path",)}
MODEL_KEYS = ("title", "source", "family", "size", "backend", "chat", "generation")
PROMPT_STYLES = ("direct", "cot")


def lint_models(data: dict[str, Any], path: Path | str = MODELS_YAML) -> dict[str, dict[str, Any]]:
    """Check every model entry; raise CatalogError listing all problems (each naming its entry), else return them."""
    entries = data.get("models")
    if not isinstance(entries, dict) or not entries:
        raise CatalogError(f"{path}: 'models' must be a non-empty mapping")
    errors: list[str] = []
    for name, entry in entries.items():
        where = f"{path}: model '{name}'"
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", str(name)):
            errors.append(f"{where}: names are lowercase letters, digits, '.', '_' and '-' (they become paths and stage names)")
        if not isinstance(entry, dict):
            errors.append(f"{where}: entry must be a mapping")
            continue
        errors += [f"{where}: missing '{key}'" for key in MODEL_KEYS if key not in entry]
        if "backend" in entry and entry["backend"] not in BACKENDS:
            errors.append(f"{where}: unknown backend '{entry['backend']}' (known: {', '.join(BACKENDS)})")
        if "family" in entry and entry["family"] not in ("biomedical", "general"):
            errors.append(f"{where}: family must be biomedical or general")
        source = entry.get("source")
        if "source" in entry:
            if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in SOURCE_KINDS:
                errors.append(f"{where}: source must have exactly one of {', '.join(SOURCE_KINDS)}")
            else:
                kind, spec = next(iter(source.items()))
                missing = [k for k in SOURCE_KINDS[kind] if not isinstance(spec, dict) or k not in spec]
                errors += [f"{where}: source.{kind} needs '{k}'" for k in missing]
                if kind == "endpoint" and entry.get("backend") not in (None, "openai"):
                    errors.append(f"{where}: an endpoint source needs backend openai")
                if kind != "endpoint" and entry.get("backend") == "openai":
                    errors.append(f"{where}: backend openai needs an endpoint source")
        chat = entry.get("chat", {})
        if "chat" in entry and (not isinstance(chat, dict) or chat.get("prompt") not in PROMPT_STYLES or chat.get("think") not in ("keep", "strip")):
            errors.append(f"{where}: chat needs prompt ({' | '.join(PROMPT_STYLES)}) and think (keep | strip)")
        gen = entry.get("generation", {})
        if "generation" in entry and (not isinstance(gen, dict) or not isinstance(gen.get("max_new_tokens"), int)):
            errors.append(f"{where}: generation needs an integer max_new_tokens")
    if errors:
        raise CatalogError("\n".join(errors))
    return entries


@cache
def models(path: Path = MODELS_YAML) -> dict[str, dict[str, Any]]:
    """The model catalog, linted."""
    return lint_models(_load_yaml(path), path)


def model(name: str) -> dict[str, Any]:
    """One catalog model by name, with its name filled in; a clear error for unknown names."""
    entries = models()
    if name not in entries:
        raise CatalogError(f"{MODELS_YAML}: no model named '{name}' (known: {', '.join(entries)})")
    return {"name": name, **entries[name]}
