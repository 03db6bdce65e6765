import shutil

import pytest
import yaml
from click.testing import CliRunner

from registry import catalog, trainers
from registry.cli import PROFILES, main
from registry.params import load_params

from .conftest import ROOT


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES.glob("*.yaml")))
def test_a_profile_applies_to_params_and_validates(tmp_path, name):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    out = CliRunner().invoke(main, ["profile", name, "--params", str(params)])
    assert out.exit_code == 0, out.output
    applied = load_params(params)
    profile = yaml.safe_load((PROFILES / f"{name}.yaml").read_text())
    assert applied.sft.model_dump().items() >= {k: v for k, v in profile.get("sft", {}).items() if not isinstance(v, dict)}.items()
    assert "# torch threads on CPU" in params.read_text()  # comments kept


def test_the_paper_profile_builds_multi_gpu_trainer_configs(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    from trl import GRPOConfig, SFTConfig

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert CliRunner().invoke(main, ["profile", "paper", "--params", str(params)]).exit_code == 0
    p = load_params(params)
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


def test_a_profile_that_breaks_params_is_refused_and_params_kept(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text()
    bad = tmp_path / "profiles"
    bad.mkdir()
    (bad / "mirror.yaml").write_text("sft: {learning_rate: -1}\n")
    monkeypatch.setattr("registry.cli.PROFILES", bad)
    out = CliRunner().invoke(main, ["profile", "mirror", "--params", str(params)])
    assert out.exit_code == 2 and "sft.learning_rate: Input should be greater than 0" in out.output
    assert params.read_text() == before and not list(tmp_path.glob(".params.yaml.*"))
