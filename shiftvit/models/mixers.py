"""Token mixers: one class per mixer, all with the same constructor contract, selectable by name.

Contract: ``Mixer(dim, feat_size, block_idx, **options)`` maps an NCHW tensor to an NCHW tensor of the same
shape. ``prenorm_residual`` says how the block wraps it:

* ``False`` (shift, identity): ``x = mixer(x)`` -- the official ShiftViT placement, no norm, no residual,
  so the shortcut carries the mixed features and the block costs exactly its MLP.
* ``True`` (everything else): ``x = x + drop_path(mixer(norm1(x)))``, the MetaFormer/Swin placement.

Adding a mixer is one class decorated with ``@register_mixer("name", options=ItsOptions)``: the options
dataclass (defaults and checks, see ``shiftvit/spec.py``) is what ``mixer=name`` offers on the command line.
"""
from __future__ import annotations

import inspect
from fractions import Fraction
from typing import Callable, Dict, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from timm.layers import Attention, LayerNorm2d, register_notrace_function
from timm.layers import GroupNorm1 as TimmGroupNorm1
from timm.layers.fast_norm import fast_group_norm
from timm.models.swin_transformer import WindowAttention, window_partition, window_reverse
from torch import nn

from .. import spec
from ..ops import group_norm1, shift_by
from ..spec import (
    DWConvOptions,
    GammaLike,
    GlobalAttnOptions,
    PoolOptions,
    ShiftOptions,
    TokenMLPOptions,
    WindowAttnOptions,
    parse_gamma,
    shift_channels,
)

# torch.fx (timm's feature extraction) keeps each one leaf call: the shift instead of its slice writes, the norm
# whichever kernel is chosen. Registered where the mixers call them (a tracer wraps the functions the traced code
# calls) rather than in ops.py, which stays free of timm: the op and its benchmark load without it.
register_notrace_function(shift_by)
register_notrace_function(group_norm1)

MIXERS: Dict[str, Type[TokenMixer]] = {}


class GroupNorm1(TimmGroupNorm1):
    """timm's ``GroupNorm1`` (same parameters and state-dict keys, timm's ``fast_norm`` honoured), with CUDA
    tensors run by the process's GPU norm kernel (``ops.set_gpu_norm_kernel``; the default is timm's own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        if self._fast_norm:
            return fast_group_norm(x, 1, self.weight, self.bias, self.eps)
        return group_norm1(x, self.weight, self.bias, self.eps)


NORMS: Dict[str, Callable[[int], nn.Module]] = {
    "gn1": GroupNorm1,  # GroupNorm(1, C): the official default, LayerNorm over C x H x W
    "ln": LayerNorm2d,  # LayerNorm over channels only, per pixel
    "bn": nn.BatchNorm2d,
}
ACTS: Dict[str, Type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}
assert tuple(NORMS) == spec.NORMS and tuple(ACTS) == spec.ACTS, "the names are spec.NORMS / spec.ACTS"


def _pick(table: Dict, name: str, what: str):
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


def get_norm(name: str) -> Callable[[int], nn.Module]:
    return _pick(NORMS, name, "norm")


def get_act(name: str) -> Type[nn.Module]:
    return _pick(ACTS, name, "act")


def get_mixer(name: str) -> Type[TokenMixer]:
    return _pick(MIXERS, name, "mixer")


def register_mixer(name: str, options: Optional[Type[spec.MixerOptions]] = None
                   ) -> Callable[[Type[nn.Module]], Type[nn.Module]]:
    """Register a mixer class under ``name``; ``options`` (a dataclass) makes ``mixer=name`` a config option
    whose values are checked before torch loads. Built-in mixers have theirs in ``spec.MIXER_OPTIONS``."""
    def wrap(cls: Type[TokenMixer]) -> Type[TokenMixer]:
        cls.mixer_name = name
        MIXERS[name] = cls
        if options is not None:
            spec.MIXER_OPTIONS[name] = options
        return cls
    return wrap


def mixer_options(name: str) -> Dict[str, object]:
    """The keyword options a mixer's constructor accepts, with their defaults (checked when a model is built)."""
    params = inspect.signature(get_mixer(name).__init__).parameters
    skip = {"self", "dim", "feat_size", "block_idx"}
    return {k: p.default for k, p in params.items() if k not in skip}


def check_mixer_options(name: str, options: Dict[str, object]) -> None:
    allowed = mixer_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"mixer {name!r} has no option {unknown[0]!r}; its options are: {listed}")


class TokenMixer(nn.Module):
    mixer_name: str = ""
    prenorm_residual: bool = True

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0):
        super().__init__()
        self.dim = dim
        self.feat_size = tuple(feat_size)


@register_mixer("shift")
class ShiftMixer(TokenMixer):
    """Partial shift (ShiftViT): ``floor(gamma*C)`` channels per direction move ``shift_size`` pixels (the
    paper: one), zero fill."""
    prenorm_residual = False

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0,
                 gamma: GammaLike = Fraction(1, 12), shift_size: int = ShiftOptions.shift_size):
        super().__init__(dim, feat_size, block_idx)
        ShiftOptions(shift_size).check()
        self.gamma = parse_gamma(gamma)
        self.shift_size = shift_size  # pixels, as the option says
        self.channels_per_direction = shift_channels(dim, self.gamma)
        if self.channels_per_direction < 1:
            raise ValueError(
                f"gamma={self.gamma} shifts floor({self.gamma}*{dim}) = 0 channels at a stage of width {dim}; "
                f"use gamma >= 1/{dim} or a wider model")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shift_by(x, self.channels_per_direction, self.shift_size)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, channels_per_direction={self.channels_per_direction}, shift_size={self.shift_size}"


@register_mixer("identity")
class IdentityMixer(TokenMixer):
    """The backbone with the mixer removed (same placement as shift). Not "no spatial mixing" by itself: with
    GroupNorm(1) the block norms take statistics over all positions, and the patch merges and the final pooling
    mix positions; ``mixer=identity_ln`` (LayerNorm per token) is the control without the norms' share."""
    prenorm_residual = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fit_window(window_size: int, feat_size: Tuple[int, int]) -> int:
    """Largest window <= ``window_size`` that tiles an H x W map (padding would waste compute on zeros)."""
    h, w = feat_size
    if min(h, w) <= window_size:
        return min(h, w)
    return max(k for k in range(1, window_size + 1) if h % k == 0 and w % k == 0)


@register_mixer("attn")
class WindowAttentionMixer(TokenMixer):
    """Swin's window attention (timm's ``WindowAttention``, relative position bias), shifted on odd blocks.

    ``window_size`` is an upper bound: each stage uses the largest window <= it that tiles the map the model
    was built for (7 at 224 px, as Swin; 4 on the 16/8/4-pixel maps of 32 px models; the whole map when it is
    smaller, as Swin clamps). At run time a map that the window does not tile is zero-padded and the padding
    is masked out of the keys.
    """

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0,
                 window_size: int = WindowAttnOptions.window_size, head_dim: int = WindowAttnOptions.head_dim,
                 qkv_bias: bool = WindowAttnOptions.qkv_bias, attn_drop: float = WindowAttnOptions.attn_drop,
                 proj_drop: float = WindowAttnOptions.proj_drop):
        super().__init__(dim, feat_size, block_idx)
        WindowAttnOptions(window_size, head_dim, qkv_bias, attn_drop, proj_drop).check()
        self.window_size = fit_window(window_size, feat_size)
        fits = min(feat_size) > self.window_size
        self.shift_size = self.window_size // 2 if (fits and block_idx % 2 == 1) else 0
        self.attn = WindowAttention(dim, num_heads=max(1, dim // head_dim), window_size=self.window_size,
                                    qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)

    def _mask(self, h: int, w: int, hp: int, wp: int, device: torch.device) -> Optional[torch.Tensor]:
        ws, s = self.window_size, self.shift_size
        if s == 0 and hp == h and wp == w:
            return None
        # label each token: which shifted-window segment it came from, and whether it is padding;
        # tokens attend only to tokens with the same label (Swin's scheme, extended to padding)
        label = torch.zeros(hp, wp, dtype=torch.long, device=device)
        if s > 0:
            segments = ((0, hp - ws), (hp - ws, hp - s), (hp - s, hp))
            col_segments = ((0, wp - ws), (wp - ws, wp - s), (wp - s, wp))
            for i, (h0, h1) in enumerate(segments):
                for j, (w0, w1) in enumerate(col_segments):
                    label[h0:h1, w0:w1] = 3 * i + j
        pad = torch.zeros(hp, wp, dtype=torch.long, device=device)
        pad[h:, :] = 1
        pad[:, w:] = 1
        if s > 0:
            pad = torch.roll(pad, shifts=(-s, -s), dims=(0, 1))
        label = label * 2 + pad
        windows = window_partition(label.view(1, hp, wp, 1), (ws, ws)).view(-1, ws * ws)
        same = windows.unsqueeze(1) == windows.unsqueeze(2)
        return torch.zeros(same.shape, device=device).masked_fill(~same, -100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws, s = self.window_size, self.shift_size
        x = x.permute(0, 2, 3, 1)
        pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = H + pad_h, W + pad_w
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        mask = self._mask(H, W, hp, wp, x.device)
        if mask is not None:
            mask = mask.to(x.dtype)
        windows = self.attn(window_partition(x, (ws, ws)).reshape(-1, ws * ws, C), mask=mask)
        x = window_reverse(windows.view(-1, ws, ws, C), (ws, ws), hp, wp)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        return x[:, :H, :W, :].permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift_size={self.shift_size}"


@register_mixer("global_attn")
class GlobalAttentionMixer(TokenMixer):
    """Full multi-head self-attention over all tokens of the stage (timm's ViT ``Attention``)."""

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0,
                 head_dim: int = GlobalAttnOptions.head_dim, qkv_bias: bool = GlobalAttnOptions.qkv_bias,
                 attn_drop: float = GlobalAttnOptions.attn_drop, proj_drop: float = GlobalAttnOptions.proj_drop):
        super().__init__(dim, feat_size, block_idx)
        GlobalAttnOptions(head_dim, qkv_bias, attn_drop, proj_drop).check()
        self.attn = Attention(dim, num_heads=max(1, dim // head_dim), qkv_bias=qkv_bias,
                              attn_drop=attn_drop, proj_drop=proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        x = self.attn(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(B, C, H, W)


class _FixedResolutionMixer(TokenMixer):
    """Mixers whose weights are sized by the number of tokens: refuse any other resolution loudly."""

    def _check_size(self, h: int, w: int) -> None:
        fh, fw = self.feat_size
        if h != fh or w != fw:
            raise ValueError(f"mixer '{self.mixer_name}' is built for a {fh}x{fw} feature map and cannot take "
                             f"{h}x{w}; build the model with the img_size you feed it")


@register_mixer("mlp")
class TokenMLPMixer(_FixedResolutionMixer):
    """MLP-Mixer's token-mixing MLP over all H*W tokens, weights shared across channels."""

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0,
                 token_mlp_ratio: float = TokenMLPOptions.token_mlp_ratio, drop: float = TokenMLPOptions.drop):
        super().__init__(dim, feat_size, block_idx)
        TokenMLPOptions(token_mlp_ratio, drop).check()
        num_tokens = feat_size[0] * feat_size[1]
        hidden = max(1, int(round(num_tokens * token_mlp_ratio)))
        self.fc1 = nn.Linear(num_tokens, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        self._check_size(H, W)
        x = self.fc2(self.drop(self.act(self.fc1(x.flatten(2)))))
        return self.drop(x).view(B, C, H, W)


@register_mixer("random")
class RandomMixer(_FixedResolutionMixer):
    """RandFormer: a frozen random row-stochastic token-mixing matrix (a buffer, so it is saved, not trained)."""

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0):
        super().__init__(dim, feat_size, block_idx)
        num_tokens = feat_size[0] * feat_size[1]
        self.register_buffer("mixing", torch.softmax(torch.rand(num_tokens, num_tokens), dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        self._check_size(H, W)
        return torch.matmul(x.flatten(2), self.mixing.t()).view(B, C, H, W)


@register_mixer("dwconv")
class DepthwiseConvMixer(TokenMixer):
    """Depthwise k x k convolution (ConvNeXt-style spatial mixing)."""

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0,
                 kernel_size: int = DWConvOptions.kernel_size):
        super().__init__(dim, feat_size, block_idx)
        DWConvOptions(kernel_size).check()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register_mixer("pool")
class PoolMixer(TokenMixer):
    """PoolFormer: ``avgpool(x) - x`` (the block adds x back, so the mixer sees only the neighbourhood)."""

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int = 0,
                 pool_size: int = PoolOptions.pool_size):
        super().__init__(dim, feat_size, block_idx)
        PoolOptions(pool_size).check()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


__all__ = ["MIXERS", "NORMS", "ACTS", "TokenMixer", "register_mixer", "get_mixer", "get_norm", "get_act",
           "mixer_options", "check_mixer_options"]
