"""Run records -> tidy pandas DataFrames (one row per run; one row per run x epoch x metric).

Reads only what the runs wrote (``config.yaml``, ``summary.json``, ``metrics.jsonl``), never training state.
Every run gets its ``arm`` (see ``arms``): the configuration it ran, seed excluded. Runs that finished
(``USED_STATUSES``) enter means and tests; diverged, failed and interrupted runs (``FAILED_STATUSES``) are
loaded too, so that each arm can say how many of its seeds failed, and runs still training (``RUNNING``), so that
it can say how many it is still waiting for. Anything else (corrupt records, duplicates) is skipped with a warning
naming the directory and why.
"""
from __future__ import annotations

import glob
import json
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import pandas as pd
import yaml

from shiftvit.config import MATCH_NONE, NOT_IDENTITY_KEYS, config_hash, split_data_location
from shiftvit.multirun import (
    LAUNCH_ERROR_FILE,
    MULTIRUN_FILE,
    arm_key,
    job_dirs,
    job_overrides,
    launch_error,
    unstarted_jobs,
)
from shiftvit.records import (
    CONFIG_FILE,
    CUT_OFF_STATUSES,
    DATA_FINGERPRINT_KEY,
    DUPLICATE,
    DUPLICATE_OF,
    DUPLICATE_OF_KEY,
    FAILED_STATUSES,
    INTERRUPTED,
    METRICS_FILE,
    OUTCOME_KEYS,
    RESULT_KEYS,
    RUNNING,
    SUMMARY_FILE,
    UNREADABLE,
    UNRECORDED_DATA,
    USED_STATUSES,
    WANDB_DIR,
    RecordError,
    duplicate_owner,
    parse_metrics,
    read_summary,
    run_status,
    trained_code,
    trained_machines,
    trained_settings,
)
from shiftvit.tracking import RECORD_CONFIG_KEY, unflatten

from .arms import COLUMN_NAMES, MIXER_ORDER, assign_arms, flatten_config

PathLike = Union[str, Path]
# the statuses that are loaded: results (USED_STATUSES), findings about an arm (FAILED_STATUSES) and its seeds still
# training (RUNNING: a report read while the sweep runs compares the seeds that finished, and says so), from records.py
LOADED_STATUSES = (*USED_STATUSES, *FAILED_STATUSES, RUNNING)
WANDB_RUNNING_STATE = "running"  # wandb's ``Run.state`` of a run whose process still reports
# summary.json's columns in a run's row (its identity comes from config.yaml): the schema of records.py
RECORD_FILES = (SUMMARY_FILE, CONFIG_FILE, LAUNCH_ERROR_FILE)  # any of them makes a folder a run to load or skip
SUMMARY_COLUMNS = ("status", *RESULT_KEYS, "config_hash", "git_commit", "git_dirty", DATA_FINGERPRINT_KEY,
                   *OUTCOME_KEYS)
# the code every attempt that trained the run ran (records.trained_code), and the machines (records.trained_machines),
# each joined: two or more when it was resumed under other code, or on another machine
CODE_COLUMN, MACHINE_COLUMN, ATTEMPTS_SEPARATOR = "code", "machine", " + "
UNREADABLE_REASON = "unreadable_reason"  # why an ``unreadable`` record's summary could not be read (else absent)
METRICS = ("val_top1", "val_top5", "best_val_top1", "ema_val_top1")


class SkippedRun(UserWarning):
    """A run directory that the analysis could not use (named in the message)."""


class RepeatedSeed(UserWarning):
    """An arm that finished one seed more than once (two sweeps of one configuration): one replicate, averaged."""


def repeated_seeds(df: pd.DataFrame) -> List[Tuple[str, Any, List[str]]]:
    """(arm, seed, run directories) for every seed an arm finished more than once. Reruns of one configuration
    and seed are one replicate, not independent ones: the statistics average them (``stats.finished_values``)."""
    used = df[df["used"]]
    return [(arm, seed, list(group["run_dir"])) for (arm, seed), group in used.groupby(["arm", "seed"], sort=False)
            if len(group) > 1]


def find_run_dirs(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    """Every directory holding a run record under the given paths or glob patterns. Directories below a
    given root whose path has a part starting with '.' (``.archive`` of old records, ``.hydra``) or named
    ``wandb`` are not runs and are never searched."""
    found = set()
    for base in _matched(paths):
        if any((base / name).exists() for name in RECORD_FILES):
            found.add(base.resolve())
        if base.is_dir():
            for name in (SUMMARY_FILE, LAUNCH_ERROR_FILE):  # a job refused at launch: skipped, and said
                for path in base.rglob(name):
                    below = path.parent.relative_to(base).parts
                    if not any(part.startswith(".") or part == WANDB_DIR for part in below):
                        found.add(path.parent.resolve())
    return sorted(found)


def _matched(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    """The given paths, each glob pattern expanded (a pattern that matches nothing stays as given)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [Path(p) for pattern in paths for p in (glob.glob(str(pattern)) or [pattern])]


def not_run(paths: Union[PathLike, Iterable[PathLike]], runs: pd.DataFrame) -> Tuple[Dict[str, int], List[str]]:
    """The jobs that a sweep's launches planned (``multirun.saved_plans``) and that hold no record: queued, or
    never started because the sweep was cut off. Counted per arm where another seed of the arm has a run
    (the same overrides but for the seed), else named by their overrides: ({arm: count}, [overrides])."""
    runs_by_sweep: Dict[Path, List[Tuple[str, str]]] = {base.resolve(): [] for base in _matched(paths)}
    for run_dir, arm in zip(runs.get("run_dir", []), runs.get("arm", [])):
        runs_by_sweep.setdefault(Path(run_dir).parent.resolve(), []).append((run_dir, arm))
    by_arm: Dict[str, int] = {}
    without_arm: List[str] = []
    for sweep, sweep_runs in sorted(runs_by_sweep.items()):
        unstarted = unstarted_jobs(sweep) if (sweep / MULTIRUN_FILE).is_file() else []
        if not unstarted:
            continue
        arms = {arm_key(job_overrides(Path(run_dir)), NOT_IDENTITY_KEYS): arm for run_dir, arm in sweep_runs}
        duplicated = _duplicated_arms(sweep, arms, {Path(run_dir).resolve(): arm for run_dir, arm in sweep_runs})
        for _, overrides in unstarted:
            key = arm_key(overrides, NOT_IDENTITY_KEYS)
            if key in duplicated:  # its config is another job's (gamma with mixer=attn): it will train nothing
                continue
            arm = arms.get(key)
            if arm is None:
                without_arm.append(" ".join(overrides))
            else:
                by_arm[arm] = by_arm.get(arm, 0) + 1
    return by_arm, without_arm


def _duplicated_arms(sweep: Path, arms: Dict[frozenset, str], arm_of_run: Dict[Path, str]) -> Dict[frozenset, str]:
    """The overrides (but the seed) that ask for another arm's config, by the sweep's recorded duplicates: where
    one seed of ``mixer=attn gamma=1/6`` found itself the same run as ``mixer=attn gamma=1/12``'s, every seed of
    it is, since the seed changes no other key. -> {overrides: the arm they duplicate}."""
    duplicated: Dict[frozenset, str] = {}
    for job in job_dirs(sweep):
        try:
            summary = read_summary(job)
        except RecordError:
            continue
        if not isinstance(summary, dict) or summary.get("status") != DUPLICATE:
            continue
        owner = arm_of_run.get(duplicate_owner(job, summary))
        key = arm_key(job_overrides(job), NOT_IDENTITY_KEYS)
        if owner is not None and key not in arms:
            duplicated[key] = owner
    return duplicated


def _gamma_float(value: Any) -> Optional[float]:
    return None if value in (None, "") else float(Fraction(str(value)))


def _read_record(run_dir: Path) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[str]]:
    """(summary, config, None) or (None, None, why); (None, config, why) where only the summary is damaged."""
    summary, damaged = None, None
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except FileNotFoundError:
        refused = launch_error(run_dir)
        return None, None, f"refused at launch: {refused}" if refused else f"no {SUMMARY_FILE}"
    except (OSError, ValueError) as e:
        damaged = f"corrupt {SUMMARY_FILE} ({e})"
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        return None, None, damaged or f"no {CONFIG_FILE}"
    except (OSError, yaml.YAMLError) as e:
        return None, None, damaged or f"corrupt {CONFIG_FILE} ({e})"
    if not isinstance(config, dict) or not (damaged or isinstance(summary, dict)):
        return None, None, damaged or f"{SUMMARY_FILE} or {CONFIG_FILE} is not a mapping"
    return summary, config, damaged


def run_row(run_dir: Path) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[str]]:
    """One run as (flat row, flat effective config, None), or (None, None, why) when it cannot be used. A record
    whose summary.json is damaged but whose config.yaml says what it ran is a row of its arm, ``unreadable``:
    a seed without a result, counted (``stats.summarize``'s failures), not a seed that was never asked for."""
    summary, config, why = _read_record(run_dir)
    if config is not None and summary is None:
        row, flat, _ = record_row(config, {}, UNREADABLE, where=str(run_dir), sweep=run_dir.parent.name,
                                  job=run_dir.name)
        if row is not None:
            row[UNREADABLE_REASON] = why
        return row, flat, None if row is not None else why
    if why:
        return None, None, why
    return record_row(config, summary, run_status(run_dir, summary), where=str(run_dir),
                      sweep=summary.get("sweep_name") or run_dir.parent.name, job=run_dir.name)


def record_row(config: Dict[str, Any], summary: Dict[str, Any], status: str, where: str, sweep: Optional[str],
               job: Optional[str]) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[str]]:
    """A run's effective config (nested, as ``config.yaml`` holds it) and summary as (flat row, flat config, None),
    or (None, None, why) when it cannot be used: the one row schema of the run table, from records on disk
    (``run_row``) and from wandb (``wandb_row``) alike. ``where``: the record's folder or the wandb run's URL."""
    if status == DUPLICATE:
        return None, None, f"{DUPLICATE_OF} {summary.get(DUPLICATE_OF_KEY)} (the same run twice)"
    if status not in LOADED_STATUSES:
        return None, None, f"status {status!r} (cut off before it recorded a result)"
    try:
        model, _mixer, train, data = config["model"], config["mixer"], config["train"], config["data"]
        depths = list(config["depths"])
    except (KeyError, TypeError) as e:
        return None, None, f"{CONFIG_FILE} lacks {e}"
    which_data, data_location = split_data_location(data)
    flat = flatten_config(config)
    row: Dict[str, Any] = {
        "run_dir": where, "sweep": sweep, "job": job,
        # the keys the analysis names by a short column (mixer, model, lr ...), under those names
        **{short: flat.get(key) for key, short in COLUMN_NAMES.items()},
        "gamma": config.get("gamma"), "gamma_float": _gamma_float(config.get("gamma")),
        "tau": config.get("tau"), "depths": ",".join(map(str, depths)), "total_depth": sum(depths),
        "match": config.get("match"), "reference": config.get("reference"), "tolerance": config.get("tolerance"),
        "seed": config.get("seed"), "img_size": model.get("img_size"),
        "eval_every": _eval_every(summary, train.get("eval_every")),
        # which data (the testbed: every run on it shares one), and where this run read it (to build it again)
        "data_config": json.dumps(which_data, sort_keys=True, default=str),
        "data_location": json.dumps(data_location, sort_keys=True, default=str),
        "budget_target": _budget_target(config),
    }
    row.update({k: summary.get(k) for k in SUMMARY_COLUMNS})
    row[CODE_COLUMN] = ATTEMPTS_SEPARATOR.join(trained_code(summary))
    row[MACHINE_COLUMN] = ATTEMPTS_SEPARATOR.join(trained_machines(summary))
    # the identity as this code hashes configs: a hash stored by older code may name the same config otherwise
    row["config_hash"] = config_hash(config)
    row["status"] = status
    row.update({k: v for k, v in summary.items() if k.startswith(("macs_", "params_"))})
    return row, flat, None


def wandb_row(config: Dict[str, Any], summary: Dict[str, Any], state: str, url: str, group: Optional[str],
              name: Optional[str]) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[str]]:
    """A wandb run as ``record_row`` makes a record's row: its logged config (the effective config, which
    ``Tracker`` logs whole under ``RECORD_CONFIG_KEY`` beside the flat keys), its summary (the record's, which the
    run writes at its end) and its state. wandb's running state comes first; a run with no status in its summary
    was cut off before it wrote its end: interrupted, as a record whose process is gone."""
    logged = config.get(RECORD_CONFIG_KEY)
    if isinstance(logged, dict):  # the run's config as the record holds it
        logged = {k: v for k, v in logged.items() if k != "config_hash"}
    else:  # logged before the nested copy: the flat keys, less a sweep agent's own ("mixer" beside "mixer.name")
        logged = unflatten({k: v for k, v in config.items() if not k.startswith("_") and k != "config_hash"
                            and not any(other.startswith(f"{k}.") for other in config)})
    # the tracker logs the record's summary flattened ("machine.cpu"): nested again, as the record holds it
    summary = unflatten({k: v for k, v in summary.items() if not k.startswith("_")})
    # wandb's state first: a resumed online run is running, whatever its earlier attempt left in the summary
    status = RUNNING if state == WANDB_RUNNING_STATE else summary.get("status") or INTERRUPTED
    return record_row(logged, summary, status, where=url, sweep=summary.get("sweep_name") or group, job=name)


def _eval_every(summary: Dict[str, Any], recorded: Any) -> Any:
    """Every how many epochs the run evaluated: config.yaml's value, or each attempt's joined (``3 + 1``) where a
    resume changed it (config.yaml holds the last attempt's only): its best epoch is of the epochs it evaluated."""
    values = trained_settings(summary, "train.eval_every")
    return ATTEMPTS_SEPARATOR.join(map(str, values)) if len(values) > 1 else recorded


def _budget_target(config: Dict[str, Any]) -> Optional[str]:
    """What a matched run's budget was solved to (the reference, built as ``reference_arch`` says, at the run's
    input size), or None for ``match=none``. Runs with the same target were each held within their tolerance of
    one number by the solver, so they are budget-matched to each other even when they differ by up to twice it."""
    if config.get("match") in (None, MATCH_NONE):
        return None
    return json.dumps({"match": config.get("match"), "reference": config.get("reference"),
                       "reference_arch": config.get("reference_arch"),
                       "img_size": (config.get("model") or {}).get("img_size")}, sort_keys=True, default=str)


_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:e-?\d+)?)")


def _natural(label: str) -> tuple:
    """An arm label's sort key with its numbers as numbers: ``epochs=3`` before ``epochs=20``."""
    parts = _NUMBER.split(str(label))
    return tuple(float(part) if i % 2 else part for i, part in enumerate(parts))


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    rank = df["mixer"].map(lambda m: MIXER_ORDER.index(m) if m in MIXER_ORDER else len(MIXER_ORDER))
    return (df.assign(_rank=rank, _arm=df["arm"].map(_natural))
            .sort_values(["_rank", "mixer", "gamma_float", "tau", "_arm", "seed"], na_position="first", kind="stable")
            .drop(columns=["_rank", "_arm"]).reset_index(drop=True))


def load_runs(paths: Union[PathLike, Iterable[PathLike]], include: Tuple[str, ...] = LOADED_STATUSES,
              warn: bool = True, testbeds: bool = True) -> pd.DataFrame:
    """One row per run under ``paths`` (run or sweep directories, or globs) whose status is in ``include``.

    Columns: the run's config and summary, ``arm`` and the columns that define it (``df.attrs['arm_columns']``),
    ``used`` (its accuracy enters means and tests) and, where the validation set's size is known
    (``testbeds``, see ``headroom.testbeds_of``), ``val_images`` and the binomial standard error of each
    accuracy (``<metric>_se``, in points). Skipped directories: ``SkippedRun`` warnings and
    ``df.attrs['skipped']`` [(run_dir, why)]."""
    return _run_table(((str(run_dir), *run_row(run_dir)) for run_dir in find_run_dirs(paths)), include, warn,
                      testbeds)


def _run_table(sources: Iterable[Tuple[str, Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[str]]],
               include: Tuple[str, ...], warn: bool, testbeds: bool) -> pd.DataFrame:
    """The run table from (where, row, flat config, why) per run, whichever store the runs came from."""
    rows, configs, skipped, duplicates = [], [], [], []
    for where, row, config, why in sources:
        if row is not None and row["status"] not in include:
            row, why = None, f"status {row['status']!r}"
        if row is None:
            skipped.append((where, why))
            if why.startswith(DUPLICATE_OF):  # expected where seeds were added to a sweep: one warning for them all
                duplicates.append((where, why))
            elif warn:
                warnings.warn(f"skipped {where}: {why}", SkippedRun, stacklevel=3)
            continue
        rows.append(row)
        configs.append(config)
    if duplicates and warn:
        where, why = duplicates[0]
        warnings.warn(f"skipped {where}: {why}" if len(duplicates) == 1 else
                      f"skipped {len(duplicates)} duplicate records, each the same config and seed as another record "
                      f"(df.attrs['skipped'] names them), e.g. {where}: {why}", SkippedRun, stacklevel=3)
    rows, configs = _drop_superseded(rows, configs, skipped, warn)
    _apart_by_data(rows, configs)
    arm_columns = assign_arms(rows, configs) if rows else []
    df = pd.DataFrame(rows)
    if not df.empty:
        df["used"] = df["status"].isin(USED_STATUSES)
        if testbeds:
            _attach_standard_errors(df)
        df = _sort(df)
        df.attrs["repeated_seeds"] = repeated_seeds(df)
        for arm, seed, run_dirs in df.attrs["repeated_seeds"] if warn else ():
            warnings.warn(f"{arm}: seed {seed} finished {len(run_dirs)} times ({', '.join(run_dirs)}); one "
                          "replicate, its values averaged", RepeatedSeed, stacklevel=3)
    df.attrs["skipped"] = skipped
    df.attrs["arm_columns"] = arm_columns
    return df


def _apart_by_data(rows: List[Dict[str, Any]], configs: List[Dict[str, Any]]) -> None:
    """Where the runs of one data config (``data_config``: which data, as the config names it) read different data
    by their fingerprints (two image folders under one name, files replaced), each run's fingerprint joins its data
    config and its config: such runs share no testbed, no comparison and no arm. A run among them recorded before
    fingerprints were kept: ``UNRECORDED_DATA``."""
    read: Dict[str, set] = {}
    for row in rows:
        if row.get(DATA_FINGERPRINT_KEY):
            read.setdefault(row["data_config"], set()).add(row[DATA_FINGERPRINT_KEY])
    for row, config in zip(rows, configs):
        if len(read.get(row["data_config"], ())) > 1:
            fingerprint = row.get(DATA_FINGERPRINT_KEY) or UNRECORDED_DATA
            row["data_config"] = json.dumps({**json.loads(row["data_config"]), DATA_FINGERPRINT_KEY: fingerprint},
                                            sort_keys=True, default=str)
            config[DATA_FINGERPRINT_KEY] = fingerprint


def _drop_superseded(rows: List[Dict[str, Any]], configs: List[Dict[str, Any]], skipped: List[Tuple[str, str]],
                     warn: bool) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Leave out a failed, interrupted or unreadable attempt at a run whose config and seed (its config hash) another
    record finished on the same data (its fingerprint, where the attempt got to read it: the hash leaves out where the
    data lies, and two folders under one config are two data sets): the same run tried again, not a second seed that
    failed. A diverged run is a finding, and stays."""
    attempts = CUT_OFF_STATUSES
    finished: Dict[Tuple[str, Any], Dict[str, Any]] = {}
    for row in rows:
        if row.get("config_hash") and row["status"] not in (*attempts, RUNNING):
            finished.setdefault((row["config_hash"], row.get(DATA_FINGERPRINT_KEY)), row)

    def finished_by(row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if row["status"] not in attempts or not row.get("config_hash"):
            return None
        if row.get(DATA_FINGERPRINT_KEY) is not None:  # on the same data, or by a record from before fingerprints
            return finished.get((row["config_hash"], row[DATA_FINGERPRINT_KEY])) or \
                finished.get((row["config_hash"], None))
        # stopped before it read its data (or recorded before fingerprints were kept): it trained on none
        return next((by for (digest, _), by in finished.items() if digest == row["config_hash"]), None)

    kept_rows, kept_configs = [], []
    for row, config in zip(rows, configs):
        by = finished_by(row)
        if by is None:
            kept_rows.append(row)
            kept_configs.append(config)
            continue
        why = f"{row['status']} attempt superseded by {by['run_dir']} (the same config and seed, {by['status']})"
        skipped.append((row["run_dir"], why))
        if warn:
            warnings.warn(f"skipped {row['run_dir']}: {why}", SkippedRun, stacklevel=4)
    return kept_rows, kept_configs


def _attach_standard_errors(df: pd.DataFrame) -> None:
    from statsmodels.stats.proportion import std_prop

    from .headroom import testbeds_of

    sizes = {key: bed.val_images for key, bed in testbeds_of(df, baselines=False).items()}
    df["val_images"] = df["data_config"].map(sizes).astype("Float64")
    for metric in METRICS:
        if metric in df:
            share = pd.to_numeric(df[metric], errors="coerce") / 100
            df[f"{metric}_se"] = (100 * std_prop(share, df["val_images"].astype(float))).astype(float)


def read_curve_rows(run_dir: Path, epochs_done: Optional[int] = None) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """The readable rows of a run's ``metrics.jsonl`` and, when the file is not whole, what is wrong with it
    (unreadable, truncated last line, corrupt lines, fewer epochs than the summary says were done)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], f"no {METRICS_FILE}" if epochs_done else None
    except (OSError, UnicodeDecodeError) as e:
        return [], f"unreadable {METRICS_FILE} ({e})"
    rows, bad, lines = parse_metrics(text)
    if bad == [lines]:
        return rows, f"truncated {METRICS_FILE} (last line cut off; kept {len(rows)} epochs)"
    if bad:
        return rows, f"corrupt {METRICS_FILE} (unreadable lines {', '.join(map(str, bad))}; kept {len(rows)})"
    if epochs_done and len(rows) < epochs_done:
        return rows, f"truncated {METRICS_FILE} ({len(rows)} of {epochs_done} epochs)"
    return rows, None


def load_curves(paths: Union[PathLike, Iterable[PathLike]], warn: bool = True,
                runs: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Per-epoch metrics, long format: run columns + ``epoch``, ``metric``, ``value``. Runs whose curves are
    unreadable or truncated keep their readable rows and are named in ``df.attrs['curve_problems']``."""
    runs = load_runs(paths, warn=warn) if runs is None else runs
    keys = ["run_dir", "arm", "mixer", "gamma", "tau", "depths", "seed", "model", "norm", "act", "status"]
    frames, problems = [], []
    for _, run in runs.iterrows():
        epochs_done = run.get("epochs_done")
        rows, problem = read_curve_rows(Path(run["run_dir"]), None if pd.isna(epochs_done) else int(epochs_done))
        if problem and run.get("status") != RUNNING:  # a run still training may be writing its last line now
            problems.append((run["run_dir"], problem))
            if warn:
                warnings.warn(f"curves of {run['run_dir']}: {problem}", SkippedRun, stacklevel=2)
        if not rows:
            continue
        long = pd.DataFrame(rows).melt(id_vars=["epoch"], var_name="metric", value_name="value")
        long["value"] = pd.to_numeric(long["value"], errors="coerce")  # null (a NaN loss) stays missing
        for k in keys:
            long[k] = run.get(k)
        frames.append(long)
    df = (pd.concat(frames, ignore_index=True) if frames
          else pd.DataFrame(columns=[*keys, "epoch", "metric", "value"]))
    df.attrs["curve_problems"] = problems
    return df


def load_wandb(project: str, entity: Optional[str] = None, filters: Optional[Dict[str, Any]] = None,
               include: Tuple[str, ...] = LOADED_STATUSES, warn: bool = True, testbeds: bool = True) -> pd.DataFrame:
    """The run table of ``load_runs``, with the same columns, from a wandb project (online; needs an API key): each
    run's row is built from its logged effective config and summary by ``wandb_row``; ``run_dir`` is its URL."""
    import wandb

    runs = wandb.Api().runs(f"{entity}/{project}" if entity else project, filters=filters or {})
    return _run_table(((run.url, *wandb_row(dict(run.config), dict(run.summary.items()), run.state, run.url,
                                            run.group, run.name)) for run in runs), include, warn, testbeds)
