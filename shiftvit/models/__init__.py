"""Models: the ShiftViT backbone and its swappable token mixers (registered with timm on import)."""
from .mixers import ACTS, MIXERS, NORMS, TokenMixer, get_mixer, mixer_options, register_mixer
from .shiftvit import VARIANTS, ShiftViT, build_shiftvit

__all__ = [
    "ACTS", "MIXERS", "NORMS", "ShiftViT", "TokenMixer", "VARIANTS", "build_shiftvit", "get_mixer",
    "mixer_options", "register_mixer",
]
