"""ShiftViT (Wang et al., AAAI 2022) as a 4-stage backbone with a swappable token mixer.

The structure and state-dict names follow the official implementation (microsoft/SPACH ``shiftvit.py``), so an
official checkpoint loads with ``strict=True``; unlike it, every constructor argument is honoured and the
token mixer is an argument (see ``mixers.py``), so comparisons change the mixer and nothing else.

Layout: ``patch_embed`` (conv k=p s=p + norm) -> ``layers[i]`` = blocks, then ``downsample`` (norm + conv k=2 s=2)
for i < 3 -> ``norm`` -> global average pool -> ``head``.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, register_notrace_function, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, register_model
from timm.models._features import feature_take_indices
from torch import nn

from ..spec import ALIASES, NUM_STAGES, VARIANTS, GammaLike, variant_kwargs
from .mixers import check_mixer_options, get_act, get_mixer, get_norm


@register_notrace_function  # a leaf for torch.fx: the check branches on the (symbolic) input shape
def check_input_size(x: torch.Tensor, divisor: int) -> None:
    h, w = x.shape[-2], x.shape[-1]
    if h % divisor != 0 or w % divisor != 0:
        raise ValueError(f"input {h}x{w} must be a multiple of {divisor} in height and width")


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm_layer):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, norm_layer):
        super().__init__()
        self.norm = norm_layer(dim)
        self.reduction = nn.Conv2d(dim, 2 * dim, kernel_size=2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(x))


class ShiftViTBlock(nn.Module):
    """``x = mixer(x)`` or ``x = x + dp(mixer(norm1(x)))`` (per the mixer), then ``x = x + dp(mlp(norm2(x)))``."""
    prenorm_residual: torch.jit.Final[bool]

    def __init__(self, dim: int, feat_size: Tuple[int, int], block_idx: int, mixer: str,
                 mixer_kwargs: Dict[str, Any], mlp_ratio: float, norm_layer, act_layer,
                 drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        mixer_cls = get_mixer(mixer)
        self.prenorm_residual = mixer_cls.prenorm_residual
        self.norm1 = norm_layer(dim) if self.prenorm_residual else nn.Identity()
        self.token_mixer = mixer_cls(dim, feat_size, block_idx, **mixer_kwargs)
        self.drop_path1 = DropPath(drop_path) if (drop_path > 0 and self.prenorm_residual) else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop, use_conv=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prenorm_residual:
            x = x + self.drop_path1(self.token_mixer(self.norm1(x)))
        else:
            x = self.token_mixer(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ShiftViTStage(nn.Module):
    def __init__(self, dim: int, depth: int, feat_size: Tuple[int, int], downsample: bool,
                 drop_path_rates: Sequence[float], **block_kwargs):
        super().__init__()
        self.grad_checkpointing = False
        self.blocks = nn.Sequential(*[
            ShiftViTBlock(dim, feat_size, j, drop_path=drop_path_rates[j], **block_kwargs) for j in range(depth)
        ])
        # official layout: the merge *after* a stage belongs to that stage (keys layers.i.downsample.*)
        self.downsample = PatchMerging(dim, block_kwargs["norm_layer"]) if downsample else nn.Identity()

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.forward_blocks(x))


class ShiftViT(nn.Module):
    """The ShiftViT backbone; ``mixer`` picks the token mixer of every block (``shift`` is the paper's)."""

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: int = 96,
            depths: Sequence[int] = (6, 8, 18, 6),
            mlp_ratio: float = 2.0,
            patch_size: int = 4,
            mixer: str = "shift",
            gamma: Optional[GammaLike] = None,
            mixer_kwargs: Optional[Dict[str, Any]] = None,
            norm: str = "gn1",
            act: str = "gelu",
            drop_rate: float = 0.0,
            proj_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        depths = tuple(int(d) for d in depths)
        if len(depths) != NUM_STAGES or min(depths) < 1:
            raise ValueError(f"depths={depths} must be {NUM_STAGES} integers >= 1")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio (tau)={mlp_ratio} must be > 0")
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool={global_pool!r} must be 'avg' or ''")
        self.size_divisor = patch_size * 2 ** (NUM_STAGES - 1)
        if img_size[0] % self.size_divisor or img_size[1] % self.size_divisor:
            raise ValueError(
                f"img_size={img_size[0]}x{img_size[1]} must be a multiple of {self.size_divisor} "
                f"(patch {patch_size} x {NUM_STAGES - 1} merges of 2)")
        mixer_kwargs = dict(mixer_kwargs or {})
        if gamma is not None:
            if mixer != "shift":
                raise ValueError(f"gamma applies only to mixer='shift', not mixer={mixer!r}")
            mixer_kwargs["gamma"] = gamma
        get_mixer(mixer)
        check_mixer_options(mixer, mixer_kwargs)
        norm_layer, act_layer = get_norm(norm), get_act(act)

        self.num_classes = num_classes
        self.global_pool = global_pool
        self.mixer = mixer
        self.img_size = img_size
        self.depths = depths
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, norm_layer)
        self.pos_drop = nn.Dropout(proj_drop_rate)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear 0 -> drop_path_rate
        stages, self.feature_info = [], []
        dim, size, reduction = embed_dim, (img_size[0] // patch_size, img_size[1] // patch_size), patch_size
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            stages.append(ShiftViTStage(
                dim, depth, size, downsample=i < NUM_STAGES - 1, drop_path_rates=rates[first:first + depth],
                mixer=mixer, mixer_kwargs=mixer_kwargs, mlp_ratio=mlp_ratio, norm_layer=norm_layer,
                act_layer=act_layer, drop=proj_drop_rate))
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"layers.{i}"))
            if i < NUM_STAGES - 1:
                dim, size, reduction = dim * 2, (size[0] // 2, size[1] // 2), reduction * 2
        self.layers = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = dim
        self.norm = norm_layer(dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # --- timm conventions -------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {n for n, p in self.named_parameters() if p.ndim <= 1 or "relative_position_bias_table" in n}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)" if coarse else [
                (r"^layers\.(\d+)\.downsample", (0,)),
                (r"^layers\.(\d+)\.blocks\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool={global_pool!r} must be 'avg' or ''")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _check_input(self, x: torch.Tensor) -> None:
        check_input_size(x, self.size_divisor)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs *before* each merge (strides 4, 8, 16, 32 for patch 4), as timm's feature API wants."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: only 'NCHW' is supported")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self._check_input(x)
        x = self.pos_drop(self.patch_embed(x))
        intermediates = []
        last = len(self.layers) - 1
        stages = self.layers if (torch.jit.is_scripting() or not stop_early) else self.layers[:max_index + 1]
        for i, stage in enumerate(stages):
            x = stage.forward_blocks(x)
            if i in take_indices:
                intermediates.append(self.norm(x) if (norm and i == last) else x)
            x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        self.layers[-1].downsample = nn.Identity()
        if prune_norm or max_index < NUM_STAGES - 1:
            self.norm = nn.Identity()
        if max_index < NUM_STAGES - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.pos_drop(self.patch_embed(x))
        x = self.layers(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- registry ---------------------------------------------------------------------------------------------
def _cfg(img_size: int = 224, patch_size: int = 4, num_classes: int = 1000, **kwargs) -> Dict[str, Any]:
    pool = img_size // (patch_size * 2 ** (NUM_STAGES - 1))
    return dict(
        url="", num_classes=num_classes, input_size=(3, img_size, img_size), pool_size=(pool, pool),
        crop_pct=0.875 if img_size >= 224 else 1.0, interpolation="bicubic", fixed_input_size=False,
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head",
        license="mit", paper_ids="arXiv:2201.10801", **kwargs,
    )


def _variant_cfg(name: str) -> Dict[str, Any]:
    spec = VARIANTS[ALIASES.get(name, name)]
    return _cfg(**{k: spec[k] for k in ("img_size", "patch_size", "num_classes") if k in spec})


default_cfgs = {name: _variant_cfg(name) for name in [*VARIANTS, *ALIASES]}


def build_shiftvit(variant: str, pretrained: bool = False, **kwargs: Any) -> ShiftViT:
    """Build a registered variant; keyword arguments override the table (all of them are honoured)."""
    spec = variant_kwargs(variant)
    table_gamma = spec.pop("gamma")
    mixer = kwargs.get("mixer", "shift")
    if mixer == "shift" and kwargs.get("gamma") is None:
        kwargs["gamma"] = table_gamma  # the variant's own ratio (1/12, or 1/16 for base) unless overridden
    return build_model_with_cfg(
        ShiftViT, variant, pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **{**spec, **kwargs},
    )


def _make_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> ShiftViT:
        return build_shiftvit(name, pretrained=pretrained, **kwargs)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"{name}: {variant_kwargs(name)}"
    return entrypoint


# timm's registry keys entrypoints by function name; generating them from the table keeps one source of truth
for _name in default_cfgs:
    globals()[_name] = register_model(_make_entrypoint(_name))
