"""Sweep bookkeeping for Hydra multiruns: a live one-line-per-job status and ``sweep.csv`` at the end.

Registered as a Hydra callback (``hydra.callbacks.sweep`` in ``conf/config.yaml``); it runs in the launching
process whatever the launcher (basic, joblib, submitit), and reads only the run records the jobs write, so it
sees jobs running in other processes or on other machines sharing the file system.
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from hydra.experimental.callback import Callback

from .records import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, atomic_write_bytes

SWEEP_CSV = "sweep.csv"
CSV_COLUMNS = ("job", "overrides", "status", "val_top1", "best_val_top1", "ema_val_top1", "val_top5", "macs",
               "params", "train_images_per_s", "eval_images_per_s", "wall_s", "mixer", "gamma", "tau", "depths",
               "seed", "epochs_done", "config_hash", "duplicate_of", "error", "run_dir")


def job_dirs(sweep_dir: Path) -> List[Path]:
    """Job directories of a sweep (Hydra names them by job number)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def job_overrides(job_dir: Path) -> List[str]:
    try:
        return [str(o) for o in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []]
    except (OSError, yaml.YAMLError):
        return []


def job_row(job_dir: Path) -> Dict[str, Any]:
    summary = _read_json(job_dir / SUMMARY_FILE)
    row: Dict[str, Any] = {k: summary.get(k) for k in CSV_COLUMNS}
    row.update(job=int(job_dir.name), overrides=" ".join(job_overrides(job_dir)), run_dir=str(job_dir),
               status=summary.get("status", "queued"))
    if isinstance(row["depths"], list):
        row["depths"] = ",".join(map(str, row["depths"]))
    return row


def write_sweep_csv(sweep_dir: Path) -> Path:
    """One row per job (overrides, status, top-1, MACs, params, throughput, run dir), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for job in job_dirs(sweep_dir):
        writer.writerow(job_row(job))
    path = Path(sweep_dir) / SWEEP_CSV
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def job_status(job_dir: Path) -> str:
    """``queued`` / ``running epoch k/N`` / ``completed top-1 ..`` / ``diverged`` / ``failed`` / ``duplicate``."""
    summary = _read_json(job_dir / SUMMARY_FILE)
    status = summary.get("status")
    if status is None:
        return "starting"
    if status == "running":
        metrics = job_dir / METRICS_FILE
        done = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        try:
            epochs = yaml.safe_load((job_dir / CONFIG_FILE).read_text())["train"]["epochs"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            epochs = "?"
        return f"running epoch {min(done + 1, epochs) if isinstance(epochs, int) else done + 1}/{epochs}"
    if status == "completed" and summary.get("val_top1") is not None:
        return f"completed val_top1={summary['val_top1']:.2f}"
    if status == "duplicate":
        return f"duplicate of {summary.get('duplicate_of')}"
    return str(status)


def expected_jobs(task_overrides: List[str], sweeper_params: Optional[Dict[str, Any]]) -> Optional[int]:
    """Size of the grid the basic sweeper will run (None when it cannot be known up front)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    items = list(task_overrides) + [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    try:
        parsed = OverridesParser.create().parse_overrides(items)
        total = 1
        for override in parsed:
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:
        return None


_SHORT = re.compile(r"^(hydra[./]|\+?experiment=)")


def _short(overrides: List[str]) -> str:
    return " ".join(o for o in overrides if not _SHORT.match(o)) or "(defaults)"


class SweepMonitor:
    """Polls the sweep directory and prints one line whenever a job's status changes."""

    def __init__(self, sweep_dir: Path, total: Optional[int], poll_s: float = 2.0, stream=None):
        self.sweep_dir, self.total, self.poll_s = Path(sweep_dir), total, poll_s
        self.stream = stream or sys.stdout
        self.seen: Dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shiftvit-sweep-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> List[str]:
        lines = []
        for job in job_dirs(self.sweep_dir):
            status = job_status(job)
            if self.seen.get(job.name) != status:
                self.seen[job.name] = status
                lines.append(f"[sweep] job {job.name:>3} {_short(job_overrides(job))}: {status}")
        if lines:
            finished = sum(1 for s in self.seen.values() if not s.startswith(("running", "starting")))
            total = self.total if self.total is not None else "?"
            queued = (self.total - len(self.seen)) if self.total is not None else "?"
            lines.append(f"[sweep] {finished}/{total} finished, "
                         f"{sum(1 for s in self.seen.values() if s.startswith(('running', 'starting')))} running, "
                         f"{queued} queued")
            print("\n".join(lines), file=self.stream, flush=True)
        return lines


class SweepCallback(Callback):
    """Hydra callback: live per-job status while a multirun goes, ``sweep.csv`` when it ends."""

    def __init__(self, poll_s: float = 2.0, live: bool = True):
        self.poll_s, self.live = poll_s, live
        self.monitor: Optional[SweepMonitor] = None

    def __getstate__(self) -> Dict[str, Any]:
        # parallel launchers (joblib, submitit) pickle Hydra's callbacks into each job: the monitor thread
        # belongs to the launching process only
        return {**self.__dict__, "monitor": None}

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        total = expected_jobs(list(config.hydra.overrides.task), config.hydra.sweeper.get("params"))
        if self.live:
            self.monitor = SweepMonitor(sweep_dir, total, self.poll_s)
            self.monitor.start()

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            path = write_sweep_csv(sweep_dir)
            print(f"[sweep] wrote {path}", flush=True)
