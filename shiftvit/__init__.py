"""shiftvit: is attention what makes Vision Transformers work? Models, mixers, FLOPs and experiments.

``import shiftvit.models`` registers every ShiftViT variant with timm (``timm.create_model("shiftvit_r2_tiny")``);
so does touching any model name here (``shiftvit.ShiftViT``). ``import shiftvit`` alone loads nothing heavy:
the command line checks a configuration (``shiftvit.config``) before torch is imported.
"""
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# PEP 562 lazy attributes: name -> module that defines it
_LAZY = {
    "MIXERS": "shiftvit.models", "ShiftViT": "shiftvit.models", "build_shiftvit": "shiftvit.models",
    "register_mixer": "shiftvit.models", "VARIANTS": "shiftvit.spec", "parse_gamma": "shiftvit.spec",
    "shift": "shiftvit.ops", "shift_official": "shiftvit.ops",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shiftvit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
