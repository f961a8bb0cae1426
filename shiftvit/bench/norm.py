"""GroupNorm(1, C) alone, forward + backward: PyTorch's ``group_norm``, the same kernel on the memory as stored
(``ops.group_norm1_as_stored``), timm's ``fast_norm`` (the autocast dtype in and out), Inductor's fused version and,
on CUDA, ours (``group_norm_triton.py``), each as a ratio to two clones
of the same tensors, in both memory formats, in float32 and under bf16 autocast (how a block sees it in
``train.amp=bf16``): what the norm of every block costs, against the floor of any out-of-place op. Under autocast
both inputs a block's norm meets are timed: float32 (Shift-T's first stage, whose residual stream the patch
embedding's norm leaves in float32) and bf16 (the later stages, each after a patch merge's convolution).

A LayerNorm over the last three dimensions of the tensor as stored computes the same statistics in either memory
format; it was timed here, slower than native on an H200, and dropped (README, Performance, has the numbers)."""
from __future__ import annotations

import itertools
import statistics
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..devices import AMP_DTYPES, autocast_for
from ..ops import group_norm1_as_stored
from .shift import STAGE1_SHAPE, _triton_usable
from .timing import _device_name, time_interleaved


def _fwd_bwd(norm: Callable[..., torch.Tensor], x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor,
             bias: torch.Tensor, autocast) -> Callable[[], None]:
    def step() -> None:
        x.grad = weight.grad = bias.grad = None
        with autocast:
            y = norm(x, 1, weight, bias, 1e-5)
        y.backward(grad.to(y.dtype))
    return step


def bench_norm(shape: Tuple[int, int, int, int] = STAGE1_SHAPE, repeats: int = 20, device: str = "cpu",
               amps: Sequence[str] = ("none", "bf16"), compile: bool = False) -> Dict[str, object]:
    from timm.layers.fast_norm import fast_group_norm

    dev = torch.device(device)
    rows: Dict[str, Dict[str, float]] = {}
    c = shape[1]
    weight = torch.randn(c, device=dev, requires_grad=True)
    bias = torch.randn(c, device=dev, requires_grad=True)
    norms: Dict[str, Callable[..., torch.Tensor]] = {
        "native": F.group_norm,
        "as_stored": lambda x, _groups, w, b, eps: group_norm1_as_stored(x, w, b, eps)}
    if compile:
        norms["inductor"] = torch.compile(F.group_norm, dynamic=False)
    if _triton_usable(dev):
        from ..group_norm_triton import group_norm1_triton

        norms["triton"] = lambda x, _groups, w, b, eps: group_norm1_triton(x, w, b, eps)
    layouts = (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last))
    inputs = [(amp, dtype) for amp in amps
              for dtype in dict.fromkeys((torch.float32, AMP_DTYPES[amp] or torch.float32))]
    for (amp, dtype), (fmt_name, fmt) in itertools.product(inputs, layouts):
        autocast = autocast_for(dev, amp)
        x = torch.randn(*shape, device=dev, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
        grad = torch.randn(*shape, device=dev).contiguous(memory_format=fmt)
        fns = {"clone": lambda x=x, grad=grad: (x.detach().clone(), grad.clone())}
        fns.update({name: _fwd_bwd(norm, x, grad, weight, bias, autocast) for name, norm in norms.items()})
        if amp != "none":  # timm's fast_norm differs from native only under autocast
            fns["timm_fast_norm"] = _fwd_bwd(fast_group_norm, x, grad, weight, bias, autocast)
        times = time_interleaved(fns, repeats, device=dev)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = f"{fmt_name} amp={amp}" + ("" if dtype == torch.float32 else f" input={str(dtype).replace('torch.', '')}")
        rows[row] = {k: med[k] / med["clone"] for k in med} | {"clone_ms": 1e3 * med["clone"]}
    return dict(benchmark="norm", shape=list(shape), repeats=repeats, device=_device_name(dev), compile=compile,
                threads=torch.get_num_threads(), torch=torch.__version__, ratio_to_clone=rows)


def _print_norm(r: Dict[str, object]) -> None:
    print(f"GroupNorm(1, C) fwd+bwd, shape {tuple(r['shape'])}, {r['device']}, {r['repeats']} interleaved repeats; "
          "time / two clones (median)")
    names = sorted({k for row in r["ratio_to_clone"].values() for k in row if k not in ("clone", "clone_ms")})
    print(f"{'layout, amp':<40}{'clone ms':>9}" + "".join(f"{n:>16}" for n in names))
    for config, row in r["ratio_to_clone"].items():
        print(f"{config:<40}{row['clone_ms']:>9.3f}" + "".join(
            f"{row[n]:>16.2f}" if n in row else f"{'-':>16}" for n in names))
