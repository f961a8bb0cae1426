"""The shift as one Triton kernel for CUDA tensors: each output element is read once and written once, in
a single launch, for both memory formats and both directions. No per-element index arithmetic beyond a
multiply-add: a program owns rows of one channel plane (NCHW) or one image row's columns x channels
(channels-last), so the source of a tile is the tile itself offset by its group's (dx, dy), and the contiguous
dimension is loaded and stored as a vector.

Opt-in (``SHIFTVIT_GPU_SHIFT_KERNEL=triton`` or ``shiftvit.ops.set_gpu_kernel("triton")``; ``auto`` takes it for
the shapes where it is faster): the default GPU kernel is the six-launch official algorithm
(``ops.shift_official``), which it has not yet been shown to beat in a whole model (README, Performance).
Tested on CPU through Triton's interpreter (``TRITON_INTERPRET=1``). Hand-written because no library has a
partial shift; imported only when selected, so Triton is never a dependency of the default path.
"""
import torch
import triton
import triton.language as tl

from .ops import empty_unfilled

# Elements per program: a tile of rows x columns (NCHW) or of columns x channels (channels-last)
TILE = 2048
CHANNEL_BLOCK = 128


@triton.jit
def _offsets(c, g, step, INVERSE: tl.constexpr):
    """(dx, dy) of channel(s) ``c``: group 0 reads from ``step`` pixels to the right (it moves left), 1 from the
    left, 2 from below, 3 from above, the rest stay. Comparisons, not a division, pick the group."""
    dx = tl.where(c < g, step, tl.where(c < 2 * g, -step, 0))
    dy = tl.where((c >= 2 * g) & (c < 3 * g), step, tl.where((c >= 3 * g) & (c < 4 * g), -step, 0))
    if INVERSE:  # the adjoint: the opposite shift
        dx = -dx
        dy = -dy
    return dx, dy


@triton.jit
def _shift_planes(x_ptr, out_ptr, C, H, W, g, step, s_n, s_c, s_h, s_w,
                  INVERSE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """NCHW: one program per (plane, block of rows); a plane has one (dx, dy), so the tile is a shifted 2-D copy
    along the contiguous width."""
    plane = tl.program_id(0)
    n = plane // C  # one division per program, none per element
    c = plane - n * C
    dx, dy = _offsets(c, g, step, INVERSE)
    rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    cols = tl.arange(0, BLOCK_W)
    src_rows = rows + dy
    src_cols = cols + dx
    out_mask = (rows < H)[:, None] & (cols < W)[None, :]
    in_mask = out_mask & ((src_rows >= 0) & (src_rows < H))[:, None] & ((src_cols >= 0) & (src_cols < W))[None, :]
    src = x_ptr + n.to(tl.int64) * s_n + c.to(tl.int64) * s_c
    value = tl.load(src + src_rows[:, None] * s_h + src_cols[None, :] * s_w, mask=in_mask, other=0.0)
    dst = out_ptr + plane.to(tl.int64) * H * W
    tl.store(dst + rows[:, None] * W + cols[None, :], value, mask=out_mask)


@triton.jit
def _shift_rows(x_ptr, out_ptr, C, H, W, g, step, s_n, s_c, s_h, s_w,
                INVERSE: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """Channels-last: one program per (image row, block of columns, block of channels); the channels are the
    contiguous dimension, and each keeps its group's offset, so a tile is contiguous runs of channels."""
    row = tl.program_id(0)
    n = row // H  # one division per program, none per element
    h = row - n * H
    cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    chans = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    dx, dy = _offsets(chans, g, step, INVERSE)
    src_rows = h + dy
    src_cols = cols[:, None] + dx[None, :]
    out_mask = (cols < W)[:, None] & (chans < C)[None, :]
    in_mask = out_mask & ((src_rows >= 0) & (src_rows < H))[None, :] & (src_cols >= 0) & (src_cols < W)
    src = x_ptr + n.to(tl.int64) * s_n + (src_rows * s_h + chans * s_c)[None, :] + src_cols * s_w
    value = tl.load(src, mask=in_mask, other=0.0)
    dst = out_ptr + row.to(tl.int64) * W * C
    tl.store(dst + cols[:, None] * C + chans[None, :], value, mask=out_mask)


def shift_triton(x: torch.Tensor, g: int, inverse: bool = False, shift_size: int = 1) -> torch.Tensor:
    """``shift_official(x, g, inverse, shift_size)`` in one launch; keeps channels-last input channels-last."""
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    if not channels_last:
        x = x.contiguous()
    out = empty_unfilled(x)
    n, c, h, w = x.shape
    if out.numel() == 0:
        return out
    if channels_last:
        block_c = min(triton.next_power_of_2(c), CHANNEL_BLOCK)
        block_w = min(triton.next_power_of_2(w), max(1, TILE // block_c))
        grid = (n * h, triton.cdiv(w, block_w), triton.cdiv(c, block_c))
        _shift_rows[grid](x, out, c, h, w, g, shift_size, *x.stride(),
                          INVERSE=inverse, BLOCK_W=block_w, BLOCK_C=block_c)
    else:
        block_w = triton.next_power_of_2(w)
        block_h = min(triton.next_power_of_2(h), max(1, TILE // block_w))
        grid = (n * c, triton.cdiv(h, block_h))
        _shift_planes[grid](x, out, c, h, w, g, shift_size, *x.stride(),
                            INVERSE=inverse, BLOCK_H=block_h, BLOCK_W=block_w)
    return out
