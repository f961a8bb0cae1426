"""FLOP (MAC) and parameter accounting per component, and the matched-budget depth solver.

Counting convention (the one the papers use): multiply-accumulates of convolutions, linear layers and matrix
products (attention's ``QK^T`` and ``AV`` included); norms, activations, pooling and the shift count 0.
The counter is PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs = 2 x MACs), run on the
``meta`` device, so counting Shift-T or Swin-T costs no arithmetic and no memory. It works for any timm model.

The solver is analytic: a model's cost is ``fixed + sum_i depth_i * block_i``, with ``fixed`` (embed, merges,
final norm, head) and ``block_i`` (one block of stage i) read off one counted model; candidates are then
scored without building anything.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .compiling import BLOCKS_NAME
from .config import DEFAULT_TOLERANCE, MATCH_FLOPS, MATCH_NONE, MATCHES, percent_text
from .spec import ACTS, ALIASES, DEFAULT_IMG_SIZE, NORMS, VARIANTS, native_img_size, variant_kwargs

COMPONENTS = ("embed", "mixer", "mlp", "norm", "merge", "head", "other")

# module names per component, first match wins: ShiftViT and Swin / ViT, ConvNeXt (conv_dw, its 7x7 depthwise
# token mixer), MLP-Mixer (mlp_tokens / mlp_channels), PoolFormer (token_mixer) and ResNet (the stem's conv1/bn1)
_SEGMENT_RULES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("embed", ("patch_embed", "stem")),
    ("merge", ("downsample", "merge", "reduction")),
    ("head", ("head", "classifier", "fc_norm")),
    ("mixer", ("token_mixer", "attn", "mixer", "conv_dw", "mlp_tokens")),
    ("mlp", ("mlp", "mlp_channels")),
    ("norm", ("norm", "norm1", "norm2", "bn", "ln")),
)
_STEM_AT_TOP = ("conv1", "bn1")  # ResNet's stem, directly under the model (a block's conv1 is not)
_NORM_PREFIXES = ("norm", "bn")  # norm1, norm2 ...; ResNet's bn1, bn2, bn3
# "other": what no rule places, e.g. ResNet's block convolutions, which mix tokens and channels at once


def component_of(path: str) -> str:
    """Component of a module/parameter path, e.g. ``layers.2.blocks.0.mlp.fc1`` -> ``mlp``."""
    segments = path.split(".")
    if len(segments) == 1 and segments[0] in _STEM_AT_TOP:
        return "embed"
    for component, names in _SEGMENT_RULES:
        if any(s in names or (component == "norm" and s.startswith(_NORM_PREFIXES)) for s in segments):
            return component
    if segments and segments[0] == "fc":  # ResNet-style classifier
        return "head"
    return "other"


@dataclass(frozen=True)
class Cost:
    """MACs and parameters per component for one model at one input size (batch 1)."""
    macs: Dict[str, int]
    params: Dict[str, int]
    img_size: Tuple[int, int]
    blocks_macs: Tuple[int, ...] = field(default=())  # per stage: MACs of all blocks of the stage
    blocks_params: Tuple[int, ...] = field(default=())

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    @property
    def total_params(self) -> int:
        return sum(self.params.values())

    def total(self, match: str) -> int:
        return self.total_macs if match == MATCH_FLOPS else self.total_params

    def as_dict(self) -> Dict[str, int]:
        """Flat record: ``macs``, ``params`` and ``macs_<component>`` / ``params_<component>``."""
        out: Dict[str, int] = {"macs": self.total_macs, "params": self.total_params}
        out.update({f"macs_{k}": v for k, v in self.macs.items()})
        out.update({f"params_{k}": v for k, v in self.params.items()})
        return out


def _exclusive(counts: Dict[str, Dict[Any, int]]) -> Dict[str, int]:
    """FlopCounterMode reports each module inclusive of its children; keep only each module's own ops."""
    inclusive = {name: sum(ops.values()) for name, ops in counts.items() if name != "Global"}
    own = dict(inclusive)
    for name, value in inclusive.items():
        parent = name.rsplit(".", 1)[0] if "." in name else None
        if parent in own:
            own[parent] -= value
    return own


def count_model(model: nn.Module, img_size: Sequence[int] = (224, 224), in_chans: int = 3) -> Cost:
    """Count MACs/params per component of ``model`` (any device; use ``meta`` for free counting)."""
    img_size = tuple(img_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.empty(1, in_chans, *img_size, device=device))
    finally:
        model.train(was_training)
    macs = dict.fromkeys(COMPONENTS, 0)
    root = type(model).__name__
    stage_macs: Dict[int, int] = {}
    for name, flops in _exclusive(counter.get_flop_counts()).items():
        path = name[len(root) + 1:] if name.startswith(root + ".") else ""
        macs[component_of(path)] += flops // 2
        stage = _stage_of(path)
        if stage is not None:
            stage_macs[stage] = stage_macs.get(stage, 0) + flops // 2
    params = dict.fromkeys(COMPONENTS, 0)
    stage_params: Dict[int, int] = {}
    for name, p in model.named_parameters():
        params[component_of(name.rsplit(".", 1)[0])] += p.numel()
        stage = _stage_of(name)
        if stage is not None:
            stage_params[stage] = stage_params.get(stage, 0) + p.numel()
    n = 1 + max(stage_macs.keys() | stage_params.keys(), default=-1)
    return Cost(macs=macs, params=params, img_size=img_size,
                blocks_macs=tuple(stage_macs.get(i, 0) for i in range(n)),
                blocks_params=tuple(stage_params.get(i, 0) for i in range(n)))


def _stage_of(path: str) -> Optional[int]:
    """Stage index of a path inside a stage's blocks (``layers.<i>.blocks...``), else None."""
    parts = path.split(".")
    if len(parts) >= 3 and parts[0] in ("layers", "stages") and parts[2] == BLOCKS_NAME:
        return int(parts[1])
    return None


def _key(kwargs: Dict[str, Any]) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return tuple(sorted((k, norm(x)) for k, x in v.items()))
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        if isinstance(v, float):
            return Fraction(v).limit_denominator(10_000)
        return v
    return repr(norm(kwargs))


_CACHE: Dict[str, Cost] = {}


def count(name: str, img_size: Optional[int] = None, **kwargs: Any) -> Cost:
    """Cost of ``timm.create_model(name, **kwargs)`` at ``img_size`` (default: the model's own), cached.

    A model with a fixed input size (Swin, ViT) is built for ``img_size`` when that is not its own."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    cfg = timm.models.get_pretrained_cfg(name)
    own = kwargs.get("img_size") or (cfg.input_size[-1] if cfg else DEFAULT_IMG_SIZE)
    if img_size is None:
        img_size = own
    if name.startswith("shiftvit") or (cfg is not None and cfg.fixed_input_size and img_size != own):
        # a model laid out for one input size (Swin's windows, a ViT's position table) refuses any other: build
        # it for the size counted, so that a budget is always the cost of one image at the run's resolution
        kwargs.setdefault("img_size", img_size)
    key = _key({"model": name, "input_size": img_size, **kwargs})
    if key not in _CACHE:
        with torch.device("meta"):
            model = timm.create_model(name, **kwargs)
        _CACHE[key] = count_model(model, (img_size, img_size), kwargs.get("in_chans", 3))
    return _CACHE[key]


# --- matched-budget solver ---------------------------------------------------------------------------------
MAX_SUGGESTED_TOLERANCE = 0.05  # a budget error suggests a looser tolerance up to this (5 %), never beyond


class BudgetError(ValueError):
    """The requested budget cannot be met by any depth assignment."""


@dataclass(frozen=True)
class Solution:
    depths: Tuple[int, ...]
    match: str
    reference: str
    target: int           # the reference's MACs (match=flops) or params (match=params)
    achieved: int
    macs: int
    params: int

    @property
    def error(self) -> float:
        return self.achieved / self.target - 1 if self.target else 0.0


def _unit(match: str, value: float) -> str:
    """Four significant digits whatever the scale, so that two budgets that differ can be told apart."""
    if match == MATCH_FLOPS:
        return f"{value / 1e9:.4g} GMACs" if value >= 1e9 else f"{value / 1e6:.4g} M MACs"
    return f"{value / 1e6:.4g} M params"


def solve_depths(
        reference: str = "shiftvit_r2_tiny",
        img_size: Optional[int] = None,
        match: str = MATCH_FLOPS,
        tolerance: float = DEFAULT_TOLERANCE,
        reference_kwargs: Optional[Dict[str, Any]] = None,
        model: Optional[str] = None,
        in_chans: int = 3,
        **variant: Any,
) -> Solution:
    """Stage depths for the ShiftViT variant ``model`` (default: ``reference``) built with ``variant`` (mixer,
    gamma, mlp_ratio, ...) whose total MACs (or params) are within ``tolerance`` of the budget of ``reference``,
    keeping ``model``'s stage proportions as closely as possible.

    ``reference`` is a ShiftViT variant or any timm model, built with ``reference_kwargs`` (e.g. ``mixer='attn',
    norm='ln'`` for the same network with attention) and counted at ``img_size``, the input the solved model
    sees, with ``in_chans`` input channels (the data's: a grey image's stem is a third of an RGB one's). Raises
    ``BudgetError`` naming the budget, the closest reachable depths and, where there is one, another variant that
    can meet a budget.
    """
    try:
        return _solve_depths(reference, img_size, match, tolerance, reference_kwargs, model, in_chans, **variant)
    except BudgetError as e:
        way_out = _where_it_fits(reference, img_size, match, tolerance, variant, reference_kwargs, model, in_chans)
        raise BudgetError(f"{e}{way_out}") from None


def _solve_depths(reference: str, img_size: Optional[int], match: str, tolerance: float,
                  reference_kwargs: Optional[Dict[str, Any]], model: Optional[str] = None, in_chans: int = 3,
                  **variant: Any) -> Solution:
    if match not in MATCHES:
        raise ValueError(f"match={match!r} is not one of: {', '.join(MATCHES)}")
    reference_kwargs = dict(reference_kwargs or {})
    model = model or reference
    # the solved model's own proportions: Shift-T's 6,8,18,6 at Swin-T's budget is the paper's own design
    shape = tuple(variant_kwargs(model)["depths"])
    if img_size is None:  # the reference at the solved model's input: a budget is the cost of one image there
        img_size = native_img_size(model)
    if "depths" in variant:
        raise ValueError("depths are what the solver chooses; do not pass depths with match=flops|params")
    ref_cost = count(reference, img_size, in_chans=in_chans, **reference_kwargs)
    if match == MATCH_NONE:
        cost = count(model, img_size, in_chans=in_chans, **variant)
        return Solution(shape, match, reference, ref_cost.total_macs, cost.total_macs,
                        cost.total_macs, cost.total_params)
    probe_depths = (2,) * len(shape)
    probe = count(model, img_size, in_chans=in_chans, **{**variant, "depths": probe_depths})
    per_stage = probe.blocks_macs if match == MATCH_FLOPS else probe.blocks_params
    block = [c / d for c, d in zip(per_stage, probe_depths)]
    fixed = probe.total(match) - sum(per_stage)
    target = ref_cost.total(match)

    def total(depths: Sequence[int]) -> float:
        return fixed + sum(d * b for d, b in zip(depths, block))

    shaped = range(min(3, len(shape)))
    ordered = [(i, j) for i in shaped for j in shaped if i < j and shape[i] <= shape[j]]

    def keeps_order(depths: Sequence[int]) -> bool:
        """Stages 1-3 keep the model's order: never an earlier stage deeper than a later one unless the model
        has it so (a shape change would confound the ablation with the model's shape)."""
        return all(depths[i] <= depths[j] for i, j in ordered)

    share = [d / sum(shape) for d in shape]
    deepest = max(range(len(shape)), key=lambda i: shape[i])
    candidates = set()
    bases = set()  # consecutive scales mostly round to the same base, whose neighbours are already candidates
    scale = 1.0 / max(shape)
    while True:
        base = [max(1, round(scale * d)) for d in shape]
        if tuple(base) not in bases:
            bases.add(tuple(base))
            for offsets in itertools.product((-1, 0, 1), repeat=len(base)):
                for extra in (-2, 0, 2):
                    cand = [max(1, b + o) for b, o in zip(base, offsets)]
                    cand[deepest] = max(1, cand[deepest] + extra)
                    if keeps_order(cand):
                        candidates.add(tuple(cand))
        if total(base) > target * (1 + tolerance) * 1.25 or scale > 64:
            break
        scale *= 1.03

    def deviation(depths: Tuple[int, ...]) -> float:
        return sum(abs(d / sum(depths) - s) for d, s in zip(depths, share))

    within = [c for c in candidates if abs(total(c) / target - 1) <= tolerance]
    if not within:
        closest = min(candidates, key=lambda c: (abs(total(c) - target), deviation(c)))
        below = [total(c) for c in candidates if total(c) < target]
        above = [total(c) for c in candidates if total(c) > target]
        if below and above:
            low, high = max(below), min(above)
            reach = (f"; the reachable budgets nearest to it: {_unit(match, low)} ({low / target - 1:+.1%}) "
                     f"and {_unit(match, high)} ({high / target - 1:+.1%})")
        else:
            reach = "; no depths cost less" if above else "; no depths cost more"
        solved = _describe(variant) if model == reference else f"{model} with {_describe(variant)}"
        off = abs(total(closest) / target - 1)
        # a tolerance that takes the closest depths is a way out only while it still means a matched budget
        looser = (f"tolerance={math.ceil(off * 1000) / 1000:g} accepts those depths, or "
                  if off <= MAX_SUGGESTED_TOLERANCE else "")
        raise BudgetError(
            f"cannot match the {match} budget of {_label(reference, reference_kwargs)} ({_unit(match, target)}) "
            f"within ±{percent_text(tolerance)} for {solved}: the closest reachable is depths={list(closest)} "
            f"at {_unit(match, total(closest))} ({total(closest) / target - 1:+.1%}){reach}; {looser}match=none "
            "trains the depths given, unmatched")
    best = min(within, key=lambda c: (round(deviation(c), 9), abs(total(c) - target), sum(c)))
    macs = round(probe.total_macs + sum((d - p) * c / p for d, p, c in zip(best, probe_depths, probe.blocks_macs)))
    params = round(probe.total_params
                   + sum((d - p) * c / p for d, p, c in zip(best, probe_depths, probe.blocks_params)))
    return Solution(best, match, reference, target, round(total(best)), macs, params)


def _where_it_fits(reference: str, img_size: Optional[int], match: str, tolerance: float,
                   variant: Dict[str, Any], reference_kwargs: Optional[Dict[str, Any]] = None,
                   model: Optional[str] = None, in_chans: int = 3) -> str:
    """Where the same architecture fits, among the variants designed for the solved model's input size (an
    error path: a few meta-device counts). The reference's own budget: '; it can be met at the budget of
    shiftvit_micro (depths=[...])'; a budget set apart from the model (another model, or the reference built
    otherwise) stays, and another model is sought: '; shiftvit_micro can meet it (depths=[...])'."""
    model = model or reference
    own_budget = model == reference and not reference_kwargs
    native = VARIANTS.get(ALIASES.get(model, model), {}).get("img_size", DEFAULT_IMG_SIZE)
    for name, spec in VARIANTS.items():
        if name in (model, ALIASES.get(model)) or spec.get("img_size", DEFAULT_IMG_SIZE) != native:
            continue
        try:  # the core solver: a failure here must not search for alternatives in turn
            if own_budget:
                solution = _solve_depths(name, img_size, match, tolerance, None, in_chans=in_chans, **variant)
            else:
                solution = _solve_depths(reference, img_size, match, tolerance, reference_kwargs, name, in_chans,
                                         **variant)
        except (BudgetError, ValueError):
            continue
        if own_budget:
            return f"; it can be met at the budget of {name} (depths={list(solution.depths)})"
        return f"; {name} can meet it (depths={list(solution.depths)})"
    return ""


def _label(name: str, kwargs: Optional[Dict[str, Any]]) -> str:
    """``shiftvit_light_micro[mixer=attn, norm=ln]``: a reference built otherwise than its own is named so."""
    return f"{name}[{_describe(kwargs)}]" if kwargs else name


def _describe(variant: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant.items()) or "the reference itself"


# --- CLI ----------------------------------------------------------------------------------------------------
def format_table(costs: Dict[str, Cost]) -> str:
    """Components as rows, one MACs and one params column per model, plus each component's share. MACs in G,
    or in M when every model is below 1 GMAC (a 32-px model's 15.07 M would read 0.015 G, and two budgets 2 %
    apart would look equal)."""
    names = list(costs)
    scale, unit = (1e9, "GMACs") if max(c.total_macs for c in costs.values()) >= 1e9 else (1e6, "M MACs")
    header = f"{'component':<10}" + "".join(f"{n[:42]:>44}" for n in names)
    sub = f"{'':<10}" + "".join(f"{unit:>14}{'%':>7}{'params(M)':>12}{'%':>11}" for _ in names)
    lines = [header, sub]
    for comp in (*COMPONENTS, "total"):
        row = f"{comp:<10}"
        for n in names:
            c = costs[n]
            m = c.total_macs if comp == "total" else c.macs[comp]
            p = c.total_params if comp == "total" else c.params[comp]
            row += (f"{m / scale:>14.3f}{100 * m / max(c.total_macs, 1):>6.1f}%"
                    f"{p / 1e6:>12.3f}{100 * p / max(c.total_params, 1):>10.1f}%")
        lines.append(row)
    return "\n".join(lines)


def _parse_args(argv: Optional[Iterable[str]] = None) -> argparse.Namespace:
    from .models.mixers import MIXERS

    p = argparse.ArgumentParser(
        prog="python -m shiftvit.flops",
        description="MACs and parameters per component (mixer, mlp, norm, embed, merge, head) for timm models.")
    p.add_argument("models", nargs="*", help="timm model names, e.g. shiftvit_r2_tiny swin_tiny_patch4_window7_224 "
                   "(none with --variants; '-' is read as none)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: each model's own)")
    p.add_argument("--in-chans", type=int, default=3,
                   help="input channels (default 3; a run on the grey digits, MNIST or relations images builds 1)")
    p.add_argument("--mixer", help=f"token mixer(s) for shiftvit models, comma-separated: {', '.join(sorted(MIXERS))}")
    p.add_argument("--gamma", help="shift ratio per direction, e.g. 1/12")
    p.add_argument("--mlp-ratio", type=float, help="MLP ratio tau")
    p.add_argument("--norm", choices=sorted(NORMS))
    p.add_argument("--act", choices=sorted(ACTS))
    p.add_argument("--depths", help="four stage depths, e.g. 2,2,6,2")
    p.add_argument("--match", choices=MATCHES, default=MATCH_NONE,
                   help="solve the depths of shiftvit models to match --reference's budget")
    p.add_argument("--reference", default=None, help="reference model for --match (default: the model itself)")
    p.add_argument("--rows", action="store_true", help="one row per model/mixer instead of per component")
    p.add_argument("--variants", action="store_true", help="list every registered ShiftViT variant")
    return p.parse_args(argv)


def format_rows(costs: Dict[str, Cost], depths: Dict[str, Tuple[int, ...]]) -> str:
    lines = [f"{'model':<30}{'depths':>14}{'GMACs':>9}{'params(M)':>11}{'mixer %':>9}{'mlp %':>7}"]
    for label, c in costs.items():
        d = ",".join(map(str, depths.get(label, ()))) or "-"
        lines.append(f"{label:<30}{d:>14}{c.total_macs / 1e9:>9.4f}{c.total_params / 1e6:>11.2f}"
                     f"{100 * c.macs['mixer'] / c.total_macs:>9.1f}{100 * c.macs['mlp'] / c.total_macs:>7.1f}")
    return "\n".join(lines)


def format_variants() -> str:
    lines = [f"{'variant':<22}{'C':>5}{'depths':>14}{'tau':>5}{'gamma':>7}{'input':>7}{'params(M)':>11}{'GMACs':>9}"]
    for name, v in VARIANTS.items():
        size = native_img_size(name)
        c = count(name, size)
        lines.append(f"{name:<22}{v['embed_dim']:>5}{','.join(map(str, v['depths'])):>14}{v['mlp_ratio']:>5}"
                     f"{v['gamma']:>7}{size:>7}{c.total_params / 1e6:>11.2f}{c.total_macs / 1e9:>9.4f}")
    lines.append("aliases: " + ", ".join(f"{a} = {t}" for a, t in ALIASES.items()))
    return "\n".join(lines)


def main(argv: Optional[Iterable[str]] = None) -> int:
    args = _parse_args(argv)
    # '-' was the placeholder when a model was required even with --variants: README and older notes still use it
    args.models = [name for name in args.models if name != "-"]
    if args.variants:
        print(format_variants())
        if not args.models:
            return 0
    elif not args.models:
        print("error: no model named: name one or more, e.g. python -m shiftvit.flops shiftvit_r2_tiny, or list the "
              "ShiftViT variants with python -m shiftvit.flops --variants", file=sys.stderr)
        return 2
    overrides: Dict[str, Any] = {k: v for k, v in dict(
        gamma=args.gamma, mlp_ratio=args.mlp_ratio, norm=args.norm, act=args.act).items() if v is not None}
    if args.depths:
        overrides["depths"] = tuple(int(d) for d in args.depths.split(","))
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    unknown = [name for name in args.models if not timm.is_model(name)]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}: ShiftViT variants are listed by `python -m shiftvit.flops "
              "--variants`, other timm models by timm.list_models()", file=sys.stderr)
        return 2
    shiftvit_only = [f"--{k.replace('_', '-')}" for k in ("mixer", "gamma", "mlp_ratio", "norm", "act", "depths")
                     if getattr(args, k) is not None]
    others = [name for name in args.models if not name.startswith("shiftvit")]
    if shiftvit_only and others:  # said, so that a timm model's row is not read as counted with them
        print(f"note: {', '.join(shiftvit_only)} apply to ShiftViT models only; {', '.join(others)} counted as timm "
              "builds it", file=sys.stderr)
    mixers = args.mixer.split(",") if args.mixer else [None]
    costs: Dict[str, Cost] = {}
    depths: Dict[str, Tuple[int, ...]] = {}
    for name in args.models:
        for mixer in mixers if name.startswith("shiftvit") else [None]:
            kwargs = dict(overrides) if name.startswith("shiftvit") else {}
            if mixer:
                kwargs["mixer"] = mixer
            if mixer != "shift" and "gamma" in kwargs:
                kwargs.pop("gamma") if mixer else None
            label = f"{name}[{mixer}]" if mixer else name
            try:
                if kwargs and args.match != MATCH_NONE:
                    sol = solve_depths(args.reference or name, args.img_size, args.match, model=name,
                                       in_chans=args.in_chans, **kwargs)
                    kwargs["depths"] = sol.depths
                    if not args.rows:
                        label += " d=" + ",".join(map(str, sol.depths))
                costs[label] = count(name, args.img_size, in_chans=args.in_chans, **kwargs)
            except ValueError as e:
                print(f"error: {label}: {e}", file=sys.stderr)
                return 2
            if name.startswith("shiftvit"):
                depths[label] = tuple(kwargs.get("depths") or variant_kwargs(name)["depths"])
    print(format_rows(costs, depths) if args.rows else format_table(costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
