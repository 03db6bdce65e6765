import shutil

import pytest
import yaml
from click.testing import CliRunner

from registry import catalog, trainers
from registry.cli import main
from registry.params import PROFILES, load_params, override_value, profile_overrides

from .conftest import ROOT


def compose(tmp_path, *names: str):
    """params.yaml with the profiles applied as `dvc exp run -S` applies them (DVC's own function), in a copy."""
    from dvc.utils.hydra import apply_overrides

    tmp_path.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(params, profile_overrides(list(names), params))
    return params


@pytest.mark.parametrize("names", [["mirror"], ["paper"], ["paper", "rehearsal"]])
def test_profiles_compose_at_launch_into_valid_params_and_leave_params_yaml_alone(tmp_path, names):
    before = (ROOT / "params.yaml").read_text()
    out = CliRunner().invoke(main, ["run", *[a for n in names for a in ("-p", n)], "-S", "evaluate.questions.limit=3", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("dvc exp run -S ") and out.output.rstrip().endswith(" -S evaluate.questions.limit=3")  # after the profiles
    assert (ROOT / "params.yaml").read_text() == before
    composed = compose(tmp_path, *names)
    applied = load_params(composed)
    assert applied.profile == "+".join(names)
    for name in names:  # every leaf of every profile is in the result (a later profile wins)
        profile = yaml.safe_load((PROFILES / f"{name}.yaml").read_text())
        later = {k: v for n in names[names.index(name) + 1 :] for k, v in yaml.safe_load((PROFILES / f"{n}.yaml").read_text()).get("sft", {}).items()}
        want = {k: v for k, v in profile.get("sft", {}).items() if k not in later}
        assert applied.sft.model_dump().items() >= want.items()
    text = composed.read_text()  # the experiment's copy, as DVC renders it: comments kept
    assert "# torch threads on CPU" in text and "# SmolLM2-135M as a frozen encoder" in text


def test_the_rehearsal_is_the_paper_profile_with_only_models_steps_batches_and_backends_changed(tmp_path):
    paper, rehearsal = load_params(compose(tmp_path / "a", "paper")), load_params(compose(tmp_path / "b", "paper", "rehearsal"))
    assert (rehearsal.ingest, rehearsal.label.source, rehearsal.train_data.datasets) == (paper.ingest, "study", ["m23k_clean", "biomed_r1"])
    assert rehearsal.adversarial.traces.source == "study" and rehearsal.evaluate.runtime.backend == "vllm" and rehearsal.grpo.use_vllm
    assert rehearsal.sft.launch == rehearsal.grpo.launch == "torchrun --standalone --nproc_per_node 2"  # one process group of 2
    assert rehearsal.sft.lr_scheduler == paper.sft.lr_scheduler and rehearsal.grpo.loss_type == paper.grpo.loss_type


def testoverride_values_survive_hydras_grammar(tmp_path):
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    params.write_text("a: {b: 1, c: x}\n")
    values = {"s": "accelerate launch --config_file registry/accelerate/zero3.yaml", "q": "it's \\ odd", "t": "true", "n": None,
              "f": 0.25, "l": ["m-1", "m.2"], "d": {"k": [1, 2]}, "e": {}, "name": "smollm2-135m-sft"}  # fmt: skip
    apply_overrides(params, [f"+{k}={override_value(v)}" for k, v in values.items()])
    assert yaml.safe_load(params.read_text()) == {"a": {"b": 1, "c": "x"}, **values}


def test_the_paper_profile_builds_multi_gpu_trainer_configs(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    from trl import GRPOConfig, SFTConfig

    p = load_params(compose(tmp_path, "paper"))
    assert catalog.model(p.sft.base_model).source.hub.id == "meta-llama/Llama-3.1-8B-Instruct"
    for trainer in (p.sft, p.grpo):
        config_file = trainer.launch.split("--config_file ")[1]
        loaded = load_config_from_file(str(ROOT / config_file))
        assert loaded.distributed_type == "DEEPSPEED" and loaded.deepspeed_config["zero_stage"] == 3 and loaded.mixed_precision == "bf16"
    fsdp = load_config_from_file(str(ROOT / "registry/accelerate/fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert p.sft.bf16 and p.grpo.bf16  # the configs below are built without it: transformers refuses bf16 where no GPU is
    sft = SFTConfig(**{**trainers.trainer_args(p.sft, tmp_path), "bf16": False}, per_device_train_batch_size=p.sft.batch_size,
                    max_length=None, padding_free=p.sft.padding_free)  # fmt: skip
    assert sft.gradient_checkpointing and sft.learning_rate == 1e-5 and sft.num_train_epochs == 5 and sft.lr_scheduler_type == "cosine"
    grpo = GRPOConfig(**{**trainers.trainer_args(p.grpo, tmp_path), "bf16": False}, per_device_train_batch_size=16,
                      num_generations=p.grpo.num_generations, max_completion_length=p.grpo.max_completion_length,
                      use_vllm=p.grpo.use_vllm, vllm_mode=p.grpo.vllm_mode)  # fmt: skip
    assert grpo.use_vllm and grpo.vllm_mode == "colocate" and grpo.num_generations == 8 and grpo.max_completion_length == 4096


def test_a_profile_that_breaks_params_is_refused_before_anything_runs(tmp_path, monkeypatch):
    bad = tmp_path / "profiles"
    bad.mkdir()
    (bad / "mirror.yaml").write_text("sft: {learning_rate: -1}\n")
    monkeypatch.setattr("registry.params.PROFILES", bad)
    out = CliRunner().invoke(main, ["run", "-p", "mirror"])
    assert out.exit_code == 2 and "sft.learning_rate: Input should be greater than 0" in out.output and "dvc exp run" not in out.output
    out = CliRunner().invoke(main, ["run", "-S", "sft.nope=1", "--dry-run"])
    assert out.exit_code == 2 and "sft.nope" in out.output and len(out.output.strip().splitlines()) == 1, out.output


def test_the_run_book_states_the_paper_profiles_settings(tmp_path):
    p = load_params(compose(tmp_path, "paper"))
    book = (ROOT / "docs/runbook.md").read_text()
    gpus = 8
    assert f"One node of {gpus} × 80 GB GPUs" in book
    assert f"{p.sft.epochs:g} epochs of m23k_clean" in book and f"global batch {p.sft.batch_size * gpus}, {p.sft.max_length // 1024}k tokens" in book
    assert "(23,465 rows)" in book and "23,465 rows" in catalog.training()["m23k_clean"].title
    grpo = f"{p.grpo.max_steps} steps, {p.grpo.prompts_per_step} prompts × {p.grpo.num_generations} generations per GPU"
    assert f"{grpo}, {p.grpo.max_completion_length // 1024}k completion tokens, vLLM colocated ({p.grpo.vllm_memory.cuda} of each GPU)" in book
    assert f"vLLM {p.evaluate.runtime.vllm_cuda['gpu_memory_utilization']} of one GPU" in book and p.evaluate.prompt == "strict"
    assert "accelerate launch" in p.sft.launch and "DeepSpeed ZeRO-3" in book and "zero3" in p.sft.launch
