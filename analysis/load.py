"""Run records -> tidy pandas DataFrames (one row per run; one row per run x epoch x metric).

Reads only what the runs wrote (``config.yaml``, ``summary.json``, ``metrics.jsonl``), never training state.
Corrupt, partial or still-running run directories are skipped with a warning naming them.
"""
from __future__ import annotations

import glob
import json
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import pandas as pd
import yaml

PathLike = Union[str, Path]
FINISHED = ("completed", "diverged")
SUMMARY_COLUMNS = ("status", "val_top1", "val_top5", "best_val_top1", "ema_val_top1", "val_loss", "macs", "params",
                   "train_images_per_s", "eval_images_per_s", "wall_s", "epochs_done", "config_hash", "git_commit",
                   "duplicate_of")


class SkippedRun(UserWarning):
    """A run directory that the analysis could not use (named in the message)."""


def find_run_dirs(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    """Every directory holding a ``summary.json`` under the given paths or glob patterns."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found = set()
    for pattern in paths:
        matches = [Path(p) for p in glob.glob(str(pattern))] or [Path(pattern)]
        for base in matches:
            if (base / "summary.json").exists() or (base / "config.yaml").exists():
                found.add(base.resolve())
            if base.is_dir():
                found.update(p.parent.resolve() for p in base.rglob("summary.json") if "wandb" not in p.parts)
    return sorted(found)


def _gamma_float(value: Any) -> Optional[float]:
    return None if value in (None, "") else float(Fraction(str(value)))


def run_row(run_dir: Path) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """One run as a flat dict, or (None, why) when it cannot be used."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError:
        return None, "no summary.json"
    except (OSError, ValueError) as e:
        return None, f"corrupt summary.json ({e})"
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except FileNotFoundError:
        return None, "no config.yaml"
    except (OSError, yaml.YAMLError) as e:
        return None, f"corrupt config.yaml ({e})"
    status = summary.get("status")
    if status not in (*FINISHED, "duplicate", "failed", "interrupted"):
        return None, f"status {status!r} (still running, or cut off)"
    try:
        model, mixer, train, data = config["model"], config["mixer"], config["train"], config["data"]
        depths = list(config["depths"])
    except (KeyError, TypeError) as e:
        return None, f"config.yaml lacks {e}"
    row: Dict[str, Any] = {
        "run_dir": str(run_dir), "sweep": run_dir.parent.name, "job": run_dir.name,
        "mixer": mixer.get("name"), "gamma": config.get("gamma"), "gamma_float": _gamma_float(config.get("gamma")),
        "tau": config.get("tau"), "depths": ",".join(map(str, depths)), "total_depth": sum(depths),
        "match": config.get("match"), "reference": config.get("reference"), "seed": config.get("seed"),
        "model": model.get("name"), "norm": model.get("norm"), "act": model.get("act"),
        "img_size": model.get("img_size"), "data": data.get("name"), "epochs": train.get("epochs"),
        "lr": train.get("lr"),
    }
    row.update({k: summary.get(k) for k in SUMMARY_COLUMNS})
    row.update({k: v for k, v in summary.items() if k.startswith(("macs_", "params_"))})
    return row, None


def load_runs(paths: Union[PathLike, Iterable[PathLike]], include: Tuple[str, ...] = FINISHED,
              warn: bool = True) -> pd.DataFrame:
    """One row per run under ``paths`` (directories, sweep directories or globs) whose status is in
    ``include`` (default: completed and diverged; duplicates are the same run twice and left out).
    Everything else is skipped with a ``SkippedRun`` warning naming the directory; ``df.attrs['skipped']``
    lists them."""
    rows, skipped = [], []
    for run_dir in find_run_dirs(paths):
        row, why = run_row(run_dir)
        if row is not None and row["status"] not in include:
            row, why = None, f"status {row['status']!r}"
        if row is None:
            skipped.append((str(run_dir), why))
            if warn:
                warnings.warn(f"skipped {run_dir}: {why}", SkippedRun, stacklevel=2)
            continue
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["sweep", "mixer", "gamma_float", "tau", "seed"], na_position="first",
                            kind="stable").reset_index(drop=True)
    df.attrs["skipped"] = skipped
    return df


def load_curves(paths: Union[PathLike, Iterable[PathLike]], warn: bool = True) -> pd.DataFrame:
    """Per-epoch metrics, long format: run columns + ``epoch``, ``metric``, ``value``."""
    runs = load_runs(paths, warn=warn)
    frames = []
    keys = ["run_dir", "mixer", "gamma", "tau", "depths", "seed", "model", "norm", "act"]
    for _, run in runs.iterrows():
        path = Path(run["run_dir"]) / "metrics.jsonl"
        try:
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as e:
            if warn:
                warnings.warn(f"skipped curves of {run['run_dir']}: {e}", SkippedRun, stacklevel=2)
            continue
        wide = pd.DataFrame(lines)
        if wide.empty:
            continue
        long = wide.melt(id_vars=["epoch"], var_name="metric", value_name="value")
        for k in keys:
            long[k] = run[k]
        frames.append(long)
    if not frames:
        return pd.DataFrame(columns=[*keys, "epoch", "metric", "value"])
    return pd.concat(frames, ignore_index=True)


def load_wandb(project: str, entity: Optional[str] = None, filters: Optional[Dict[str, Any]] = None
               ) -> pd.DataFrame:
    """The same run table from a wandb project (online; needs an API key): config + summary per run."""
    import wandb

    api = wandb.Api()
    rows = []
    for run in api.runs(f"{entity}/{project}" if entity else project, filters=filters or {}):
        config = {k: v for k, v in run.config.items() if not k.startswith("_")}
        summary = {k: v for k, v in run.summary.items() if not k.startswith("_")}
        gamma = config.get("gamma")
        rows.append({
            "run_dir": run.url, "sweep": run.group, "job": run.name, "mixer": config.get("mixer.name"),
            "gamma": gamma, "gamma_float": _gamma_float(gamma), "tau": config.get("tau"),
            "depths": ",".join(map(str, config.get("depths") or [])), "match": config.get("match"),
            "seed": config.get("seed"), "model": config.get("model.name"), "norm": config.get("model.norm"),
            "act": config.get("model.act"), "data": config.get("data.name"),
            **{k: summary.get(k) for k in SUMMARY_COLUMNS},
        })
    return pd.DataFrame(rows)
