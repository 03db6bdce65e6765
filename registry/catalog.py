"""Load and lint the declarative catalogs (benchmarks.yaml, datasets.yaml) and params.yaml."""

from __future__ import annotations

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


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
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


def dataset_path(name: str, root: Path | str = ".") -> Path:
    """Path of a declared dataset, relative to the project root `root`."""
    try:
        return Path(root) / datasets()[name]["path"]
    except KeyError:
        raise CatalogError(f"{DATASETS_YAML}: no dataset named '{name}'") from None


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    """The project's params.yaml (all knobs of the pipeline)."""
    return _load_yaml(Path(path))
