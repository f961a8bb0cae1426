"""GroupNorm(1, C), the norm of every ShiftViT block, as Triton kernels for CUDA tensors, in either memory
format, with float32 statistics for float32, bf16 and fp16 tensors. The output keeps the input's dtype, except under
CUDA autocast, where it is float32 as native ``group_norm``'s is (autocast runs ``group_norm`` in float32; a custom
autograd function is outside its op lists, so this one would otherwise hand bf16 to the next op where the native
norm hands float32). The kernels read the input in its own dtype either way: no cast is launched for it.

Why hand-written: PyTorch's CUDA ``group_norm`` copies a channels-last input to NCHW and returns NCHW (measured on
an H200 in README, Performance), Inductor's version cost more, and no library has a layout-preserving one. Each
sample's C x H x W elements are one contiguous block of memory in both formats, so the statistics are a reduction
over that block; only where an element's channel lies differs, which the kernels take as two strides (NCHW: channel
stride H*W, position stride 1; channels-last: 1 and C). The passes over memory are the fewest an out-of-place norm
needs: forward reads x twice (statistics, then normalise) and writes y once; backward reads x and dy twice and
writes dx once. The small steps between those passes (merging the chunks' statistics, the backward's two per-sample
means) are a kernel each, not a dozen small PyTorch ops: in Shift-T's late stages launches, not bytes, set the time.

Opt-in (``SHIFTVIT_GPU_NORM_KERNEL=triton`` or ``shiftvit.ops.set_gpu_norm_kernel("triton")``): on an H200 it
was slower than PyTorch's kernel in most cases (README, Performance, GPU). Tested on CPU through Triton's
interpreter (``TRITON_INTERPRET=1``) against ``F.group_norm``.
Imported only when selected, so Triton is never a dependency of the default path.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from .ops import empty_unfilled

# elements a statistics program reduces (in BLOCK-sized steps), and the tile sizes of the other three kernels
CHUNK = 16384
BLOCK = 1024
TILE = 4096
CHANNEL_BLOCK = 64


@triton.jit
def _stats(x_ptr, count_ptr, mean_ptr, m2_ptr, M, SPLIT, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """Program (n, s): count, mean and centred sum of squares of chunk s of sample n, merged block by block with
    Chan's formula (each block centred on its own mean, so no cancellation when |mean| >> std)."""
    n = tl.program_id(0)
    s = tl.program_id(1)
    base = x_ptr + n.to(tl.int64) * M
    start = s * CHUNK
    count = 0.0
    mean = 0.0
    m2 = 0.0
    for offset in range(0, CHUNK, BLOCK):
        idx = start + offset + tl.arange(0, BLOCK)
        mask = idx < M
        x = tl.load(base + idx, mask=mask, other=0.0).to(tl.float32)
        k = tl.sum(mask.to(tl.float32), axis=0)
        block_mean = tl.sum(x, axis=0) / tl.maximum(k, 1.0)
        block_m2 = tl.sum(tl.where(mask, (x - block_mean) * (x - block_mean), 0.0), axis=0)
        total = count + k
        delta = block_mean - mean
        mean = mean + delta * k / tl.maximum(total, 1.0)
        m2 = m2 + block_m2 + delta * delta * count * k / tl.maximum(total, 1.0)
        count = total
    out = n * SPLIT + s
    tl.store(count_ptr + out, count)
    tl.store(mean_ptr + out, mean)
    tl.store(m2_ptr + out, m2)


@triton.jit
def _merge(count_ptr, mean_ptr, m2_ptr, out_mean_ptr, out_rstd_ptr, M, SPLIT, eps, BLOCK_S: tl.constexpr):
    """Program n: sample n's mean and 1/std from its chunks' statistics (Chan's merge, in float64 as the chunks
    may number thousands). One launch where the same merge in PyTorch ops took about fifteen small ones."""
    n = tl.program_id(0)
    idx = tl.arange(0, BLOCK_S)
    mask = idx < SPLIT
    count = tl.load(count_ptr + n * SPLIT + idx, mask=mask, other=0.0).to(tl.float64)
    means = tl.load(mean_ptr + n * SPLIT + idx, mask=mask, other=0.0).to(tl.float64)
    m2 = tl.load(m2_ptr + n * SPLIT + idx, mask=mask, other=0.0).to(tl.float64)
    mean = tl.sum(count * means, axis=0) / M
    delta = tl.where(mask, means - mean, 0.0)
    var = (tl.sum(m2, axis=0) + tl.sum(count * delta * delta, axis=0)) / M
    tl.store(out_mean_ptr + n, mean.to(tl.float32))
    tl.store(out_rstd_ptr + n, (1.0 / tl.sqrt(var.to(tl.float32) + eps)))


@triton.jit
def _backward_coefficients(a_ptr, b_ptr, w_ptr, c1_ptr, c2_ptr, C, NUM_P, M, BLOCK_C: tl.constexpr):
    """Program n: mean(w * dy) and mean(w * dy * xhat) over sample n, from the per-tile channel sums."""
    n = tl.program_id(0)
    c1 = 0.0
    c2 = 0.0
    for c0 in range(0, C, BLOCK_C):
        chans = c0 + tl.arange(0, BLOCK_C)
        mask = chans < C
        w = tl.load(w_ptr + chans, mask=mask, other=0.0).to(tl.float32)
        for p in range(0, NUM_P):
            row = (n * NUM_P + p) * C
            c1 += tl.sum(tl.load(b_ptr + row + chans, mask=mask, other=0.0) * w, axis=0)
            c2 += tl.sum(tl.load(a_ptr + row + chans, mask=mask, other=0.0) * w, axis=0)
    tl.store(c1_ptr + n, c1 / M)
    tl.store(c2_ptr + n, c2 / M)


@triton.jit
def _tile(n, C, P, s_c, s_p, M, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """Offsets and mask of program (n, p-block, c-block)'s tile of channels x positions, and its channels."""
    chans = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    pos = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    offsets = n.to(tl.int64) * M + chans[:, None] * s_c + pos[None, :] * s_p
    mask = (chans < C)[:, None] & (pos < P)[None, :]
    return offsets, mask, chans


@triton.jit
def _normalise(x_ptr, y_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, C, P, s_c, s_p,
               BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    n = tl.program_id(0)
    offsets, mask, chans = _tile(n, C, P, s_c, s_p, C * P, BLOCK_C, BLOCK_P)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + chans, mask=chans < C, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + chans, mask=chans < C, other=0.0).to(tl.float32)
    y = (x - tl.load(mean_ptr + n)) * tl.load(rstd_ptr + n) * w[:, None] + b[:, None]
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_sums(x_ptr, dy_ptr, mean_ptr, rstd_ptr, a_ptr, b_ptr, C, P, s_c, s_p, NUM_P,
                   BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """Per channel of the tile: sum of dy * xhat (a) and of dy (b), stored at [n, p-block, c]."""
    n = tl.program_id(0)
    offsets, mask, chans = _tile(n, C, P, s_c, s_p, C * P, BLOCK_C, BLOCK_P)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    xhat = (x - tl.load(mean_ptr + n)) * tl.load(rstd_ptr + n)
    out = (n * NUM_P + tl.program_id(1)) * C + chans
    tl.store(a_ptr + out, tl.sum(tl.where(mask, dy * xhat, 0.0), axis=1), mask=chans < C)
    tl.store(b_ptr + out, tl.sum(dy, axis=1), mask=chans < C)


@triton.jit
def _backward_input(x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, w_ptr, c1_ptr, c2_ptr, C, P, s_c, s_p,
                    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """dx = rstd * (w * dy - mean(w * dy) - xhat * mean(w * dy * xhat)), the means over the sample."""
    n = tl.program_id(0)
    offsets, mask, chans = _tile(n, C, P, s_c, s_p, C * P, BLOCK_C, BLOCK_P)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + chans, mask=chans < C, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + n)
    xhat = (x - tl.load(mean_ptr + n)) * rstd
    dx = rstd * (dy * w[:, None] - tl.load(c1_ptr + n) - xhat * tl.load(c2_ptr + n))
    tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _layout(x: torch.Tensor):
    """(x as stored, channel stride, position stride): NCHW or channels-last, copied to NCHW if neither."""
    n, c, h, w = x.shape
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x, 1, c
    return x.contiguous(), h * w, 1


def _grid_tiles(n: int, c: int, p: int):
    block_c = min(triton.next_power_of_2(c), CHANNEL_BLOCK)
    block_p = min(triton.next_power_of_2(p), max(1, TILE // block_c))
    return (n, triton.cdiv(p, block_p), triton.cdiv(c, block_c)), block_c, block_p


def _statistics(x: torch.Tensor, eps: float):
    n = x.shape[0]
    m = x[0].numel()
    split = triton.cdiv(m, CHUNK)
    parts = torch.empty((3, n, split), device=x.device, dtype=torch.float32)
    _stats[(n, split)](x, parts[0], parts[1], parts[2], m, split, CHUNK=CHUNK, BLOCK=BLOCK)
    mean_rstd = torch.empty((2, n), device=x.device, dtype=torch.float32)
    _merge[(n,)](parts[0], parts[1], parts[2], mean_rstd[0], mean_rstd[1], m, split, eps,
                 BLOCK_S=triton.next_power_of_2(split))
    return mean_rstd[0], mean_rstd[1]


class _GroupNorm1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                out_dtype: torch.dtype) -> torch.Tensor:
        x, s_c, s_p = _layout(x)
        n, c, h, w = x.shape
        mean, rstd = _statistics(x, eps)
        y = empty_unfilled(x, dtype=out_dtype)
        grid, block_c, block_p = _grid_tiles(n, c, h * w)
        _normalise[grid](x, y, mean, rstd, weight, bias, c, h * w, s_c, s_p, BLOCK_C=block_c, BLOCK_P=block_p)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.strides = s_c, s_p
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        n, c, h, w = x.shape
        s_c, s_p = ctx.strides  # dy laid out as x was: channels-last where positions are C apart
        dy = dy.contiguous(memory_format=torch.channels_last if s_p != 1 else torch.contiguous_format)
        grid, block_c, block_p = _grid_tiles(n, c, h * w)
        a = torch.empty((n, grid[1], c), device=x.device, dtype=torch.float32)
        b = torch.empty_like(a)
        _backward_sums[grid](x, dy, mean, rstd, a, b, c, h * w, s_c, s_p, grid[1], BLOCK_C=block_c, BLOCK_P=block_p)
        coefficients = torch.empty((2, n), device=x.device, dtype=torch.float32)
        _backward_coefficients[(n,)](a, b, weight, coefficients[0], coefficients[1], c, grid[1], c * h * w,
                                     BLOCK_C=block_c)
        dx = empty_unfilled(x)
        _backward_input[grid](x, dy, dx, mean, rstd, weight, coefficients[0], coefficients[1], c, h * w, s_c, s_p,
                              BLOCK_C=block_c, BLOCK_P=block_p)
        return dx, a.sum((0, 1)).to(weight.dtype), b.sum((0, 1)).to(weight.dtype), None, None


def output_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype native ``group_norm`` returns for ``x`` here: float32 under CUDA autocast, else ``x``'s own."""
    return torch.float32 if x.is_cuda and torch.is_autocast_enabled("cuda") else x.dtype


def group_norm1_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
                       out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``F.group_norm(x, 1, weight, bias, eps)`` of an (N, C, H, W) tensor, in its own memory format; its dtype
    is ``out_dtype``, by default the one native ``group_norm`` would return (``output_dtype``)."""
    if x.dim() != 4:
        raise ValueError(f"group_norm1_triton expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return _GroupNorm1.apply(x, weight, bias, eps, output_dtype(x) if out_dtype is None else out_dtype)
