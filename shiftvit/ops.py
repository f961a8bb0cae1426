"""The partial shift operation of ShiftViT.

``shift(x, gamma)`` moves ``g = floor(gamma * C)`` channels one pixel in each of the four directions
(left, right, up, down; in that channel order) and copies the remaining ``C - 4g`` channels unchanged.
Pixels pushed out are dropped and vacated rows/columns are zero, exactly as the official implementation.
``shift_size`` generalises the step: each group moves that many pixels (the paper and the default: 1).

Why a hand-written autograd function: the official code builds the output with ``zeros_like`` followed by
five slice copies and lets autograd differentiate through the indexing, which writes the tensor twice
forward and allocates/zeros again backward. The shift is a permutation with zero fill, so its backward is the
inverse shift: on a CPU both directions write every output element exactly once; on a GPU, where launches
count more than bytes, both use the official algorithm's six launches. No library ships it. What each kernel
costs against two clones is measured by ``python -m shiftvit.bench shift`` (README, Performance).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import statistics
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from .spec import GammaLike, parse_gamma, shift_channels  # noqa: F401  (re-exported: shiftvit.ops.parse_gamma)


def _fills_uninitialized_memory() -> bool:
    return not torch.compiler.is_compiling() and (torch.utils.deterministic.fill_uninitialized_memory
                                                  and torch.are_deterministic_algorithms_enabled())


def empty_unfilled(like: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``torch.empty_like(like, dtype=dtype)`` for an output its kernel writes in full. Under
    ``torch.use_deterministic_algorithms`` (``run.py``'s default, ``train.deterministic=true``) PyTorch fills every
    ``torch.empty*`` tensor with NaN, so that a read of uninitialised memory is reproducible
    (``torch.utils.deterministic.fill_uninitialized_memory``); for a kernel that writes every element that is one
    more full write, which turned the write-once shift into a write-twice one. Compiled code allocates its own."""
    if not _fills_uninitialized_memory():
        return torch.empty_like(like, dtype=dtype)
    flags = torch.utils.deterministic
    flags.fill_uninitialized_memory = False
    try:
        return torch.empty_like(like, dtype=dtype)
    finally:
        flags.fill_uninitialized_memory = True


def zeros_unfilled(like: torch.Tensor) -> torch.Tensor:
    """``torch.zeros_like(like)`` without the NaN pass that deterministic algorithms write before the zeros
    (``empty_unfilled``): one full write, not two."""
    return empty_unfilled(like).zero_() if _fills_uninitialized_memory() else torch.zeros_like(like)


def shift_official(x: torch.Tensor, g: int, inverse: bool = False, shift_size: int = 1) -> torch.Tensor:
    """The official algorithm (microsoft/SPACH): zero the output, then five slice copies (``inverse``: the
    opposite shift). Plain and obviously correct; the TorchScript path and the default GPU kernel: 6 launches,
    where the write-once kernel below takes 9, and on a GPU the late stages' tensors are small enough that
    launches, not bytes, set the time (README, Performance)."""
    s = shift_size
    # first channel of the groups moving left, right, up and down; the adjoint swaps opposite directions
    left, right, up, down = (g, 0, 3 * g, 2 * g) if inverse else (0, g, 2 * g, 3 * g)
    if torch.jit.is_scripting():
        out = torch.zeros_like(x)
    else:  # under deterministic algorithms (run.py's default) zeros_like writes NaN first: a pass on the GPU
        out = zeros_unfilled(x)
    # a step at least the map's size leaves empty slices on both sides: those groups stay zero
    out[:, left:left + g, :, :-s] = x[:, left:left + g, :, s:]
    out[:, right:right + g, :, s:] = x[:, right:right + g, :, :-s]
    out[:, up:up + g, :-s, :] = x[:, up:up + g, s:, :]
    out[:, down:down + g, s:, :] = x[:, down:down + g, :-s, :]
    out[:, 4 * g:] = x[:, 4 * g:]
    return out


def _shift_write_once(x: torch.Tensor, g: int, inverse: bool = False, shift_size: int = 1) -> torch.Tensor:
    """Write each output element once: shifted slice copies plus ``shift_size``-wide zero fills, no full
    zeroing. Fewest bytes moved (9 small ops): the fastest on CPUs, where the shift is bound by memory traffic."""
    s = shift_size
    out = empty_unfilled(x)  # preserves channels_last
    starts = (g, 0, 3 * g, 2 * g) if inverse else (0, g, 2 * g, 3 * g)
    left, right, up, down = (slice(c, c + g) for c in starts)
    if x.shape[-1] > s:
        out[:, left, :, :-s] = x[:, left, :, s:]
        out[:, right, :, s:] = x[:, right, :, :-s]
    out[:, left, :, -s:] = 0  # a slice start before 0 clamps: a step wider than the map zeroes it all
    out[:, right, :, :s] = 0
    if x.shape[-2] > s:
        out[:, up, :-s, :] = x[:, up, s:, :]
        out[:, down, s:, :] = x[:, down, :-s, :]
    out[:, up, -s:, :] = 0
    out[:, down, :s, :] = 0
    out[:, 4 * g:] = x[:, 4 * g:]
    return out


class _GpuKernel:
    """One process-wide choice among the kernels of an op for CUDA tensors: its name and the function it
    stands for (``load(name)``, called when chosen, so a missing Triton fails at the choice, not the first use)."""

    def __init__(self, op: str, choices: Tuple[str, ...], load: Callable[[str], Any], env: str):
        self.op, self.choices = op, choices
        # loaded once per name: a kernel may keep state (FastestPerShape's choices) across being chosen again
        self.load = functools.lru_cache(maxsize=None)(load)
        self.name, self.fn = choices[0], self.load(choices[0])
        if os.environ.get(env):  # the whole process's choice, run.py's included
            self.choose(os.environ[env])

    def choose(self, name: str) -> str:
        """Returns the kernel it replaces."""
        if name not in self.choices:
            raise ValueError(f"GPU {self.op} kernel {name!r} is not one of: {', '.join(self.choices)}")
        fn = self.load(name)
        previous, self.name, self.fn = self.name, name, fn
        return previous


class FastestPerShape:
    """Of several shift kernels, the fastest for each kind of call: the first call with a given shape, strides,
    dtype, device, group size, direction and step times every candidate (warm-up first, then interleaved rounds,
    waiting for the device) and keeps the fastest; every later call looks the choice up. The kernels only move
    values, so each gives the same bits and the choice changes no number, only the time.

    Why per shape: which kernel is faster can differ between Shift-T's large stage-1 tensor, where bytes count,
    and the late stages' small ones, where a launch's host cost counts more (README, Performance, GPU).
    cuDNN's ``benchmark`` mode chooses convolution algorithms the same way. Under ``torch.compile`` (which fuses
    the official algorithm itself) or while a CUDA graph is captured, it never times: it runs the first candidate."""

    def __init__(self, candidates: Dict[str, Callable[..., torch.Tensor]], rounds: int = 5):
        self.candidates, self.rounds = dict(candidates), rounds
        self.choices: Dict[tuple, str] = {}

    def __call__(self, x: torch.Tensor, g: int, inverse: bool = False, shift_size: int = 1) -> torch.Tensor:
        first = next(iter(self.candidates.values()))
        if torch.compiler.is_compiling() or (x.is_cuda and torch.cuda.is_current_stream_capturing()):
            return first(x, g, inverse, shift_size)
        key = (tuple(x.shape), x.stride(), x.dtype, x.device, g, inverse, shift_size)
        name = self.choices.get(key)
        if name is None:
            name = self.choices[key] = self._fastest(x, g, inverse, shift_size)
        return self.candidates[name](x, g, inverse, shift_size)

    def _fastest(self, x: torch.Tensor, g: int, inverse: bool, shift_size: int) -> str:
        if len(self.candidates) == 1:
            return next(iter(self.candidates))
        from .bench.timing import time_interleaved  # the benchmarks' timer: imported at a shape's first call only

        # one warm-up call each (a Triton kernel compiles at its first), then interleaved rounds
        times = time_interleaved({name: functools.partial(fn, x, g, inverse, shift_size)
                                  for name, fn in self.candidates.items()}, self.rounds, warmup=1, device=x.device)
        return min(times, key=lambda name: statistics.median(times[name]))


def _load_shift(name: str) -> Callable[..., torch.Tensor]:
    if name == "triton":
        from .shift_triton import shift_triton

        return shift_triton
    if name == "auto":
        candidates: Dict[str, Callable[..., torch.Tensor]] = {"torch": shift_official}
        if importlib.util.find_spec("triton") is not None:
            from .shift_triton import shift_triton

            candidates["triton"] = shift_triton
        return FastestPerShape(candidates)
    return shift_official


GPU_KERNELS = ("torch", "triton", "auto")
_gpu_shift = _GpuKernel("shift", GPU_KERNELS, _load_shift, env="SHIFTVIT_GPU_SHIFT_KERNEL")


def auto_shift_choices() -> Dict[str, str]:
    """What ``auto`` chose so far in this process, one line per kind of call: ``"64x768x7x7 bfloat16 channels_last
    g=64 forward" -> "triton"``."""
    described = {}
    for (shape, stride, dtype, device, g, inverse, step), name in _gpu_shift.load("auto").choices.items():
        layout = "channels_last" if len(shape) == 4 and stride[1] == 1 and shape[1] > 1 else "nchw"
        what = f"{'x'.join(map(str, shape))} {str(dtype).replace('torch.', '')} {layout} g={g}" \
               f"{f' step={step}' if step != 1 else ''} {'backward' if inverse else 'forward'} {device}"
        described[what] = name
    return described


def set_gpu_kernel(name: str) -> str:
    """The shift kernel for GPU tensors: ``torch`` (the six-launch official algorithm, the default),
    ``triton`` (one launch, ``shift_triton.py``; opt-in, see its docstring) or ``auto`` (whichever of the two is
    faster for each shape, timed at its first call: ``FastestPerShape``). CPU tensors always use
    the write-once kernel. ``SHIFTVIT_GPU_SHIFT_KERNEL`` sets it for a whole process, ``run.py`` included.
    Returns the kernel it replaces."""
    return _gpu_shift.choose(name)


def _shift_once(x: torch.Tensor, g: int, inverse: bool, shift_size: int) -> torch.Tensor:
    if x.is_cuda:
        return _gpu_shift.fn(x, g, inverse, shift_size)
    if x.device.type == "cpu":
        return _shift_write_once(x, g, inverse, shift_size)
    # meta (the FLOP counter builds models there), mps, ...: the official slices run on any device; a Triton
    # kernel would be launched on a null pointer
    return shift_official(x, g, inverse, shift_size)


class _ShiftFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, g: int, shift_size: int) -> torch.Tensor:
        ctx.g, ctx.shift_size = g, shift_size
        return _shift_once(x, g, inverse=False, shift_size=shift_size)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return _shift_once(grad_out, ctx.g, inverse=True, shift_size=ctx.shift_size), None, None


@torch.jit.unused
def _shift_autograd(x: torch.Tensor, g: int, shift_size: int) -> torch.Tensor:
    return _ShiftFunction.apply(x, g, shift_size)


def shift_by(x: torch.Tensor, g: int, shift_size: int = 1) -> torch.Tensor:
    """Shift ``g`` channels per direction of an NCHW (or channels-last) tensor by ``shift_size`` pixels."""
    if shift_size < 1:  # a step of 0 or less would turn the slices below into a different, silent operation
        raise ValueError(f"shift_size={shift_size} must be >= 1")
    if g == 0:
        return x
    if torch.jit.is_scripting():
        return shift_official(x, g, shift_size=shift_size)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return _shift_once(x, g, inverse=False, shift_size=shift_size)  # inference: no autograd.Function per call
    return _shift_autograd(x, g, shift_size)


# --- GroupNorm(1, C), the norm of every block, on CUDA ----------------------------------------------------------
def group_norm1_as_stored(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.group_norm(x, 1, weight, bias, eps)`` that keeps a channels-last tensor channels-last, in PyTorch's own
    kernels. GroupNorm(1)'s statistics span the whole sample whatever its layout, so the norm runs, without its
    affine, on the (N, H, W, C) view of the memory as stored, and the per-channel affine follows as one ``addcmul``.

    Why: off the CPU, PyTorch's ``native_group_norm`` copies a channels-last input to NCHW and returns NCHW
    (aten/src/ATen/native/group_norm.cpp), so in a channels-last model each norm adds a layout copy, the next
    convolution converts back, and the backward does the same. The dtype is native's: the input's, or float32
    under autocast (which runs this ``group_norm`` in float32 too). Any other tensor goes to ``F.group_norm``."""
    if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return F.group_norm(x, 1, weight, bias, eps)
    y = F.group_norm(x.permute(0, 2, 3, 1), 1, None, None, eps).permute(0, 3, 1, 2)
    return torch.addcmul(bias.to(y.dtype)[:, None, None], y, weight.to(y.dtype)[:, None, None])


def _load_norm(name: str) -> Optional[Callable[..., torch.Tensor]]:
    if name == "triton":
        from .group_norm_triton import group_norm1_triton

        return group_norm1_triton
    if name == "as_stored":
        return group_norm1_as_stored
    return None  # F.group_norm


GPU_NORM_KERNELS = ("native", "triton", "as_stored")
_gpu_norm = _GpuKernel("norm", GPU_NORM_KERNELS, _load_norm, env="SHIFTVIT_GPU_NORM_KERNEL")


def set_gpu_norm_kernel(name: str) -> str:
    """The GroupNorm(1, C) kernel for GPU tensors: ``native`` (``F.group_norm``, the default), ``triton``
    (``group_norm_triton.py``) or ``as_stored`` (``group_norm1_as_stored``: PyTorch's kernel on the memory as
    stored); the last two keep channels-last tensors in their layout, and are opt-in (README: Performance). CPU
    tensors always use ``F.group_norm``, which keeps their layout. ``SHIFTVIT_GPU_NORM_KERNEL`` sets it for a whole
    process. Returns the kernel it replaces."""
    return _gpu_norm.choose(name)


@torch.jit.unused
def group_norm1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.group_norm(x, 1, weight, bias, eps)`` by the process's GPU norm kernel for CUDA tensors."""
    fn = _gpu_norm.fn
    if fn is not None and x.is_cuda:
        return fn(x, weight, bias, eps)
    return F.group_norm(x, 1, weight, bias, eps)


@contextlib.contextmanager
def use_gpu_kernels(shift: Optional[str] = None, norm: Optional[str] = None) -> Iterator[None]:
    """Run a block with the given GPU shift and/or norm kernel (None: leave it), restoring the process's own
    afterwards: how the benchmarks time the kernels side by side in one process."""
    with contextlib.ExitStack() as restore:  # each choice made is undone, also when the next one is refused
        for choose, name in ((set_gpu_kernel, shift), (set_gpu_norm_kernel, norm)):
            if name:
                restore.callback(choose, choose(name))
        yield


def shift(x: torch.Tensor, gamma: GammaLike = Fraction(1, 12), shift_size: int = 1) -> torch.Tensor:
    """Partial shift of ``x`` (N, C, H, W): ``floor(gamma*C)`` channels per direction move by ``shift_size``
    pixels (one in the paper)."""
    if x.dim() != 4:
        raise ValueError(f"shift expects a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return shift_by(x, shift_channels(x.shape[1], gamma), shift_size)
