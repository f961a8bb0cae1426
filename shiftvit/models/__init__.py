"""Models: the ShiftViT backbone and its swappable token mixers (registered with timm on import)."""
from .mixers import MIXERS, NORMS, ACTS, TokenMixer, register_mixer, get_mixer, mixer_options
from .shiftvit import ShiftViT, VARIANTS, build_shiftvit

__all__ = [
    "ACTS", "MIXERS", "NORMS", "ShiftViT", "TokenMixer", "VARIANTS", "build_shiftvit", "get_mixer",
    "mixer_options", "register_mixer",
]
