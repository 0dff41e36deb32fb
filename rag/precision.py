"""How rag uses the hardware: which low-precision dtype a device runs fast (one rule for training
autocast, encoding and reading) and one thread count for torch and FAISS."""
from __future__ import annotations

from pathlib import Path

from rag.types import RagError

PRECISIONS = ("auto", "bf16", "fp32")


def autocast_dtype(precision: str, device: str):
    """The dtype for torch.autocast, or None for fp32: bf16 where the hardware runs it fast."""
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise RagError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast(device: str, dtype):
    """torch.autocast in `dtype` on `device` (matmuls in bf16, norms and softmax in fp32); a no-op when dtype is None."""
    import torch

    return torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None)


def set_threads(threads: int | None) -> int:
    """One thread count for torch's intra-op pool and FAISS's OpenMP pool, so they never ask for more
    cores than there are (seen: query encoding 3x slower while FAISS searched with its own pool).
    None: OMP_NUM_THREADS when set, else the cores this process may use. Called before torch and FAISS load (as the CLI does), it
    costs nothing: both read OMP_NUM_THREADS when they start. Returns the count set."""
    import os
    import sys

    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])  # the user's own setting
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads < 1:
        raise RagError(f"threads must be 1 or more, not {threads}")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # and processes started from here
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    return threads


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs with avx512_bf16 or AMX, where bf16 matmuls run at about twice fp32's speed."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
