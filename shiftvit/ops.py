"""The partial shift operation of ShiftViT.

``shift(x, gamma)`` moves ``g = floor(gamma * C)`` channels one pixel in each of the four directions
(left, right, up, down; in that channel order) and copies the remaining ``C - 4g`` channels unchanged.
Pixels pushed out are dropped and vacated rows/columns are zero, exactly as the official implementation.

Why a hand-written autograd function: the official code builds the output with ``zeros_like`` followed by
five slice copies and lets autograd differentiate through the indexing, which writes the tensor twice
forward and allocates/zeros again backward (9.3x two clones on a CPU). The shift is a permutation with zero
fill, so its backward is the inverse shift: on a CPU both directions write every output element exactly once
(1.1-1.2x two clones); on a GPU, where launches count more than bytes, both use the official algorithm's six
launches. No library ships it.
"""
from __future__ import annotations

import os
from fractions import Fraction

import torch
from timm.layers import register_notrace_function

from .spec import GammaLike, parse_gamma, shift_channels  # noqa: F401  (re-exported: shiftvit.ops.parse_gamma)


def shift_reference(x: torch.Tensor, g: int, inverse: bool = False) -> torch.Tensor:
    """The official algorithm: zero the output, then five slice copies (``inverse``: the opposite shift).
    Plain and obviously correct; also the TorchScript path and the GPU kernel: 6 launches, where the
    write-once kernel below takes 9, and on a GPU the late stages' tensors are small enough that launches,
    not bytes, set the time (the official structure ran Shift-T inference 1.14x faster than our write-once
    kernel on an H200; README, Performance)."""
    # first channel of the groups moving left, right, up and down; the adjoint swaps opposite directions
    left, right, up, down = (g, 0, 3 * g, 2 * g) if inverse else (0, g, 2 * g, 3 * g)
    out = torch.zeros_like(x)
    out[:, left:left + g, :, :-1] = x[:, left:left + g, :, 1:]
    out[:, right:right + g, :, 1:] = x[:, right:right + g, :, :-1]
    out[:, up:up + g, :-1, :] = x[:, up:up + g, 1:, :]
    out[:, down:down + g, 1:, :] = x[:, down:down + g, :-1, :]
    out[:, 4 * g:] = x[:, 4 * g:]
    return out


def _shift_write_once(x: torch.Tensor, g: int, inverse: bool = False) -> torch.Tensor:
    """Write each output element once: shifted slice copies plus one-pixel zero fills, no full zeroing.
    Fewest bytes moved (9 small ops): the fastest on CPUs, where the shift is bound by memory traffic."""
    out = torch.empty_like(x)  # preserves channels_last
    starts = (g, 0, 3 * g, 2 * g) if inverse else (0, g, 2 * g, 3 * g)
    left, right, up, down = (slice(c, c + g) for c in starts)
    if x.shape[-1] > 1:
        out[:, left, :, :-1] = x[:, left, :, 1:]
        out[:, right, :, 1:] = x[:, right, :, :-1]
    out[:, left, :, -1] = 0
    out[:, right, :, 0] = 0
    if x.shape[-2] > 1:
        out[:, up, :-1, :] = x[:, up, 1:, :]
        out[:, down, 1:, :] = x[:, down, :-1, :]
    out[:, up, -1, :] = 0
    out[:, down, 0, :] = 0
    out[:, 4 * g:] = x[:, 4 * g:]
    return out


GPU_KERNELS = ("torch", "triton")
_gpu_kernel = {"name": "torch", "fn": shift_reference}  # the name and the function it stands for


def set_gpu_kernel(name: str) -> str:
    """The shift kernel for GPU tensors: ``torch`` (the six-launch official algorithm, the default) or
    ``triton`` (one launch, ``shift_triton.py``; opt-in until measured on a GPU). CPU tensors always use
    the write-once kernel. ``SHIFTVIT_GPU_SHIFT_KERNEL`` sets it for a whole process, ``run.py`` included.
    Returns the kernel it replaces."""
    if name not in GPU_KERNELS:
        raise ValueError(f"GPU shift kernel {name!r} is not one of: {', '.join(GPU_KERNELS)}")
    fn = shift_reference
    if name == "triton":  # imported here, so a missing Triton fails now rather than at the first forward
        from .shift_triton import shift_triton as fn
    previous = _gpu_kernel["name"]
    _gpu_kernel.update(name=name, fn=fn)
    return previous


def _shift_once(x: torch.Tensor, g: int, inverse: bool) -> torch.Tensor:
    if x.device.type == "cpu":
        return _shift_write_once(x, g, inverse)
    return _gpu_kernel["fn"](x, g, inverse)


class _ShiftFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, g: int) -> torch.Tensor:
        ctx.g = g
        return _shift_once(x, g, inverse=False)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return _shift_once(grad_out, ctx.g, inverse=True), None


@torch.jit.unused
def _shift_autograd(x: torch.Tensor, g: int) -> torch.Tensor:
    return _ShiftFunction.apply(x, g)


@register_notrace_function  # torch.fx: keep the shift as one leaf call instead of tracing the slice writes
def shift_by(x: torch.Tensor, g: int) -> torch.Tensor:
    """Shift ``g`` channels per direction of an NCHW (or channels-last) tensor."""
    if g == 0:
        return x
    if torch.jit.is_scripting():
        return shift_reference(x, g)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return _shift_once(x, g, inverse=False)  # inference: no autograd.Function bookkeeping per call
    return _shift_autograd(x, g)


if os.environ.get("SHIFTVIT_GPU_SHIFT_KERNEL"):
    set_gpu_kernel(os.environ["SHIFTVIT_GPU_SHIFT_KERNEL"])


def shift(x: torch.Tensor, gamma: GammaLike = Fraction(1, 12)) -> torch.Tensor:
    """Partial shift of ``x`` (N, C, H, W): ``floor(gamma*C)`` channels per direction move by one pixel."""
    if x.dim() != 4:
        raise ValueError(f"shift expects a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return shift_by(x, shift_channels(x.shape[1], gamma))
