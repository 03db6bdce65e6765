"""A model named on the command line (`medreg eval`), registered in an experiment instead of in registry/models.yaml.

`hf:ID@REV`, a checkpoint folder or `openai:URL` becomes a catalog entry (validated like any other); the entry goes
into the experiment's copy of registry/models.yaml as a `dvc exp run -S` override, so the evaluation runs through
the same stages, backends, cache and tables as a catalog model, and DVC versions what was evaluated with the results.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from registry.errors import MedregError
from registry.params import override_value

SPECS = "hf:ID@REVISION (Hugging Face Hub), a checkpoint folder, or openai:BASE_URL (an OpenAI-compatible server)"
DEFAULT_MAX_NEW_TOKENS = 1024


def slug(text: str) -> str:
    """A catalog name from free text: lower case, runs of other characters turned into '-'."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-_") or "model"


def served_models(base_url: str, api_key: str | None = None, timeout: float = 10.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists at GET {base_url}/models."""
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return [m["id"] for m in json.load(response).get("data", [])]
    except (OSError, ValueError, KeyError) as e:
        raise MedregError(f"openai:{base_url}: cannot list its models ({e}): is the server running? or pass --served-model") from None


def entry(
    spec: str,
    *,
    prompt: str = "direct",
    backend: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    system: str | None = None,
    think: str = "keep",
    served_model: str | None = None,
    api_key_env: str | None = None,
    root: Path = Path("."),
) -> tuple[str, dict[str, Any]]:
    """(suggested name, catalog entry) for `spec`: hf:ID@REV, a folder with a config.json, or openai:BASE_URL."""
    from registry.backends import files_digest, folder_files

    generation = {"max_new_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0}
    chat = {"system": system, "prompt": prompt, "think": think}
    if spec.startswith("hf:"):
        hub_id, _, revision = spec[3:].partition("@")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", hub_id):
            raise MedregError(f"--model {spec}: expected hf:ORG/NAME@REVISION (e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct@<commit>)")
        name, source, default_backend = slug(hub_id.split("/")[-1]), {"hub": {"id": hub_id, "revision": revision or None}}, "transformers"
    elif spec.startswith("openai:"):
        base_url = spec[len("openai:") :]
        if not re.match(r"https?://", base_url):
            raise MedregError(f"--model {spec}: expected openai:http(s)://HOST[:PORT]/v1")
        if served_model is None:
            import os

            listed = served_models(base_url, os.environ.get(api_key_env) if api_key_env else None)
            if len(listed) != 1:
                raise MedregError(f"--model {spec}: the server lists {len(listed)} models ({', '.join(listed) or 'none'}): pass --served-model")
            served_model = listed[0]
        source = {"endpoint": {"base_url": base_url, "model": served_model, "api_key_env": api_key_env}}
        name, default_backend = slug(served_model.split("/")[-1]), "openai"
    else:
        folder = Path(spec).expanduser()
        folder = folder if folder.is_absolute() else (Path.cwd() / folder)
        if not (folder / "config.json").is_file():
            raise MedregError(f"--model {spec}: not {SPECS} (no config.json in that folder)")
        folder = folder.resolve()
        try:
            path = folder.relative_to(root.resolve()).as_posix()  # inside the project: relative, so the experiment finds it
        except ValueError:
            path = folder.as_posix()
        name, default_backend = slug(folder.name), "transformers"
        source = {"local": {"path": path, "digest": files_digest(folder_files(folder))}}
    title = f"{spec} (medreg eval)"
    return name, {"title": title, "source": source, "family": "general", "size": "unknown", "backend": backend or default_backend,
                  "chat": chat, "generation": generation}  # fmt: skip


def overrides(
    name: str, model: dict[str, Any], benchmarks: list[str] | None, limit: int | None, adversarial: bool, allow_unpinned: bool
) -> list[str]:
    """The `dvc exp run -S` values: the entry added to registry/models.yaml, then what is evaluated and on which questions."""
    sets = [f"registry/models.yaml:+models.{name}={override_value(model)}", f"evaluate.models=[{name}]"]
    sets.append(f"adversarial.models=[{name if adversarial else ''}]")
    if benchmarks:
        sets.append(f"evaluate.questions.benchmarks={override_value(benchmarks)}")
    if limit is not None:
        sets.append(f"evaluate.questions.limit={limit}")
    if allow_unpinned:
        sets.append("evaluate.runtime.allow_unpinned=true")
    return sets
