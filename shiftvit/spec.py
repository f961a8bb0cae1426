"""The architecture vocabulary as data: variants, norms, activations, each mixer's options, the shift ratio.

Kept free of torch (standard library only) so that a configuration is checked in well under a second, before
torch loads: ``shiftvit.config`` validates against these tables and ``shiftvit.models`` builds from them, so
each name, default and check is written once, here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple, Type, Union

NUM_STAGES = 4

# One table for every variant: the official ones (numbers from microsoft/SPACH, the paper's Table 1 and 4)
# and small ones for CPU research on 32x32 images (patch 2, so the stages see 16, 8, 4 and 2 pixels).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "shiftvit_light_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), mlp_ratio=4, drop_path_rate=0.2, gamma="1/12"),
    "shiftvit_r4_tiny": dict(embed_dim=96, depths=(2, 2, 12, 3), mlp_ratio=4, drop_path_rate=0.2, gamma="1/12"),
    "shiftvit_r2_tiny": dict(embed_dim=96, depths=(6, 8, 18, 6), mlp_ratio=2, drop_path_rate=0.2, gamma="1/12"),
    "shiftvit_light_small": dict(embed_dim=96, depths=(2, 2, 18, 2), mlp_ratio=4, drop_path_rate=0.4, gamma="1/12"),
    "shiftvit_r4_small": dict(embed_dim=96, depths=(2, 6, 24, 4), mlp_ratio=4, drop_path_rate=0.4, gamma="1/12"),
    "shiftvit_r2_small": dict(embed_dim=96, depths=(10, 18, 36, 10), mlp_ratio=2, drop_path_rate=0.4, gamma="1/12"),
    "shiftvit_light_base": dict(embed_dim=128, depths=(2, 2, 18, 2), mlp_ratio=4, drop_path_rate=0.5, gamma="1/16"),
    "shiftvit_r4_base": dict(embed_dim=128, depths=(4, 6, 22, 4), mlp_ratio=4, drop_path_rate=0.5, gamma="1/16"),
    "shiftvit_r2_base": dict(embed_dim=128, depths=(10, 18, 36, 10), mlp_ratio=2, drop_path_rate=0.6, gamma="1/16"),
    # CPU-sized research variants (32x32 input, patch 2)
    "shiftvit_nano": dict(embed_dim=32, depths=(1, 1, 3, 1), mlp_ratio=2, drop_path_rate=0.0, gamma="1/12",
                          patch_size=2, img_size=32, num_classes=10),
    "shiftvit_micro": dict(embed_dim=24, depths=(4, 4, 12, 4), mlp_ratio=2, drop_path_rate=0.1, gamma="1/12",
                           patch_size=2, img_size=32, num_classes=10),
    # Swin-T's shape (the paper's "light" row: depths 2,2,6,2, tau 4) at shiftvit_micro's width and input, so that
    # micro (tau 2) stands to it as Shift-T to light-T; with mixer=attn norm=ln it is Swin's block at CPU scale,
    # attention taking about a third of the MACs as in Swin-T
    "shiftvit_light_micro": dict(embed_dim=24, depths=(2, 2, 6, 2), mlp_ratio=4, drop_path_rate=0.1, gamma="1/12",
                                 patch_size=2, img_size=32, num_classes=10),
}
ALIASES: Dict[str, str] = {
    "shiftvit_tiny": "shiftvit_r2_tiny", "shiftvit_small": "shiftvit_r2_small", "shiftvit_base": "shiftvit_r2_base",
}
DEFAULT_IMG_SIZE = 224

# names only; the layers they stand for are in shiftvit/models/mixers.py (NORM_LAYERS, ACT_LAYERS)
NORMS = ("gn1", "ln", "bn")  # GroupNorm(1, C) (official), LayerNorm over channels per pixel, BatchNorm
ACTS = ("gelu", "relu")


def variant_kwargs(name: str) -> Dict[str, Any]:
    """The variant's architecture arguments (a copy of its row in ``VARIANTS``), aliases resolved."""
    if name not in VARIANTS and name not in ALIASES:
        raise ValueError(f"unknown ShiftViT variant {name!r}; choose one of: {', '.join([*VARIANTS, *ALIASES])}")
    return dict(VARIANTS[ALIASES.get(name, name)])


def native_img_size(name: str) -> int:
    """The input size a variant was designed for."""
    return variant_kwargs(name).get("img_size", DEFAULT_IMG_SIZE)


# --- the shift ratio ------------------------------------------------------------------------------------------
GammaLike = Union[Fraction, float, int, str]


def parse_gamma(gamma: GammaLike) -> Fraction:
    """Parse a shift ratio exactly: ``'1/12'``, ``0.0833``, ``Fraction(1, 12)`` (never ``eval``)."""
    if isinstance(gamma, Fraction):
        value = gamma
    elif isinstance(gamma, bool):
        raise ValueError(f"gamma={gamma!r} is not a number; give a fraction such as 1/12 or a float in (0, 1/4]")
    elif isinstance(gamma, int):
        value = Fraction(gamma)
    elif isinstance(gamma, float):
        # limit_denominator turns 1/12 given as 0.08333333333333333 back into Fraction(1, 12)
        value = Fraction(gamma).limit_denominator(10_000)
    elif isinstance(gamma, str):
        try:
            value = Fraction(gamma.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f"gamma={gamma!r} is not a number; give a fraction such as 1/12 or a float in (0, 1/4]"
            ) from None
    else:
        raise ValueError(f"gamma={gamma!r} has type {type(gamma).__name__}; give a fraction such as 1/12 or a float")
    if not 0 < value <= Fraction(1, 4):
        raise ValueError(f"gamma={gamma} is outside (0, 1/4]: 4*gamma of the channels are shifted, at most all of them")
    return value


def shift_channels(num_channels: int, gamma: GammaLike) -> int:
    """Channels moved per direction: ``floor(gamma * C)`` (the official ``C // n_div`` for gamma = 1/n_div)."""
    return int(parse_gamma(gamma) * num_channels)


# --- each mixer's options -------------------------------------------------------------------------------------
# One dataclass per built-in mixer: its options, their defaults and their checks. The mixer's constructor
# takes its defaults from here and validates through it; the config group ``mixer=<name>`` is built from it.
# (The shift ratio gamma is a top-level knob of every experiment, not a mixer option.)
@dataclass
class MixerOptions:
    def check(self) -> None:
        """Raise ValueError naming the bad option; the base has nothing to check."""


@dataclass
class ShiftOptions(MixerOptions):
    shift_size: int = 1  # pixels each shifted group moves; the paper's partial shift moves one

    def check(self) -> None:
        _at_least_one(shift_size=self.shift_size)


@dataclass
class IdentityOptions(MixerOptions):
    pass


@dataclass
class WindowAttnOptions(MixerOptions):
    window_size: int = 7
    head_dim: int = 32
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0

    def check(self) -> None:
        _at_least_one(window_size=self.window_size, head_dim=self.head_dim)
        _probability(attn_drop=self.attn_drop, proj_drop=self.proj_drop)


@dataclass
class GlobalAttnOptions(MixerOptions):
    head_dim: int = 32
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0

    def check(self) -> None:
        _at_least_one(head_dim=self.head_dim)
        _probability(attn_drop=self.attn_drop, proj_drop=self.proj_drop)


@dataclass
class TokenMLPOptions(MixerOptions):
    token_mlp_ratio: float = 0.5
    drop: float = 0.0

    def check(self) -> None:
        if not self.token_mlp_ratio > 0:
            raise ValueError(f"mixer.token_mlp_ratio={self.token_mlp_ratio} must be > 0")
        _probability(drop=self.drop)


@dataclass
class RandomOptions(MixerOptions):
    pass


@dataclass
class DWConvOptions(MixerOptions):
    kernel_size: int = 7

    def check(self) -> None:
        _odd(kernel_size=self.kernel_size)


@dataclass
class PoolOptions(MixerOptions):
    pool_size: int = 3

    def check(self) -> None:
        _odd(pool_size=self.pool_size)


MIXER_OPTIONS: Dict[str, Type[MixerOptions]] = {
    "shift": ShiftOptions, "identity": IdentityOptions, "attn": WindowAttnOptions, "global_attn": GlobalAttnOptions,
    "mlp": TokenMLPOptions, "random": RandomOptions, "dwconv": DWConvOptions, "pool": PoolOptions,
}


def field_names(schema: Type, exclude: Tuple[str, ...] = ()) -> List[str]:
    return [f.name for f in dataclasses.fields(schema) if f.name not in exclude]


def first_unknown(schema: Type, values: Dict[str, Any], exclude: Tuple[str, ...] = ()) -> Optional[str]:
    """The first (sorted) key of ``values`` that is not a field of the dataclass ``schema``, or None: the one
    test behind every "is not an option" message of the configuration."""
    unknown = sorted(set(values) - set(field_names(schema, exclude)))
    return unknown[0] if unknown else None


def mixer_options(name: str, options: Dict[str, Any]) -> MixerOptions:
    """The checked options of a built-in mixer; ValueError names an unknown or bad one and lists the known."""
    if name not in MIXER_OPTIONS:
        raise ValueError(f"mixer={name!r} is not one of: {', '.join(sorted(MIXER_OPTIONS))}")
    schema = MIXER_OPTIONS[name]
    unknown = first_unknown(schema, options)
    if unknown:
        raise ValueError(f"mixer.{unknown} is not an option of mixer={name}; its options: "
                         f"{', '.join(field_names(schema)) or 'none'}")
    chosen = schema(**options)
    chosen.check()
    return chosen


def option_defaults(name: str) -> Dict[str, Any]:
    return dataclasses.asdict(MIXER_OPTIONS[name]())


def _at_least_one(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ValueError(f"mixer.{key}={value} must be >= 1")


def _odd(**values: int) -> None:
    for key, value in values.items():
        if value < 1 or value % 2 == 0:
            raise ValueError(f"mixer.{key}={value} must be a positive odd number")


def _probability(**values: float) -> None:
    for key, value in values.items():
        if not 0 <= value < 1:
            raise ValueError(f"mixer.{key}={value} must be in [0, 1)")

