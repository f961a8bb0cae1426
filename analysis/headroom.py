"""What a testbed can resolve: chance, a raw-pixel baseline on the same split, the validation-set size and the
binomial standard error of an accuracy measured on it.

A comparison of token mixers means little when a classifier that never mixes tokens (1-nearest-neighbour or
logistic regression on the raw pixels) already scores as well as the models, or when every model is within
the test-set noise of 100 %. The baselines are computed with scikit-learn on the very train/val split the runs
used (``shiftvit.data``'s builders, unaugmented) and cached on disk per data config, so a report computes them
once per dataset.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Optional, Sequence

from scipy import stats as st

from shiftvit.config import split_data_location
from shiftvit.records import DATA_FINGERPRINT_KEY, UNRECORDED_DATA

if TYPE_CHECKING:
    import pandas as pd

CEILING = 100.0
# two-sided 95 %: "within the noise" of the ceiling means within this many binomial standard errors
Z95 = float(st.norm.ppf(0.975))
# images larger than this are area-downsampled (per side) before the raw-pixel baselines, which keeps them cheap
# on a CPU; the report says so
BASELINE_MAX_SIDE = 32
# bump when the baseline method changes: old cache entries are then ignored
METHOD = (f"raw-pixel baselines v2: 1-NN (euclidean) and logistic regression (standardised pixels, lbfgs, one "
          f"thread) on the builder's unaugmented images, area-downsampled to at most {BASELINE_MAX_SIDE} px")
BASELINE_NAMES = {"nearest_neighbour": "1-NN", "logistic_regression": "logistic regression"}


@dataclass
class Testbed:
    data: str
    data_config: str
    num_classes: Optional[int] = None
    train_images: Optional[int] = None
    val_images: Optional[int] = None
    chance: Optional[float] = None
    nearest_neighbour: Optional[float] = None
    logistic_regression: Optional[float] = None
    baselines_done: bool = False
    note: str = ""

    @property
    def best_baseline(self) -> Optional[tuple]:
        """(name, accuracy in %) of the better raw-pixel baseline, or None when none was computed."""
        scored = [(BASELINE_NAMES[k], getattr(self, k)) for k in BASELINE_NAMES if getattr(self, k) is not None]
        return max(scored, key=lambda x: x[1]) if scored else None

    @property
    def unbuilt(self) -> Optional[str]:
        """Why this testbed could not be built here (its data absent, or not what the runs read), or None."""
        return (self.note or "validation set unknown") if self.val_images is None else None

    def binomial_se(self, accuracy: float) -> float:
        """Standard error (points) of an accuracy of ``accuracy`` % measured on this validation set."""
        from statsmodels.stats.proportion import std_prop

        if not self.val_images or accuracy is None or not math.isfinite(accuracy):
            return math.nan
        return float(100 * std_prop(accuracy / 100, self.val_images))


def cache_dir() -> Path:
    """``$SHIFTVIT_CACHE`` or ``$XDG_CACHE_HOME/shiftvit`` (``~/.cache/shiftvit``), subfolder ``testbeds``."""
    root = os.environ.get("SHIFTVIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "shiftvit"
    return Path(root) / "testbeds"


def _cache_path(data_config: Mapping[str, Any]) -> Path:
    which, where = split_data_location(dict(data_config))
    fingerprint = which.pop(DATA_FINGERPRINT_KEY, None)
    # keyed by the data the runs read, not by the config alone (two image folders under one config are two
    # testbeds): its fingerprint where they recorded one, else where it lay
    read = {"fingerprint": fingerprint} if fingerprint not in (None, UNRECORDED_DATA) else {"location": where}
    key = json.dumps({"data": which, **read, "method": METHOD}, sort_keys=True, default=str)
    return cache_dir() / f"{data_config.get('name', 'data')}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read_cache(data_config: Mapping[str, Any]) -> Optional[Testbed]:
    try:
        return Testbed(**json.loads(_cache_path(data_config).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_cache(data_config: Mapping[str, Any], bed: Testbed) -> None:
    from shiftvit.records import atomic_write_bytes

    try:
        atomic_write_bytes(_cache_path(data_config), json.dumps(asdict(bed), indent=1).encode())
    except OSError:  # a cache that cannot be written only costs a recomputation next time
        pass


def _arrays(dataset) -> Optional[tuple]:
    """(images NCHW float tensor, labels) of a dataset held in memory, else None."""
    import numpy as np
    import torch

    if hasattr(dataset, "tensors"):  # digits, relations, synthetic, CIFAR's crop_flip: the builder's tensors, before
        images, labels = dataset.tensors  # augmentation (CIFAR's as uint8, scaled as the torchvision reader's below)
        return (images.float() / 255 if images.dtype == torch.uint8 else images.float()), labels.numpy()
    if hasattr(dataset, "data") and hasattr(dataset, "targets"):  # torchvision CIFAR: uint8 NHWC
        images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).float() / 255
        return images, np.asarray(dataset.targets)
    return None


def _pixels(images) -> Any:
    import torch

    if max(images.shape[-2:]) > BASELINE_MAX_SIDE:
        images = torch.nn.functional.adaptive_avg_pool2d(images, BASELINE_MAX_SIDE)
    return images.flatten(1).numpy()


def _fit_baselines(bundle) -> Dict[str, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train, val = _arrays(bundle.train), _arrays(bundle.val)
    if train is None or val is None:
        return {}
    x_train, y_train = _pixels(train[0]), train[1]
    x_val, y_val = _pixels(val[0]), val[1]
    # one BLAS/OpenMP thread: the same numbers on every machine, and no oversubscription next to torch's
    # OpenMP pool (a multi-threaded lbfgs beside it slows both many times over on a small machine)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped fit is still a fair lower bound
        knn = KNeighborsClassifier(n_neighbors=1).fit(x_train, y_train)
        logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
        return {"nearest_neighbour": 100 * float(knn.score(x_val, y_val)),
                "logistic_regression": 100 * float(logreg.score(x_val, y_val))}


def headroom_of(data_config: Mapping[str, Any], baselines: bool = True) -> Testbed:
    """The testbed of one data config (as recorded in a run's ``config.yaml``): sizes, chance and (with
    ``baselines``) the raw-pixel baselines. Cached on disk; a dataset that cannot be built here (missing root)
    gives a ``Testbed`` whose ``note`` says why and whose unknown fields are None."""
    cached = _read_cache(data_config)
    if cached is not None and (cached.baselines_done or not baselines):
        return cached
    from shiftvit.data import build_data

    options = {k: v for k, v in data_config.items() if k not in ("name", DATA_FINGERPRINT_KEY)}
    name = str(data_config.get("name"))
    result = Testbed(data=name, data_config=json.dumps(split_data_location(dict(data_config))[0], sort_keys=True,
                                                       default=str))
    try:
        bundle = build_data(name, **options)
    except Exception as e:  # any failure to build (no root, unknown data) is reported, not raised
        result.note = f"dataset not available here ({type(e).__name__}: {e})"
        return result
    wanted = data_config.get(DATA_FINGERPRINT_KEY)
    if wanted not in (None, UNRECORDED_DATA) and bundle.fingerprint != wanted:  # another data set there now
        result.note = f"the data found there is not what the runs read (data fingerprint {bundle.fingerprint})"
        return result
    result.num_classes, result.chance = bundle.num_classes, CEILING / bundle.num_classes
    result.train_images, result.val_images = len(bundle.train), len(bundle.val)
    if baselines:
        scores = _fit_baselines(bundle)
        result.nearest_neighbour = scores.get("nearest_neighbour")
        result.logistic_regression = scores.get("logistic_regression")
        result.baselines_done = True
        if not scores:
            result.note = f"no raw-pixel baseline for {name} (its images are not held in memory)"
        elif bundle.img_size > BASELINE_MAX_SIDE:
            result.note = f"baselines on images area-downsampled to {BASELINE_MAX_SIDE} px"
    _write_cache(data_config, result)
    return result


def testbeds_of(runs: pd.DataFrame, baselines: bool = True) -> Dict[str, Testbed]:
    """The testbed of each ``data_config`` of a run table (``load_runs``'s: which data, without where it lies),
    built, where the cache does not hold it, from the first place its runs read the data from (``data_location``)
    that still holds it."""
    beds: Dict[str, Testbed] = {}
    if "data_config" not in runs:
        return beds
    for key in runs["data_config"].unique():
        on_it = runs[runs["data_config"] == key]
        # what the runs read (one fingerprint: load_runs sets runs that read other data apart): the testbed is built
        # from that data only, and cached under it
        read = {f for f in on_it.get(DATA_FINGERPRINT_KEY, ()) if isinstance(f, str) and f != UNRECORDED_DATA}
        fingerprint = {DATA_FINGERPRINT_KEY: read.pop()} if len(read) == 1 else {}
        for where in dict.fromkeys(on_it["data_location"] if "data_location" in on_it else ["{}"]):
            beds[key] = headroom_of({**fingerprint, **json.loads(key), **json.loads(where)}, baselines=baselines)
            if beds[key].val_images is not None:  # built (or cached): no other place needs trying
                break
    return beds


def ceiling_reason(accuracies: Sequence[float], bed: Testbed, margin: float,
                   seeds: Optional[Mapping[str, Sequence[float]]] = None) -> Optional[str]:
    """Why the testbed cannot separate arms scoring ``accuracies`` (%), or None when it can.

    Either every arm is within the test-set noise of 100 % (Z95 binomial SEs), or no arm beats the better
    raw-pixel baseline by more than the equivalence margin. ``seeds`` (an arm's name -> its seeds' values): the
    second reason says how many seeds of each beat it all the same. Where seeds either learn a task or stay at
    chance an arm can have seeds far above the pixels and a mean below them; that is said, not judged, since a seed
    above them by the margin may also be luck, and more seeds make one likelier."""
    accuracies = [a for a in accuracies if a is not None and math.isfinite(a)]
    if not accuracies:
        return None
    if bed.val_images and all(CEILING - a <= Z95 * bed.binomial_se(a) for a in accuracies):
        return (f"every arm is within the validation set's noise of {CEILING:g} % ({Z95:.2f} binomial SEs on "
                f"{bed.val_images} images)")
    best = bed.best_baseline
    if best is not None and not count_beating_raw(accuracies, bed, margin):
        counts = {name: (count_beating_raw(values, bed, margin), len(values)) for name, values in (seeds or {}).items()}
        above = [f"{k} of {n} seeds of the {name}" for name, (k, n) in counts.items() if k]
        return f"no arm beats raw-pixel {best[0]} ({best[1]:.2f} %) by more than ±{margin:g}" + \
            (f" ({' and '.join(above)} do)" if above else "")
    return None


def count_beating_raw(accuracies: Iterable[float], bed: Testbed, margin: float) -> Optional[int]:
    """How many of ``accuracies`` (%: arm means, or seeds) beat the testbed's better raw-pixel baseline by more
    than ``margin``; None where it has none."""
    best = bed.best_baseline
    return None if best is None else sum(a - best[1] > margin for a in accuracies)


def headroom_line(bed: Testbed, observed: Sequence[float] = ()) -> str:
    """One sentence: what this testbed can resolve (binomial SEs at the ``observed`` accuracies, e.g. the
    lowest and the highest arm mean)."""
    if bed.unbuilt:
        return f"{bed.data}: {bed.unbuilt}; headroom not computed."
    parts = [f"{bed.data}: {bed.val_images} validation images ({bed.train_images} train), {bed.num_classes} "
             f"classes; chance {bed.chance:.1f} %"]
    raw = [f"{BASELINE_NAMES[k]} {getattr(bed, k):.2f} %" for k in BASELINE_NAMES if getattr(bed, k) is not None]
    if raw:
        parts.append(f"raw pixels, same split: {', '.join(raw)}")
    parts.append(f"one image = {CEILING / bed.val_images:.2f} points")
    observed = [a for a in observed if a is not None and math.isfinite(a)]
    if observed:
        at = ", ".join(f"±{bed.binomial_se(a):.2f} points at {a:.2f} %" for a in observed)
        parts.append(f"binomial SE of one run's accuracy: {at}")
    return "; ".join(parts) + (f" ({bed.note})" if bed.note else "") + "."
