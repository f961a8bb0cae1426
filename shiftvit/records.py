"""The run record: what one job leaves on disk. It is the source of truth; wandb only mirrors it.

Layout of a run directory (the Hydra output dir of the job)::

    config.yaml       the resolved, effective config (non-applicable knobs such as gamma for attn are null)
    metrics.jsonl     one JSON object per finished epoch (keys: METRIC_KEYS)
    summary.json      final state of the run (keys: SUMMARY_KEYS, plus macs_*/params_* per component)
    checkpoint.pt     latest checkpoint (weights_only-loadable), rewritten atomically each epoch

Every write goes to a temporary file in the same directory and is renamed over the target, so a crash or a
kill never leaves a half-written record.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
# held (flock) by the process that owns the run while it runs: readers tell a live run from a dead one
LOCK_FILE = ".lock"
# where train.resume=fresh moves an old record; dot-named so that no loader takes it for a run
ARCHIVE_DIR = ".archive"

STATUSES = ("running", "completed", "diverged", "failed", "duplicate", "interrupted")
METRIC_KEYS = ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "ema_val_top1", "lr",
               "train_images_per_s", "eval_images_per_s", "epoch_s")
SUMMARY_KEYS = ("status", "val_top1", "val_top5", "best_val_top1", "best_epoch", "ema_val_top1", "params", "macs",
                "train_images_per_s", "eval_images_per_s", "wall_s", "epochs_done", "seed", "git_commit",
                "config_hash", "mixer", "gamma", "tau", "depths", "model", "data", "match", "versions", "host")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the record."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, obj: Dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(_clean(obj), indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_metrics(run_dir: Path, rows: Iterable[Dict[str, Any]]) -> None:
    """Rewrite the whole metrics file atomically (it is small: one line per epoch)."""
    text = "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in rows)
    atomic_write_bytes(Path(run_dir) / METRICS_FILE, text.encode())


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: Path) -> Dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    return read_json(path) if path.exists() else {}


def process_alive(run_dir: Path) -> bool:
    """True while a process holds the run directory's lock (flock: released by the kernel when the holder
    dies, kill -9 included, so a stale 'running' is never mistaken for a live one)."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def run_status(run_dir: Path, summary: Dict[str, Any] | None = None) -> str | None:
    """The status a reader should believe: a recorded ``running`` whose process is gone is ``interrupted``."""
    summary = read_summary(run_dir) if summary is None else summary
    status = summary.get("status")
    if status == "running" and not process_alive(run_dir):
        return "interrupted"
    return status
