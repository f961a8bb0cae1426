"""Sweep bookkeeping for Hydra multiruns: job identity, jobs seed by seed, one launcher at a time, a live
one-line-per-job status, and ``sweep.csv`` (every job asked for, started or not) whatever way the sweep ends.

A job's directory is named after its overrides (``job_dir_name``, resolved by Hydra for
``hydra.sweep.subdir``), not its number: relaunching a sweep with its arguments in another order, or with jobs
added or removed, maps every job to its own record.

Registered as a Hydra callback (``hydra.callbacks.sweep`` in ``conf/config.yaml``); it runs in the launching
process whatever the launcher (basic, joblib, submitit), and reads only the run records the jobs write, so it
sees jobs running in other processes or on other machines sharing the file system.
"""
from __future__ import annotations

import atexit
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn

from .config import LOCATION_KEYS, MORE_SEEDS, NOT_IDENTITY_KEYS, SEED_KEY, ExperimentConfig
from .records import (
    COMPLETED,
    CONFIG_FILE,
    DUPLICATE,
    DUPLICATE_OF,
    DUPLICATE_OF_KEY,
    FAILED,
    FINISHED_STATUSES,
    IDENTITY_KEYS,
    OUTCOME_KEYS,
    RESULT_KEYS,
    RUNNING,
    SUMMARY_FILE,
    UNREADABLE,
    RecordError,
    RunLock,
    atomic_write_bytes,
    read_metrics,
    remove_empty_parents,
    run_status,
)

SWEEP_CSV = "sweep.csv"
SWEEPS_DIR = "multirun"  # where conf/config.yaml's hydra.sweep.dir puts sweeps, below the working directory
RUNS_DIR = "outputs"  # where conf/config.yaml's hydra.run.dir puts single runs (a test holds both equal)
# the environment variable that names a sweep's folder in conf/config.yaml's hydra.sweep.dir, set by run.py from the
# command's overrides (a test holds the two equal)
SWEEP_ID_ENV = "SHIFTVIT_SWEEP_ID"
SWEEP_LOCK_FILE = ".sweep.lock"
MULTIRUN_FILE = "multirun.yaml"  # Hydra's: the sweep's config and overrides, written at its launch
# the earlier launches' multirun.yaml, one file each (Hydra rewrites it at every launch): a launch into the folder
# of a cut-off sweep must not make the first launch's unrun jobs vanish from sweep.csv and the report
PLANS_DIR = ".plans"
# one line: why the latest launch of a job did not run it (a config error, another config's record ...);
# beside the record, not in it, so that a refused launch changes nothing the record says
LAUNCH_ERROR_FILE = ".launch_error"
# the id of the latest launch that started the job: a relaunch counts and judges only the jobs it started
LAUNCH_ID_FILE = ".launch_id"
# a job's state before its record says one (records.STATUSES): in sweep.csv, not started yet; on the live
# lines, started without a summary yet
QUEUED = "queued"
STARTING = "starting"
# the next step once a sweep ends, printed before its folder: the per-arm tables, the verdicts and the figures
REPORT_HINT = "tables, verdicts and figures: python -m analysis.report"
ONE_SEED_HINT = (f"one seed per arm, and a verdict needs two or more: add {MORE_SEEDS} {{sweep_dir_override}} to "
                 "the same command (its seed-0 jobs are found done, not trained again)")

POLL_S = 2.0  # seconds between two looks at the sweep's jobs for the live lines
JOB_DIR_RESOLVER = "shiftvit_job_dir"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"  # Hydra's default, Hydra's name
# hydra.sweep.subdir as conf/config.yaml sets it (a test holds them equal): a job's folder is named after its overrides
JOB_SUBDIR = "${" + JOB_DIR_RESOLVER + ":${hydra.job.override_dirname}}"
# one row per job: its overrides, then summary.json's columns in the schema's order (records.py)
CSV_COLUMNS = ("job", "overrides", "status", *RESULT_KEYS, *IDENTITY_KEYS, *OUTCOME_KEYS, "launch_error", "run_dir")


def sweep_dir_override(sweep_dir: Path) -> str:
    """``"hydra.sweep.dir='multirun/mixer=attn,shift-1a2b3c4d'"``: the override naming this folder, as a shell
    passes it to Hydra. A sweep's name holds ``=`` and ``,``, which Hydra's grammar reads as syntax (a
    malformed override, a list of values) unless the value is quoted."""
    return quoted_override("hydra.sweep.dir", str(sweep_dir))


def quoted_override(key: str, value: str) -> str:
    """``key=value`` with the value quoted for Hydra's grammar and the whole quoted for a shell."""
    quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    override = f"{key}={quoted}"
    return f'"{override}"' if not re.search(r'["$`\\!]', override) else shlex.quote(override)


def sweep_id(argv: List[str], left_out: Optional[Tuple[str, ...]] = None) -> str:
    """A sweep directory name that depends only on what the command's overrides ask for, so relaunching the
    same command finds the same directory (finished jobs are skipped, cut-off ones resume), with its arguments,
    or the values of one, in any order. How it is launched (``hydra/launcher=...``, ``hydra.*`` settings),
    settings that never change a run's numbers and where the data lies (``left_out``, by default
    ``config.NOT_IDENTITY_KEYS``: threads, logger, data.root ...) are not part of the sweep's identity."""
    left_out = NOT_IDENTITY_KEYS if left_out is None else left_out
    given = [a for a in argv[1:] if "=" in a and not a.startswith(("-", "hydra.", "hydra/", "+hydra"))]
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import ChoiceSweep

        items = []
        for override in OverridesParser.create().parse_overrides(given):
            if override.key_or_group in left_out:
                continue
            # a list of choices is a set of jobs: seed=1,0 is seed=0,1 (ranges and globs stay as written)
            if isinstance(override.value(), ChoiceSweep):
                values = sorted(override.sweep_string_iterator())
                items.append(f"{override.get_key_element()}={','.join(values)}")
            else:
                items.append(override.input_line)
    except Exception:  # a malformed override: Hydra reports it in a moment; any stable name will do until then
        items = given
    items.sort()
    slug = re.sub(r"[^A-Za-z0-9=,.+_-]+", "_", "-".join(items))[:80] or "defaults"
    return f"{slug}-{hashlib.sha256(repr(items).encode()).hexdigest()[:8]}"


def continued_sweep_id(argv: List[str], sweeps: Path = Path(SWEEPS_DIR)) -> str:
    """``sweep_id``, or the name that code from before ``config.LOCATION_KEYS`` gave the same command (with its
    ``data.root``) where only a sweep of that name exists under ``sweeps``: relaunched after the upgrade, a
    sweep continues where its records are instead of training them all again in a new folder."""
    current = sweep_id(argv)
    older = sweep_id(argv, tuple(k for k in NOT_IDENTITY_KEYS if k not in LOCATION_KEYS))
    if older != current and (sweeps / older).is_dir() and not (sweeps / current).exists():
        return older
    return current


def same_grid_sweeps(sweep_dir: Path, task: List[str]) -> List[Tuple[Path, str]]:
    """The sweeps beside ``sweep_dir`` (in its parent folder) launched with the same command but for its seeds
    (``sweep_id`` of each launch's overrides without ``seed``), each with the seeds its launch planned
    (``planned_seeds``): where a command that adds seeds without naming the folder would train again what one of
    them holds."""
    def grid(overrides: List[str]) -> str:  # the sweep's name less its seeds
        return sweep_id(["", *overrides], (*NOT_IDENTITY_KEYS, SEED_KEY))

    wanted, found = grid(task), []
    for other in sorted(Path(sweep_dir).parent.glob(f"*/{MULTIRUN_FILE}")):
        if other.parent == Path(sweep_dir):
            continue
        try:
            saved = OmegaConf.load(other).hydra
            overrides = [str(o) for o in saved.overrides.task]
            if grid(overrides) == wanted:
                found.append((other.parent, planned_seeds(overrides, as_written(saved.sweeper.get("params")))))
        except Exception:  # a multirun.yaml of another Hydra, or edited by hand: not this grid as far as we know
            continue
    return found


def planned_seeds(task: List[str], params: Optional[Dict[str, Any]]) -> str:
    """``0,1,2``: the seeds a launch's grid runs (the config's default where it sets none), or ``?`` where the
    grid cannot be known up front."""
    jobs = planned_jobs(task, params)
    if jobs is None:
        return "?"
    seeds = {o.split("=", 1)[1] for job in jobs for o in job if override_key(o) == SEED_KEY}
    return ",".join(sorted(seeds, key=lambda s: (len(s), s))) or str(ExperimentConfig.seed)


def job_dir_name(override_dirname: str) -> str:
    """A job's directory name from Hydra's ``override_dirname`` (its overrides, sorted): the same overrides
    give the same directory whatever their order on the command line. Characters that would nest folders
    ('/' in gamma=1/12) or trouble a shell are replaced, and a hash of the exact overrides is appended
    whenever the name had to change, so two different jobs never share a directory."""
    if not override_dirname:
        return "defaults"
    slug = re.sub(r"[^A-Za-z0-9=,.+_-]+", "_", override_dirname)
    if slug == override_dirname and len(slug) <= 120:
        return slug
    return f"{slug[:100]}-{hashlib.sha256(override_dirname.encode()).hexdigest()[:8]}"


def register_resolver() -> None:
    if not OmegaConf.has_resolver(JOB_DIR_RESOLVER):
        OmegaConf.register_new_resolver(JOB_DIR_RESOLVER, job_dir_name)


# jobs of parallel launchers resolve their directory in their own process, which imports this module when
# it unpickles the callback
register_resolver()


def job_dirs(sweep_dir: Path) -> List[Path]:
    """Job directories of a sweep: every visible sub-directory that Hydra or a run wrote into."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and ((p / ".hydra").is_dir() or (p / SUMMARY_FILE).exists()))


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def job_overrides(job_dir: Path) -> List[str]:
    """The overrides of the run recorded in ``job_dir`` (Hydra's own copy is rewritten by every launch)."""
    overrides = _read_json(job_dir / SUMMARY_FILE).get("overrides")
    if isinstance(overrides, list):
        return [str(o) for o in overrides]
    try:
        return [str(o) for o in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []]
    except (OSError, yaml.YAMLError):
        return []


def launch_error(job_dir: Path) -> Optional[str]:
    """Why the latest launch of the job refused it, or None. A refusal older than the record's latest write is
    not the latest word: a process still running the job (a launcher killed without its workers, then
    relaunched: 'in use by pid N') has written the record since."""
    try:
        path = job_dir / LAUNCH_ERROR_FILE
        refused_at = path.stat().st_mtime
        try:
            if (job_dir / SUMMARY_FILE).stat().st_mtime > refused_at:
                return None
        except OSError:
            pass
        return path.read_text().strip() or None
    except OSError:
        return None


def _unreadable(job_dir: Path, summary: Dict[str, Any]) -> bool:
    """Whether the job's summary.json is there but cannot be read (written atomically, it is never seen half
    written): a damaged record, not a job still to start."""
    return not summary and (job_dir / SUMMARY_FILE).exists()


def job_row(job_dir: Path) -> Dict[str, Any]:
    summary = _read_json(job_dir / SUMMARY_FILE)
    row: Dict[str, Any] = {k: summary.get(k) for k in CSV_COLUMNS}
    refused = launch_error(job_dir)
    status = run_status(job_dir, summary) if summary else \
        FAILED if refused else UNREADABLE if _unreadable(job_dir, summary) else QUEUED
    row.update(job=job_dir.name, overrides=" ".join(job_overrides(job_dir)), run_dir=str(job_dir), status=status,
               launch_error=refused)
    if isinstance(row["depths"], list):
        row["depths"] = ",".join(map(str, row["depths"]))
    return row


def sweep_rows(sweep_dir: Path) -> List[Dict[str, Any]]:
    """One row per job: those with a folder, and the latest launch's jobs that never started (``queued``), so
    that a cut-off sweep's table still lists every job it was asked for."""
    rows = [job_row(job) for job in job_dirs(sweep_dir)]
    have = {row["job"] for row in rows}
    for name, overrides in unstarted_jobs(sweep_dir):
        if name not in have:
            rows.append({**dict.fromkeys(CSV_COLUMNS), "job": name, "overrides": " ".join(overrides),
                         "status": QUEUED, "run_dir": str(Path(sweep_dir) / name)})
    return sorted(rows, key=lambda row: row["job"])


def write_sweep_csv(sweep_dir: Path, rows: Optional[List[Dict[str, Any]]] = None) -> Path:
    """One row per job (overrides, status, top-1, MACs, params, throughput, run dir), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in sweep_rows(sweep_dir) if rows is None else rows:
        writer.writerow(row)
    path = Path(sweep_dir) / SWEEP_CSV
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def job_status(job_dir: Path) -> str:
    """``starting`` / ``running epoch k/N`` / ``completed top-1 ..`` / ``diverged`` / ``failed`` / ``duplicate``
    / ``interrupted`` (a recorded ``running`` whose process is gone) / ``unreadable`` (a damaged summary.json)."""
    summary = _read_json(job_dir / SUMMARY_FILE)
    refused = launch_error(job_dir)
    if refused:
        return f"{FAILED}: {refused}"
    if _unreadable(job_dir, summary):
        return f"{UNREADABLE}: {job_dir / SUMMARY_FILE} cannot be read (train.resume=fresh archives it and starts over)"
    status = run_status(job_dir, summary) if summary else None
    if status is None:
        return STARTING
    if status == RUNNING:
        try:
            done = len(read_metrics(job_dir))
        except RecordError:  # being rewritten or damaged: the live line only needs a count
            done = 0
        try:
            epochs = yaml.safe_load((job_dir / CONFIG_FILE).read_text())["train"]["epochs"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            epochs = "?"
        return f"running epoch {min(done + 1, epochs) if isinstance(epochs, int) else done + 1}/{epochs}"
    if status == COMPLETED and summary.get("val_top1") is not None:
        return f"{COMPLETED} val_top1={summary['val_top1']:.2f}"
    if status == DUPLICATE:
        return f"{DUPLICATE_OF} {summary.get(DUPLICATE_OF_KEY)}"
    return str(status)


def as_written(node: Any) -> Any:
    """A config node as the command wrote it, interpolations left as text: a sweep's overrides may hold
    ``${oc.env:...}``, which only its jobs resolve (read here, it would raise in the launcher)."""
    return None if node is None else OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) \
        else node


def planned_jobs(task_overrides: List[str], sweeper_params: Optional[Dict[str, Any]]) -> Optional[List[List[str]]]:
    """The basic sweeper's grid, one list of overrides per job, in launch order (None when it cannot be known
    up front: a glob needs the config's groups). Hydra's own code makes it: the experiment's sweeper params
    first, the command line winning for the same key."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    items = [f"{k}={v}" for k, v in (sweeper_params or {}).items()] + list(task_overrides)
    try:
        overrides = OverridesParser.create().parse_overrides(items)
        return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:
        return None


def location_sweep_error(task_overrides: List[str], sweeper_params: Optional[Dict[str, Any]]) -> str:
    """Why a sweep over where the data lies cannot run, or '': ``config.LOCATION_KEYS`` name no job folder and
    no run, so the jobs of ``data.root=/a,/b`` would share one folder, and the second read as the first's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    items = [f"{k}={v}" for k, v in (sweeper_params or {}).items()] + list(task_overrides)
    try:
        overrides = OverridesParser.create().parse_overrides(items)
    except Exception:  # Hydra reports a malformed override itself
        return ""
    for line, override in zip(items, overrides):
        if override.key_or_group in LOCATION_KEYS and override.is_sweep_override():
            key = override.key_or_group
            return (f"{line} sweeps where the data lies, which names no job folder and no run (the same data read "
                    f"from another disk is the same run), so these jobs would share their folders: launch one sweep "
                    f"per data set, each in its own folder ({key}=<one of them> hydra.sweep.dir={SWEEPS_DIR}/<a name>)")
    return ""


def refused_job_error(config: DictConfig, jobs: Optional[List[List[str]]]) -> str:
    """Why a sweep cannot start, or '': a planned job whose config ``config.resolve`` refuses (``gamma=1/12,abc``:
    ``abc``; a budget no depths reach), asked of every job before the first one trains. Found only when its job
    was reached, such a value cost every job launched before it. A composition Hydra refuses (``mixer=atn``) is
    left to Hydra, which checks every job next and says it in its own words; ``jobs`` None (a grid not known up
    front) checks nothing."""
    if not jobs:
        return ""
    from hydra.core.global_hydra import GlobalHydra

    from .config import ConfigError, plain_config, resolve

    loader = GlobalHydra.instance().config_loader()
    launcher = config.hydra.get("launcher") or {}
    # each job's processes, as its launcher starts them (submitit's tasks per node): the recipe's lr scaling
    # depends on the total batch, and a job is judged as it will run
    world_size = int(launcher.get("tasks_per_node") or 1) * int(launcher.get("nodes") or 1)
    refused = []
    for job in jobs:
        try:
            composed = loader.load_sweep_config(master_config=config, sweep_overrides=list(job))
        except Exception:  # Hydra's own refusal comes next, in its words
            return ""
        with open_dict(composed):
            del composed["hydra"]  # a job's task function gets its config without Hydra's node
        try:
            resolve(plain_config(composed), world_size)
        except ConfigError as e:
            refused.append((job, str(e)))
        except Exception:  # Hydra would swallow it into a warning and skip the rest of this callback (the lock):
            continue  # the job meets it itself, and says it in its own words
    if not refused:
        return ""
    job, message = refused[0]
    swept = [o for o in job if sum(o in other for other in jobs) < len(jobs)]  # what names this job in the grid
    count = f" ({len(refused)} of the {len(jobs)} jobs are refused; this is the first)" if len(refused) > 1 else ""
    return (f"{message} [job {_short(swept or job)}]{count}: no job of this sweep started; fix it and launch the "
            "command again")


def expected_jobs(task_overrides: List[str], sweeper_params: Optional[Dict[str, Any]]) -> Optional[int]:
    """Size of the grid the basic sweeper will run (None when it cannot be known up front)."""
    jobs = planned_jobs(task_overrides, sweeper_params)
    return None if jobs is None else len(jobs)


def saved_sweep(sweep_dir: Path, plan: Optional[Path] = None) -> Optional[DictConfig]:
    """The ``hydra`` node of the sweep's ``multirun.yaml`` (its latest launch's config and overrides), or of an
    earlier launch's ``plan`` (``saved_plans``), or None."""
    try:
        return OmegaConf.load(plan or Path(sweep_dir) / MULTIRUN_FILE).hydra
    except Exception:
        return None


def saved_plans(sweep_dir: Path) -> List[Path]:
    """The multirun.yaml of every launch that started a job in the sweep: the latest, then the earlier ones kept
    in ``PLANS_DIR``, newest first."""
    kept = sorted(Path(sweep_dir).glob(f"{PLANS_DIR}/*.yaml"), key=lambda p: p.stat().st_mtime, reverse=True)
    latest = Path(sweep_dir) / MULTIRUN_FILE
    return [latest, *kept] if latest.is_file() else kept


def keep_plan(sweep_dir: Path, plan: bytes) -> Optional[Path]:
    """Keep an earlier launch's multirun.yaml (``PLANS_DIR``, named by its content: the same plan once); returns
    the file when this call wrote it."""
    path = Path(sweep_dir) / PLANS_DIR / f"{hashlib.sha256(plan).hexdigest()[:16]}.yaml"
    try:
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, plan)
            return path
    except OSError:  # unkept, its unrun jobs go uncounted once the next launch has rewritten multirun.yaml
        pass
    return None


def _saved_grid(saved: DictConfig) -> Optional[List[List[str]]]:
    """The grid of a saved launch (``saved_sweep``), as ``planned_jobs`` makes it; None when it cannot be read."""
    try:
        params = saved.sweeper.get("params")
        return planned_jobs(as_written(saved.overrides.task), as_written(params))
    except Exception:  # a multirun.yaml of another Hydra, or edited by hand
        return None


def saved_sweep_size(sweep_dir: Path) -> Optional[int]:
    """How many jobs the sweep's latest launch planned, from its ``multirun.yaml`` (a job's own config has only
    its own values)."""
    saved = saved_sweep(sweep_dir)
    jobs = None if saved is None else _saved_grid(saved)
    return None if jobs is None else len(jobs)


def unstarted_jobs(sweep_dir: Path) -> List[Tuple[str, List[str]]]:
    """(directory name, overrides) of every job that a launch of the sweep planned (``saved_plans``) and whose
    folder holds no record: queued, or never started because the sweep was cut off (a deadline, Ctrl-C, a cluster's
    time limit) and not launched since. Known only for the basic sweeper's grid in folders named as
    ``conf/config.yaml`` names them (``JOB_SUBDIR``); else none."""
    named: Dict[str, List[str]] = {}
    for plan in saved_plans(sweep_dir):
        for name, job in _named_jobs(saved_sweep(sweep_dir, plan)):
            named.setdefault(name, job)
    return [(name, job) for name, job in named.items()
            if not any((Path(sweep_dir) / name / f).exists() for f in (SUMMARY_FILE, LAUNCH_ERROR_FILE))]


def _named_jobs(saved: Optional[DictConfig]) -> List[Tuple[str, List[str]]]:
    """(directory name, overrides) of every job of a saved launch's grid, in its order."""
    # Hydra's own function for hydra.job.override_dirname (internal, stable within hydra-core 1.3, as pinned): the
    # folder names come out as the launch made them, not as a copy of its rules would
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        if saved is None or saved.sweeper.get("_target_") != BASIC_SWEEPER or \
                OmegaConf.to_container(saved.sweep, resolve=False).get("subdir") != JOB_SUBDIR:
            return []
        naming = saved.job.config.override_dirname
        exclude, item_sep, kv_sep = list(naming.exclude_keys), naming.item_sep, naming.kv_sep
        parser = OverridesParser.create()
        return [(job_dir_name(get_overrides_dirname(parser.parse_overrides(job), exclude, item_sep, kv_sep)), job)
                for job in _saved_grid(saved) or []]
    except Exception:  # a multirun.yaml of another Hydra, or edited by hand: nothing can be said of its grid
        return []


def arm_key(overrides: List[str], exclude: Tuple[str, ...] = ()) -> frozenset:
    """What a job's overrides ask for besides its seed (and the ``exclude`` keys): jobs with one key are the same
    arm's seeds."""
    return frozenset(o for o in overrides if override_key(o) not in (SEED_KEY, *exclude))


def override_key(override: str) -> str:
    """The key an override sets, without Hydra's prefixes (``seed`` for ``+seed=1``)."""
    return override.split("=", 1)[0].lstrip("+~")


def seeds_slowest(params: Optional[Dict[str, Any]], task: List[str]) -> Tuple[Dict[str, Any], List[str]]:
    """The same grid with the seed varying slowest: every arm's seed 0, then every arm's seed 1, and so on.

    Hydra's basic sweeper varies the first key it meets slowest, and it meets the experiment's own sweeper
    params before the command line, so ``mixer=shift,attn seed=0,1,2`` runs every shift seed before the first
    attention one. A sweep cut off midway (a deadline, a killed launcher, a cluster's time limit) would leave
    one arm with all its seeds and the other with none, and a machine's slow hours would fall on one arm. Seed
    by seed, the arms stay within one seed of each other, on the same seeds (pairs for ``--pair-by seed``).

    Returns the sweeper params with ``seed`` as their first key, holding the command line's value where it
    gives one (as in Hydra, the command line wins), and the command line without its seed. Nothing else moves:
    the grid is the same set of jobs, with the same directories (named after their sorted overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    params = dict(params or {})
    seed_value = params.pop(SEED_KEY, None)
    rest = []
    for line, override in zip(task, OverridesParser.create().parse_overrides(task)):
        if override.key_or_group == SEED_KEY and override.package is None and override.type == OverrideType.CHANGE:
            seed_value = line.split("=", 1)[1]
        else:
            rest.append(line)
    if seed_value is None:
        return params, list(task)
    return {SEED_KEY: seed_value, **params}, rest


_SHORT = re.compile(r"^(hydra[./]|\+?experiment=)")


def _short(overrides: List[str]) -> str:
    return " ".join(o for o in overrides if not _SHORT.match(o)) or "(defaults)"


def launched_by(job_dir: Path, launch_id: Optional[str]) -> bool:
    """Whether the launch ``launch_id`` started this job (``None``: count every job). Jobs of earlier launches
    share a relaunched sweep's folder (other overrides, a typo's refused jobs): they are not this launch's to
    count. The launch writes its id as it starts each job; file times would not do, since a launch that follows
    another within the file system's time resolution could not tell their jobs apart."""
    if launch_id is None:
        return True
    try:
        return (job_dir / LAUNCH_ID_FILE).read_text() == launch_id
    except OSError:
        return False


class SweepMonitor:
    """Polls the sweep directory and prints one line whenever a status of this launch's jobs changes."""

    def __init__(self, sweep_dir: Path, total: Optional[int], poll_s: float = POLL_S, stream=None,
                 launch_id: Optional[str] = None):
        self.sweep_dir, self.total, self.poll_s, self.launch_id = Path(sweep_dir), total, poll_s, launch_id
        self.stream = stream or sys.stdout
        self.seen: Dict[str, str] = {}
        self.ended = 0  # jobs of this launch seen finished, failed or interrupted
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
            if not launched_by(job, self.launch_id):
                continue
            status = job_status(job)
            if self.seen.get(job.name) != status:
                self.seen[job.name] = status
                lines.append(f"[sweep] {_short(job_overrides(job))}: {status}")
        if lines:
            statuses = list(self.seen.values())
            finished = sum(1 for s in statuses if s.startswith(FINISHED_STATUSES))
            running = sum(1 for s in statuses if s.startswith((RUNNING, STARTING)))
            stopped = len(statuses) - finished - running  # failed, interrupted: without a result
            # a sweeper that cannot say its size up front, or one that runs more than it said: what is there
            total = max(self.total, len(statuses)) if self.total is not None else "?"
            queued = max(self.total - len(statuses), 0) if self.total is not None else "?"
            lines.append(f"[sweep] {finished}/{total} finished, " + (f"{stopped} failed or interrupted, "
                         if stopped else "") + f"{running} running, {queued} queued")
            print("\n".join(lines), file=self.stream, flush=True)
            if finished + stopped > self.ended:  # a job ended: parallel launchers end jobs in their workers,
                self.ended = finished + stopped  # where on_job_end cannot see the sweep, so the launcher writes
                try:
                    write_sweep_csv(self.sweep_dir)
                except OSError as e:  # the final write reports it; the live lines go on
                    print(f"[sweep] could not rewrite {SWEEP_CSV} ({e})", file=self.stream, flush=True)
        return lines


class SweepCallback(Callback):
    """Hydra callback: one launcher per sweep, live per-job status, ``sweep.csv`` after every job and at the
    end however the sweep ends (all done, a failed job, Ctrl-C), and exit code 1 when a job failed."""

    def __init__(self, poll_s: float = POLL_S, live: bool = True):
        self.poll_s, self.live = poll_s, live
        self.monitor: Optional[SweepMonitor] = None
        self.lock: Optional[RunLock] = None
        self.sweep_dir: Optional[Path] = None
        self.launch_id: Optional[str] = None
        self.default_dir_under: Optional[str] = None  # the launch folder, when the sweep folder is Hydra's default
        # the sweep's multirun.yaml before this launch (None: there was none): Hydra rewrites it before composing
        # the first job, so a launch refused there (mixer=shift,atn) would leave its grid as the sweep's plan
        self.previous_plan: Optional[bytes] = None
        self.kept_plan: Optional[Path] = None  # the copy of it this launch kept (PLANS_DIR), if it wrote one
        self.one_seed = False  # the launch's grid sets no seed: one per arm, where a verdict needs two or more
        self.expected: Optional[int] = None  # the jobs this launch runs (None: its sweeper does not say)

    def __getstate__(self) -> Dict[str, Any]:
        # parallel launchers (joblib, submitit) pickle Hydra's callbacks into each job: the monitor thread and
        # the sweep lock belong to the launching process only
        return {**self.__dict__, "monitor": None, "lock": None, "sweep_dir": None, "previous_plan": None,
                "kept_plan": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        task, params = as_written(config.hydra.overrides.task), as_written(config.hydra.sweeper.get("params"))
        problem = location_sweep_error(task, params)
        if not problem and config.hydra.sweeper.get("_target_") == BASIC_SWEEPER:
            jobs = planned_jobs(task, params)
            problem = refused_job_error(config, jobs)
            self.one_seed = bool(jobs) and not any(o.split("=", 1)[0] == SEED_KEY for job in jobs for o in job)
        if problem:
            print(f"error: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            self.lock = RunLock(sweep_dir, "launching this sweep", "wait for it to end, or stop it and launch "
                                "again (its jobs resume where they stopped)", name=SWEEP_LOCK_FILE).acquire()
        except (RecordError, OSError) as e:
            message = e if isinstance(e, RecordError) else f"cannot write to {sweep_dir} ({e.strerror or e}): " \
                "choose a writable hydra.sweep.dir"
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        try:
            self.previous_plan = (sweep_dir / MULTIRUN_FILE).read_bytes()
        except OSError:
            self.previous_plan = None
        if self.previous_plan is not None:  # Hydra is about to rewrite it: the earlier launch's unrun jobs stay known
            self.kept_plan = keep_plan(sweep_dir, self.previous_plan)
        overridden = any(o.startswith("hydra.sweep.dir=") for o in as_written(config.hydra.overrides.hydra))
        self.default_dir_under = None if overridden else config.hydra.runtime.cwd
        if self.previous_plan is None and not overridden:  # a new folder: more seeds of a sweep that exists?
            for other, seeds in same_grid_sweeps(sweep_dir, task):
                print(f"[sweep] {other} holds a sweep of this grid (seed={seeds}): this launch starts a new folder "
                      f"for seed={planned_seeds(task, params)} and trains every job of it; to continue that sweep "
                      f"instead (its finished jobs not trained again), stop this one (Ctrl-C) and add "
                      f"{sweep_dir_override(other)} to the command", flush=True)
        # unique across launchers of one sweep over time and across machines sharing the file system
        self.sweep_dir, self.launch_id = sweep_dir, f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex}"
        atexit.register(self._finish)  # Ctrl-C or a crash of the launcher still leaves sweep.csv
        if config.hydra.sweeper.get("_target_") == BASIC_SWEEPER:  # Hydra reads both after this callback returns
            params, task = seeds_slowest(params, task)
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.sweeper.params = params
                config.hydra.overrides.task = task
        total = self.expected = expected_jobs(task, params)
        if self.live:
            self.monitor = SweepMonitor(sweep_dir, total, self.poll_s, launch_id=self.launch_id)
            self.monitor.start()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # runs where the job runs (a joblib worker, a submitit node), after Hydra made its folder; the id came
        # with the pickled callback
        if self.launch_id is not None:
            try:
                atomic_write_bytes(Path(config.hydra.runtime.output_dir) / LAUNCH_ID_FILE, self.launch_id.encode())
            except OSError:  # the job says why when it cannot write its record; it goes uncounted, not crashed
                pass

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.sweep_dir is not None:  # the launching process (basic launcher): keep sweep.csv current
            write_sweep_csv(self.sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = self._finish()
        if failed:
            raise SystemExit(1)

    def _finish(self) -> List[str]:
        """Write sweep.csv, say how the jobs ended, release the lock; returns the failed jobs' names."""
        if self.sweep_dir is None:
            return []
        sweep_dir, self.sweep_dir = self.sweep_dir, None
        atexit.unregister(self._finish)
        if self.monitor is not None:
            self.monitor.stop()
        failed: List[str] = []
        empty = False
        try:
            self._keep_plan_unless_a_job_started(sweep_dir)
            empty = sweep_dir.is_dir() and not job_dirs(sweep_dir) and _holds_only_launch_files(sweep_dir)
            if sweep_dir.is_dir() and not empty:
                rows = sweep_rows(sweep_dir)
                path = write_sweep_csv(sweep_dir, rows)
                counts = Counter(row["status"] for row in rows)
                tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no jobs"
                print(f"[sweep] wrote {path} ({tally})", flush=True)
                # this launch's jobs: a job an earlier launch refused (a typo's folder) is not this launch's failure
                launched = [row for row in rows if launched_by(sweep_dir / row["job"], self.launch_id)]
                if self.one_seed and _needs_seeds(rows, launched, self.expected):  # the seed names the sweep: more
                    # seeds name this folder
                    print(f"[sweep] {ONE_SEED_HINT.format(sweep_dir_override=sweep_dir_override(sweep_dir))}",
                          flush=True)
                print(f"[sweep] {REPORT_HINT} {shlex.quote(str(sweep_dir))}", flush=True)  # the next command, last
                failed = [row["job"] for row in launched if row["status"] == FAILED or row["launch_error"]]
                if failed:
                    print(f"[sweep] {len(failed)} of the {len(launched)} jobs of this launch failed: "
                          f"{', '.join(failed)} (their errors: the 'error' and 'launch_error' columns of {path.name})",
                          file=sys.stderr, flush=True)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
        if empty:  # no job ever started (a typo Hydra refused before the first): no folder named after the typo
            shutil.rmtree(sweep_dir, ignore_errors=True)
            if self.default_dir_under is not None:  # multirun/ too, where the launch made it and nothing else is in it
                try:
                    remove_empty_parents(sweep_dir, self.default_dir_under)
                except OSError:
                    pass
        return failed

    def _keep_plan_unless_a_job_started(self, sweep_dir: Path) -> None:
        """A launch that started no job (Hydra refused its grid) leaves the sweep's plan as it was: the report
        counts the plan's jobs that never ran, and a refused typo's jobs were never the sweep's."""
        if any(launched_by(job, self.launch_id) for job in job_dirs(sweep_dir)):
            return
        plan = sweep_dir / MULTIRUN_FILE
        try:
            if self.kept_plan is not None:  # the plan stays multirun.yaml: its copy would be this launch's only trace
                self.kept_plan.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.kept_plan.parent.rmdir()  # only when empty
            if self.previous_plan is not None:
                atomic_write_bytes(plan, self.previous_plan)
            elif plan.exists() and job_dirs(sweep_dir):  # a folder of jobs from before multirun.yaml was kept
                plan.unlink()
        except OSError:  # the plan stays the refused launch's; the report may then name its jobs as not run
            pass


def _needs_seeds(rows: List[Dict[str, Any]], launched: List[Dict[str, Any]], expected: Optional[int]) -> bool:
    """Whether to say that one seed per arm gives no verdict: only once this launch's jobs all finished (after an
    interruption, the next step is the same command again, which resumes), and only while the sweep's folder holds
    one seed (seeds added earlier, then the first command run again, need nothing added)."""
    if any(row["status"] not in FINISHED_STATUSES for row in launched) or \
            (expected is not None and len(launched) < expected):
        return False
    return len({row.get("seed") for row in rows if row["status"] in FINISHED_STATUSES}) <= 1


def _holds_only_launch_files(sweep_dir: Path) -> bool:
    """Whether a sweep folder holds only what a launch writes before its first job starts."""
    return all(p.name in (MULTIRUN_FILE, SWEEP_LOCK_FILE, SWEEP_CSV) and p.is_file() for p in sweep_dir.iterdir())
