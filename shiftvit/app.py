"""A run's lifecycle: own its directory, train, record, stop cleanly (the config is checked and resolved by
``shiftvit.config``).

Also usable without Hydra: ``run_experiment(config_dict, run_dir)`` does everything ``run.py`` does.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

if TYPE_CHECKING:  # Hydra's config type; omegaconf itself loads with the app
    from omegaconf import DictConfig

from .config import (
    ADDED_KEYS_AT_OLD_BEHAVIOUR,
    LOCATION_KEYS,
    SPEED_ONLY_TRAIN_KEYS,
    TIMM_AUGMENT_TRAIN_KEYS,
    WANDB,
    ConfigError,
    TrainSettings,
    check,
    config_hash,
    model_kwargs,
    plain_config,
    preflight,
    resolve,
)
from .records import (
    COMPLETED,
    DATA_FINGERPRINT_KEY,
    DUPLICATE,
    DUPLICATE_OF_KEY,
    FAILED,
    FINISHED_STATUSES,
    INTERRUPTED,
    RUNNING,
    SUMMARY_FILE,
    duplicate_owner,
)
from .tracking import flatten

log = logging.getLogger("shiftvit")

# --- provenance -----------------------------------------------------------------------------------------------------
def _git(*args: str) -> Optional[str]:
    """The output of ``git ARGS`` in this code's checkout, or None where git or the checkout is not there."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, text=True, capture_output=True,
                             timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# Both are read once per process, at its first run: the code a process runs is what it loaded then. A sweep's
# jobs run one after another in the launcher's process, so a commit made while it runs is not the code of its
# later jobs (read at each job, their records named it). A failed read (no git, a timeout) is not kept.
_PROVENANCE: Dict[str, Any] = {}


def _once(key: str, read: Callable[[], Any]) -> Any:
    if _PROVENANCE.get(key) is None:
        _PROVENANCE[key] = read()
    return _PROVENANCE[key]


def git_commit() -> Optional[str]:
    return _once("commit", lambda: _git("rev-parse", "HEAD") or None)


def git_dirty() -> Optional[bool]:
    """Whether tracked files of the checkout differ from its commit (None outside a git checkout)."""
    status = _once("status", lambda: _git("status", "--porcelain", "--untracked-files=no"))
    return None if status is None else bool(status)


def versions() -> Dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    # numpy and scikit-learn draw the stratified splits (data.val_fraction, data.train_fraction)
    for pkg in ("torch", "torchvision", "timm", "hydra-core", "wandb", "numpy", "scikit-learn", "shiftvit"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# --- the run ------------------------------------------------------------------------------------------------------
def config_difference(old: Dict[str, Any], new: Dict[str, Any], shown: int = 3) -> str:
    """``train.lr: 0.002 -> 0.0001, seed: 0 -> 1`` for the keys that change a run's numbers."""
    ignored = {*(f"train.{k}" for k in SPEED_ONLY_TRAIN_KEYS), *LOCATION_KEYS}
    a, b = flatten(json.loads(json.dumps(old, default=str))), flatten(json.loads(json.dumps(new, default=str)))
    present = set(a) | set(b)
    for path, old_behaviour in ADDED_KEYS_AT_OLD_BEHAVIOUR.items():  # absent from a record older than the key
        if ".".join(path) in present:
            for flat in (a, b):
                flat.setdefault(".".join(path), old_behaviour)
    keys = sorted(k for k in set(a) | set(b) if k not in ignored and a.get(k, "<absent>") != b.get(k, "<absent>"))
    parts = [f"{k}: {a.get(k, '<absent>')} -> {b.get(k, '<absent>')}" for k in keys[:shown]]
    if len(keys) > shown:
        parts.append(f"{len(keys) - shown} more")
    return ", ".join(parts) or "the same values under another config hash"


def _another_folder(sweep_dir: Optional[Path]) -> str:
    """The setting that names another folder for this run: a sweep's jobs live under ``hydra.sweep.dir`` (``-m``
    ignores ``hydra.run.dir``), a single run in ``hydra.run.dir``."""
    return "hydra.sweep.dir" if sweep_dir is not None else "hydra.run.dir"


def _take_over(run_dir: Path, effective: Dict[str, Any], digest: str, folder: str = "hydra.run.dir"
               ) -> Dict[str, Any]:
    """Check that ``run_dir`` holds nothing or a record of this very config; return that record's summary.

    Called with the run lock held. A record of another config is never resumed or relabelled: the run stops
    with the differing keys, unless ``train.resume=fresh`` asks to archive it and start over. ``folder``: the
    setting the errors name for another folder (``_another_folder``).
    """
    import yaml

    from .records import (
        CONFIG_FILE,
        RECORD_FILES,
        RESUME_FRESH,
        RecordError,
        archive_record,
        read_summary,
    )

    held = [name for name in RECORD_FILES if (run_dir / name).exists()]
    if not held:
        return {}
    if effective["train"].get("resume", TrainSettings.resume) == RESUME_FRESH:
        log.info("train.resume=fresh: archived the previous record to %s", archive_record(run_dir, _job_log(run_dir)))
        return {}
    config_path = run_dir / CONFIG_FILE
    try:
        old = yaml.safe_load(config_path.read_text()) if config_path.exists() else None
    except (OSError, yaml.YAMLError) as e:
        raise RecordError(f"{config_path} is unreadable ({type(e).__name__}): train.resume=fresh archives the "
                          f"record and starts over, or use another {folder}") from None
    if not isinstance(old, dict):
        raise ConfigError(f"{run_dir} holds {', '.join(held)} but no readable {CONFIG_FILE}, so it cannot be "
                          f"resumed safely: use another {folder}, or train.resume=fresh to archive it and "
                          "start over")
    if config_hash(old) != digest:
        raise ConfigError(f"{run_dir} holds a run of another config ({config_difference(old, effective)}): use "
                          f"another {folder}, or train.resume=fresh to archive that record and start over")
    summary = read_summary(run_dir)
    _same_data_elsewhere(run_dir, effective, "train.resume=fresh to archive that record and start over",
                         keep=summary.get("status") not in FINISHED_STATUSES)  # resumed: it trains on that data
    return summary


def _same_data_elsewhere(record_dir: Path, effective: Dict[str, Any], other_way_out: str,
                         keep: bool = False) -> None:
    """Before a record of this config that read its data from another place is taken as this run's (returned
    finished, resumed, or the owner of a duplicate): the data here must be what it read, by its fingerprint, as
    the config names only where the data lies (``config.LOCATION_KEYS``). Raises ``ConfigError`` whose way out is
    the record's place, or ``other_way_out``. ``keep``: the data read is left for the training that follows."""
    import yaml

    from .config import split_data_location
    from .records import CHECKPOINT_FILE, CONFIG_FILE, read_summary

    recorded_config, summary = yaml.safe_load((record_dir / CONFIG_FILE).read_text()), read_summary(record_dir)
    there, here = (split_data_location(dict(c.get("data") or {}))[1] for c in (recorded_config, effective))
    if there == here:
        return
    recorded, place = summary.get(DATA_FINGERPRINT_KEY), _location_text(recorded_config)
    if recorded is None:
        if not (summary.get("epochs_done") or (record_dir / CHECKPOINT_FILE).exists()):
            return  # it read nothing yet: this run's data will be its own
        raise ConfigError(f"{record_dir} holds a run of this config that read its data from {place} and recorded no "
                          f"data fingerprint (older code), so nothing tells whether {_location_text(effective)} "
                          f"holds the same data: relaunch with {place}, or {other_way_out}")
    read = _read_data(effective, keep=keep).fingerprint
    _same_data(recorded, read, effective, f"{record_dir} was trained on from {place}",
               f"point it at the data that run read, or {other_way_out}")


# The data a check read before training (a record resumed from data moved elsewhere), which that training takes
# rather than read the same files again: for an image folder that is a walk over every file, at every requeue of a
# job that copies its data to each new node's scratch. One entry, taken once.
_READ_AHEAD: Dict[str, Any] = {}


def _read_data(effective: Dict[str, Any], keep: bool = False):
    """The data set the config names, as training reads it (``data.DataBundle``; its errors as ``ConfigError``).
    ``keep``: leave it for this process's next call with the same config, which takes it instead of reading."""
    from .data import DataError, build_data

    data_cfg = dict(effective["data"])
    aug = {k: effective["train"].get(k) for k in TIMM_AUGMENT_TRAIN_KEYS} if "root" in data_cfg else None
    key = json.dumps([data_cfg, aug], sort_keys=True, default=str)
    if key in _READ_AHEAD:
        return _READ_AHEAD.pop(key)
    try:
        bundle = build_data(data_cfg.pop("name"), **data_cfg, **({"aug": aug} if aug is not None else {}))
    except DataError as e:
        raise ConfigError(str(e)) from None
    if keep:
        _READ_AHEAD.clear()
        _READ_AHEAD[key] = bundle
    return bundle


def _data_location(config: Dict[str, Any]) -> Dict[str, Any]:
    """``{"data.root": "/data/cifar"}``: where a config reads its data from, by the location keys it sets (one left
    false, such as data.download=false, says nothing there); empty for data read from no place (digits)."""
    flat = flatten(config)
    return {key: flat[key] for key in LOCATION_KEYS if flat.get(key)}


def _location_text(config: Dict[str, Any]) -> str:
    """``data.root='/data/cifar'``: where a config reads its data (``_data_location``)."""
    return ", ".join(f"{key}={value!r}" for key, value in _data_location(config).items()) or "its data's place"


def _claim(sweep_dir: Path, digest: str, run_dir: Path) -> Optional[Path]:
    """First job of a sweep with this effective config claims it; later ones get the claimant's dir back.

    The claim file appears with its content in one step (a link of a complete temporary file), so a crash can
    never leave an empty claim behind. A claim whose owner no longer holds a record of this config (archived
    or deleted), or holds one that was cut off (failed, or interrupted and no longer running), passes to the
    claimant: a duplicate of an unfinished record would leave the config without a result. Where no claim of
    this config exists yet, a record of it already in the sweep (trained before the claims were named as this
    code names them, or with ``.claims`` deleted) is claimed for its owner: the config is not trained twice.
    """
    from .records import fault_point

    claims = sweep_dir / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / digest
    me = run_dir.resolve()
    earlier = None if path.exists() else _earlier_record(sweep_dir, digest, me)
    tmp = claims / f".{digest}.{hashlib.sha256(str(me).encode()).hexdigest()[:8]}.tmp"
    tmp.write_text(str(earlier or me))
    try:
        fault_point("before_rename", path)
        try:
            os.link(tmp, path)
            return earlier
        except FileExistsError:
            owner = Path(path.read_text().strip())
        if owner == me:
            return None
        # an owner in another folder is a copied sweep's: its records are not this sweep's
        if owner.parent == sweep_dir.resolve() and _holds_config(owner, digest) and not _cut_off(owner):
            return owner
        tmp.write_text(str(me))
        os.replace(tmp, path)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _orphaned_duplicate(run_dir: Path, summary: Dict[str, Any], digest: str) -> bool:
    """A duplicate record whose owner no longer holds a result of its config: deleted or archived, or cut off since
    (retrained with train.resume=fresh and stopped; its own job, where a launch holds it too, resumes it, and the
    analysis counts the two as one replicate of the seed). Kept as it is, the config would have no result."""
    if summary.get("status") != DUPLICATE:
        return False
    owner = duplicate_owner(run_dir, summary)
    return owner is None or not _holds_config(owner, digest) or _cut_off(owner)


def _holds_config(run_dir: Path, digest: str) -> bool:
    """Whether ``run_dir``'s config file is of the config ``digest`` names, as this code hashes configs (a hash
    stored by older code may name the same config otherwise)."""
    import yaml

    from .records import CONFIG_FILE

    try:
        return config_hash(yaml.safe_load((run_dir / CONFIG_FILE).read_text())) == digest
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return False


def _earlier_record(sweep_dir: Path, digest: str, me: Path) -> Optional[Path]:
    """Another job directory of the sweep whose record of this config holds a result or is running."""
    from .multirun import job_dirs
    from .records import TRAINED_STATUSES, RecordError, run_status

    for job in job_dirs(sweep_dir):
        if job.resolve() == me or not _holds_config(job, digest):
            continue
        try:
            status = run_status(job)
        except RecordError:
            continue
        if status in (*TRAINED_STATUSES, RUNNING):
            return job.resolve()
    return None


def _cut_off(run_dir: Path) -> bool:
    """Whether the record in ``run_dir`` stopped without a result (failed, or interrupted and not running)."""
    from .records import CUT_OFF_STATUSES, RecordError, run_status

    try:
        return run_status(run_dir) in CUT_OFF_STATUSES
    except RecordError:  # an unreadable summary: not a result either
        return True


def _own_run_dir(run_dir: Path, effective: Dict[str, Any], digest: str, dist, folder: str = "hydra.run.dir"):
    """Lock the run directory and check what it holds (main process); every process learns the outcome.

    Returns ``(lock, previous_summary)``; raises the main process's error (other ranks exit quietly)."""
    from . import distributed as dist_utils
    from .records import RecordError, RunLock, remove_stale_temporaries

    lock, previous, error = None, {}, None
    if dist.is_main:
        try:
            lock = RunLock(run_dir, "running this record", f"wait for it to finish, or use another {folder}")
            lock.acquire()
            previous = _take_over(run_dir, effective, digest, folder)
            remove_stale_temporaries(run_dir)
        except (ConfigError, RecordError) as e:
            error = e
        except OSError as e:
            error = RecordError(f"cannot write to {run_dir} ({e.strerror or e}): choose a writable {folder}")
        if error is not None and lock is not None:
            lock.release()
    try:
        failed = dist_utils.broadcast_flag(error is not None)
        finished = dist_utils.broadcast_flag(previous.get("status") in FINISHED_STATUSES)
    except Exception as e:
        if lock is not None and error is None:
            lock.release()
        if dist.enabled and dist_utils.peer_lost(e):  # another process could not start: it said why (_fail)
            raise SystemExit(1) from None
        raise
    if failed:
        raise error if error is not None else SystemExit(2)
    return lock, previous if dist.is_main else ({"status": COMPLETED} if finished else {})


def _refuse_a_sweep_directory(run_dir: Path) -> None:
    """A single run's record beside a sweep's job directories would be read as one more arm of that sweep."""
    from .multirun import SWEEP_CSV, job_dirs

    if (run_dir / SWEEP_CSV).exists() or job_dirs(run_dir):
        raise ConfigError(f"{run_dir} holds a sweep ({SWEEP_CSV} or other runs' directories): a run there would be "
                          "analysed with them as one more arm; choose another hydra.run.dir, or run it in its sweep "
                          "with -m")


def run_experiment(cfg: Dict[str, Any], run_dir: Path, *, sweep_dir: Optional[Path] = None,
                   sweep_name: Optional[str] = None, overrides: Optional[List[str]] = None,
                   hydra_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Validate, train and record one run in ``run_dir``; returns the summary. ``sweep_dir`` enables dedupe;
    ``hydra_dir``: where Hydra wrote this launch's files, copied beside the record once the folder accepts it.

    ``run_dir`` belongs to one effective config: a record of another config there stops the run before
    anything is written (``ConfigError``); a finished record of the same config is returned untouched; an
    unfinished one is resumed. The directory is locked while the run lives (``records.RunLock``).
    """
    from . import distributed as dist_utils

    started = time.time()
    run_dir = Path(run_dir)
    effective = resolve(cfg)
    preflight(effective)  # this machine's device and data files, before anything is written
    if sweep_dir is None:
        _refuse_a_sweep_directory(run_dir)
    digest = config_hash(effective)
    dist = dist_utils.info()
    lock, previous = _own_run_dir(run_dir, effective, digest, dist, _another_folder(sweep_dir))
    try:
        if hydra_dir is not None and dist.is_main:
            from .records import keep_hydra_files

            keep_hydra_files(hydra_dir, run_dir)
        if previous.get("status") in FINISHED_STATUSES and not _orphaned_duplicate(run_dir, previous, digest):
            log.info("%s already holds a %s run of this config: nothing to do", run_dir, previous["status"])
            return previous
        return _run_owned(cfg, effective, digest, run_dir, previous, started, dist, sweep_dir, sweep_name,
                          overrides)
    finally:
        if lock is not None:
            lock.release()


def _run_owned(cfg: Dict[str, Any], effective: Dict[str, Any], digest: str, run_dir: Path,
               previous: Dict[str, Any], started: float, dist, sweep_dir: Optional[Path],
               sweep_name: Optional[str], overrides: Optional[List[str]]) -> Dict[str, Any]:
    import signal

    import yaml

    from . import distributed as dist_utils
    from .data import DataError, data_error_message
    from .devices import machine
    from .engine import Interrupted, resolve_device
    from .records import (
        CONFIG_FILE,
        RecordError,
        atomic_write_bytes,
        attempt_code,
        earlier_attempts_code,
        read_metrics,
        write_json,
    )

    this_attempt = attempt_code(git_commit(), git_dirty(), versions(),
                                machine(resolve_device(effective["train"]["device"], dist.local_rank)),
                                {f"train.{key}": effective["train"][key] for key in SPEED_ONLY_TRAIN_KEYS})
    summary: Dict[str, Any] = {
        "status": RUNNING, "seed": effective["seed"], "config_hash": digest, "mixer": effective["mixer"]["name"],
        "gamma": effective["gamma"], "tau": effective["tau"], "depths": effective["depths"],
        "model": effective["model"]["name"], "data": effective["data"]["name"], "match": effective["match"],
        "git_commit": git_commit(), "git_dirty": git_dirty(), "versions": versions(), "host": socket.gethostname(),
        "machine": this_attempt["machine"],
        "run_dir": str(run_dir), "overrides": list(overrides or []), "sweep_name": sweep_name,
        "world_size": dist.world_size, "attempts": int(previous.get("attempts") or 0) + 1,
        "epochs_done": previous.get("epochs_done"),  # until this attempt ends an epoch, what the last one did
        DATA_FINGERPRINT_KEY: previous.get(DATA_FINGERPRINT_KEY),  # until this attempt has read its data
        "attempts_code": [*earlier_attempts_code(previous), this_attempt],
    }
    # wall time across every attempt at this run (an interrupted one recorded its time up to its last epoch)
    earlier = previous.get("wall_s") or 0.0

    def record(**updates: Any) -> None:
        summary.update(updates, wall_s=earlier + time.time() - started)
        if dist.is_main:
            write_json(run_dir / SUMMARY_FILE, summary)

    def end_early(status: str, **fields: Any) -> None:
        """Record how the run stopped, and say it in its tracker: the status (and error) in the wandb summary,
        which ``analysis.load_wandb`` reads, and an exit code that wandb does not show as finished."""
        try:  # best effort: the disk that failed the run may fail this write too (readers then see the
            record(status=status, **fields)  # dead process's 'running' as interrupted, see run_status)
        except OSError:  # record() updated the summary before its write failed: the tracker still gets the status
            log.warning("could not record status %s in %s", status, run_dir / SUMMARY_FILE)
        if status == FAILED:  # only rank 0 writes the record: another rank's own error reaches it this way
            dist_utils.say_failure(fields["error"])
        if tracker is not None:
            tracker.summary(summary)
            tracker.finish(1, preempted=status == INTERRUPTED)

    tracker = None
    try:
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(effective, sort_keys=False).encode())
        if sweep_dir is not None and dist.is_main:
            owner = _claim(Path(sweep_dir), digest, run_dir)
            if owner is not None:
                _same_data_elsewhere(owner, effective, "launch this data set as a sweep of its own (another "
                                     "hydra.sweep.dir)")
                record(status=DUPLICATE, **{DUPLICATE_OF_KEY: os.path.relpath(owner, run_dir)})
                log.info("identical effective config already in this sweep (%s): not trained again", owner)
                return summary
        record()
        if dist.is_main:
            gamma = f" gamma={effective['gamma']}" if effective["gamma"] else ""
            log.info("run %s mixer=%s%s tau=%s depths=%s on %s, %d epochs, seed %d -> %s", effective["model"]["name"],
                     effective["mixer"]["name"], gamma, effective["tau"], ",".join(map(str, effective["depths"])),
                     effective["data"]["name"], effective["train"].get("epochs", 0), effective["seed"], run_dir)
            from .spec import native_img_size

            native = native_img_size(effective["model"]["name"])
            if effective["model"]["img_size"] != native:
                log.info("%s is designed for %d px; built at %d px, as model.img_size asks",
                         effective["model"]["name"], native, effective["model"]["img_size"])
        tracker = _tracker(dict(cfg.get("logger") or {}), effective, run_dir, digest, sweep_name, dist)

        # offline, wandb does not resume a run: each attempt at a record is an offline run of its own (one id),
        # and one cut off by SIGKILL may hold none of its rows. So a resumed attempt first logs the record's
        # earlier epochs, as metrics.jsonl holds them, and the last attempt holds the whole history. Online, wandb
        # resumes the run it holds (resume="allow"), whose steps must only grow.
        replay_due = tracker.offline

        def on_epoch(row: Dict[str, Any]) -> None:
            nonlocal replay_due
            if replay_due and row["epoch"] > 1:
                for earlier in read_metrics(run_dir):
                    if earlier["epoch"] < row["epoch"]:
                        tracker.log(earlier, step=earlier["epoch"])
            replay_due = False
            tracker.log(row, step=row["epoch"])
            record(epochs_done=row["epoch"])

        def on_start(epoch: int, batch: int) -> None:
            this_attempt["resumed_at"] = [epoch, batch]
            record()

        record(**_train(effective, run_dir, summary, on_start, on_epoch, dist))
    except (Interrupted, KeyboardInterrupt) as e:
        by = str(e) if isinstance(e, Interrupted) else "SIGINT"
        end_early(INTERRUPTED, interrupted_by=by)
        print(_interrupted_message(by, run_dir, sweep_dir), file=sys.stderr, flush=True)
        try:
            dist_utils.barrier()
        except RuntimeError as lost:  # another process killed while the run stopped (a scheduler's kill after its
            if not dist_utils.peer_lost(lost):  # notice): the record is written and said, and this one stops as planned
                raise
        signum = signal.Signals[by]
        if signum == signal.SIGINT:
            raise SystemExit(130) from None
        if callable(signal.getsignal(signum)):  # e.g. submitit's requeue handler: let it act now
            signal.raise_signal(signum)
        # a single run stopped for preemption has done what it could: 0, what a scheduler expects of a job that
        # checkpointed. A sweep stopped midway has not run what it was asked: 128 + the signal, as a shell reports
        # it, so that `run.py -m ... && python -m analysis.report ...` reports no partial sweep as if it were whole
        raise SystemExit(0 if sweep_dir is None else 128 + int(signum)) from None
    except (ConfigError, RecordError) as e:
        end_early(FAILED, error=str(e))
        raise
    except DataError as e:  # a file of the data set that cannot be read, met while training: one line, as above
        message = data_error_message(e)
        end_early(FAILED, error=message)
        raise ConfigError(message) from None
    except OSError as e:
        end_early(FAILED, error=f"{type(e).__name__}: {e}")
        raise RecordError(f"cannot write {e.filename or run_dir} ({e.strerror or e}): free space or fix the "
                          f"permissions, then {_resume_hint(run_dir, sweep_dir)}") from None
    except Exception as e:
        if not (dist.enabled and dist_utils.peer_lost(e)):
            end_early(FAILED, error=f"{type(e).__name__}: {e}")
            raise
        # another process ended and cut this one's collective short: its own failure if it said one (its traceback
        # is in its output), else it was killed (the OOM killer, a signal), which interrupts the run as a kill of
        # this process does. Either way the last checkpoint stands, and the processes left stop without tracebacks
        if not dist.is_main:
            raise SystemExit(1) from None
        failure = dist_utils.peer_failure()
        if failure is not None:
            end_early(FAILED, error=failure)
            print(f"error: {failure}", file=sys.stderr, flush=True)
        else:
            end_early(INTERRUPTED, interrupted_by=dist_utils.PEER_ENDED)
            print(_interrupted_message(dist_utils.PEER_ENDED, run_dir, sweep_dir), file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    tracker.summary(summary)
    tracker.finish(0 if summary["status"] == COMPLETED else 1)
    if dist.is_main:
        top1 = summary.get("val_top1")
        best, best_epoch = summary.get("best_val_top1"), summary.get("best_epoch")
        log.info("%s: val_top1 %s%s, %.0f s -> %s", summary["status"], "-" if top1 is None else f"{top1:.2f}",
                 "" if best is None else f" (best {best:.2f} after epoch {best_epoch})",
                 summary["wall_s"], run_dir / SUMMARY_FILE)
    return summary


def _job_log(run_dir: Path) -> List[Path]:
    """Hydra's log of this job in ``run_dir`` (``<job name>.log``), where it keeps one; none outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    path = Path(run_dir) / f"{HydraConfig.get().job.name}.log"
    return [path] if path.is_file() else []


def _interrupted_message(by: str, run_dir: Path, sweep_dir: Optional[Path]) -> str:
    """The one line an interrupted run ends with, whatever interrupted it (a signal, another process's end): where
    its checkpoint is, or that it stopped before it had one (while reading its data, say)."""
    from .records import CHECKPOINT_FILE

    if (run_dir / CHECKPOINT_FILE).exists():
        return f"interrupted by {by}: {run_dir} holds the checkpoint; {_resume_hint(run_dir, sweep_dir)}"
    return (f"interrupted by {by} before its first checkpoint: nothing trained is kept, and {run_dir} holds its "
            f"record; {_resume_hint(run_dir, sweep_dir, 'to train it again')}")


def _resume_hint(run_dir: Path, sweep_dir: Optional[Path], to: str = "to resume") -> str:
    """How to continue this record: a sweep finds its job directories again, a single run's directory is named
    after the time it started, so the command must name it."""
    return (f"rerun the same command {to}" if sweep_dir is not None else
            f"rerun the same command with hydra.run.dir={run_dir} {to}")


def _tracker(logger_cfg: Dict[str, Any], effective: Dict[str, Any], run_dir: Path, digest: str,
             sweep_name: Optional[str], dist):
    from .config import LoggerConfig
    from .records import archived_records
    from .tracking import Tracker

    settings = LoggerConfig(**logger_cfg)  # what the command left out takes the schema's defaults, as in run.py
    return Tracker(
        settings.name == WANDB and dist.is_main, run_dir, {**effective, "config_hash": digest},
        mode=settings.mode, project=settings.project, entity=settings.entity, group=sweep_name,
        job_type=effective["mixer"]["name"], name=run_dir.name if sweep_name else None, tags=list(settings.tags),
        init_timeout=float(settings.init_timeout),
        # stable across resumes of the same record, distinct across run dirs and across the records that
        # train.resume=fresh starts in one (a reused id would resume the archived record's wandb run)
        run_id=f"{digest[:8]}-{hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:8]}"
               + (f"-{archived}" if (archived := archived_records(run_dir)) else ""))


def _same_data(recorded: Optional[str], read: Optional[str], effective: Dict[str, Any],
               record: str = "this record was trained on",
               way_out: str = "point it at the data the run started with to resume, or train.resume=fresh to archive "
                              "the record and start over") -> Optional[str]:
    """The data fingerprint of a run, which an attempt at resuming it must read alike: the config names where the data
    lies (``config.LOCATION_KEYS``), not what it holds. Raises ``ConfigError`` before the attempt trains."""
    if recorded and read and recorded != read:
        if not _data_location(effective):  # digits: no files, a drawn split
            raise ConfigError(f"data={effective['data']['name']} is split otherwise here than {record} (data "
                              f"fingerprint {read}, the record's {recorded}): numpy and scikit-learn draw that split, "
                              f"so resume under the versions the record names (versions in its {SUMMARY_FILE}), or "
                              f"train.resume=fresh to archive the record and start over")
        raise ConfigError(f"{_location_text(effective)} holds other data than {record} (data fingerprint {read}, the "
                          f"record's {recorded}): {way_out}")
    return read or recorded


def _train(effective: Dict[str, Any], run_dir: Path, summary: Dict[str, Any], on_start: Callable[[int, int], None],
           on_epoch: Callable[[Dict[str, Any]], None], dist) -> Dict[str, Any]:
    """Build data and model, fit, and return the summary fields the run produced. ``on_start(epoch, batch)``: where
    training starts (a checkpoint's position, or 0, 0), before it does."""
    import timm

    from . import distributed as dist_utils
    from .allocator import configure as configure_malloc
    from .engine import Trainer, seed_everything
    from .flops import count

    settings = TrainSettings.from_dict(effective["train"])
    summary["malloc"] = configure_malloc(settings.malloc)  # before the first large tensor
    seed_everything(effective["seed"], settings.deterministic)
    bundle = _read_data(effective)
    recorded, read = summary.get(DATA_FINGERPRINT_KEY), bundle.fingerprint
    # only the main process read the record: every process stops where it finds other data, or the others would
    # wait for it in their first collective
    if dist_utils.broadcast_flag(bool(recorded and read and recorded != read)) and not dist.is_main:
        raise SystemExit(2)
    summary[DATA_FINGERPRINT_KEY] = _same_data(recorded, read, effective)
    kwargs = model_kwargs(effective, bundle.num_classes, bundle.in_chans)
    try:
        model = timm.create_model(effective["model"]["name"], **kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    summary.update(count(effective["model"]["name"], **kwargs).as_dict())
    if dist.is_main:
        log.info("data: %s, %d train / %d val images of %d px, %d classes", effective["data"]["name"],
                 len(bundle.train), len(bundle.val), bundle.img_size, bundle.num_classes)
        log.info("model: %.2f M params, %.2f M MACs per image", summary["params"] / 1e6, summary["macs"] / 1e6)

    trainer = Trainer(model, bundle, settings, run_dir, effective["seed"], on_epoch=on_epoch, dist=dist,
                      on_start=on_start)
    result = trainer.fit()
    history = result.history
    last = next((r for r in reversed(history) if "val_top1" in r), {})
    best = max((r for r in history if "val_top1" in r), key=lambda r: r["val_top1"], default={})
    return dict(
        status=result.status, val_top1=last.get("val_top1"), val_top5=last.get("val_top5"),
        val_loss=last.get("val_loss"), ema_val_top1=last.get("ema_val_top1"),
        best_val_top1=best.get("val_top1"), best_epoch=best.get("epoch"),
        train_images_per_s=result.train_images_per_s, eval_images_per_s=result.eval_images_per_s,
        epochs_done=result.epochs_done, train_loss=history[-1]["train_loss"] if history else None,
        finished=_dt.datetime.now().isoformat(timespec="seconds"),
    )


def main(cfg: DictConfig) -> Optional[float]:
    """Hydra task function: one job. Returns the final val top-1 (for sweepers that optimise it).

    In a sweep a failed job never stops the others: its error is one line on stderr (and in
    ``.launch_error`` beside its record when the record could not say it), and the sweep ends with its
    sweep.csv and exit code 1 (see ``multirun.SweepCallback``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .multirun import LAUNCH_ERROR_FILE, as_written
    from .records import RecordError

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    hydra_dir = run_dir / hc.output_subdir if hc.output_subdir else None
    launch_error = run_dir / LAUNCH_ERROR_FILE
    launch_error.unlink(missing_ok=True)
    try:
        plain = plain_config(cfg)
        check(plain)  # before torch loads: a bad value answers at once
    except ConfigError as e:
        return _fail(str(e), multirun, launch_error, hydra_dir)
    grid = as_written(hc.sweeper.get("params")) or {}
    if not multirun and grid:  # an experiment's grid, which Hydra runs under -m only
        log.warning("this config sweeps %s only under -m: this is one run of it (%s); add -m to run the grid",
                    " ".join(f"{k}={v}" for k, v in grid.items()),
                    " ".join(f"{k}={_value_of(cfg, k)}" for k in grid))
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    sweep_name = plain.get("sweep_name") or (sweep_dir.name if sweep_dir else None)
    from . import distributed

    distributed.init_from_slurm()
    threads = _threads_per_job(hc)
    if threads and plain["train"].get("threads") is None:
        plain["train"]["threads"] = threads
    try:
        summary = run_experiment(plain, run_dir, sweep_dir=sweep_dir, sweep_name=sweep_name,
                                 overrides=list(hc.overrides.task), hydra_dir=hydra_dir)
    except (ConfigError, RecordError) as e:
        return _fail(str(e), multirun, launch_error, hydra_dir)
    except Exception as e:
        if not multirun:
            raise
        log.exception("job failed")  # the traceback goes to this job's log file
        return _fail(f"{type(e).__name__}: {e} (traceback in {run_dir / f'{hc.job.name}.log'})", multirun,
                     launch_error, hydra_dir)
    return summary.get("val_top1")


def _value_of(cfg: DictConfig, key: str) -> Any:
    """What this run takes for a dotted key of a grid: its value, or a group's chosen option (``mixer=shift``)."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default="?")
    return value.get("name", value) if OmegaConf.is_config(value) else value


def _remove_if_only_hydras(run_dir: Path) -> None:
    """Remove a single run's folder when it holds only what Hydra wrote before the task ran (its ``.hydra``
    config files and the job's log); anything else in it (a record, a lock, a user's file) keeps it whole. In
    the default layout, parents left empty go too."""
    from hydra.core.hydra_config import HydraConfig

    from .records import remove_empty_parents

    hc = HydraConfig.get()
    hydras = {f"{hc.output_subdir}/{name}" for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}
    try:
        entries = {p.relative_to(run_dir).as_posix(): p.is_dir() for p in run_dir.rglob("*")}
        if not all((name == hc.output_subdir) if is_dir else (name in hydras or name == f"{hc.job.name}.log")
                   for name, is_dir in entries.items()):
            return
        shutil.rmtree(run_dir)
        if any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra):
            return  # the user's folder: its parents are the user's too
        remove_empty_parents(run_dir, hc.runtime.cwd)  # the default outputs/<date>/<time>: the date's, outputs/
    except OSError:  # another process's file appeared, or the folder went: leave what is there
        pass


def _threads_per_job(hc) -> Optional[int]:
    """Parallel local launchers share the cores: give each job its share instead of all of them (two jobs with
    every core each run several times slower than one after the other)."""
    target = str(hc.launcher.get("_target_", "")).lower()
    cores = os.cpu_count() or 1
    if "joblib" in target:
        n_jobs = hc.launcher.get("n_jobs")
        n_jobs = cores if n_jobs in (None, -1) else n_jobs
        return max(1, cores // max(1, n_jobs))
    if target.endswith("submitit_launcher.locallauncher"):  # submitit's local executor starts every job at once
        if hc.launcher.get("cpus_per_task"):
            return int(hc.launcher.cpus_per_task)
        from .multirun import saved_sweep_size

        jobs = saved_sweep_size(Path(hc.sweep.dir))
        return max(1, cores // jobs) if jobs else None
    return None


def _fail(message: str, multirun: bool, launch_error: Path, hydra_dir: Optional[Path] = None) -> None:
    """A job that cannot run: one line on stderr; exit 2 for a single run, which leaves no folder behind (a
    typo would leave one per attempt); in a sweep the others go on, and the job's folder says why it did not run
    (the sweep's table and report list it). Under torchrun rank 0 says an error that every process meets, and a
    process that meets one of its own (its node's data missing) says that one itself, naming its rank. A folder
    that holds a record gets back its own launch's ``.hydra`` files, which Hydra rewrote for this one."""
    from .distributed import info, say_failure, start_failures  # info is free of torch: a config error answers
    # before torch loads, and under torchrun (the only case that imports torch here) run.py has loaded it

    processes = info()
    if processes.is_main:
        print(f"error: {message}", file=sys.stderr, flush=True)
        if hydra_dir is not None:
            from .records import restore_hydra_files

            try:
                restore_hydra_files(hydra_dir, launch_error.parent)
            except OSError:  # an unwritable folder: the error above is what matters
                pass
    if not multirun:
        # the ranks share the folder, which rank 0 removes below where it holds only Hydra's files: none may still
        # be setting up its log file in it, so it waits for every rank to fail too. A record keeps the folder, and
        # then no rank waits: one that failed alone during the run (its share of the data unreadable, a full disk)
        # would wait for the others, busy in a collective of the training, until the group's timeout (30 minutes)
        if processes.enabled and not (launch_error.parent / SUMMARY_FILE).exists():
            everyone = start_failures(message)
            own = everyone is None or everyone[processes.rank] != everyone[0]
            if own and not processes.is_main:  # its node's data missing, say: rank 0's line says nothing of it
                print(f"error: rank {processes.rank} of {processes.world_size}: {message}", file=sys.stderr,
                      flush=True)
            if everyone is None:  # the others run on: they stop when this process ends, rank 0 recording why
                say_failure(message)
                raise SystemExit(2)
        if processes.is_main:
            _remove_if_only_hydras(launch_error.parent)
        raise SystemExit(2)
    from .records import atomic_write_bytes

    try:
        atomic_write_bytes(launch_error, (message + "\n").encode())
    except OSError:
        pass  # the job directory itself is unwritable: the line above is all that can be said
    return None
