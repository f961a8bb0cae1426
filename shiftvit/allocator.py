"""How CPU tensors get their memory: keep freed blocks for reuse instead of handing them back to the kernel.

PyTorch takes CPU tensor memory from the C library's ``malloc``. glibc serves each block above its mmap
threshold (32 MiB at most) with a fresh ``mmap`` and unmaps it on ``free``, so every large activation of a
224-px batch is page-faulted and zeroed by the kernel again on every pass, and the 1x1 convolutions that
first touch those pages look slow. Asking glibc to serve everything from its heap and never trim it
(``mallopt``) makes the faults one-off (the gain, for the official structure and ours alike, is measured by
``python -m shiftvit.bench fast``: README, Performance).

Written by hand because nothing installable does it: PyTorch has a caching allocator for CUDA only, and
jemalloc/tcmalloc need a system package plus ``LD_PRELOAD`` before the process starts. The price is that a
process keeps its peak CPU memory until it exits, as PyTorch's CUDA caching allocator does on the GPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

RETAIN, SYSTEM = MODES = ("retain", "system")
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_state = {"mode": SYSTEM}


def configure(mode: str) -> str:
    """Apply ``mode`` (``retain``: keep freed memory; ``system``: leave malloc as it is) to this process and
    every process it forks; returns the mode in effect (``system`` where the C library is not glibc)."""
    if mode not in MODES:
        raise ValueError(f"malloc={mode!r} is not one of: {', '.join(MODES)}")
    if mode == SYSTEM or _state["mode"] == RETAIN:
        return _state["mode"]
    libc = _glibc()
    if libc is not None and libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1:
        _state["mode"] = RETAIN
    return _state["mode"]


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
