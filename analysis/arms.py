"""Arms: an arm is one configuration, i.e. every effective config value that differs between the analysed runs,
the seed excluded. Runs of one arm differ only in their seed, so they (and only they) may be averaged.

Read from each run's ``config.yaml`` (the effective config), never guessed from a mixer name: two runs of
``mixer=shift`` at different γ, epochs or learning rates are different arms, and two sweeps holding the same
configuration share an arm.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import pandas as pd

from shiftvit.config import (
    ADDED_KEYS_AT_OLD_BEHAVIOUR,
    LOCATION_KEYS,
    MATCH_NONE,
    SPEED_ONLY_TRAIN_KEYS,
    is_added_key_at_old_behaviour,
)
from shiftvit.tracking import flatten

# Settings that change how fast a run goes, never its numbers, and where its data lay (the run's config hash leaves
# them out too): runs that differ only in these are the same arm. Runs that read different data under one data
# config are told apart by their data fingerprint (load.py).
NOT_ARM_KEYS = ("seed", *(f"train.{k}" for k in SPEED_ONLY_TRAIN_KEYS), *LOCATION_KEYS)
# Values computed from other keys: they belong to an arm's identity but would only repeat its label.
DERIVED_KEYS = ("gamma_float", "model.img_size", "model.embed_dim", "reference", "tolerance")
# Short column names for the config keys the analysis talks about most; every other key keeps its dotted name.
COLUMN_NAMES = {"mixer.name": "mixer", "model.name": "model", "data.name": "data", "model.norm": "norm",
                "model.act": "act", "train.epochs": "epochs", "train.lr": "lr"}
# Label order: the question first (mixer), then the knobs of the ablations, then the rest alphabetically.
LABEL_ORDER = ("mixer", "gamma", "tau", "depths", "norm", "act", "model", "data", "epochs", "lr")
ArmSpec = Union[str, Mapping[str, Any]]
# How each registered mixer is shown, in display order (shift, the question, first; then attention, the usual
# baseline): its name in tables and legends, and its colour in every figure (fixed, not hashed, so that it is the
# same in every process). A mixer missing here still shows: under its own name, last, in a spare colour.
MIXER_STYLE = {"shift": ("shift", "#1f77b4"), "attn": ("attention", "#ff7f0e"),
               "global_attn": ("global attention", "#d62728"), "mlp": ("token-MLP", "#2ca02c"),
               "dwconv": ("depthwise conv", "#9467bd"), "pool": ("pooling", "#8c564b"),
               "identity": ("identity", "#e377c2"), "random": ("random mixing", "#bcbd22")}
MIXER_ORDER = list(MIXER_STYLE)
DISPLAY = {mixer: name for mixer, (name, _) in MIXER_STYLE.items()}


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested config -> ``{"train.lr": 0.002, "depths": "1,1,3,1", ...}`` (lists joined with commas)."""
    return {key: ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            for key, value in flatten(dict(config), prefix).items()}


def column_name(key: str) -> str:
    return COLUMN_NAMES.get(key, key)


# the training recipe and the data's treatment: two arms that differ in these and in something else (a mixer) are
# compared on both at once. world_size: the processes a run trained on, whose total batch it is
RECIPE_PREFIXES, RECIPE_KEYS = ("train.", "data."), ("world_size",)


def is_recipe_key(key: str) -> bool:
    """Whether a config key (dotted: ``train.epochs``) is a setting of the recipe."""
    return key.startswith(RECIPE_PREFIXES) or key in RECIPE_KEYS


def is_recipe_column(column: str) -> bool:
    """Whether an arm column (``column_name``'s: ``epochs``, ``train.opt``) is a setting of the recipe."""
    return is_recipe_key(next((k for k, name in COLUMN_NAMES.items() if name == column), column))


def _null_is_a_setting(key: str) -> bool:
    """Whether a null in ``key`` is a setting of its own rather than "does not apply": a training setting's null
    turns something off (train.clip_grad, train.aa), and a key older records lack stands for its old value
    (``_as_older_records``), while gamma is null for attention and a data option for the data sets without it."""
    return is_recipe_key(key) and not key.startswith("data.")


def value_text(value: Any) -> str:
    """A config value as labels and verdicts print it: ``null`` for a null, whether read as None or as NaN."""
    return "null" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def arm_identity(flat_config: Mapping[str, Any]) -> tuple:
    """What makes two runs the same arm: their whole effective config minus the seed and speed settings."""
    return tuple(sorted((k, value_text(v)) for k, v in flat_config.items() if k not in NOT_ARM_KEYS))


def _as_older_records(flat_config: Mapping[str, Any]) -> Dict[str, Any]:
    """The config without the keys added after older records, where they hold the value those records ran with
    (as the config hash leaves them out): a record from before ``data.augment`` and one with ``timm`` are one arm."""
    return {k: v for k, v in flat_config.items() if not is_added_key_at_old_behaviour(k, v)}


def label_keys(flat_configs: Sequence[Mapping[str, Any]]) -> List[str]:
    """The config keys (dotted) that take two or more values between runs, minus derived ones, mixer always
    first. A key that is null where it does not apply (gamma of attn, the options of one mixer) and constant
    elsewhere says nothing the mixer does not: it stays out of the label (but not out of the arm's identity). A
    training setting's null is a value (``_null_is_a_setting``): arms that differ in it differ in their recipe, which
    the verdict must see."""
    keys = sorted({k for c in flat_configs for k in c} - set(NOT_ARM_KEYS))
    varying = [k for k in keys if len({value_text(c.get(k)) for c in flat_configs
                                       if c.get(k) is not None or _null_is_a_setting(k)}) > 1]
    solved_depths = all(c.get("match") not in (None, MATCH_NONE) for c in flat_configs)
    shown = [k for k in varying if k not in DERIVED_KEYS and not (k == "depths" and solved_depths)]
    if "mixer.name" not in shown:
        shown.append("mixer.name")
    rank = {name: i for i, name in enumerate(LABEL_ORDER)}
    return sorted(shown, key=lambda k: (rank.get(column_name(k), len(rank)), k))


def arm_label(flat_config: Mapping[str, Any], keys: Iterable[str], show_null: bool = False) -> str:
    """``mixer=shift gamma=1/12``; a key whose value is null (gamma of attn) is left out, unless it is a setting
    of its own (``train.clip_grad=null``: no clipping) or ``show_null`` (when a null is what tells two arms apart)."""
    parts = [f"{column_name(k)}={value_text(flat_config.get(k))}" for k in keys
             if show_null or flat_config.get(k) is not None or _null_is_a_setting(k)]
    return " ".join(parts) or "all runs"


def _labelled_configs(recorded: Sequence[Mapping[str, Any]], compared: Sequence[Mapping[str, Any]],
                      identities: Sequence[tuple]) -> List[Dict[str, Any]]:
    """The configs the labels (and the arm columns) are read from: each run's compared config, plus the keys a
    member of its arm recorded at their old behaviour (``data.augment=timm``), so that an arm holding such records
    names that value rather than a null, and every run of an arm gets the same label. A training setting added after
    records existed (``world_size``, ``train.aug_repeats``) that no member recorded is its old value too: those
    records ran at it, and its null would read as a setting of its own (``_null_is_a_setting``)."""
    restored: Dict[tuple, Dict[str, Any]] = {}
    for whole, kept, identity in zip(recorded, compared, identities):
        for key, value in whole.items():
            if key not in kept:
                restored.setdefault(identity, {}).setdefault(key, value)
    older = {".".join(path): value for path, value in ADDED_KEYS_AT_OLD_BEHAVIOUR.items()
             if _null_is_a_setting(".".join(path))}
    return [{**older, **kept, **restored.get(identity, {})} for kept, identity in zip(compared, identities)]


def assign_arms(rows: List[Dict[str, Any]], flat_configs: List[Dict[str, Any]]) -> List[str]:
    """Fill each row's ``arm`` (and the columns that define it); returns those column names."""
    recorded, flat_configs = flat_configs, [_as_older_records(c) for c in flat_configs]
    keys = label_keys(flat_configs)
    identities = [arm_identity(c) for c in flat_configs]
    labelled = _labelled_configs(recorded, flat_configs, identities)
    labels = [arm_label(c, keys) for c in labelled]
    if len(set(zip(identities, labels))) != len(set(labels)):  # two configs, one label: show every difference
        every = sorted({k for c in flat_configs for k in c} - set(NOT_ARM_KEYS))
        keys = [k for k in every if len({value_text(c.get(k)) for c in flat_configs}) > 1]
        labels = [arm_label(c, keys, show_null=True) for c in labelled]
    for row, config, label in zip(rows, labelled, labels):
        row["arm"] = label
        for key in keys:
            row.setdefault(column_name(key), config.get(key))
    return [column_name(k) for k in keys]


def _same(value: Any, wanted: Any) -> bool:
    if value_text(value) == value_text(wanted):
        return True
    try:  # 1/12 == "1/12" == 0.0833..., 2 == 2.0
        return math.isclose(float(Fraction(str(value))), float(Fraction(str(wanted))), rel_tol=1e-9)
    except (ValueError, ZeroDivisionError):
        return False


def arms_matching(runs: pd.DataFrame, spec: Optional[ArmSpec]) -> List[str]:
    """Every arm that ``spec`` matches (all arms for None). ``spec``: an arm label, a mixer name, or a filter
    such as ``{"mixer": "shift", "gamma": "1/12"}`` (keys: column names or dotted config keys)."""
    arms = list(dict.fromkeys(runs["arm"])) if "arm" in runs else []
    if spec is None or (isinstance(spec, str) and spec in arms):
        return arms if spec is None else [spec]
    spec = as_filter(spec)
    mask = pd.Series(True, index=runs.index)
    for key, wanted in spec.items():
        if column_name(key) not in runs:
            raise ValueError(f"unknown key {key!r} in the arm filter; known: {', '.join(map(str, runs.columns))}")
        mask &= runs[column_name(key)].map(lambda v, w=wanted: _same(v, w))
    return list(dict.fromkeys(runs.loc[mask, "arm"]))


def parse_spec(text: str) -> Dict[str, str]:
    """``"shift"`` -> ``{"mixer": "shift"}``; ``"mixer=shift gamma=1/12"`` (an arm label) -> a filter."""
    if "=" not in text:
        return {"mixer": text}
    pairs = [item.split("=", 1) for item in text.split()]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise ValueError(f"arm filter {text!r}: write key=value pairs separated by spaces, e.g. 'mixer=shift "
                         "gamma=1/12'")
    return dict(pairs)


def as_filter(spec: ArmSpec) -> Dict[str, Any]:
    """An arm spec (a label, a mixer name or a filter) as a filter: ``{"mixer": "shift", "gamma": "1/12"}``."""
    return parse_spec(spec) if isinstance(spec, str) else dict(spec)


def describe(spec: ArmSpec) -> str:
    spec = as_filter(spec)
    return " ".join(f"{k}={v}" for k, v in spec.items())


def select_arm(runs: pd.DataFrame, spec: ArmSpec) -> str:
    """The one arm ``spec`` names (see ``arms_matching``); matching no arm or several is an error."""
    matched = arms_matching(runs, spec)
    if not matched:
        arms = "; ".join(dict.fromkeys(runs["arm"])) if "arm" in runs else ""
        raise ValueError(f"no arm matches {describe(spec)}; arms: {arms or 'none'}")
    if len(matched) > 1:
        raise ValueError(f"{describe(spec)} matches {len(matched)} arms ({'; '.join(matched)}): "
                         "add a key to the filter")
    return matched[0]
