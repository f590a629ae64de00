"""What `precision: auto` means on a device: bf16 autocast where it computes bf16 natively, else fp32.
Training (run.precision) and feature extraction (data/features.py) read it from here."""
from __future__ import annotations

from pathlib import Path

import torch


def native_precision(device_type: str) -> str:
    """What `--precision auto` runs: bf16 autocast where the device has bf16 arithmetic (a CUDA GPU that
    supports it; a CPU with AVX-512 BF16 or AMX, 2.4-2.8x fp32 here, benchmarks/results/cpu_speed.md),
    else fp32, which emulated bf16 would only slow down."""
    if device_type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if device_type == "cpu":
        return "bf16-mixed" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "32-true"
    return "32-true"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no native-bf16 claim we can check
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
