"""A fake `vllm` 0.33.0 for CPU tests: the names and signatures the backend uses, read from vLLM 0.33.0's source.

`LLM.__init__` (vllm/entrypoints/llm.py): `model` positional, the rest keyword-only, unknown **kwargs forwarded to
`EngineArgs` (vllm/engine/arg_utils.py, whose fields are listed below), so an unknown name is a TypeError there.
`LLM.chat`, `LLM.generate`, `LLM.get_tokenizer`, `SamplingParams` (vllm/sampling_params.py: greedy at temperature 0
resets top_p/top_k/min_p) and `RequestOutput.outputs[i]` = `CompletionOutput` (text, token_ids including the EOS it
stopped on, finish_reason, stop_reason) as in vllm/outputs.py.

The "engine" renders prompts with the model folder's Hugging Face tokenizer, as vLLM does, and answers through the
class attribute `LLM.respond(prompt_text, params, batch) -> str`, which tests replace. Every engine built and every call
made is recorded in `LLM.instances` / `llm.calls`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__version__ = "0.33.0"

# vllm/engine/arg_utils.py, class EngineArgs, 0.33.0: every field name
ENGINE_ARGS = """
    model enable_return_routed_experts return_sampling_mask model_weights served_model_name tokenizer
    hf_config_path runner convert skip_tokenizer_init enable_prompt_embeds tokenizer_mode trust_remote_code
    allowed_local_media_path allowed_media_domains download_dir safetensors_load_strategy
    safetensors_prefetch_num_threads safetensors_prefetch_block_size load_format config_format dtype
    kv_cache_dtype seed max_model_len cudagraph_capture_sizes max_cudagraph_capture_size ir_op_priority
    distributed_executor_backend pipeline_parallel_size master_addr master_port nnodes node_rank
    distributed_timeout_seconds cpu_distributed_timeout_seconds numa_bind numa_bind_nodes numa_bind_cpus
    device_ids tensor_parallel_size prefill_context_parallel_size decode_context_parallel_size dcp_comm_backend
    dcp_q_replicate dcp_kv_cache_interleave_size cp_kv_cache_interleave_size data_parallel_size
    data_parallel_rank data_parallel_start_rank data_parallel_size_local data_parallel_address
    data_parallel_rpc_port data_parallel_hybrid_lb data_parallel_external_lb
    data_parallel_multi_port_external_lb data_parallel_backend enable_hc_sp enable_expert_parallel
    enable_batch_sharded_sampling enable_ep_weight_filter moe_backend linear_backend sparse_indexer_topk_backend
    all2all_backend enable_elastic_ep elastic_ep_max_dp_size enable_dbo ubatch_size dbo_decode_token_threshold
    dp_sync_interval dbo_prefill_token_threshold disable_nccl_for_dp_synchronization eplb_config enable_eplb
    expert_placement_strategy _api_process_count _api_process_rank max_parallel_loading_workers block_size
    enable_prefix_caching prefix_caching_hash_algo prefix_cache_retention_interval disable_sliding_window
    disable_cascade_attn offload_backend cpu_offload_gb cpu_offload_params offload_group_size
    offload_num_in_group offload_prefetch_step offload_params gpu_memory_utilization kv_cache_memory_bytes
    max_num_batched_tokens max_num_scheduled_tokens long_prefill_token_threshold
    long_prefill_token_threshold_adaptive max_num_seqs max_num_active_seqs max_num_queued_reqs
    max_num_queued_tokens max_logprobs logprobs_mode use_fp64_gumbel enable_trace_replay disable_log_stats
    aggregate_engine_logging revision code_revision hf_token hf_overrides model_class_overrides
    tokenizer_revision quantization quantization_config allow_deprecated_quantization enforce_eager
    disable_custom_all_reduce enable_shm_tensor_arena language_model_only limit_mm_per_prompt enable_mm_embeds
    interleave_mm_strings media_io_kwargs mm_processor_kwargs mm_processor_cache_gb mm_processor_cache_type
    mm_hasher_algorithm mm_shm_cache_max_object_size_mb mm_encoder_only mm_encoder_tp_mode
    mm_encoder_attn_backend mm_encoder_attn_dtype mm_encoder_fp8_scale_path mm_encoder_fp8_scale_save_path
    mm_encoder_fp8_scale_save_margin io_processor_plugin renderer_num_workers skip_mm_profiling
    video_pruning_rate video_pruning_method mm_tensor_ipc mm_processor_device mm_ipc_gpu_memory_gb
    mm_device_do_normalize enable_lora max_loras max_lora_rank default_mm_loras fully_sharded_loras
    max_cpu_loras lora_dtype lora_target_modules enable_tower_connector_lora specialize_active_lora
    enable_mixed_moe_lora_format enable_moe_shared_loras max_lora_cls_labels ray_workers_use_nsight
    num_gpu_blocks_override model_loader_extra_config ignore_patterns enable_chunked_prefill
    disable_chunked_mm_input scheduler_reserve_full_isl prefill_schedule_interval watermark
    disable_hybrid_kv_cache_manager structured_outputs_config aux_output_config reasoning_parser
    reasoning_parser_plugin speculative_config spec_method spec_model spec_tokens watermark_config
    diffusion_config show_hidden_metrics_for_version otlp_traces_endpoint collect_detailed_traces
    per_request_spec_decode_metrics kv_cache_metrics kv_cache_metrics_sample custom_histogram_buckets
    cudagraph_metrics enable_layerwise_nvtx_tracing enable_mfu_metrics enable_logging_iteration_details
    jit_monitor_mode jit_monitor_verbose enable_mm_processor_stats scheduling_policy scheduler_cls
    pooler_config compilation_config attention_config engram_config mamba_config kernel_config
    enable_flashinfer_autotune monokernel worker_cls worker_extension_cls profiler_config logging_config
    log_level log_config_file kv_transfer_config kv_events_config ec_transfer_config ec_manager_config
    reasoning_config generation_config enable_sleep_mode sleep_mode_backend sleep_mode_offload_cudagraph
    sleep_preserve_parameter_names enable_cumem_allocator enable_nccl_comm_suspend override_generation_config
    model_impl attention_backend kv_cache_dtype_skip_layers mamba_cache_dtype mamba_ssm_cache_dtype
    mamba_block_size prefix_match_unit mamba_cache_mode enable_mamba_shared_prefix_checkpoint
    replayssm_buffer_len use_replayssm mamba_backend mamba_ssu_algorithm enable_mamba_cache_stochastic_rounding
    mamba_cache_philox_rounds additional_config use_tqdm_on_load pt_load_map_location logits_processors
    async_scheduling stream_interval kv_sharing_fast_prefill swa_bounded_replay optimization_level
    performance_mode fault_tolerance_config enable_fault_tolerance kv_offloading_size kv_offloading_backend
    tokens_only shutdown_timeout watchdog_config weight_transfer_config fail_on_environ_validation
    gdn_prefill_backend kda_prefill_backend kda_decode_backend
""".split()

EngineArgs = dataclasses.make_dataclass("EngineArgs", [(name, Any, None) for name in ENGINE_ARGS])
_SAMPLING_EPS = 1e-5


@dataclass(kw_only=True)
class SamplingParams:
    """vllm/sampling_params.py (0.33.0): the public fields and defaults, validation and greedy reset of the real class."""

    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logit_bias: dict[int, float] | None = None
    allowed_token_ids: list[int] | None = None
    extra_args: dict[str, Any] | None = None
    bad_words: list[str] | None = None

    def __post_init__(self) -> None:
        if self.top_k < -1 or not isinstance(self.top_k, int):
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.repetition_penalty <= 0.0:
            raise ValueError(f"repetition_penalty must be greater than zero, got {self.repetition_penalty}.")
        if self.temperature < _SAMPLING_EPS:  # zero temperature means greedy sampling
            self.top_p, self.top_k, self.min_p = 1.0, 0, 0.0


@dataclass
class CompletionOutput:
    """vllm/outputs.py: one sequence of a request's output."""

    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    """vllm/outputs.py: one request's prompt and outputs."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool


def _default_respond(prompt: str, params: SamplingParams, batch: int) -> str:
    return "Answer: A"


@dataclass
class Call:
    """One call of LLM.chat or LLM.generate: which, the rendered prompts, its sampling params and keyword arguments."""

    method: str
    prompts: list[str]
    params: SamplingParams
    kwargs: dict[str, Any] = field(default_factory=dict)


class LLM:
    """vllm/entrypoints/llm.py (0.33.0), `LLM`: same constructor, `chat`, `generate`, `get_tokenizer` signatures."""

    instances: list[LLM] = []
    respond: Callable[[str, SamplingParams, int], str] = staticmethod(_default_respond)

    def __init__(
        self,
        model: str,
        *,
        runner: str = "auto",
        convert: str = "auto",
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        allowed_local_media_path: str = "",
        allowed_media_domains: list[str] | None = None,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        chat_template: str | None = None,
        seed: int = 0,
        gpu_memory_utilization: float = 0.92,
        cpu_offload_gb: float = 0,
        offload_group_size: int = 0,
        offload_num_in_group: int = 1,
        offload_prefetch_step: int = 1,
        offload_params: set[str] | None = None,
        enforce_eager: bool = False,
        enable_return_routed_experts: bool = False,
        return_sampling_mask: bool = False,
        disable_custom_all_reduce: bool = False,
        hf_token: bool | str | None = None,
        hf_overrides: Any = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        pooler_config: Any = None,
        structured_outputs_config: Any = None,
        profiler_config: Any = None,
        attention_config: Any = None,
        kv_cache_memory_bytes: int | None = None,
        compilation_config: Any = None,
        quantization_config: Any = None,
        logits_processors: list | None = None,
        spec_method: str | None = None,
        spec_model: str | None = None,
        spec_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        from transformers import AutoTokenizer

        self.engine_args = EngineArgs(  # an unknown keyword is a TypeError here, as in vLLM
            model=model, tensor_parallel_size=tensor_parallel_size, revision=revision, seed=seed, dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization, **kwargs,
        )  # fmt: skip
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model, revision=tokenizer_revision or revision)
        self.calls: list[Call] = []
        LLM.instances.append(self)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def _run(self, method: str, texts: list[str], ids: list[list[int]], params: SamplingParams, kwargs: dict[str, Any]) -> list[RequestOutput]:
        self.calls.append(Call(method, texts, params, kwargs))
        eos = self.tokenizer.eos_token_id
        outputs = []
        for n, (text, prompt_ids) in enumerate(zip(texts, ids, strict=True)):
            reply = LLM.respond(text, params, len(texts))
            tokens = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
            if params.ignore_eos:
                tokens, finish = (tokens * (params.max_tokens // max(len(tokens), 1) + 1))[: params.max_tokens], "length"
            elif params.max_tokens is not None and len(tokens) >= params.max_tokens:
                tokens, finish = tokens[: params.max_tokens], "length"
            else:
                tokens, finish = [*tokens, eos], "stop"  # vLLM keeps the EOS it stopped on in token_ids
            decoded = self.tokenizer.decode(tokens, skip_special_tokens=params.skip_special_tokens)
            out = CompletionOutput(0, decoded, tokens, None, None, finish, None)
            outputs.append(RequestOutput(str(n), text, prompt_ids, None, [out], True))
        return outputs

    def chat(
        self,
        messages: list[dict] | Sequence[list[dict]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool | Callable = True,
        lora_request: Any = None,
        priority: int | Sequence[int] | None = None,
        chat_template: str | None = None,
        chat_template_content_format: str = "auto",
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        tokenization_kwargs: dict[str, Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        if add_generation_prompt and continue_final_message:
            raise ValueError("continue_final_message cannot be True when add_generation_prompt is True")
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        texts = [
            self.tokenizer.apply_chat_template(
                c,
                tokenize=False,
                chat_template=chat_template,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                **(chat_template_kwargs or {}),
            )  # fmt: skip
            for c in conversations
        ]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        kwargs = {"add_generation_prompt": add_generation_prompt, "continue_final_message": continue_final_message,
                  "chat_template_kwargs": chat_template_kwargs, "use_tqdm": use_tqdm}  # fmt: skip
        return self._run("chat", texts, ids, sampling_params or SamplingParams(), kwargs)

    def generate(
        self,
        prompts: Any,
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool | Callable = True,
        lora_request: Any = None,
        priority: int | Sequence[int] | None = None,
        tokenization_kwargs: dict[str, Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        prompts = [prompts] if isinstance(prompts, str | dict) else list(prompts)
        ids = [p["prompt_token_ids"] if isinstance(p, dict) else self.tokenizer(p)["input_ids"] for p in prompts]
        texts = [self.tokenizer.decode(i) for i in ids]
        return self._run("generate", texts, ids, sampling_params or SamplingParams(), {"use_tqdm": use_tqdm})
