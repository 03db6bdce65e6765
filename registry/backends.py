"""Inference backends behind one interface: a batch of chats in, completions out (transformers, vllm, openai)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import MedregError

if TYPE_CHECKING:
    from tqdm import tqdm

    from registry.catalog import Model
    from registry.params import Runtime

Chat = list[dict[str, str]]


class BackendError(MedregError):
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


def model_location(model: Model, root: Path | str = ".", allow_unpinned: bool = False) -> tuple[str, str | None]:
    """Where weights come from: (local dir or Hub id, revision). Refuses unpinned Hub revisions unless allowed."""
    source = model.source
    if source.local:
        path = Path(root) / source.local.path
        if not (path / "config.json").exists():
            hint = "run `dvc repro convert_models`" if source.local.from_gguf else "run the stage that writes it"
            raise BackendError(f"model '{model.name}': no checkpoint at {path}: {hint}")
        return str(path), None
    if source.hub:
        if source.hub.revision is None and not allow_unpinned:
            raise BackendError(
                f"model '{model.name}': the Hub revision of {source.hub.id} is not pinned in registry/models.yaml; "
                "pin a commit, or set evaluate.runtime.allow_unpinned: true"
            )
        return source.hub.id, source.hub.revision
    raise BackendError(f"model '{model.name}' has an endpoint source: use backend openai")


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in 8 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def pin(model: Model, root: Path | str = ".", hashed: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Exactly what `model` loads: local checkpoint file digests (None if not written yet), Hub id and revision, or endpoint.

    `hashed` shares the file digests between the models of one checkpoint.
    """
    source, hashed = model.source, {} if hashed is None else hashed
    if source.local:
        folder = Path(root) / source.local.path
        key = source.local.path
        if key not in hashed:
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            hashed[key] = {p.relative_to(folder).as_posix(): sha256(p) for p in files}
        return {"model": model.name, "local": key, "files": hashed[key] or None}
    if source.hub:
        return {"model": model.name, "hub": source.hub.id, "revision": source.hub.revision}
    return {"model": model.name, "endpoint": source.endpoint.base_url, "served_model": source.endpoint.model}


def pin_digest(pin_content: dict[str, Any]) -> str:
    """A short digest of a pin: part of the completion cache key, so new weights never reuse old completions."""
    return hashlib.sha256(json.dumps(pin_content, sort_keys=True).encode()).hexdigest()[:16]


def render_chat(tokenizer: Any, chat: Chat, template_kwargs: dict | None = None) -> str:
    """Chat template text: a new assistant turn is opened, or a final assistant message is continued unclosed (prefill)."""
    prefill = continues_final(chat)
    return tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill, **(template_kwargs or {})
    )


class Backend:
    """Interface: `generate(chats, gen, progress)` returns one Completion per chat, in order, advancing `progress` per prompt."""

    name = "base"

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        raise NotImplementedError


class _StepCounter:
    """A `generate` streamer that shows, on the caller's progress bar, how many tokens the running batch has produced."""

    def __init__(self, progress: tqdm | None, rows: int, max_new_tokens: int):
        self.progress, self.max_new_tokens, self.steps, self.shown = progress, max_new_tokens, -1, 0.0  # the first put is the prompt
        self.show(f"batch of {rows}: reading the prompts")

    def show(self, text: str) -> None:
        if self.progress is not None and time.monotonic() - self.shown > 0.5:  # at most twice a second
            self.progress.set_postfix_str(text)
            self.shown = time.monotonic()

    def put(self, value: Any) -> None:
        self.steps += 1
        if self.steps > 0:
            self.show(f"batch: {self.steps}/{self.max_new_tokens} tokens")

    def end(self) -> None:
        pass


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

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        texts = [self.render(c) for c in chats]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))  # longest first: memory errors show early
        out: list[Completion | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, completion in zip(idx, self.generate_batch([texts[i] for i in idx], gen, progress), strict=True):
                out[i] = completion
            if progress is not None:
                progress.update(len(idx))
        return out  # type: ignore[return-value]

    def generate_batch(self, texts: list[str], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
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
            ids = self.model.generate(**enc, **kwargs, streamer=_StepCounter(progress, len(texts), gen.max_new_tokens))
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
                "on CPU use evaluate.runtime.backend: transformers"
            ) from e
        self.sampling_params = SamplingParams
        self.llm = LLM(model=location, revision=revision, tensor_parallel_size=tensor_parallel_size, **llm_kwargs)
        self.template_kwargs = template_kwargs or {}

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        params = self.sampling_params(
            max_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p, seed=gen.seed, ignore_eos=gen.ignore_eos
        )
        out: list[tuple[int, Completion]] = []
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
            if progress is not None:
                progress.update(len(idx))
        return [c for _, c in sorted(out, key=lambda p: p[0])]


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat endpoint through the official `openai` client.

    The client retries 408/409/429/5xx, timeouts and connection errors with exponential backoff and jitter, honouring
    Retry-After; requests run `concurrency` at a time; vLLM/SGLang extensions go in `extra_body`.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        token_param: str = "max_tokens",
        continue_final_message: bool = False,
        template_kwargs: dict | None = None,
    ):
        from openai import OpenAI

        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not key and not base_url.startswith(("http://127.0.0.1", "http://localhost")):
            raise BackendError(f"endpoint {base_url} needs an API key in the environment variable {api_key_env}")
        self.client = OpenAI(base_url=base_url, api_key=key or "EMPTY", max_retries=max_retries, timeout=timeout_s)
        self.base_url, self.model, self.concurrency, self.max_retries = base_url, model, concurrency, max_retries
        self.token_param, self.continue_final_message, self.template_kwargs = token_param, continue_final_message, template_kwargs or {}

    def request_args(self, chat: Chat, gen: Generation) -> dict[str, Any]:
        """The arguments of `chat.completions.create` for one chat; a prefilled chat asks the server to continue it."""
        extra: dict[str, Any] = {}
        if gen.ignore_eos:
            extra["ignore_eos"] = True  # a vLLM/SGLang server extension
        if continues_final(chat):
            if not self.continue_final_message:
                raise BackendError(
                    f"endpoint {self.base_url} is not declared to support continue_final_message (vLLM/SGLang servers do; hosted APIs do not): "
                    "set chat.continue_final_message: true in the model catalog, or use adversarial.protocol: turn"
                )
            extra.update(add_generation_prompt=False, continue_final_message=True)
        if self.template_kwargs:
            extra["chat_template_kwargs"] = self.template_kwargs
        args: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            self.token_param: gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
        }
        if not gen.greedy:
            args["seed"] = gen.seed
        if extra:
            args["extra_body"] = extra
        return args

    def request(self, chat: Chat, gen: Generation) -> Completion:
        """One chat completion (the client retries); a refused or failed request raises BackendError."""
        import openai

        args, t0 = self.request_args(chat, gen), time.perf_counter()
        try:
            response = self.client.chat.completions.create(**args)
        except openai.APIStatusError as e:
            retried = f" after {self.max_retries} retries" if e.status_code in (408, 409, 429) or e.status_code >= 500 else ""
            raise BackendError(f"{self.base_url}: HTTP {e.status_code}{retried}: {e.message}") from e
        except openai.APIConnectionError as e:  # includes timeouts
            raise BackendError(f"{self.base_url}: {type(e).__name__} after {self.max_retries} retries: {e}") from e
        text = response.choices[0].message.content or ""
        tokens = response.usage.completion_tokens if response.usage else 0
        return Completion(text, int(tokens), time.perf_counter() - t0)

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        for chat in chats:  # refuse an unsupported protocol before sending anything
            self.request_args(chat, gen)

        def one(chat: Chat) -> Completion:
            done = self.request(chat, gen)
            if progress is not None:
                progress.update(1)
            return done

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, chats))


def make_backend(model: Model, runtime: Runtime, root: Path | str = ".") -> Backend:
    """Build the backend for a catalog model under the evaluate runtime params (backend override, batch size, ...)."""
    name = runtime.backend or model.backend
    chat = model.chat
    if name == "openai":
        endpoint = model.source.endpoint
        if endpoint is None:
            raise BackendError(f"model '{model.name}': backend openai needs an endpoint source (e.g. a vLLM server serving the model)")
        return OpenAIBackend(
            endpoint.base_url,
            endpoint.model,
            endpoint.api_key_env,
            concurrency=runtime.concurrency,
            max_retries=runtime.max_retries,
            timeout_s=runtime.timeout_s,
            token_param=endpoint.token_param,
            continue_final_message=chat.continue_final_message,
            template_kwargs=chat.template_kwargs,
        )
    location, revision = model_location(model, root, runtime.allow_unpinned)
    if name == "transformers":
        return TransformersBackend(location, revision, runtime.batch_size, chat.template_kwargs)
    return VLLMBackend(location, revision, runtime.tensor_parallel_size, chat.template_kwargs, **runtime.vllm)
