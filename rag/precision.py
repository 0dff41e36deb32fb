"""Which low-precision dtype a device runs fast: one rule for training autocast and inference weights."""
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


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs with avx512_bf16 or AMX, where bf16 matmuls run at about twice fp32's speed."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
