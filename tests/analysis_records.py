"""Run records written the way ``run.py`` writes them, for analysis tests that need chosen accuracies.

``config.yaml`` is the effective config from ``shiftvit.config.resolve`` (the function a real run uses), so
arms are read from records of the real schema; only the numbers in ``summary.json`` are chosen by the test.
"""
import functools
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pytest
import yaml

from shiftvit.config import resolve
from shiftvit.records import CONFIG_FILE, DATA_FINGERPRINT_KEY, METRICS_FILE, SUMMARY_FILE, write_predictions

# a small relations set: a testbed far from its ceiling (1-NN ~78 % on 200 validation images) and quick to build
RELATIONS = {"name": "relations", "img_size": 32, "num_train": 400, "num_val": 200, "seed": 0}
DIGITS = {"name": "digits", "img_size": 32, "val_fraction": 0.2, "split_seed": 0, "translate": 2}
MACS = {"shift": 7_899_648, "attn": 7_899_648}


@functools.cache
def _effective(mixer: str, gamma: Optional[str], lr: float, epochs: int, data: str, match: str) -> str:
    cfg = {"model": {"name": "shiftvit_nano"}, "mixer": {"name": mixer}, "gamma": gamma, "match": match,
           "data": json.loads(data), "train": {"epochs": epochs, "lr": lr}, "seed": 0}
    return json.dumps(resolve(cfg))


def write_run(root: Path, name: str, *, mixer: str = "shift", seed: int = 0, val_top1: Optional[float] = 90.0,
              status: str = "completed", gamma: Optional[str] = None, lr: float = 0.002, epochs: int = 1,
              data: Dict[str, Any] = RELATIONS, macs: Optional[float] = None, params: float = 650_000,
              match: str = "none", curve: Optional[list] = None, speed: float = 1000.0,
              correct: Optional[Sequence[bool]] = None, data_fingerprint: Optional[str] = None) -> Path:
    """One run directory ``root/name`` with config.yaml, summary.json and metrics.jsonl; with ``correct`` (one
    flag per validation image), predictions.npz too, and the top-1 those flags give."""
    if correct is not None:
        val_top1 = 100 * sum(map(bool, correct)) / len(correct)
    run_dir = Path(root) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    effective = json.loads(_effective(mixer, gamma, lr, epochs, json.dumps(data, sort_keys=True), match))
    effective["seed"] = seed
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(effective, sort_keys=False))
    macs = MACS.get(mixer, 7_899_648) if macs is None else macs
    summary = {"status": status, "seed": seed, "mixer": mixer, "gamma": effective["gamma"], "val_top1": val_top1,
               "best_val_top1": val_top1, "macs": macs, "params": params, "macs_mixer": 0, "macs_mlp": macs * 0.8,
               "train_images_per_s": speed + 10 * seed, "epochs_done": len(curve) if curve else epochs,
               "sweep_name": Path(root).name, "data": data["name"], DATA_FINGERPRINT_KEY: data_fingerprint}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary))
    rows = curve or [val_top1] * epochs
    (run_dir / METRICS_FILE).write_text("".join(json.dumps({"epoch": i, "val_top1": v}) + "\n"
                                                for i, v in enumerate(rows, 1)))
    if correct is not None:  # labels 0..9 in turn; a wrong image is predicted as the next class
        target = np.arange(len(correct)) % 10
        write_predictions(run_dir, np.where(np.asarray(correct, dtype=bool), target, (target + 1) % 10), target,
                          [str(c) for c in range(10)])
    return run_dir


def write_arm(root: Path, prefix: str, values, first_seed: int = 0, **kwargs: Any) -> None:
    for i, value in enumerate(values):
        write_run(root, f"{prefix}-{first_seed + i}", seed=first_seed + i, val_top1=value, **kwargs)


@pytest.fixture(scope="session")
def testbed_cache(tmp_path_factory):
    """One raw-pixel baseline cache for every analysis test (and the notebook kernels they start)."""
    path = tmp_path_factory.getbasetemp() / "shiftvit-cache"
    before = os.environ.get("SHIFTVIT_CACHE")
    os.environ["SHIFTVIT_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("SHIFTVIT_CACHE", None)
    else:
        os.environ["SHIFTVIT_CACHE"] = before
