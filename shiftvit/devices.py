"""The autocast context of a ``train.amp`` name, the check for a missing GPU and the machine a run or a benchmark
ran on: torch alone, no timm, so that the benchmarks of one op (``python -m shiftvit.bench shift``) and a refused
``train.device`` answer without importing the training stack (``shiftvit.engine`` re-exports them)."""
from __future__ import annotations

import contextlib
import functools
import platform
from typing import Dict, Optional

import torch

from .config import AMP_CHOICES

# train.amp's names (config.AMP_CHOICES) -> autocast's dtype; none: no autocast
AMP_DTYPES: Dict[str, Optional[torch.dtype]] = dict(zip(AMP_CHOICES, (None, torch.bfloat16, torch.float16)))


def autocast_for(device: torch.device, amp: str):
    """The autocast context of ``amp`` (a ``train.amp`` name) on ``device``'s type; none: no autocast. An unknown
    name is refused naming the choices."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp={amp!r} is not one of: {', '.join(AMP_DTYPES)}")
    dtype = AMP_DTYPES[amp]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a ``train.device`` name (config.DEVICE_FORMS) trains on in the process of ``local_rank``."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no CUDA device is available; use auto or cpu")
    return device


def amp_device_error(amp: str, device: torch.device) -> Optional[str]:
    """Why ``amp`` cannot train on ``device``, in one line with the way out, or None: fp16 needs CUDA's gradient
    scaler, and the CPU's autocast has no fp16 training path worth taking (bf16 keeps float32's range)."""
    if amp == "fp16" and device.type != "cuda":
        return (f"train.amp=fp16 needs a CUDA device, and this run trains on {device.type}: use train.amp=bf16 "
                "(autocast on the CPU too) or train.amp=none")
    return None


def cuda_devices_if_absent(device: torch.device) -> Optional[int]:
    """None when ``device`` is no GPU or this machine has it, else the number of CUDA devices it has (0: none):
    asked before a run or a benchmark starts, so that a missing GPU is one line, not a driver's traceback."""
    if device.type != "cuda":
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return count if count == 0 or (device.index or 0) >= count else None


def machine(device: Optional[torch.device] = None) -> Dict[str, Optional[str]]:
    """What, besides the code and the versions, decides a run's last bits: the CPU model, the vector instructions
    PyTorch's CPU kernels dispatch to on it (``AVX512``, ``AVX2``: the same run gives other rounding, and a ReLU
    network trained for a few dozen steps can end a few images apart), and the GPU ``device`` is, where it is one
    (None: a run on the CPU, whatever GPUs the machine has, names none). A container's hostname does not say it:
    it is the same on every machine."""
    gpu = torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else None
    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "gpu": gpu}


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name") and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
