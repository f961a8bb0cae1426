"""Where a training step's time goes: PyTorch's profiler over a few eager training steps of each model (forward,
backward and an AdamW step, under the autocast and memory format given: ``bench throughput``'s step), its
operators ranked by their own time on the device (the GPU's kernels on CUDA, the CPU's time on a CPU), beside the
step's wall time measured without the profiler.

What it answers on a GPU: how much of the wall the device is busy (the rest is the host launching, which CUDA graphs
take away), how many kernels a step launches, and what the copies cost (``aten::copy_``: casts, layout conversions
such as PyTorch's GroupNorm makes of a channels-last tensor, and the shift's own slice copies), so that a kernel
choice (``+gn_as_stored``, ``+triton``) is read as the operators it removes, not only as a rate."""
from __future__ import annotations

import contextlib
import time
from typing import Dict, List, Optional, Sequence

import torch

from ..devices import autocast_for
from .models import _build, models_problem, parse_kernels, split_compiled, training_step
from .shift import with_kernels
from .timing import _device_name, synchronizer

COPY_OP = "aten::copy_"  # every copy's kernel runs under it: clone, contiguous and _to_copy allocate, then copy_
FILL_OP = "aten::fill_"  # zeros, and the NaN that deterministic algorithms write into new tensors unless told not to
# off: as the other benchmarks (no deterministic algorithms); run: as run.py trains by default (train.deterministic,
# engine.use_deterministic_algorithms); filled: the same with PyTorch's own default, a NaN fill of each new tensor
DETERMINISTIC_MODES = ("off", "run", "filled")


@contextlib.contextmanager
def deterministic_mode(mode: str):
    """The steps under ``mode`` (``DETERMINISTIC_MODES``), the process's settings restored afterwards."""
    from ..engine import use_deterministic_algorithms

    if mode not in DETERMINISTIC_MODES:
        raise ValueError(f"deterministic={mode!r} is not one of: {', '.join(DETERMINISTIC_MODES)}")
    flags = torch.utils.deterministic
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              flags.fill_uninitialized_memory, torch.backends.cudnn.benchmark)
    try:
        if mode != "off":
            use_deterministic_algorithms(fill_uninitialized_memory=mode == "filled")
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        flags.fill_uninitialized_memory, torch.backends.cudnn.benchmark = before[2], before[3]


def profile_problem(models: Sequence[str]) -> Optional[str]:
    """None when every model can be profiled, else why not (``bench throughput``'s names, eager only)."""
    return models_problem(models) or next((f"model {spec!r}: the profile is of eager steps; drop +compiled"
                                           for spec in models if split_compiled(spec)[1]), None)


def bench_profile(models: Sequence[str], batch_size: int = 64, img_size: int = 224, steps: int = 3,
                  device: str = "cpu", amp: str = "none", channels_last: bool = False,
                  top: int = 15, deterministic: str = "off") -> Dict[str, object]:
    """For each model (``bench throughput``'s names, with kernel suffixes, eager only): the wall time of a training
    step, the device's busy time in it (the operators' own time, summed), the kernels it launches (CUDA), the
    copies' and the fills' time, and the ``top`` operators by their own time, each per step; under ``deterministic``
    (``DETERMINISTIC_MODES``)."""
    with deterministic_mode(deterministic):
        result = _profile(models, batch_size, img_size, steps, device, amp, channels_last, top)
    return dict(result, deterministic=deterministic)


def _profile(models: Sequence[str], batch_size: int, img_size: int, steps: int, device: str, amp: str,
             channels_last: bool, top: int) -> Dict[str, object]:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    problem = profile_problem(models)
    if problem:
        raise ValueError(problem)
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    autocast = autocast_for(dev, amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev).contiguous(memory_format=fmt)
    sync = synchronizer(dev)
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
    rows: Dict[str, Dict[str, object]] = {}
    for spec in models:
        name, kernels = parse_kernels(spec)
        model, _ = _build(name, img_size)
        model = model.to(dev, memory_format=fmt).train()
        step = with_kernels(training_step(model, model, x, autocast, scaler), **kernels)
        for _ in range(2):  # warm-up: cuDNN's algorithm choice, the allocator's pools, a kernel's compilation
            step()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        wall_s = (time.perf_counter() - start) / steps
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            profiled_s = (time.perf_counter() - start) / steps
        # the operators (CPU-side events): each one's own time excludes the operators it called, so they sum to the
        # busy time without counting a kernel twice (the kernels also appear as events of their own)
        ops = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU]
        own = (lambda e: e.self_device_time_total) if on_gpu else (lambda e: e.self_cpu_time_total)
        busy_us = sum(own(e) for e in ops)
        ranked: List[Dict[str, object]] = [
            dict(op=e.key, calls=e.count / steps, ms=own(e) / 1e3 / steps, share=own(e) / busy_us if busy_us else 0.0)
            for e in sorted(ops, key=own, reverse=True)[:top] if own(e) > 0]
        row = dict(wall_ms=1e3 * wall_s, busy_ms=busy_us / 1e3 / steps,
                   copy_ms=sum(own(e) for e in ops if e.key == COPY_OP) / 1e3 / steps,
                   fill_ms=sum(own(e) for e in ops if e.key == FILL_OP) / 1e3 / steps,
                   fill_calls=sum(e.count for e in ops if e.key == FILL_OP) / steps,
                   ops_per_step=sum(e.count for e in ops) / steps, top=ranked)
        if on_gpu:
            row["kernels_per_step"] = sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA) / steps
        # a GPU's kernels take as long profiled as not, so against the plain wall; a CPU's operators are slowed by
        # the profiler's own bookkeeping, so against the wall of the same profiled steps
        row["busy_share"] = row["busy_ms"] / (row["wall_ms"] if on_gpu else 1e3 * profiled_s)
        rows[spec] = row
        del model, step
    return dict(benchmark="profile", batch_size=batch_size, img_size=img_size, steps=steps, amp=amp,
                channels_last=channels_last, device=_device_name(dev), threads=torch.get_num_threads(),
                torch=torch.__version__, reference=models[0], rows=rows)


def _print_profile(r: Dict[str, object]) -> None:
    where = "GPU kernels" if "kernels_per_step" in next(iter(r["rows"].values())) else "CPU"
    print(f"one eager training step, batch {r['batch_size']}, {r['img_size']} px, amp={r['amp']}, "
          f"{'channels-last' if r['channels_last'] else 'NCHW'}, deterministic={r['deterministic']}, {r['device']}; "
          f"mean of {r['steps']} steps; busy: the operators' own time on the {where}")
    for spec, row in r["rows"].items():
        kernels = f", {row['kernels_per_step']:.0f} kernels" if "kernels_per_step" in row else ""
        print(f"\n{spec}: wall {row['wall_ms']:.1f} ms, busy {row['busy_ms']:.1f} ms ({row['busy_share']:.0%}), "
              f"copies {row['copy_ms']:.1f} ms, fills {row['fill_ms']:.1f} ms, {row['ops_per_step']:.0f} operator "
              f"calls{kernels} per step")
        for op in row["top"]:
            print(f"  {op['op']:<44}{op['calls']:>8.0f} calls{op['ms']:>10.2f} ms{op['share']:>7.1%}")
