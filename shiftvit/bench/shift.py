"""The shift op alone: forward + backward of ours, the official algorithm and the raw kernels, each timed as a
ratio to ``clone()`` of the same tensors (the memory-traffic floor any out-of-place shift must pay)."""
from __future__ import annotations

import statistics
from typing import Callable, Dict, Optional, Tuple

import torch

from ..ops import _shift_write_once, shift_by, shift_channels, shift_official, use_gpu_kernels
from .timing import _device_name, _machine, time_interleaved


def _triton_usable(device: torch.device) -> bool:
    """The one-launch Triton shift is benchmarked beside the others on CUDA, where Triton is installed."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def with_kernels(call: Callable[[], object], shift: Optional[str] = None,
                 norm: Optional[str] = None) -> Callable[[], object]:
    """``call`` run with the given GPU shift and/or norm kernel (``ops.use_gpu_kernels``)."""
    def run() -> object:
        with use_gpu_kernels(shift=shift, norm=norm):
            return call()
    return run


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Shift-T's first stage at batch 64 (the largest shifted tensor, where bytes, not launches, set the time): the
# shape of the shift and norm benchmarks by default, and the one issue #16's shift target is set for
STAGE1_SHAPE = (64, 96, 56, 56)


class _CloneFunction(torch.autograd.Function):
    """A copy forward and a copy backward, as an autograd function: the floor for a shift called through
    autograd, which pays the function's and the backward engine's fixed cost on top of its two passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clone()


def bench_shift(shape: Tuple[int, int, int, int] = STAGE1_SHAPE, gamma: str = "1/12", repeats: int = 20,
                channels_last: bool = False, threads: Optional[int] = None, device: str = "cpu",
                dtype: str = "float32") -> Dict[str, object]:
    """Shift forward+backward vs ``x.clone()`` + ``grad.clone()`` (the memory-traffic floor) vs official."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of: {', '.join(DTYPES)}")
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(*shape, device=dev, dtype=DTYPES[dtype]).contiguous(memory_format=fmt).requires_grad_(True)
    grad = torch.randn(*shape, device=dev, dtype=DTYPES[dtype]).contiguous(memory_format=fmt)
    g = shift_channels(shape[1], gamma)

    def clone_floor() -> None:
        x.detach().clone()
        grad.clone()

    def clone_through_autograd() -> None:  # the same two copies, paying what any autograd.Function pays
        x.grad = None
        _CloneFunction.apply(x).backward(grad)

    def ours() -> None:
        x.grad = None
        shift_by(x, g).backward(grad)

    def official() -> None:  # zeros_like + five slice copies, autograd through the indexing
        x.grad = None
        shift_official(x, g).backward(grad)

    def kernel(impl: Callable[..., torch.Tensor]) -> Callable[[], None]:
        return lambda: (impl(x.detach(), g), impl(grad, g, inverse=True))  # what forward + backward run

    fns = {"clone": clone_floor, "clone_autograd": clone_through_autograd, "shiftvit": ours, "official": official,
           "write_once": kernel(_shift_write_once), "few_launches": kernel(shift_official)}
    if _triton_usable(dev):
        from ..shift_triton import shift_triton

        fns["triton"] = kernel(shift_triton)
        fns["shiftvit_triton"] = with_kernels(ours, shift="triton")  # through the autograd function
        fns["shiftvit_auto"] = with_kernels(ours, shift="auto")  # the faster of the two for this shape
    times = time_interleaved(fns, repeats, device=dev)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return dict(
        benchmark="shift", shape=list(shape), gamma=gamma, channels_last=channels_last, dtype=dtype, repeats=repeats,
        device=_device_name(dev),
        threads=torch.get_num_threads(), torch=torch.__version__, machine=_machine(),
        median_ms={k: 1e3 * v for k, v in med.items()}, min_ms={k: 1e3 * v for k, v in best.items()},
        ratio_to_clone={k: med[k] / med["clone"] for k in med},
        ratio_to_clone_min={k: best[k] / best["clone"] for k in best},
        # the ops called through autograd (shiftvit*, official) against the same copies through autograd
        ratio_to_autograd_clone={k: med[k] / med["clone_autograd"] for k in med},
    )


def _print_shift(r: Dict[str, object]) -> None:
    fmt = "channels_last" if r["channels_last"] else "NCHW"
    print(f"shift fwd+bwd, shape {tuple(r['shape'])} {fmt} {r.get('dtype', 'float32')}, gamma={r['gamma']}, "
          f"{r['device']}, {r['threads']} threads, {r['repeats']} interleaved repeats")
    print(f"{'impl':<16}{'median ms':>10}{'min ms':>9}{'x clone (median)':>18}{'x clone (min)':>15}"
          f"{'x autograd clone':>18}")
    for k in r["median_ms"]:
        print(f"{k:<16}{r['median_ms'][k]:>10.2f}{r['min_ms'][k]:>9.2f}"
              f"{r['ratio_to_clone'][k]:>18.3f}{r['ratio_to_clone_min'][k]:>15.3f}"
              f"{r['ratio_to_autograd_clone'][k]:>18.3f}")
