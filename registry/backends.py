"""Inference backends behind one interface: a batch of chats in, completions out (transformers, vllm, openai)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

Chat = list[dict[str, str]]


class BackendError(RuntimeError):
    """A backend cannot run as configured (missing package, weights, key, or unsupported protocol)."""


@dataclass(frozen=True)
class Completion:
    """One generated reply: text, number of new tokens, seconds spent on it (a batch's time shared by its items)."""

    text: str
    tokens: int
    latency_s: float


@dataclass(frozen=True)
class Generation:
    """Generation settings; part of the completion cache key."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    ignore_eos: bool = False  # generate exactly max_new_tokens (throughput benchmarks)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def continues_final(chat: Chat) -> bool:
    """True when the chat ends with an assistant turn that the model must continue (prefill)."""
    return bool(chat) and chat[-1]["role"] == "assistant"


def model_location(model: dict[str, Any], root: Path | str = ".", allow_unpinned: bool = False) -> tuple[str, str | None]:
    """Where weights come from: (local dir or Hub id, revision). Refuses unpinned Hub revisions unless allowed."""
    source = model["source"]
    if "local" in source:
        path = Path(root) / source["local"]["path"]
        if not (path / "config.json").exists():
            hint = "run `dvc repro convert_models`" if "from_gguf" in source["local"] else "run the stage that writes it"
            raise BackendError(f"model '{model['name']}': no checkpoint at {path}: {hint}")
        return str(path), None
    if "hub" in source:
        hub = source["hub"]
        if hub["revision"] is None and not allow_unpinned:
            raise BackendError(
                f"model '{model['name']}': Hub revision of {hub['id']} is not pinned in registry/models.yaml; "
                "pin a commit, or set evaluate.allow_unpinned: true"
            )
        return hub["id"], hub["revision"]
    raise BackendError(f"model '{model['name']}' has an endpoint source: use backend openai")


def render_chat(tokenizer: Any, chat: Chat, template_kwargs: dict | None = None) -> str:
    """Chat template text: a new assistant turn is opened, or a final assistant message is continued unclosed (prefill)."""
    prefill = continues_final(chat)
    return tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill, **(template_kwargs or {})
    )


class Backend:
    """Interface: `generate(chats, gen)` returns one Completion per chat, in order."""

    name = "base"

    def generate(self, chats: list[Chat], gen: Generation) -> list[Completion]:
        raise NotImplementedError


class TransformersBackend(Backend):
    """Batched greedy/sampled generation with transformers on CPU or GPU: left padding, length-sorted batches."""

    name = "transformers"

    def __init__(self, location: str, revision: str | None, batch_size: int = 16, template_kwargs: dict | None = None, dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = torch.float32 if device == "cpu" and dtype == "auto" else dtype
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, padding_side="left")
            self.model = AutoModelForCausalLM.from_pretrained(location, revision=revision, dtype=torch_dtype).to(device).eval()
        except OSError as e:
            raise BackendError(f"cannot load {location} (revision {revision}): {e}") from e
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size, self.template_kwargs, self.device = batch_size, template_kwargs or {}, device

    def render(self, chat: Chat) -> str:
        """The exact text the model sees (see `render_chat`)."""
        return render_chat(self.tokenizer, chat, self.template_kwargs)

    def generate(self, chats: list[Chat], gen: Generation, progress: bool = True) -> list[Completion]:
        texts = [self.render(c) for c in chats]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))  # longest first: memory errors show early
        out: list[Completion | None] = [None] * len(texts)
        quiet = not progress or len(order) <= self.batch_size  # one batch: the caller's bar is enough
        for start in tqdm(range(0, len(order), self.batch_size), desc="generate", unit="batch", disable=quiet):
            idx = order[start : start + self.batch_size]
            for i, completion in zip(idx, self.generate_batch([texts[i] for i in idx], gen), strict=True):
                out[i] = completion
        return out  # type: ignore[return-value]

    def generate_batch(self, texts: list[str], gen: Generation) -> list[Completion]:
        """One padded batch of rendered prompts through `model.generate`."""
        torch = self.torch
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if gen.ignore_eos:
            kwargs["min_new_tokens"] = gen.max_new_tokens
        if gen.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            torch.manual_seed(gen.seed)
            kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(**enc, **kwargs)
        seconds = (time.perf_counter() - t0) / len(texts)
        new = ids[:, enc["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        stops = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *(eos if isinstance(eos, list) else [eos])}
        completions = []
        for row in new.tolist():
            n = len(row) if gen.ignore_eos else next((k for k, t in enumerate(row) if t in stops), len(row))
            completions.append(Completion(self.tokenizer.decode(row[:n], skip_special_tokens=True), n, seconds))
        return completions


class VLLMBackend(Backend):
    """Offline vLLM (`LLM.chat` with `SamplingParams`); tensor parallel size from params. GPU only: `pip install .[gpu]`."""

    name = "vllm"

    def __init__(self, location: str, revision: str | None, tensor_parallel_size: int = 1, template_kwargs: dict | None = None, **llm_kwargs: Any):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise BackendError(
                "backend vllm needs the optional GPU extra in its own environment (`pip install '.[gpu]'`, vLLM pins its own torch); "
                "on CPU use evaluate.backend: transformers"
            ) from e
        self.sampling_params = SamplingParams
        self.llm = LLM(model=location, revision=revision, tensor_parallel_size=tensor_parallel_size, **llm_kwargs)
        self.template_kwargs = template_kwargs or {}

    def generate(self, chats: list[Chat], gen: Generation) -> list[Completion]:
        params = self.sampling_params(
            max_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p, seed=gen.seed, ignore_eos=gen.ignore_eos
        )
        out: list[Completion] = []
        for prefill in (False, True):  # vLLM applies one template mode per call
            idx = [i for i, c in enumerate(chats) if continues_final(c) == prefill]
            if not idx:
                continue
            t0 = time.perf_counter()
            results = self.llm.chat(
                [chats[i] for i in idx],
                params,
                add_generation_prompt=not prefill,
                continue_final_message=prefill,
                chat_template_kwargs=self.template_kwargs,
                use_tqdm=True,
            )
            seconds = (time.perf_counter() - t0) / len(idx)
            out += [(i, Completion(r.outputs[0].text, len(r.outputs[0].token_ids), seconds)) for i, r in zip(idx, results, strict=True)]
        return [c for _, c in sorted(out, key=lambda p: p[0])]


RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat endpoint: bounded concurrency, retries with backoff on 429/5xx, per-request timeout."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        token_param: str = "max_tokens",
        continue_final_message: bool = False,
        template_kwargs: dict | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.max_retries = model, concurrency, max_retries
        self.timeout_s, self.backoff_s, self.token_param = timeout_s, backoff_s, token_param
        self.continue_final_message, self.template_kwargs = continue_final_message, template_kwargs or {}
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not key and not base_url.startswith(("http://127.0.0.1", "http://localhost")):
            raise BackendError(f"endpoint {base_url} needs an API key in the environment variable {api_key_env}")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def body(self, chat: Chat, gen: Generation) -> dict[str, Any]:
        """The JSON request for one chat; a prefilled chat asks the server to continue the final message."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            self.token_param: gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
        }
        if not gen.greedy:
            body["seed"] = gen.seed
        if gen.ignore_eos:
            body["ignore_eos"] = True  # a vLLM/SGLang server extension
        if continues_final(chat):
            if not self.continue_final_message:
                raise BackendError(
                    f"endpoint {self.url} is not declared to support continue_final_message (vLLM/SGLang servers do; hosted APIs do not): "
                    "set chat.continue_final_message: true in the model catalog, or use the turn protocol"
                )
            body.update(add_generation_prompt=False, continue_final_message=True)
        if self.template_kwargs:
            body["chat_template_kwargs"] = self.template_kwargs
        return body

    def request(self, chat: Chat, gen: Generation, sleep: Callable[[float], None] = time.sleep) -> Completion:
        """POST one chat, retrying 429/5xx/timeouts with exponential backoff (honouring Retry-After)."""
        body, t0 = self.body(chat, gen), time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                r = requests.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as e:
                status, detail, retry_after = None, str(e), None
            else:
                if r.status_code == 200:
                    data = r.json()
                    text = data["choices"][0]["message"].get("content") or ""
                    tokens = (data.get("usage") or {}).get("completion_tokens", 0)
                    return Completion(text, int(tokens), time.perf_counter() - t0)
                status, detail, retry_after = r.status_code, r.text[:300], r.headers.get("Retry-After")
                if status not in RETRY_STATUS:
                    raise BackendError(f"{self.url}: HTTP {status}: {detail}")
            if attempt == self.max_retries:
                raise BackendError(f"{self.url}: gave up after {attempt + 1} attempts; last error: {status or ''} {detail}")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else self.backoff_s * 2**attempt
            sleep(wait * (1 + 0.1 * random.random()))
        raise AssertionError("unreachable")

    def generate(self, chats: list[Chat], gen: Generation) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(tqdm(pool.map(lambda c: self.request(c, gen), chats), total=len(chats), desc="requests", unit="req"))


def make_backend(model: dict[str, Any], options: dict[str, Any], root: Path | str = ".") -> Backend:
    """Build the backend for a catalog model; `options` are evaluate params (backend override, batch size, tp size...)."""
    name = options.get("backend") or model["backend"]
    chat = model.get("chat", {})
    kwargs = chat.get("template_kwargs") or {}
    if name == "openai":
        source = model["source"].get("endpoint")
        if source is None:
            raise BackendError(f"model '{model['name']}': backend openai needs an endpoint source (e.g. a vLLM server serving the model)")
        return OpenAIBackend(
            source["base_url"],
            source["model"],
            source.get("api_key_env"),
            concurrency=options.get("concurrency", 8),
            max_retries=options.get("max_retries", 5),
            timeout_s=options.get("timeout_s", 120.0),
            token_param=source.get("token_param", "max_tokens"),
            continue_final_message=bool(chat.get("continue_final_message")),
            template_kwargs=kwargs,
        )
    location, revision = model_location(model, root, options.get("allow_unpinned", False))
    if name == "transformers":
        return TransformersBackend(location, revision, options.get("batch_size", 16), kwargs)
    if name == "vllm":
        return VLLMBackend(location, revision, options.get("tensor_parallel_size", 1), kwargs, **(options.get("vllm") or {}))
    raise BackendError(f"unknown backend '{name}' (known: transformers, vllm, openai)")
