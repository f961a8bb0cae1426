"""wandb as a mirror of the run record: offline by default, online opt-in, never fatal.

wandb is imported lazily (it costs about a second), only when a run actually logs to it. Any failure (no API
key, no network, a broken install) warns once and the run goes on with its local record.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .config import DISABLED, OFFLINE, ONLINE, LoggerConfig
from .config import WANDB_MODES as MODES

log = logging.getLogger(__name__)


def flatten(cfg: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (wandb's tables and filters want flat keys)."""
    out: Dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    """``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``: a config as ``flatten`` logged it, nested again."""
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# the run's config as one nested value in wandb's config, beside its flat keys (which wandb's tables and filters
# want): under `wandb agent` the sweep's parameters enter the config too, as given ("mixer": "shift" beside
# "mixer.name", an lr before the recipe scales it), so the flat keys alone no longer say what the run ran
RECORD_CONFIG_KEY = "record_config"


class Tracker:
    """Logs to wandb if it can; every method is a no-op after the first failure."""

    def __init__(self, enabled: bool, run_dir: Path, config: Dict[str, Any], *, mode: str = LoggerConfig.mode,
                 project: str = LoggerConfig.project, entity: Optional[str] = None, group: Optional[str] = None,
                 job_type: Optional[str] = None, name: Optional[str] = None, tags: Optional[List[str]] = None,
                 init_timeout: float = LoggerConfig.init_timeout, run_id: Optional[str] = None):
        self.run = None
        self.warned = False
        if not enabled or mode == DISABLED:
            return
        if mode not in MODES:
            raise ValueError(f"logger.mode={mode!r} is not one of: {', '.join(MODES)}")
        kwargs = dict(project=project, entity=entity, group=group, job_type=job_type, name=name, tags=tags or None,
                      config={**flatten(config), RECORD_CONFIG_KEY: config}, dir=str(run_dir), id=run_id,
                      resume="allow", reinit="finish_previous")
        if os.environ.get("WANDB_SWEEP_ID"):  # started by `wandb agent`: the agent owns run id and project
            for key in ("id", "resume", "project", "entity"):
                kwargs.pop(key)
        try:
            import wandb

            try:
                self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=init_timeout, silent=True),
                                      **kwargs)
            except Exception as e:
                if mode != ONLINE:
                    raise
                self._warn(f"wandb online init failed ({type(e).__name__}: {e}); logging offline instead")
                self.run = wandb.init(mode=OFFLINE, settings=wandb.Settings(silent=True), **kwargs)
        except Exception as e:  # never let tracking cost a run
            self._warn(f"wandb disabled for this run ({type(e).__name__}: {e}); the local record is complete")
            self.run = None

    def _warn(self, message: str) -> None:
        if not self.warned:  # a log record only: it reaches the run's log file, and a warning too printed it twice
            log.warning(message)
            self.warned = True

    def log(self, metrics: Dict[str, Any], step: Optional[int] = None) -> None:
        if self.run is None:
            return
        try:  # committed now: a row left pending until finish() would land after, and overwrite, the summary
            self.run.log({k: v for k, v in metrics.items() if v is not None}, step=step, commit=True)
        except Exception as e:
            self._warn(f"wandb.log failed ({e}); continuing with local records only")
            self.run = None

    @property
    def offline(self) -> bool:
        """Whether this logs to an offline wandb run (which a later attempt cannot resume)."""
        return self.run is not None and bool(getattr(self.run, "offline", False))

    def summary(self, values: Dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            for k, v in flatten(values).items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    self.run.summary[k] = v
        except Exception as e:
            self._warn(f"wandb summary failed ({e}); continuing with local records only")

    def finish(self, exit_code: int = 0, preempted: bool = False) -> None:
        """End the wandb run; ``preempted``: the record was cut off and a rerun resumes it (wandb's preempting
        state, not "finished")."""
        if self.run is None:
            return
        try:
            if preempted:
                self.run.mark_preempting()
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            self._warn(f"wandb.finish failed ({e})")
        self.run = None


__all__ = ["RECORD_CONFIG_KEY", "Tracker", "flatten", "unflatten"]
