"""How a model goes through ``torch.compile`` (``train.compile``, and ``bench``'s ``+compiled`` models).

Two scopes (``COMPILE_SCOPES`` in ``config.py``):

* ``model``: the whole forward as one graph (``torch.compile(model)``): the most fusion, and the longest
  compilation, which grows with the depth (Shift-T has 38 blocks).
* ``blocks``: every block compiled on its own, in place, the rest eager: PyTorch's *regional compilation*
  (its tutorial "Reducing torch.compile cold start compilation time with regional compilation"). Blocks of
  one stage share a graph, so the compilation grows with the number of stages, not blocks.

Why more than ``module.compile()`` per block: Dynamo specialises on a module's Python float attributes, and
timm's ``DropPath`` keeps its probability as one, different in every block (stochastic depth rises linearly):
every block compiled its own graph until Dynamo's recompile limit (8), and ran eager after it. The drop paths
of compiled blocks hold their keep probability in a tensor instead (``TensorDropPath``), and the limit is
raised to what the blocks need (a graph per stage, for training and for evaluation).
"""
from __future__ import annotations

from typing import List

import torch
from timm.layers import DropPath
from torch import nn

from .config import BLOCKS_SCOPE, COMPILE_SCOPES, MODEL_SCOPE

# timm's convention, which our ShiftViT follows: a stage's repeated blocks are an nn.Sequential named "blocks"
# (ViT, Swin, ConvNeXt, the MetaFormers)
BLOCKS_NAME = "blocks"


class TensorDropPath(DropPath):
    """timm's ``DropPath`` with its keep probability in a (non-persistent) buffer, so that compiled blocks of
    different probabilities share one graph; state dicts are those of ``DropPath``. Its mask has the distribution
    of timm's (``bernoulli_`` on the batch's dtype and device), not the same draws from one seed; only compiled
    blocks use it, and a compiled graph draws otherwise than eager anyway."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__(drop_prob, scale_by_keep)
        self.register_buffer("keep_prob", torch.tensor(1.0 - drop_prob), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = self.keep_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if self.scale_by_keep:  # a keep probability of 0 leaves the mask at 0, as timm does
            mask = torch.where(keep > 0, mask / keep.clamp_min(torch.finfo(keep.dtype).tiny), mask)
        return x * mask


def compile_regions(model: nn.Module) -> List[nn.Module]:
    """The blocks that ``scope=blocks`` compiles: the children of every ``nn.Sequential`` named ``blocks``."""
    return [block for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] == BLOCKS_NAME and isinstance(module, nn.Sequential) for block in module]


def use_tensor_drop_paths(module: nn.Module) -> None:
    """Replace every timm ``DropPath`` inside ``module`` by a ``TensorDropPath`` of the same probability."""
    device = next(module.parameters(), torch.empty(0)).device
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is DropPath:  # a subclass may draw otherwise: left as it is
                replacement = TensorDropPath(child.drop_prob, child.scale_by_keep)
                replacement.train(child.training)
                setattr(parent, name, replacement.to(device))


def compile_model(model: nn.Module, mode: str, scope: str, backend: str = "inductor") -> nn.Module:
    """The module to call for a compiled forward. ``model``: a wrapper around ``model`` (its state dict keys
    prefixed ``_orig_mod.``); ``blocks``: ``model`` itself, its blocks compiled in place (keys unchanged).
    ``mode`` is Inductor's; another ``backend`` (the tests' ``aot_eager``) takes none. Raises ValueError when
    ``scope=blocks`` finds no blocks."""
    options = {"backend": backend, "mode": mode if backend == "inductor" else None}
    if scope == MODEL_SCOPE:
        return torch.compile(model, **options)
    if scope != BLOCKS_SCOPE:
        raise ValueError(f"compile scope {scope!r} is not one of: {', '.join(COMPILE_SCOPES)}")
    regions = compile_regions(model)
    if not regions:
        raise ValueError(f"{type(model).__name__} has no blocks to compile one by one (the children of an "
                         f"nn.Sequential named '{BLOCKS_NAME}'): compile it whole (scope {MODEL_SCOPE})")
    for block in regions:
        use_tensor_drop_paths(block)
        block.compile(**options)
    # one graph per distinct block (per stage, per shifted-window parity ...) for training and for evaluation;
    # never fewer than Dynamo's own limit. At worst every block has its own, as in the whole-model graph.
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 2 * len(regions))
    return model
