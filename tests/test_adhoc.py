"""`medreg eval`'s model specs: catalog entries from hf:ID@REV, a folder, openai:URL, and the experiment's overrides."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dvc.utils.hydra import apply_overrides

from registry import adhoc, catalog
from registry.backends import BackendError, files_digest, folder_files, pin
from registry.errors import MedregError


def test_hub_spec_is_a_pinned_hub_entry_the_catalog_accepts():
    name, entry = adhoc.entry("hf:HuggingFaceTB/SmolLM2-135M-Instruct@0123abc", max_new_tokens=64, prompt="strict")
    model = catalog.Model(name=name, **entry)
    assert name == "smollm2-135m-instruct" and model.source.hub.id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model.source.hub.revision == "0123abc" and model.backend == "transformers" and model.chat.prompt == "strict"
    assert model.generation.max_new_tokens == 64 and model.generation.temperature == 0.0
    _, unpinned = adhoc.entry("hf:org/model")
    assert unpinned["source"]["hub"]["revision"] is None


@pytest.mark.parametrize("spec", ["hf:no-slash", "hf:a/b/c@x", "openai:ftp://x", "/no/such/folder"])
def test_bad_specs_are_refused_in_one_line(spec):
    with pytest.raises(MedregError, match="--model"):
        adhoc.entry(spec)


def test_folder_spec_records_the_files_digest_and_a_changed_folder_is_refused(tmp_path):
    folder = tmp_path / "My.Model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    name, entry = adhoc.entry(str(folder), root=tmp_path / "elsewhere")
    model = catalog.Model(name=name, **entry)
    assert name == "my-model" and model.source.local.path == folder.as_posix()
    assert model.source.local.digest == files_digest(folder_files(folder))
    assert pin(model)["files"] == {"config.json": folder_files(folder)["config.json"], "model.safetensors": folder_files(folder)["model.safetensors"]}
    (folder / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(BackendError, match="changed since it was registered"):
        pin(model)
    _, inside = adhoc.entry(str(folder), root=tmp_path)
    assert inside["source"]["local"]["path"] == "My.Model"  # inside the project: relative, as the experiment's copy needs


class Models(BaseHTTPRequestHandler):
    served: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in self.served]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("served", [["org/Served-7B"], ["a", "b"]])
def test_openai_spec_takes_the_one_model_the_server_lists(served):
    Models.served = served
    server = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        if len(served) == 1:
            name, entry = adhoc.entry(f"openai:{url}", api_key_env="NO_SUCH_KEY_ENV")
            model = catalog.Model(name=name, **entry)
            assert (name, model.backend, model.source.endpoint.model, model.source.endpoint.base_url) == ("served-7b", "openai", "org/Served-7B", url)
        else:
            with pytest.raises(MedregError, match="lists 2 models"):
                adhoc.entry(f"openai:{url}")
            _, entry = adhoc.entry(f"openai:{url}", served_model="b")
            assert entry["source"]["endpoint"]["model"] == "b"
    finally:
        server.shutdown()


def test_overrides_add_the_entry_to_the_models_catalog_as_dvc_applies_them(tmp_path):
    """The -S values parse with DVC's own Hydra overrides and give back exactly the entry, quotes and all."""
    name, entry = adhoc.entry("hf:org/Model.v1_x@rev", system="Answer with 'A'-'E': \\ no escapes lost \\")
    sets = adhoc.overrides(name, entry, ["medqa", "pubmedqa"], 50, adversarial=False, allow_unpinned=True)
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  other: {title: x}\n")
    params = tmp_path / "params.yaml"
    params.write_text(
        "evaluate:\n  models: [a, b]\n  questions: {benchmarks: all, limit: 8}\n  runtime: {allow_unpinned: false}\nadversarial:\n  models: [a]\n"
    )
    apply_overrides(models, [s.split(":", 1)[1] for s in sets if s.startswith("registry/models.yaml:")])
    apply_overrides(params, [s for s in sets if not s.startswith("registry/models.yaml:")])
    import yaml

    assert yaml.safe_load(models.read_text())["models"][name] == entry
    got = yaml.safe_load(params.read_text())
    assert got["evaluate"] == {"models": [name], "questions": {"benchmarks": ["medqa", "pubmedqa"], "limit": 50}, "runtime": {"allow_unpinned": True}}
    assert got["adversarial"]["models"] == []
    assert adhoc.overrides(name, entry, None, None, adversarial=True, allow_unpinned=False)[1:] == [
        f"evaluate.models=[{name}]",
        f"adversarial.models=[{name}]",
    ]
