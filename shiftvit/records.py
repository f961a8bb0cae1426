"""The run record: what one job leaves on disk. It is the source of truth; wandb only mirrors it.

Layout of a run directory (the Hydra output dir of the job)::

    config.yaml       the resolved, effective config (non-applicable knobs such as gamma for attn are null)
    metrics.jsonl     one JSON object per finished epoch (keys: METRIC_KEYS), epochs numbered from 1 as the
                      log prints them (summary.json's best_epoch too)
    summary.json      final state of the run (keys: SUMMARY_KEYS, plus macs_*/params_* per component)
    checkpoint.pt     latest checkpoint (weights_only-loadable), rewritten atomically each epoch
    predictions.npz   the final model's top-1 class and the label of every validation image (data set order),
                      written at the last epoch's evaluation, before that epoch's metrics row

Every write goes to a temporary file in the same directory and is renamed over the target, so a crash or a
kill never leaves a half-written record; files get the process umask's permissions, as ``open`` would give.
The order of the writes is what makes a rerun after a kill at any point end with the records of an
uninterrupted run: an epoch's metrics row is written before the checkpoint that moves past it (see
``engine.Trainer.fit``), and the process that runs a record holds ``.lock`` so that readers can tell a live
run from a dead one (``run_status``) and a second process cannot write the same record.
"""
from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import math
import os
import shutil
import signal
import socket
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import numpy as np

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREDICTIONS_FILE = "predictions.npz"  # the final model's top-1 class for every validation image, and its label
# every file of a record, config.yaml last: the order archive_record moves them in
RECORD_FILES = (SUMMARY_FILE, CHECKPOINT_FILE, PREDICTIONS_FILE, METRICS_FILE, CONFIG_FILE)
# held (flock) by the process that owns the run while it runs: readers tell a live run from a dead one
LOCK_FILE = ".lock"
# where train.resume=fresh moves an old record; dot-named so that no loader takes it for a run
ARCHIVE_DIR = ".archive"
WANDB_DIR = "wandb"  # what wandb.init(dir=run_dir) writes inside a run directory (its offline runs)
# a copy of Hydra's files (.hydra/) as the launch that the record accepted wrote them: Hydra rewrites them for every
# launch before the task runs, so a launch the folder then refuses (another config, a run in progress) would leave
# .hydra/ describing a run that never happened; the refusal puts this copy back (restore_hydra_files)
HYDRA_COPY_DIR = ".hydra-record"

# the status of a record (summary.json's "status"); every module names them through these constants
RUNNING, COMPLETED, DIVERGED, FAILED, DUPLICATE, INTERRUPTED = STATUSES = (
    "running", "completed", "diverged", "failed", "duplicate", "interrupted")
USED_STATUSES = (COMPLETED,)  # whose accuracy is a result: they, and only they, enter means and tests
# trained to their end: a result, or a divergence, which is the recipe's own outcome (Fisher's test counts both)
TRAINED_STATUSES = (*USED_STATUSES, DIVERGED)
FINISHED_STATUSES = (*TRAINED_STATUSES, DUPLICATE)  # a rerun of the same config leaves these as they are
# no record writes it: what a reader calls a record whose summary.json cannot be read (a disk fault, an edit by hand),
# counted against its arm as a seed without a result, never silently dropped
UNREADABLE = "unreadable"
# stopped without a result for a reason outside the recipe (a crash, a kill, a damaged record): an attempt that a
# finished record of the same config supersedes, and that a relaunch trains again
CUT_OFF_STATUSES = (FAILED, INTERRUPTED, UNREADABLE)
# findings about an arm (counted per arm), never averaged
FAILED_STATUSES = (DIVERGED, *CUT_OFF_STATUSES)
# what train.resume may be: auto = continue a record of the same config (refuse another config's record);
# fresh = archive whatever the run directory holds and start over
RESUME_FRESH = "fresh"  # train.resume: archive the record there and start over
RESUME_MODES = ("auto", RESUME_FRESH)
# fault injection for tests/test_faults.py: "<stage>:<file>[:<nth>[:<action>]]", e.g.
# "before_rename:checkpoint.pt:2:kill"; unset in normal use (then each write point costs one dict lookup)
FAULT_ENV = "SHIFTVIT_FAULT"
_TEMP_SUFFIX = ".tmp"
_fault_counts: Dict[str, int] = {}


class RecordError(RuntimeError):
    """A run record that cannot be read or written; the message is one line naming the file and the way out."""


def fault_point(stage: str, path: Path) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want_stage, want_name, *rest = spec.split(":")
    if (want_stage, want_name) != (stage, Path(path).name):
        return
    nth = int(rest[0]) if rest else 1
    action = rest[1] if len(rest) > 1 else "kill"
    key = f"{stage}:{want_name}"
    _fault_counts[key] = _fault_counts.get(key, 0) + 1
    if action == "kill" and _fault_counts[key] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "enospc" and _fault_counts[key] >= nth:  # the disk stays full from the nth write on
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _file_mode() -> int:
    # mkstemp creates 0600 whatever the umask: give records the mode open() would, so colleagues can read them
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
METRIC_KEYS = ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "ema_val_top1", "lr",
               "train_images_per_s", "eval_images_per_s", "epoch_s")
# The schema of summary.json, in the column order every table uses (sweep.csv, analysis.load_runs):
RESULT_KEYS = ("val_top1", "best_val_top1", "ema_val_top1", "val_top5", "val_loss", "train_loss", "best_epoch",
               "macs", "params", "train_images_per_s", "eval_images_per_s", "wall_s", "epochs_done", "attempts")
IDENTITY_KEYS = ("mixer", "gamma", "tau", "depths", "model", "data", "match", "seed", "config_hash")
DUPLICATE_OF_KEY = "duplicate_of"  # a duplicate's: the record it duplicates, relative to its own folder
DUPLICATE_OF = "duplicate of"  # how the live lines and the analysis say so
OUTCOME_KEYS = (DUPLICATE_OF_KEY, "error", "interrupted_by")  # present only when the status calls for them
# git_dirty: the checkout had changes to tracked files when the run started, so git_commit alone is not its code
# attempts: the code of every attempt at the run, in order (git_commit and git_dirty above are the last one's): a run
# resumed under other code trained its epochs under more than one, which the last attempt's alone would hide
# machine: the last attempt's CPU, its vector instructions and GPU (devices.machine); each attempt's is in attempts_code
# data_fingerprint: which data the run read from data.root, or the digits split scikit-learn made
# (data.DataBundle.fingerprint; null for data this code makes from the config alone), which every attempt must read
# alike: the config names only where the data lies, or which split
DATA_FINGERPRINT_KEY = "data_fingerprint"
UNRECORDED_DATA = "unrecorded"  # what the analysis calls the data fingerprint of a record made before they were kept
PROVENANCE_KEYS = ("git_commit", "git_dirty", "versions", "host", "machine", "run_dir", "overrides", "sweep_name",
                   "world_size", "malloc", "finished", "attempts_code", DATA_FINGERPRINT_KEY)
SUMMARY_KEYS = ("status", *RESULT_KEYS, *IDENTITY_KEYS, *PROVENANCE_KEYS)  # always present once a run trained


def attempt_code(commit: Optional[str], dirty: Optional[bool], versions: Dict[str, str],
                 machine: Optional[Dict[str, Any]] = None, settings: Optional[Dict[str, Any]] = None
                 ) -> Dict[str, Any]:
    """One entry of ``attempts_code``: the code an attempt ran, on what machine, and under which speed-only
    settings (``{"train.threads": 2, ...}``: a resume may change them, and config.yaml holds the last attempt's
    only). ``resumed_at`` ([epoch, batch] of the checkpoint it started from, [0, 0] for none) is set, and written,
    before it trains: None, it trained nothing."""
    return {"git_commit": commit, "git_dirty": dirty, "versions": versions, "machine": machine,
            "settings": settings, "resumed_at": None}


def earlier_attempts_code(previous: Dict[str, Any]) -> List[Dict[str, Any]]:
    """``attempts_code`` of the record a new attempt resumes. A record from before the list names only its last
    attempt's code; that attempt counts as started from the beginning, so its code is never left out of what the run
    trained under."""
    if previous.get("attempts_code"):
        return list(previous["attempts_code"])
    if not previous.get("attempts"):
        return []
    return [{**attempt_code(previous.get("git_commit"), previous.get("git_dirty"), previous.get("versions") or {},
                            previous.get("machine")),
             "resumed_at": [0, 0]}]


def code_label(commit: Optional[str], dirty: Optional[bool]) -> str:
    """A commit as a report names it: its short hash, marked when the checkout had uncommitted changes."""
    if not commit:
        return "no git commit"
    return f"{commit[:7]}{' with uncommitted changes' if dirty else ''}"


def machine_label(machine: Optional[Dict[str, Any]]) -> str:
    """A machine as a report names it: ``AMD EPYC (AVX512)``, with its GPU when it had one."""
    if not machine:
        return "machine not recorded"
    label = f"{machine.get('cpu') or 'unknown CPU'} ({machine.get('cpu_capability') or 'unknown instructions'})"
    return f"{label}, {machine['gpu']}" if machine.get("gpu") else label


def _trained_attempts(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The entries of ``attempts_code`` whose attempt trained, in order. An attempt trained when the next one resumed
    from a later point than it did (a kill can land after an epoch and before the record says so: the positions are
    written before training), and the last one always counts."""
    started = [a for a in summary.get("attempts_code") or [] if a.get("resumed_at") is not None]
    trained = [a for a, later in zip(started, started[1:]) if list(later["resumed_at"]) > list(a["resumed_at"])]
    return trained + started[-1:]


def trained_code(summary: Dict[str, Any]) -> List[str]:
    """The code (``code_label``) of every attempt that trained (``_trained_attempts``), each once, in order; for a
    record without ``attempts_code``, its one commit."""
    if not summary.get("attempts_code"):
        return [code_label(summary.get("git_commit"), summary.get("git_dirty"))] if "git_commit" in summary else []
    return list(dict.fromkeys(code_label(a.get("git_commit"), a.get("git_dirty")) for a in _trained_attempts(summary)))


def trained_settings(summary: Dict[str, Any], key: str) -> List[Any]:
    """The values of the speed-only setting ``key`` (``train.eval_every``) that the attempts that trained ran
    under, each once, in order; none for a record none of whose attempts recorded its settings (from before them)."""
    values = [(a.get("settings") or {}).get(key) for a in _trained_attempts(summary)
              if key in (a.get("settings") or {})]
    return list(dict.fromkeys(values))


def trained_machines(summary: Dict[str, Any]) -> List[str]:
    """The machines (``machine_label``) every attempt that trained ran on, each once, in order; none for a record
    none of whose attempts recorded one (from before the key)."""
    if not summary.get("attempts_code"):
        return [machine_label(summary["machine"])] if summary.get("machine") else []
    trained = _trained_attempts(summary)
    if not any(a.get("machine") for a in trained):
        return []
    return list(dict.fromkeys(machine_label(a.get("machine")) for a in trained))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point("before_rename", path)
        os.replace(tmp, path)
        fault_point("after_rename", path)
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


def write_predictions(run_dir: Path, predicted: np.ndarray, target: np.ndarray, class_names: Sequence[str]) -> None:
    """The final evaluation's top-1 class and label of every validation image, in the data set's order: what a
    verdict needs to count the validation set's own sampling noise (analysis.stats.images_and_seeds_test). With
    them, each class index's name (``class_names``), without which the indices name nothing: an image folder's
    indices follow its sorted class folders, and a folder added later renumbers them."""
    import numpy as np  # here, not at the top: the records are read where numpy is not otherwise needed

    buffer = io.BytesIO()
    np.savez_compressed(buffer, predicted=np.asarray(predicted, dtype=np.int64),
                        target=np.asarray(target, dtype=np.int64), class_names=np.asarray(list(class_names), dtype=str))
    atomic_write_bytes(Path(run_dir) / PREDICTIONS_FILE, buffer.getvalue())


def read_predictions(run_dir: Path) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(predicted, target) from ``write_predictions``, or None where the run has none (older code, unfinished)
    or the file cannot be read."""
    arrays = _predictions_arrays(run_dir, "predicted", "target")
    if arrays is None:
        return None
    predicted, target = arrays
    return (predicted, target) if predicted.shape == target.shape and predicted.ndim == 1 else None


def read_class_names(run_dir: Path) -> Optional[List[str]]:
    """The class names ``write_predictions`` recorded, in label order, or None (no file, or one written before they
    were recorded)."""
    arrays = _predictions_arrays(run_dir, "class_names")
    return None if arrays is None else [str(name) for name in arrays[0]]


def _predictions_arrays(run_dir: Path, *names: str) -> Optional[List[np.ndarray]]:
    """The named arrays of a run's predictions file, or None where it has no such file or member, or the file
    cannot be read (truncated, damaged, foreign)."""
    import numpy as np

    try:
        with np.load(Path(run_dir) / PREDICTIONS_FILE) as f:
            return [f[name] for name in names]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def write_metrics(run_dir: Path, rows: Iterable[Dict[str, Any]]) -> None:
    """Rewrite the whole metrics file atomically (it is small: one line per epoch)."""
    text = "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in rows)
    atomic_write_bytes(Path(run_dir) / METRICS_FILE, text.encode())


def parse_metrics(text: str) -> Tuple[List[Dict[str, Any]], List[int], int]:
    """The epoch rows of a metrics.jsonl text (epochs numbered from 1), the (1-based) numbers of the lines that
    are not one, and the number of lines. The one parser of the file: the trainer refuses a damaged file, the
    analysis keeps the readable rows and says what is wrong."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
        else:
            bad.append(number)
    if rows and rows[0]["epoch"] == 0:  # a record begun before epochs were numbered from 1, as the log prints them
        rows = [{**row, "epoch": row["epoch"] + 1} for row in rows]
    return rows, bad, len(lines)


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    """Every epoch row, or RecordError when the file cannot be read whole."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    try:
        rows, bad, _ = parse_metrics(path.read_text())
        if bad:
            raise ValueError(f"line {bad[0]} is not an epoch record")
    except (OSError, ValueError) as e:
        raise RecordError(f"{path} is unreadable ({e}): train.resume=fresh archives the record and starts "
                          "over (deleting the file would leave the run without the epochs it held)") from None
    return rows


def duplicate_owner(run_dir: Path, summary: Dict[str, Any]) -> Optional[Path]:
    """The record a duplicate's summary names as the run it duplicates (``DUPLICATE_OF_KEY``, relative to its own
    folder), or None where it names none."""
    owner = summary.get(DUPLICATE_OF_KEY)
    return (Path(run_dir) / str(owner)).resolve() if owner else None


def read_summary(run_dir: Path) -> Dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return read_json(path) if path.exists() else {}
    except (OSError, ValueError) as e:
        raise RecordError(f"{path} is unreadable ({e}): train.resume=fresh archives the record and starts over, "
                          "or use another folder (hydra.run.dir; hydra.sweep.dir for a sweep)") from None


def remove_stale_temporaries(run_dir: Path) -> List[Path]:
    """Temporaries of atomic writes that a killed process left behind (only call while holding the lock)."""
    removed = []
    for path in Path(run_dir).glob(f".*{_TEMP_SUFFIX}"):
        if any(path.name.startswith(f".{name}.") for name in RECORD_FILES):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_empty_parents(path: Path, launch_dir: Path) -> None:
    """Remove the parents of a removed folder that it leaves empty, up to (not including) ``launch_dir``, and only
    below it: Hydra's default folders (``outputs/<date>/``, ``multirun/``) made for a launch that ran nothing."""
    launch_dir = Path(launch_dir).resolve()
    parent = Path(path).resolve().parent
    while parent != launch_dir and launch_dir in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def archive_record(run_dir: Path, logs: Sequence[Path] = ()) -> Path:
    """Move a run's record into ``.archive/<time>/`` (train.resume=fresh): kept, but never read as a run.
    ``logs`` (Hydra's job log, which this process holds open to append to) are copied there, then emptied: a move
    would leave the open handle writing the new run's lines into the archive.

    config.yaml moves last, so a kill in the middle leaves a directory that still names its config."""
    run_dir = Path(run_dir)
    dest = run_dir / ARCHIVE_DIR / _dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
    dest.mkdir(parents=True)
    for log in logs:
        shutil.copy2(log, dest / log.name)
        os.truncate(log, 0)  # opened to append: the next line lands at the start
    for name in (WANDB_DIR, HYDRA_COPY_DIR, *RECORD_FILES):
        if (run_dir / name).exists():
            os.replace(run_dir / name, dest / name)
    return dest


def keep_hydra_files(hydra_dir: Path, run_dir: Path) -> None:
    """Copy the files Hydra wrote for this launch (``hydra_dir``, its ``.hydra``) beside the record that accepted
    it, for ``restore_hydra_files``."""
    for path in sorted(Path(hydra_dir).glob("*.yaml")):
        atomic_write_bytes(Path(run_dir) / HYDRA_COPY_DIR / path.name, path.read_bytes())


def restore_hydra_files(hydra_dir: Path, run_dir: Path) -> List[str]:
    """Put back, over what Hydra has just written for a launch the folder refused, the record's copy of its own
    launch's files; returns the names restored (none where the record predates the copy, or there is none)."""
    kept = sorted((Path(run_dir) / HYDRA_COPY_DIR).glob("*.yaml"))
    for path in kept:
        atomic_write_bytes(Path(hydra_dir) / path.name, path.read_bytes())
    return [path.name for path in kept]


def archived_records(run_dir: Path) -> int:
    """How many records ``train.resume=fresh`` has archived from ``run_dir``."""
    archive = Path(run_dir) / ARCHIVE_DIR
    return sum(1 for entry in archive.iterdir() if entry.is_dir()) if archive.is_dir() else 0


class RunLock:
    """Exclusive ownership of a run directory for as long as the process lives (``flock`` on ``.lock``).

    The kernel drops the lock when the holder dies (kill -9 included), so a lock is never stale. The file
    holds the holder's pid and host for the message a second process gets. flock is local to one host on
    some network file systems: two launches on two hosts sharing the directory are not excluded there.
    """

    def __init__(self, directory: Path, what: str, way_out: str, name: str = LOCK_FILE):
        self.path = Path(directory) / name
        self.what, self.way_out = what, way_out
        self.fd: Optional[int] = None

    def acquire(self, wait_s: float = 2.0) -> RunLock:
        import fcntl
        import time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                # readers (run_status) take the lock shared for microseconds: retry briefly before giving up
                if time.monotonic() > deadline:
                    holder = self.path.read_text().strip() or "another process"
                    os.close(fd)
                    raise RecordError(f"{self.path.parent} is in use by {holder} ({self.what}): "
                                      f"{self.way_out}") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


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


def run_status(run_dir: Path, summary: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """The status a reader should believe: a recorded ``running`` whose process is gone is ``interrupted``."""
    summary = read_summary(run_dir) if summary is None else summary
    status = summary.get("status")
    if status == RUNNING and not process_alive(run_dir):
        return INTERRUPTED
    return status
