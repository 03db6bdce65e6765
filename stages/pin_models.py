"""Stage pin_models: one small file per catalog model naming exactly the weights it loads.

DVC cannot look up a model's checkpoint folder from its name, so each `evaluate@<model>` and `adversarial@<model>`
stage depends on `models/pins/<model>.json` instead: the SHA-256 of every file of a local checkpoint, the pinned
revision of a Hub model, or the endpoint of an API model. Re-training or re-converting a checkpoint changes its pin
and re-runs only the stages of the models that load it.
"""

import json

from registry import catalog, io
from registry.backends import pin
from registry.errors import run_stage


def main() -> None:
    """Write models/pins/<name>.json for every catalog model (a checkpoint shared by several models is hashed once)."""
    hashed: dict[str, dict[str, str]] = {}
    pins = {name: pin(model, hashed=hashed) for name, model in catalog.models().items()}
    with io.atomic_path(catalog.dataset_path("model_pins"), directory=True) as tmp:
        for name, content in pins.items():
            (tmp / f"{name}.json").write_text(json.dumps(content, indent=2) + "\n")
    for name, content in pins.items():
        what = content.get("local") or content.get("hub") or content.get("endpoint")
        print(f"  {name:<28} {what}{'' if content.get('files', True) else '  (checkpoint not written yet)'}")


if __name__ == "__main__":
    run_stage(main)
