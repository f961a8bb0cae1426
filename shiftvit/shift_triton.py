"""The shift as one Triton kernel for CUDA tensors: each output element is read once and written once, in
a single launch, for both memory formats and both directions.

Opt-in (``SHIFTVIT_GPU_SHIFT_KERNEL=triton`` or ``shiftvit.ops.set_gpu_kernel("triton")``): the default GPU
kernel is the six-launch official algorithm (``ops.shift_official``), which it has not yet been shown to beat
(README, Performance).
Tested on CPU through Triton's interpreter (``TRITON_INTERPRET=1``). Hand-written because no library has a
partial shift; imported only when selected, so Triton is never a dependency of the default path.
"""
import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _unravel(offs, inner, middle, outer):
    """Indices of a dense 4-D tensor from its memory offset, innermost dimension first."""
    t = offs // inner
    return offs % inner, t % middle, (t // middle) % outer, t // middle // outer


@triton.jit
def _shift_kernel(x_ptr, out_ptr, numel, C, H, W, g, step, s_n, s_c, s_h, s_w,
                  INVERSE: tl.constexpr, CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # the output's memory order
    mask = offs < numel
    if CHANNELS_LAST:
        c, w, h, n = _unravel(offs, C, W, H)
    else:
        w, h, c, n = _unravel(offs, W, H, C)
    group = c // g  # 0 left, 1 right, 2 up, 3 down, 4 and up: not shifted
    dx = tl.where(group == 0, step, tl.where(group == 1, -step, 0))
    dy = tl.where(group == 2, step, tl.where(group == 3, -step, 0))
    if INVERSE:  # the adjoint: the opposite shift
        dx = -dx
        dy = -dy
    hs = h + dy
    ws = w + dx
    inside = mask & (hs >= 0) & (hs < H) & (ws >= 0) & (ws < W)
    value = tl.load(x_ptr + n * s_n + c * s_c + hs * s_h + ws * s_w, mask=inside, other=0.0)
    tl.store(out_ptr + offs, value, mask=mask)


def shift_triton(x: torch.Tensor, g: int, inverse: bool = False, shift_size: int = 1) -> torch.Tensor:
    """``shift_official(x, g, inverse, shift_size)`` in one launch; keeps channels-last input channels-last."""
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    if not channels_last:
        x = x.contiguous()
    out = torch.empty_like(x)
    n, c, h, w = x.shape
    _shift_kernel[(triton.cdiv(x.numel(), BLOCK),)](
        x, out, x.numel(), c, h, w, g, shift_size, *x.stride(),
        INVERSE=inverse, CHANNELS_LAST=channels_last, BLOCK=BLOCK)
    return out
