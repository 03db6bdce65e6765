"""The vLLM backend's arguments without an engine: what a CPU cannot show (tensor parallelism, GPU memory settings) through
a recording stand-in for `vllm.LLM` that checks every argument against the real `vllm.EngineArgs`; refusals before any
engine is built; thinking prefill rendering; sampling parity. The real engine runs in tests/test_vllm_engine.py."""

import re
from pathlib import Path

import pandas as pd
import pytest
import vllm

from registry import backends
from registry.adversarial import RECONSIDER_CUE, adversarial_chat
from registry.backends import BackendError, Generation, OpenAIBackend, TransformersBackend, VLLMBackend, make_backend, render_chat, sampling
from registry.catalog import Chat, Model
from registry.errors import MedregError
from registry.params import Runtime, load_params
from tests.test_adversarial import TRACE  # a trace arguing for the wrong option A of a heparin question

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


class RecordingLLM:
    """Stands in for `vllm.LLM` where no engine can run here: records the arguments, validated by the real `vllm.EngineArgs`."""

    built: list[dict] = []

    def __init__(self, model: str, **kwargs):
        vllm.EngineArgs(model=model, **kwargs)  # an argument vLLM does not know is a TypeError, as in vllm.LLM
        RecordingLLM.built.append({"model": model, **kwargs})


@pytest.fixture
def recording(monkeypatch):
    RecordingLLM.built = []
    monkeypatch.setattr(vllm, "LLM", RecordingLLM)
    return RecordingLLM.built


def test_a_gpu_engine_gets_weights_revision_parallelism_seed_dtype_and_gpu_memory(recording, smol_dir, monkeypatch):
    """Tensor parallelism and GPU memory cannot run on this CPU: the arguments are checked instead."""
    monkeypatch.setattr(backends, "on_cuda", lambda: True)
    rt = runtime(tensor_parallel_size=4, vllm={"max_model_len": 8192, "enable_prefix_caching": True},
                 vllm_cuda={"gpu_memory_utilization": 0.85}, vllm_cpu={"kv_cache_memory_bytes": 1 << 30, "enforce_eager": True})  # fmt: skip
    m = model(smol_dir)
    make_backend(m, rt, ".", seed=11)
    (args,) = recording
    assert (args["model"], args["revision"], args["tensor_parallel_size"], args["seed"], args["dtype"]) == (str(smol_dir), None, 4, 11, "auto")
    assert (args["max_model_len"], args["gpu_memory_utilization"], args["enable_prefix_caching"]) == (8192, 0.85, True)
    assert "kv_cache_memory_bytes" not in args and "enforce_eager" not in args  # the CPU settings stay off the GPU
    hub = Model.model_validate(m.model_dump() | {"source": {"hub": {"id": str(smol_dir), "revision": "0123abc"}}})
    make_backend(hub, runtime(dtype="bfloat16"), ".", seed=0)
    assert (recording[-1]["revision"], recording[-1]["dtype"]) == ("0123abc", "bfloat16")


def test_on_cpu_the_engine_gets_the_cpu_settings_and_float32_for_auto(recording, smol_dir, monkeypatch):
    monkeypatch.setattr(backends, "on_cuda", lambda: False)
    rt = load_params("params.yaml").evaluate.runtime.model_copy(update={"backend": "vllm"})
    make_backend(model(smol_dir), rt, ".", seed=0)
    (args,) = recording
    assert args["dtype"] == "float32" and args["kv_cache_memory_bytes"] == 2 << 30 and args["enforce_eager"] is True
    assert "gpu_memory_utilization" not in args


@pytest.mark.parametrize("key", ["tensor_parallel_size", "seed", "model", "revision", "dtype"])
def test_a_key_set_elsewhere_inside_runtime_vllm_is_a_clear_error(recording, smol_dir, tmp_path, key):
    with pytest.raises(BackendError, match=rf"^evaluate\.runtime\.vllm\.{key}: set in "):
        VLLMBackend(str(smol_dir), None, llm_kwargs={key: 2})
    for section in ("vllm", "vllm_cpu"):
        text = re.sub(rf"    {section}: {{[^}}]*}}", f"    {section}: {{{key}: 2}}", Path("params.yaml").read_text(), count=1)
        (tmp_path / "params.yaml").write_text(text)
        with pytest.raises(MedregError, match=rf"evaluate\.runtime\.{section}: {key} is set in "):
            load_params(tmp_path / "params.yaml")
    assert recording == []  # refused before an engine was built (no TypeError from inside vLLM)


def test_an_unknown_runtime_vllm_option_is_named_not_a_type_error(recording, smol_dir):
    with pytest.raises(
        BackendError, match=r"^evaluate\.runtime\.vllm\.max_modle_len: not an argument of vllm\.LLM or vllm\.EngineArgs \(vLLM 0\.32\.0\)"
    ):
        VLLMBackend(str(smol_dir), None, llm_kwargs={"max_modle_len": 4096})
    assert recording == []
    with pytest.raises(TypeError):  # what vLLM itself does with it
        vllm.EngineArgs(model=str(smol_dir), max_modle_len=4096)


def test_a_thinking_models_prefill_goes_inside_its_think_block(qwen3_like_dir):
    from transformers import AutoTokenizer

    chat = adversarial_chat({"question": "Q?", "options": {"A": "a", "B": "b"}, "answer_format": "letter"}, TRACE,
                            Chat(think="strip", prompt="cot"), "prefill")  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(qwen3_like_dir)
    naive = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False, continue_final_message=True)
    assert "<|im_start|>assistant\n<think>\n\n</think>\n\n<think>\n" + TRACE in naive  # the template closes thinking first
    sent = render_chat(tokenizer, chat, {"enable_thinking": True})  # what VLLMBackend sends as token ids (tests/test_vllm_engine.py)
    assert sent.rsplit("<|im_end|>\n", 1)[1] == "<|im_start|>assistant\n<think>\n" + TRACE + RECONSIDER_CUE  # one open think block
    with pytest.raises(BackendError, match="closes the think block"):
        render_chat(tokenizer, chat, {"enable_thinking": False})
    opened = tokenizer.chat_template.replace("{{- '<|im_start|>assistant\\n' }}", "{{- '<|im_start|>assistant\\n<think>\\n' }}")
    assert opened != tokenizer.chat_template
    tokenizer.chat_template = opened  # a DeepSeek-R1-style template opens the block itself: not opened twice
    assert render_chat(tokenizer, chat).rsplit("<|im_end|>\n", 1)[1] == "<|im_start|>assistant\n<think>\n" + TRACE + RECONSIDER_CUE


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
def test_the_same_generation_settings_mean_the_same_sampling_on_every_backend(gen, expected):
    params = backends.vllm_sampling(gen)
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
