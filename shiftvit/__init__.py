"""shiftvit: is attention what makes Vision Transformers work? Models, mixers, FLOPs and experiments.

Importing the package registers every ShiftViT variant with timm (``timm.create_model("shiftvit_r2_tiny")``).
"""
from .models import MIXERS, VARIANTS, ShiftViT, build_shiftvit, register_mixer
from .ops import parse_gamma, shift, shift_reference

__version__ = "0.1.0"
__all__ = ["MIXERS", "VARIANTS", "ShiftViT", "build_shiftvit", "parse_gamma", "register_mixer", "shift",
           "shift_reference", "__version__"]
