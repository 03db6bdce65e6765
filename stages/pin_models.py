"""Stage pin_models: one small file per catalog model naming exactly the weights it loads.

DVC cannot look up a model's checkpoint folder from its name, so each `evaluate@<model>` and `adversarial@<model>`
stage depends on `models/pins/<model>.json` instead: the SHA-256 of every file of a local checkpoint, the pinned
revision of a Hub model, or the endpoint of an API model. Re-training or re-converting a checkpoint changes its pin
and re-runs only the stages of the models that load it.
"""

import hashlib
import json
from pathlib import Path

from registry import catalog, io
from registry.catalog import Model
from registry.errors import run_stage


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in 8 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def pin(model: Model, checkpoints: dict[str, dict[str, str]]) -> dict:
    """What `model` loads: local checkpoint file digests (None if not written yet), Hub id and revision, or endpoint."""
    source = model.source
    if source.local:
        folder = Path(source.local.path)
        if folder.as_posix() not in checkpoints:
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            checkpoints[folder.as_posix()] = {p.relative_to(folder).as_posix(): sha256(p) for p in files}
        files = checkpoints[folder.as_posix()]
        return {"model": model.name, "local": folder.as_posix(), "files": files or None}
    if source.hub:
        return {"model": model.name, "hub": source.hub.id, "revision": source.hub.revision}
    return {"model": model.name, "endpoint": source.endpoint.base_url, "served_model": source.endpoint.model}


def main() -> None:
    """Write models/pins/<name>.json for every catalog model (a checkpoint shared by several models is hashed once)."""
    checkpoints: dict[str, dict[str, str]] = {}
    pins = {name: pin(model, checkpoints) for name, model in catalog.models().items()}
    with io.atomic_path(catalog.dataset_path("model_pins"), directory=True) as tmp:
        for name, content in pins.items():
            (tmp / f"{name}.json").write_text(json.dumps(content, indent=2) + "\n")
    for name, content in pins.items():
        what = content.get("local") or content.get("hub") or content.get("endpoint")
        print(f"  {name:<28} {what}{'' if content.get('files', True) else '  (checkpoint not written yet)'}")


if __name__ == "__main__":
    run_stage(main)
