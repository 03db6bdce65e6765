"""DVC stages, one module each (`python -m stages.<name>`); this package file runs first, before any stage imports torch.

It pins torch's CPU kernels so that training and inference give the same bytes on any x86-64 machine with AVX2:
the ATen vector-kernel family, MKL's code path (conditional numerical reproducibility) and oneDNN's instruction set.
`pin_cpu` then fixes the thread count (params `cpu.threads`) and asks for deterministic algorithms.
Set any of these variables yourself to override them.
"""

import os
import platform

if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_CBWR", "AVX2")
    os.environ.setdefault("DNNL_MAX_CPU_ISA", "AVX2")


def pin_cpu(threads: int) -> None:
    """Fix torch's thread count and ask for deterministic kernels (results depend on both).

    Under a multi-process launch (torchrun sets LOCAL_WORLD_SIZE) the processes of one machine share `threads`.
    """
    import torch

    torch.set_num_threads(max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    torch.use_deterministic_algorithms(True)
