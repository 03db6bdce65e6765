"""Cached, resumable generation with one model: the one object the evaluate, trace and adversarial stages share."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from registry.backends import Backend, Chat, Completion, Generation, make_backend, pin_digest
from registry.catalog import Model
from registry.errors import MedregError
from registry.io import atomic_path
from registry.params import GenerationOverrides, Runtime
from registry.prompts import prompt_hash


def pinned_weights(path: Path) -> str:
    """The digest of a model's pin as the pin_models stage wrote it (models/pins/<name>.json, a declared dependency)."""
    if not path.exists():
        raise MedregError(f"{path} is missing: run `dvc repro pin_models`")
    return pin_digest(json.loads(path.read_text()))


def generation_settings(model: Model, overrides: GenerationOverrides | None) -> Generation:
    """The model's catalog generation defaults with the non-null params overrides applied."""
    base = model.generation
    o = overrides or GenerationOverrides(max_new_tokens=None, temperature=None, top_p=None, top_k=None, repetition_penalty=None, seed=0)

    def pick(name: str) -> Any:
        value = getattr(o, name)
        return getattr(base, name) if value is None else value

    return Generation(
        max_new_tokens=pick("max_new_tokens"),
        temperature=pick("temperature"),
        top_p=pick("top_p"),
        top_k=pick("top_k"),
        repetition_penalty=pick("repetition_penalty"),
        seed=o.seed,
    )


class CompletionCache:
    """Append-only JSONL of completions keyed by `Generator.key`; survives a kill mid-write (a torn last line is dropped)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.torn = 0
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn += 1
        if self.torn:  # rewrite without the torn line(s), so appends start on a clean line
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries.values()), encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.entries[key]

    def add(self, entries: list[dict[str, Any]]) -> None:
        """Append entries and fsync, so everything added survives a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
            f.flush()
            os.fsync(f.fileno())
        self.entries.update((e["key"], e) for e in entries)


@dataclass
class Generator:
    """One model's generation for a stage run: settings, cache, flush size, and its backend, built once on first need."""

    model: Model
    runtime: Runtime
    gen: Generation
    cache: CompletionCache
    weights: str  # the pin digest of the weights (backends.pin_digest): new weights never reuse old completions
    root: Path = Path(".")
    _backend: Backend | None = field(default=None, repr=False)
    # Timings stay out of the cache and the predictions (both DVC-versioned): a rerun on any machine gives the same bytes.
    timing: dict[str, float] = field(default_factory=lambda: {"generated": 0, "cached": 0, "seconds": 0.0, "new_tokens": 0}, repr=False)
    latency: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def backend_name(self) -> str:
        return self.runtime.backend or self.model.backend

    def backend(self) -> Backend:
        """The backend, loaded on the first call only (one engine per process, however many attempts or batches)."""
        if self._backend is None:
            self._backend = make_backend(self.model, self.runtime, self.root, self.gen.seed)
        return self._backend

    def key(self, chat: Chat, gen: Generation) -> str:
        """Cache key: model, its weights, backend, prompt hash, generation settings and, where set, how the chat is rendered.

        Chat-template kwargs (Qwen3's enable_thinking) and an endpoint's tokenizer change the prompt without changing the
        messages, a dtype other than `auto` changes the arithmetic; they join the key only when set, so the keys of models
        without them stay as they were.
        """
        parts: list[Any] = [self.model.name, self.weights, self.backend_name, prompt_hash(chat), asdict(gen)]
        endpoint = self.model.source.endpoint
        rendering = {
            "template_kwargs": self.model.chat.template_kwargs,
            **({"tokenizer": endpoint.tokenizer, "tokenizer_revision": endpoint.tokenizer_revision} if endpoint and endpoint.tokenizer else {}),
        }
        if rendering["template_kwargs"] or len(rendering) > 1:
            parts.append(json.dumps(rendering, sort_keys=True))
        if self.runtime.dtype != "auto" and self.backend_name != "openai":  # a precision other than the default computes other text
            parts.append(f"dtype={self.runtime.dtype}")
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]

    def complete(self, chats: list[Chat], desc: str, gen: Generation | None = None) -> list[Completion]:
        """Completions for all chats: cached ones read back, missing ones generated longest-first and cached batch by batch.

        Generation order depends only on the missing set, so a resumed run repeats exactly the batches a killed run had left.
        """
        gen = gen or self.gen
        keys = [self.key(c, gen) for c in chats]
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        missing = sorted((k, i) for k, i in first.items() if k not in self.cache)
        missing.sort(key=lambda p: -len(json.dumps(chats[p[1]])))  # stable: equal lengths stay in key order
        print(f"{desc}: {len(missing)} prompt(s) to generate, {len(first) - len(missing)} cached")
        if missing:
            backend = self.backend()
            flush = self.runtime.flush_every if backend.schedules_itself else self.runtime.batch_size
            with tqdm(total=len(missing), desc=desc, unit="prompt") as bar:
                for start in range(0, len(missing), flush):
                    chunk = missing[start : start + flush]
                    started = time.perf_counter()
                    done = backend.generate([chats[i] for _, i in chunk], gen, bar)
                    self.timing["seconds"] += time.perf_counter() - started
                    self.timing["generated"] += len(done)
                    self.timing["new_tokens"] += sum(c.tokens for c in done)
                    self.latency.update((k, c.latency_s) for (k, _), c in zip(chunk, done, strict=True))
                    self.cache.add([{"key": k, "text": c.text, "tokens": c.tokens} for (k, _), c in zip(chunk, done, strict=True)])
        self.timing["cached"] += len(first) - len(missing)
        return [Completion(self.cache[k]["text"], self.cache[k]["tokens"], self.latency.get(k, 0.0)) for k in keys]

    def timing_report(self) -> dict[str, Any]:
        """Timing of this run's generation: prompts generated and read from the cache, seconds, new tokens, tokens/s, latency p50/p90."""
        lat = sorted(self.latency.values())
        t = dict(self.timing, seconds=round(self.timing["seconds"], 2))
        t["new_tokens_per_s"] = round(t["new_tokens"] / t["seconds"], 1) if t["seconds"] else None
        t["latency_s_p50"] = round(lat[len(lat) // 2], 3) if lat else None
        t["latency_s_p90"] = round(lat[int(len(lat) * 0.9)], 3) if lat else None
        return t
