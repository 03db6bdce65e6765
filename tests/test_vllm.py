"""The vLLM backend against a fake `vllm` (tests/fake_vllm: vLLM 0.33.0's names and signatures), and sampling parity."""

import importlib
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from registry import backends
from registry.adversarial import RECONSIDER_CUE, adversarial_chat, generate_traces
from registry.backends import BackendError, Generation, OpenAIBackend, TransformersBackend, VLLMBackend, make_backend, render_chat, sampling
from registry.catalog import Chat, Model
from registry.errors import MedregError
from registry.generation import CompletionCache, Generator
from registry.params import Runtime, load_params
from tests.test_adversarial import ROW, TRACE  # a heparin question and a trace arguing for its wrong option A

HERE = Path(__file__).parent
QWEN3_LIKE = (HERE / "fixtures/qwen3_like_chat_template.jinja").read_text()


def runtime(**kw) -> Runtime:
    base = dict(backend="vllm", batch_size=2, flush_every=512, tensor_parallel_size=1, concurrency=1, max_retries=0, timeout_s=1,
                allow_unpinned=False, vllm={})  # fmt: skip
    return Runtime(**(base | kw))


def model(path: Path, think: str = "keep", template_kwargs: dict | None = None) -> Model:
    return Model(name="m", title="t", source={"local": {"path": str(path)}}, family="general", size="0", backend="vllm",
                 chat={"think": think, "template_kwargs": template_kwargs or {}},
                 generation={"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0})  # fmt: skip


@pytest.fixture
def vllm(monkeypatch):
    """The fake vllm module on sys.path, with no engines built yet and the default reply."""
    monkeypatch.syspath_prepend(str(HERE / "fake_vllm"))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    module = importlib.import_module("vllm")
    module.LLM.instances = []
    monkeypatch.setattr(module.LLM, "respond", staticmethod(lambda prompt, params, batch: "Answer: A"))
    yield module
    sys.modules.pop("vllm", None)


def _checkpoint(folder: Path, tokenizer, template: str | None = None) -> Path:
    tokenizer.save_pretrained(folder)
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    (folder / "config.json").write_text('{"model_type": "llama"}')  # a local checkpoint is a folder with a config
    return folder


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory, smollm_tokenizer) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("smol"), smollm_tokenizer)


@pytest.fixture(scope="module")
def qwen3_like_dir(tmp_path_factory, smollm_tokenizer) -> Path:
    """SmolLM2's ChatML tokenizer with the official Qwen3 chat template (tool calls left out)."""
    return _checkpoint(tmp_path_factory.mktemp("qwen3like"), smollm_tokenizer, QWEN3_LIKE)


def test_engine_gets_weights_revision_parallelism_seed_and_runtime_vllm_options(vllm, smol_dir):
    rt = runtime(tensor_parallel_size=4, vllm={"max_model_len": 8192, "gpu_memory_utilization": 0.85, "enable_prefix_caching": True})
    m = model(smol_dir)
    make_backend(m, rt, ".", seed=11)
    (llm,) = vllm.LLM.instances
    args = llm.engine_args
    assert (args.model, args.revision, args.tensor_parallel_size, args.seed) == (str(smol_dir), None, 4, 11)
    assert (args.max_model_len, args.gpu_memory_utilization, args.enable_prefix_caching) == (8192, 0.85, True)
    hub = Model.model_validate(m.model_dump() | {"source": {"hub": {"id": str(smol_dir), "revision": "0123abc"}}})
    make_backend(hub, rt, ".", seed=0)
    assert vllm.LLM.instances[-1].engine_args.revision == "0123abc"


@pytest.mark.parametrize("key", ["tensor_parallel_size", "seed", "model", "revision"])
def test_a_key_set_elsewhere_inside_runtime_vllm_is_a_clear_error(vllm, smol_dir, tmp_path, key):
    with pytest.raises(BackendError, match=rf"^evaluate\.runtime\.vllm\.{key}: set in "):
        VLLMBackend(str(smol_dir), None, llm_kwargs={key: 2})
    text = Path("params.yaml").read_text().replace("    vllm: {}", f"    vllm: {{{key}: 2}}")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(MedregError, match=rf"evaluate\.runtime\.vllm: {key} is set in "):
        load_params(tmp_path / "params.yaml")
    assert vllm.LLM.instances == []  # refused before an engine was built (no TypeError from inside vLLM)


def test_an_unknown_runtime_vllm_option_is_named_not_a_type_error(vllm, smol_dir):
    with pytest.raises(
        BackendError, match=r"^evaluate\.runtime\.vllm\.max_modle_len: not an argument of vllm\.LLM or vllm\.EngineArgs \(vLLM 0\.33\.0\)"
    ):
        VLLMBackend(str(smol_dir), None, llm_kwargs={"max_modle_len": 4096})
    with pytest.raises(TypeError):  # what vLLM itself does with it
        vllm.LLM(str(smol_dir), max_modle_len=4096)


def _reply_by_question(prompt, params, batch):
    return "Answer: " + ("B" if "#1" in prompt or "#3" in prompt else "C")


def test_a_batch_is_split_into_chat_and_prefill_calls_and_put_back_in_order(vllm, smol_dir, monkeypatch):
    monkeypatch.setattr(vllm.LLM, "respond", staticmethod(_reply_by_question))
    backend = VLLMBackend(str(smol_dir), None)
    chats = [[{"role": "user", "content": f"Question #{i}"}] for i in range(4)]
    chats[1] = [*chats[1], {"role": "assistant", "content": "I think"}]
    chats[2] = [*chats[2], {"role": "assistant", "content": "<think>\nLet me see"}]
    done = backend.generate(chats, Generation(max_new_tokens=16))
    assert [c.text for c in done] == ["Answer: C", "Answer: B", "Answer: C", "Answer: B"]
    (llm,) = vllm.LLM.instances
    chat_call, prefill_call = llm.calls
    assert chat_call.method == "chat" and len(chat_call.prompts) == 2 and chat_call.kwargs["add_generation_prompt"] is True
    assert chat_call.kwargs["continue_final_message"] is False
    assert prefill_call.method == "generate" and len(prefill_call.prompts) == 2
    assert prefill_call.prompts[0].endswith("<|im_start|>assistant\nI think")  # continued, not closed
    for call, indices in ((chat_call, (0, 3)), (prefill_call, (1, 2))):  # each call holds its own chats, in order
        assert [f"Question #{i}" in p for p, i in zip(call.prompts, indices, strict=True)] == [True, True]


def test_whole_flushes_go_to_one_chat_call_not_batch_size_slices(vllm, smol_dir, tmp_path):
    generator = Generator(model(smol_dir), runtime(batch_size=2, flush_every=6), Generation(16), CompletionCache(tmp_path / "c.jsonl"), "w")
    chats = [[{"role": "user", "content": f"Question #{i}"}] for i in range(10)]
    done = generator.complete(chats, "test")
    (llm,) = vllm.LLM.instances
    assert [len(c.prompts) for c in llm.calls] == [6, 4]  # flush_every prompts per call; batch_size (2) does not cap vLLM
    assert len(CompletionCache(tmp_path / "c.jsonl").entries) == 10 and len(done) == 10


def test_token_counts_leave_out_the_eos_as_the_transformers_backend_does(vllm, smol_dir, smollm_tokenizer):
    backend = VLLMBackend(str(smol_dir), None)
    reply_ids = smollm_tokenizer("Answer: A", add_special_tokens=False)["input_ids"]
    (stopped,) = backend.generate([[{"role": "user", "content": "Q"}]], Generation(max_new_tokens=16))
    (llm,) = vllm.LLM.instances
    eos = smollm_tokenizer.eos_token_id
    # what transformers' generate returns for the same reply: the ids, the EOS, then padding; counted up to the EOS
    assert stopped.tokens == backends.tokens_before_stop([*reply_ids, eos, eos, eos], {eos}) == len(reply_ids) == 3  # "Answer", ":", " A"
    (capped,) = backend.generate([[{"role": "user", "content": "Q"}]], Generation(max_new_tokens=2))
    assert capped.tokens == 2  # stopped by length: no EOS to leave out
    (forced,) = backend.generate([[{"role": "user", "content": "Q"}]], Generation(max_new_tokens=9, ignore_eos=True))
    assert forced.tokens == 9
    out = vllm.CompletionOutput(0, "x", [5, 6, 7], None, None, "stop", "</s>")  # stopped on a stop *string*: no stop token in the ids
    assert backends.new_tokens(out) == 3
    assert len(llm.calls) == 3


def test_trace_regeneration_over_three_attempts_builds_one_engine(vllm, smol_dir, tmp_path, monkeypatch):
    """Attempt 1 (greedy) and 2 argue for the right answer; attempt 3 for the target: one LLM for all three."""

    def argue(prompt, params, batch):  # the request names its target: "The correct answer is C. ..."
        target = prompt.split("The correct answer is ")[1][0]
        return "Answer: " + (target if params.seed == 2 else "B")

    monkeypatch.setattr(vllm.LLM, "respond", staticmethod(argue))
    generator = Generator(model(smol_dir), runtime(), Generation(16), CompletionCache(tmp_path / "t.jsonl"), "w")
    rows = pd.DataFrame([ROW, {**ROW, "qid": "8", "question": "Which drug reverses warfarin?"}])
    traces, dropped = generate_traces(rows, generator, n_traces=1, max_attempts=3, retry_temperature=0.8, seed=0)
    assert len(vllm.LLM.instances) == 1
    (llm,) = vllm.LLM.instances
    assert [(c.params.temperature, c.params.seed, len(c.prompts)) for c in llm.calls] == [(0.0, 0, 2), (0.8, 1, 2), (0.8, 2, 2)]
    assert traces["attempts"].tolist() == [3, 3] and dropped.empty and not (traces["target"] == "B").any()


def test_a_thinking_models_prefill_goes_inside_its_think_block(vllm, qwen3_like_dir, smollm_tokenizer):
    chat = adversarial_chat(ROW, TRACE, Chat(think="strip", prompt="cot"), "prefill")
    tokenizer = vllm.LLM(str(qwen3_like_dir)).get_tokenizer()
    naive = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False, continue_final_message=True)
    assert "<|im_start|>assistant\n<think>\n\n</think>\n\n<think>\n" + TRACE in naive  # the template closes thinking first
    backend = VLLMBackend(str(qwen3_like_dir), None, template_kwargs={"enable_thinking": True})
    backend.generate([chat], Generation(16))
    (sent,) = backend.llm.calls[-1].prompts
    turn = sent.rsplit("<|im_end|>\n", 1)[1]
    assert turn == "<|im_start|>assistant\n<think>\n" + TRACE + RECONSIDER_CUE  # one open think block, the trace inside
    assert render_chat(tokenizer, chat, {"enable_thinking": True}) == sent
    with pytest.raises(BackendError, match="closes the think block"):
        render_chat(tokenizer, chat, {"enable_thinking": False})
    opened = tokenizer.chat_template.replace("{{- '<|im_start|>assistant\\n' }}", "{{- '<|im_start|>assistant\\n<think>\\n' }}")
    assert opened != tokenizer.chat_template
    tokenizer.chat_template = opened  # a DeepSeek-R1-style template opens the block itself: not opened twice
    assert render_chat(tokenizer, chat).rsplit("<|im_end|>\n", 1)[1] == "<|im_start|>assistant\n<think>\n" + TRACE + RECONSIDER_CUE


def test_a_resumed_run_keeps_what_the_killed_run_cached_although_vllm_is_not_batch_invariant(vllm, smol_dir, tmp_path, monkeypatch):
    """Without VLLM_BATCH_INVARIANT=1 a prompt's greedy reply may depend on its batch: resuming must read, not regenerate."""
    calls = []

    def batch_dependent(prompt, params, batch):
        if len(calls) >= 4:
            raise KeyboardInterrupt("killed")
        calls.append(batch)
        return f"Answer: {'A' if batch == 4 else 'B'}"

    monkeypatch.setattr(vllm.LLM, "respond", staticmethod(batch_dependent))
    chats = [[{"role": "user", "content": f"Question #{i} " + "x" * (10 - i)}] for i in range(8)]
    first = Generator(model(smol_dir), runtime(flush_every=4), Generation(16), CompletionCache(tmp_path / "c.jsonl"), "w")
    with pytest.raises(KeyboardInterrupt):
        first.complete(chats, "killed run")
    kept = dict(CompletionCache(tmp_path / "c.jsonl").entries)
    assert len(kept) == 4 and {e["text"] for e in kept.values()} == {"Answer: A"}
    calls.clear()
    monkeypatch.setattr(vllm.LLM, "respond", staticmethod(lambda prompt, params, batch: f"Answer: {'A' if batch == 8 else 'B'}"))
    resumed = Generator(model(smol_dir), runtime(flush_every=4), Generation(16), CompletionCache(tmp_path / "c.jsonl"), "w")
    done = resumed.complete(chats, "resumed run")
    assert [len(c.prompts) for c in vllm.LLM.instances[-1].calls] == [4]  # only what the killed run had left
    assert [c.text for c in done[:4]] == ["Answer: A"] * 4  # the longest four, cached by the killed run, read back
    assert [c.text for c in done[4:]] == ["Answer: B"] * 4  # regenerated in a batch of 8 they would read 'A'
    again = Generator(model(smol_dir), runtime(flush_every=4), Generation(16), CompletionCache(tmp_path / "c.jsonl"), "w")
    assert [c.text for c in again.complete(chats, "rerun")] == [c.text for c in done] and len(vllm.LLM.instances) == 2


def _effective_transformers(gen: Generation) -> dict:
    """What transformers' generate would apply: its own merge of our kwargs over a model's generation_config."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2))
    # a generation_config like Llama-3.1-Instruct's, plus the warpers a model may ship
    tiny.generation_config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9, top_k=50, repetition_penalty=1.3, min_p=0.2)
    cfg, _ = tiny._prepare_generation_config(None, **TransformersBackend.generate_kwargs(gen))
    if not cfg.do_sample:
        return {"temperature": 0.0, "top_p": 1.0, "top_k": cfg.top_k or 0, "repetition_penalty": cfg.repetition_penalty, "min_p": cfg.min_p or 0.0}
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k, "repetition_penalty": cfg.repetition_penalty,
            "min_p": cfg.min_p or 0.0}  # fmt: skip


@pytest.mark.parametrize(
    ("gen", "expected"),
    [
        (Generation(64), {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "min_p": 0.0}),
        (Generation(64, top_p=0.5, top_k=7), {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "min_p": 0.0}),
        (Generation(64, 0.6, 0.95, 20, 1.0, 3), {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0, "min_p": 0.0}),
        (Generation(64, 0.8, 1.0, 0, 1.05, 1), {"temperature": 0.8, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.05, "min_p": 0.0}),
    ],
)
def test_the_same_generation_settings_mean_the_same_sampling_on_every_backend(vllm, smol_dir, gen, expected):
    params = VLLMBackend(str(smol_dir), None).sampling_params(gen)
    on_vllm = {k: getattr(params, k) for k in expected}
    args = OpenAIBackend("http://127.0.0.1:1/v1", "m", sampling_extras=True).request_args([{"role": "user", "content": "Q"}], gen)
    on_server = {
        "temperature": args["temperature"],
        "top_p": args["top_p"],
        **{k: args["extra_body"][k] for k in ("top_k", "repetition_penalty", "min_p")},
    }
    assert _effective_transformers(gen) == on_vllm == on_server == expected
    assert (params.seed, args.get("seed")) == (gen.seed, None if gen.greedy else gen.seed) and params.max_tokens == args["max_tokens"] == 64
    assert sampling(gen)["seed"] == (None if gen.greedy else gen.seed)


def test_a_hosted_api_gets_no_extensions_and_refuses_settings_it_cannot_take():
    plain = OpenAIBackend("http://127.0.0.1:1/v1", "m")
    args = plain.request_args([{"role": "user", "content": "Q"}], Generation(8, 0.7, 0.9, 0, 1.0, 5))
    assert "extra_body" not in args and (args["temperature"], args["top_p"], args["seed"]) == (0.7, 0.9, 5)
    with pytest.raises(BackendError, match="top_k=20.*sampling_extras: true"):
        plain.request_args([{"role": "user", "content": "Q"}], Generation(8, 0.6, 0.95, 20))


def test_medreg_prompt_tokens_show_the_trace_inside_the_think_block(qwen3_like_dir, smollm_tokenizer, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from registry import catalog, io
    from registry.cli import main
    from registry.ingest import ingest

    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / "params.yaml").write_text(Path("params.yaml").read_text())
    questions = ingest(catalog.benchmarks(), "demo", "data/demo", benchmarks=["medqa"]).questions.iloc[:1]
    io.save("questions", questions, project)
    qid = questions["qid"].iloc[0]
    trace = {
        "benchmark": "medqa",
        "qid": qid,
        "trace_index": 0,
        "target": "A",
        "trace": TRACE,
        "generator": "g",
        "prompt_hash": "0" * 16,
        "attempts": 1,
    }
    io.save("adversarial_traces", pd.DataFrame([trace]), project)
    thinking = model(qwen3_like_dir, think="strip", template_kwargs={"enable_thinking": True})
    monkeypatch.setattr(catalog, "model", lambda name: thinking)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["prompt", "qwen3-like", "medqa", qid, "--trace", "0", "--protocol", "prefill", "--tokens"])
    assert result.exit_code == 0, result.output
    text, ids = result.output.rsplit("\n\n", 1)
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n" + TRACE + RECONSIDER_CUE)
    assert text.count("<think>") == 1 and "</think>" not in text  # thinking stays open: the model continues the trace in it
    token_ids = [int(i) for i in re.findall(r"(?:^| )(\d+):['\"]", ids)]  # "id:'token'" pairs
    assert token_ids == smollm_tokenizer(text, add_special_tokens=False)["input_ids"]
    opened = smollm_tokenizer("<|im_start|>assistant\n<think>\n", add_special_tokens=False)["input_ids"]
    after = token_ids[max(i for i in range(len(token_ids)) if token_ids[i : i + len(opened)] == opened) :]
    assert smollm_tokenizer.decode(after) == "<|im_start|>assistant\n<think>\n" + TRACE + RECONSIDER_CUE
