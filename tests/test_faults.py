"""Fault injection: kills at every write point, a full disk, damaged files, reused and reordered directories,
concurrent launches and another user reading the records. Each case ends by comparing the final records
with those of an uninterrupted run.

Kills happen in real processes: each run is a fork of this test process (so torch is imported once), which
``SHIFTVIT_FAULT`` makes SIGKILL itself at the named write point (see ``shiftvit.records.fault_point``).
"""
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import AS_NOBODY, ROOT, cli_env, nobody_cannot_run_checkout, popen_cli, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from shiftvit.app import run_experiment
from shiftvit.config import ConfigError, config_hash, resolve
from shiftvit.data import build_data
from shiftvit.multirun import REPORT_HINT, SWEEP_CSV, job_dirs, sweep_rows
from shiftvit.records import (
    ARCHIVE_DIR,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FAULT_ENV,
    LOCK_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    SUMMARY_FILE,
    RecordError,
    RunLock,
    read_metrics,
    read_predictions,
    read_summary,
    run_status,
)

CONF = ROOT / "conf"
def small(epochs: int = 3, num_train: int = 32) -> list:
    """A run of a second or two: 4 batches per epoch by default."""
    return ["logger=none", "model=shiftvit_nano", "data=synthetic", "data.img_size=32", "data.num_classes=4",
            f"data.num_train={num_train}",
            "data.num_val=16", "train.batch_size=8", f"train.epochs={epochs}", "train.warmup_epochs=1"]


SMALL = tuple(small())
TIMING = ("train_images_per_s", "eval_images_per_s", "epoch_s")


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def _child(cfg: dict, run_dir: str, fault: str, sweep_dir) -> None:
    os.environ.pop(FAULT_ENV, None)
    if fault:
        os.environ[FAULT_ENV] = fault
    os.umask(0o022)
    torch.set_num_threads(1)  # the same in every run, so that metrics compare bit for bit
    try:
        run_experiment(cfg, Path(run_dir), sweep_dir=Path(sweep_dir) if sweep_dir else None)
    except BaseException as e:  # noqa: BLE001 - the exit code carries it to the test
        print(f"child: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        os._exit(3)
    os._exit(0)


def run_forked(cfg: dict, run_dir: Path, fault: str = "", sweep_dir=None) -> int:
    process = multiprocessing.get_context("fork").Process(target=_child,
                                                          args=(cfg, str(run_dir), fault, sweep_dir))
    process.start()
    process.join(300)
    assert process.exitcode is not None, "the run did not end"
    return process.exitcode


def metrics_without_timing(run_dir: Path):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(run_dir)]


def temporaries(run_dir: Path):
    return sorted(p.name for p in Path(run_dir).glob(".*.tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every faulted run must end up equal to."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    cfg = composed(*SMALL)
    assert run_forked(cfg, run_dir) == 0
    return cfg, run_dir


def assert_same_records(run_dir: Path, reference_dir: Path):
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3], "every epoch's row exactly once"
    assert metrics_without_timing(run_dir) == metrics_without_timing(reference_dir)
    summary, expected = read_summary(run_dir), read_summary(reference_dir)
    assert summary["status"] == "completed" and run_status(run_dir) == "completed"
    for key in ("val_top1", "best_val_top1", "best_epoch", "ema_val_top1", "epochs_done", "config_hash"):
        assert summary[key] == expected[key], key
    predictions, expected_predictions = read_predictions(run_dir), read_predictions(reference_dir)
    assert predictions is not None and all(map(np.array_equal, predictions, expected_predictions))
    assert temporaries(run_dir) == []


# --- 3. kill -9 at every write point ----------------------------------------------------------------------------
# (stage, file, which write): the 2nd checkpoint/metrics write is epoch 2's; summary.json is written at the start
# (1), after each epoch (2-4) and at the end (5)
WRITE_POINTS = [
    ("before_rename", CONFIG_FILE, 1),
    ("before_rename", CHECKPOINT_FILE, 2),
    ("after_rename", CHECKPOINT_FILE, 2),
    ("before_rename", METRICS_FILE, 2),
    ("after_rename", METRICS_FILE, 2),
    ("before_rename", SUMMARY_FILE, 3),
    ("before_rename", SUMMARY_FILE, 5),
    ("after_rename", CHECKPOINT_FILE, 3),
    ("before_rename", PREDICTIONS_FILE, 1),  # the last epoch's evaluation: before its metrics row
    ("after_rename", PREDICTIONS_FILE, 1),
]


@pytest.mark.parametrize("stage,name,nth", WRITE_POINTS, ids=[f"{s}-{n}-{k}" for s, n, k in WRITE_POINTS])
def test_kill_at_write_point_then_rerun_equals_uninterrupted(reference, tmp_path, stage, name, nth):
    cfg, reference_dir = reference
    run_dir = tmp_path / "run"
    assert run_forked(cfg, run_dir, f"{stage}:{name}:{nth}") == -signal.SIGKILL
    if (run_dir / SUMMARY_FILE).exists():
        assert read_summary(run_dir)["status"] == "running"
        assert run_status(run_dir) == "interrupted", "a dead process's run must not read as running"
    assert run_forked(cfg, run_dir) == 0
    assert_same_records(run_dir, reference_dir)


def test_kill_between_claim_and_its_content_does_not_make_a_self_duplicate(reference, tmp_path):
    cfg, reference_dir = reference
    sweep_dir, run_dir = tmp_path / "sweep", tmp_path / "sweep" / "job"
    claim = config_hash(resolve(cfg))
    assert run_forked(cfg, run_dir, f"before_rename:{claim}:1", sweep_dir=sweep_dir) == -signal.SIGKILL
    assert run_forked(cfg, run_dir, sweep_dir=sweep_dir) == 0
    assert read_summary(run_dir).get("duplicate_of") is None
    assert_same_records(run_dir, reference_dir)
    # a second job of the same config in the sweep is the duplicate, pointing at the first
    other = tmp_path / "sweep" / "other"
    assert run_forked(cfg, other, sweep_dir=sweep_dir) == 0
    assert read_summary(other)["status"] == "duplicate"
    assert (other / read_summary(other)["duplicate_of"]).resolve() == run_dir.resolve()


@pytest.fixture(scope="module")
def killed(reference, tmp_path_factory):
    """A run killed after epoch 2's metrics row, before its checkpoint: copy it, then damage or resume it."""
    cfg, _ = reference
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    assert run_forked(cfg, run_dir, f"after_rename:{METRICS_FILE}:2") == -signal.SIGKILL
    return run_dir


def test_wall_time_sums_every_attempt(reference, killed, tmp_path):
    cfg, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    first_attempt = read_summary(run_dir)["wall_s"]
    first_epoch = read_metrics(run_dir)[0]["epoch_s"]
    assert first_attempt >= first_epoch, "the killed attempt's time up to its last epoch is recorded"
    assert run_forked(cfg, run_dir) == 0
    summary = read_summary(run_dir)
    retrained = sum(r["epoch_s"] for r in read_metrics(run_dir)[1:])  # epochs 2 and 3 ran in the 2nd attempt
    assert summary["wall_s"] >= first_attempt + retrained
    assert summary["attempts"] == 2


# --- 5. a full disk -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault,stays_running", [
    (f"before_rename:{CHECKPOINT_FILE}:2:enospc", False),  # the summary can still say 'failed'
    (f"before_rename:{SUMMARY_FILE}:3:enospc", True),      # nothing can be written any more
])
def test_full_disk_fails_with_one_line_and_rerun_recovers(reference, tmp_path, capfd, fault, stays_running):
    cfg, reference_dir = reference
    run_dir = tmp_path / "run"
    assert run_forked(cfg, run_dir, fault) == 3
    err = capfd.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("child: "))
    assert line.startswith("child: RecordError: cannot write ") and "No space left on device" in line
    assert "rerun the same command" in line
    recorded = read_summary(run_dir)["status"]
    assert recorded == ("running" if stays_running else "failed")
    assert run_status(run_dir) == ("interrupted" if stays_running else "failed")
    assert run_forked(cfg, run_dir) == 0
    assert_same_records(run_dir, reference_dir)


# --- 4. records readable by others --------------------------------------------------------------------------------
def test_records_have_the_umask_mode_and_another_user_can_analyse_them(reference):
    _, reference_dir = reference
    for name in (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, CHECKPOINT_FILE):
        assert (reference_dir / name).stat().st_mode & 0o777 == 0o644, name  # umask 022 in the run
    if os.geteuid() != 0:
        pytest.skip("reading as another uid needs root (the modes above were checked)")
    problem = nobody_cannot_run_checkout()
    if problem:
        pytest.skip(f"{problem} (the modes above were checked)")
    nobody = [*AS_NOBODY, sys.executable]
    shared = Path(tempfile.mkdtemp(prefix="shiftvit-shared-"))
    try:
        shared.chmod(0o755)
        shutil.copytree(reference_dir, shared / "run", copy_function=shutil.copy2)
        code = ("import sys, warnings; warnings.simplefilter('error'); from analysis.load import load_runs; "
                "df = load_runs(sys.argv[1]); print(len(df), list(df['status']))")
        proc = subprocess.run([*nobody, "-c", code, str(shared)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env=cli_env(PYTHONPATH=str(ROOT)))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "1 ['completed']"
    finally:
        shutil.rmtree(shared)


# --- 1. a run directory belongs to one config ---------------------------------------------------------------------
def test_reused_run_dir_with_another_config_is_refused_untouched(reference, tmp_path):
    cfg, reference_dir = reference
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != LOCK_FILE}
    for change, shown in (("train.lr=0.0001", "train.lr: 0.002 -> 0.0001"), ("seed=1", "seed: 0 -> 1")):
        with pytest.raises(ConfigError) as error:
            run_experiment(composed(*SMALL, change), run_dir)
        message = str(error.value)
        assert shown in message and "train.resume=fresh" in message and "hydra.run.dir" in message
        assert "\n" not in message
        after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != LOCK_FILE}
        assert after == before, "a refused run touches nothing"
    # the same config again: finished stays finished, nothing retrained
    assert run_experiment(cfg, run_dir) == read_summary(reference_dir)
    # fresh: the old record is archived (and never found by the loaders), the new one is the new config's
    new_cfg = composed(*SMALL, "train.lr=0.0001", "train.epochs=1", "train.resume=fresh")
    summary = run_experiment(new_cfg, run_dir)
    assert summary["status"] == "completed" and summary["config_hash"] == config_hash(resolve(new_cfg))
    assert yaml.safe_load((run_dir / CONFIG_FILE).read_text())["train"]["lr"] == 0.0001
    [archived] = list((run_dir / ARCHIVE_DIR).iterdir())
    assert (archived / SUMMARY_FILE).read_bytes() == before[SUMMARY_FILE]
    from analysis.load import find_run_dirs

    assert find_run_dirs(tmp_path) == [run_dir.resolve()]


def test_changed_default_in_a_relaunched_sweep_keeps_every_record(tmp_path):
    """A default edited in conf/config.yaml, the same -m command again: every job refuses, nothing lies, Hydra's
    .hydra/ files included."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *small(epochs=1), f"hydra.sweep.dir={sweep}", "--config-path", str(conf)]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    records = {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)}
    hydras = {path: path.read_bytes() for job in job_dirs(sweep) for path in (job / ".hydra").iterdir()}
    top = conf / "config.yaml"
    top.write_text(top.read_text() + "train:\n  lr: 1.0e-3\n")
    second = run_cli(args, cwd=tmp_path)
    assert second.returncode == 1
    assert second.stderr.count("holds a run of another config (train.lr: 0.002 -> 0.001)") == 2
    # the way out a sweep takes: -m ignores hydra.run.dir
    assert second.stderr.count("use another hydra.sweep.dir, or train.resume=fresh") == 2
    assert "hydra.run.dir" not in second.stderr and "Traceback" not in second.stderr
    assert {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)} == records
    # Hydra rewrote each job's .hydra/ for the refused launch before any check ran: the refusal gives them back,
    # so .hydra/config.yaml still says the lr its record trained with
    assert {path: path.read_bytes() for path in hydras} == hydras
    rows = sweep_rows(sweep)
    assert [r["status"] for r in rows] == ["completed", "completed"]  # what the records say, of their config
    assert all("another config" in r["launch_error"] for r in rows)
    assert (sweep / SWEEP_CSV).read_text().count("another config") == 2


# --- the data a record read: where it lies is no part of the run, what it holds is ---------------------------------
def cifar_run(root: Path, epochs: int = 3) -> list:
    return ["logger=none", "model=shiftvit_nano", "data=cifar10", f"data.root={root}", "train.batch_size=8",
            f"train.epochs={epochs}", "train.warmup_epochs=1"]


def test_data_moved_to_another_disk_resumes_its_record_and_other_data_is_refused(tmp_path, capfd):
    from shiftvit.bench.loader import write_cifar

    first, moved, other = tmp_path / "data", tmp_path / "scratch" / "cifar", tmp_path / "other"
    write_cifar(first, num_train=32, num_val=16)
    write_cifar(other, num_train=32, num_val=16, seed=1)  # the same files, other images
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    assert run_forked(composed(*cifar_run(first)), reference_dir) == 0
    assert run_forked(composed(*cifar_run(first)), run_dir, f"after_rename:{METRICS_FILE}:2") == -signal.SIGKILL
    kept = {name: (run_dir / name).read_bytes() for name in (METRICS_FILE, CHECKPOINT_FILE, SUMMARY_FILE)}
    # other data where the run's should be: refused before anything is written, in one line
    capfd.readouterr()
    assert run_forked(composed(*cifar_run(other)), run_dir) == 3
    line = next(line for line in capfd.readouterr().err.splitlines() if line.startswith("child: "))
    assert f"ConfigError: data.root='{other}' holds other data than {run_dir} was trained on from " \
        f"data.root='{first}'" in line
    assert "point it at the data that run read, or train.resume=fresh" in line
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept
    # other data in the run's own place (the files replaced): found when the data is read, before it trains
    shutil.rmtree(first)
    shutil.copytree(other, first)
    assert run_forked(composed(*cifar_run(first)), run_dir) == 3
    line = next(line for line in capfd.readouterr().err.splitlines() if line.startswith("child: "))
    assert f"ConfigError: data.root='{first}' holds other data than this record was trained on" in line
    assert "point it at the data the run started with to resume, or train.resume=fresh" in line
    assert {name: (run_dir / name).read_bytes() for name in (METRICS_FILE, CHECKPOINT_FILE)} == \
        {name: kept[name] for name in (METRICS_FILE, CHECKPOINT_FILE)}
    assert read_summary(run_dir)["status"] == "failed"  # that attempt, said; the record resumes from its checkpoint
    shutil.rmtree(first)
    write_cifar(first, num_train=32, num_val=16)  # the run's data back (write_cifar is seeded)
    # the same data on another disk: the same record resumed, with the numbers of the run that was never cut off
    shutil.move(first, moved)
    assert run_forked(composed(*cifar_run(moved)), run_dir) == 0
    assert_same_records(run_dir, reference_dir)
    fingerprint = read_summary(run_dir)["data_fingerprint"]
    assert fingerprint and fingerprint == read_summary(reference_dir)["data_fingerprint"]


def test_a_record_resumed_from_data_moved_elsewhere_reads_that_data_once(tmp_path, monkeypatch):
    """The check that the moved data is the record's reads it, and the training that follows takes what the check
    read: an image folder's walk over every file, at every requeue onto a new node's scratch, happened twice."""
    from shiftvit import data as data_module
    from shiftvit.bench.loader import write_cifar

    first, moved, run_dir = tmp_path / "data", tmp_path / "scratch", tmp_path / "run"
    write_cifar(first, num_train=32, num_val=16)
    assert run_forked(composed(*cifar_run(first)), run_dir, f"after_rename:{METRICS_FILE}:2") == -signal.SIGKILL
    shutil.move(first, moved)
    reads, read = [], data_module.BUILDERS["cifar10"]
    monkeypatch.setitem(data_module.BUILDERS, "cifar10", lambda **options: reads.append(options["root"]) or read(
        **options))
    summary = run_experiment(composed(*cifar_run(moved)), run_dir)
    assert (summary["status"], summary["epochs_done"], reads) == ("completed", 3, [str(moved)])


def test_a_digits_run_resumes_only_on_the_split_it_was_trained_on(tmp_path, capfd):
    """Digits has no files to name: its split is drawn by numpy and scikit-learn, which another install may draw
    otherwise. A record of another split is refused before anything is written, naming the versions as the way
    out; a record from before digits had a fingerprint resumes, and records the split it then trains on."""
    args = ["logger=none", "model=shiftvit_nano", "data.train_fraction=0.1", "train.batch_size=16", "train.epochs=2",
            "train.warmup_epochs=1"]
    run_dir = tmp_path / "run"
    assert run_forked(composed(*args), run_dir, f"after_rename:{CHECKPOINT_FILE}:1") == -signal.SIGKILL
    summary = read_summary(run_dir)
    split = summary["data_fingerprint"]
    assert split == build_data("digits", train_fraction=0.1).fingerprint and "scikit-learn" in summary["versions"]
    (run_dir / SUMMARY_FILE).write_text(json.dumps({**summary, "data_fingerprint": "0" * 16}))  # another split
    kept = {name: (run_dir / name).read_bytes() for name in (METRICS_FILE, CHECKPOINT_FILE)}
    capfd.readouterr()
    assert run_forked(composed(*args), run_dir) == 3
    line = next(line for line in capfd.readouterr().err.splitlines() if line.startswith("child: "))
    assert f"ConfigError: data=digits is split otherwise here than this record was trained on (data fingerprint " \
        f"{split}, the record's {'0' * 16}): numpy and scikit-learn draw that split" in line
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept
    (run_dir / SUMMARY_FILE).write_text(json.dumps({**read_summary(run_dir), "data_fingerprint": None}))  # older code
    assert run_forked(composed(*args), run_dir) == 0
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["data_fingerprint"] == split


def test_a_finished_record_or_a_duplicate_is_taken_from_another_place_only_on_the_same_data(tmp_path):
    """A record is returned as this run's, or made the owner of a duplicate, from data read elsewhere only when the
    data here is what it read; a record from before fingerprints that trained is not taken from another place."""
    from shiftvit.bench.loader import write_cifar

    first, copy, other = tmp_path / "data", tmp_path / "copy", tmp_path / "other"
    write_cifar(first, num_train=32, num_val=16)
    shutil.copytree(first, copy)
    write_cifar(other, num_train=32, num_val=16, seed=1)
    run_dir = tmp_path / "run"
    finished = run_experiment(composed(*cifar_run(first, epochs=1)), run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != LOCK_FILE}
    with pytest.raises(ConfigError) as error:
        run_experiment(composed(*cifar_run(other, epochs=1)), run_dir)
    assert str(error.value).startswith(f"data.root='{other}' holds other data than {run_dir} was trained on from "
                                       f"data.root='{first}'")
    assert run_experiment(composed(*cifar_run(copy, epochs=1)), run_dir) == finished  # nothing trained again
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != LOCK_FILE} == before

    sweep = tmp_path / "sweep"
    owner = sweep / "job-a"
    run_experiment(composed(*cifar_run(first, epochs=1)), owner, sweep_dir=sweep)
    with pytest.raises(ConfigError, match=f"holds other data than {owner} was trained on from data.root='{first}' "
                       r"\(.*\): point it at the data that run read, or launch this data set as a sweep of its own"):
        run_experiment(composed(*cifar_run(other, epochs=1)), sweep / "job-b", sweep_dir=sweep)
    assert run_experiment(composed(*cifar_run(copy, epochs=1)), sweep / "job-c", sweep_dir=sweep)["status"] == \
        "duplicate"

    (run_dir / SUMMARY_FILE).write_text(json.dumps({**finished, "data_fingerprint": None}))  # older code's record
    with pytest.raises(ConfigError, match=f"read its data from data.root='{first}' and recorded no data fingerprint"):
        run_experiment(composed(*cifar_run(copy, epochs=1)), run_dir)
    assert run_experiment(composed(*cifar_run(first, epochs=1)), run_dir)["status"] == "completed"  # its own place


def test_a_sweep_over_where_the_data_lies_is_refused_with_the_way_out(tmp_path):
    proc = run_cli(["-m", "data=cifar10", "data.root=/a,/b", "logger=none"], cwd=tmp_path)
    assert proc.returncode == 2
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert line.startswith("error: data.root=/a,/b sweeps where the data lies") and "hydra.sweep.dir=" in line
    assert not any((tmp_path / "multirun").glob("*"))  # no sweep folder named after the refused command


def test_a_sweep_relaunched_on_its_data_moved_elsewhere_is_the_same_sweep(tmp_path):
    """A cluster job that copies the data to its node's scratch names another data.root each time: the same sweep
    directory, the same job directories, nothing trained again. And a sweep that code from before data.root was left
    out of sweep names named with it is continued there when the same command is relaunched."""
    from shiftvit.bench.loader import write_cifar
    from shiftvit.config import LOCATION_KEYS, NOT_IDENTITY_KEYS
    from shiftvit.multirun import sweep_id

    first, moved = tmp_path / "data", tmp_path / "scratch" / "cifar"
    write_cifar(first, num_train=32, num_val=16)
    launch = run_cli(["-m", "seed=0,1", *cifar_run(first, epochs=1)], cwd=tmp_path)
    assert launch.returncode == 0, launch.stderr[-3000:]
    [sweep] = (tmp_path / "multirun").iterdir()
    records = {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)}
    assert len(records) == 2 and not any("root" in name for name in [sweep.name, *records])
    shutil.move(first, moved)
    args = ["-m", "seed=0,1", *cifar_run(moved, epochs=1)]
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list((tmp_path / "multirun").iterdir()) == [sweep]
    assert {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)} == records

    older = sweep.with_name(sweep_id(["run.py", *args], tuple(k for k in NOT_IDENTITY_KEYS if k not in LOCATION_KEYS)))
    assert older.name != sweep.name and "root" in older.name
    sweep.rename(older)  # as older code named it
    once_more = run_cli(args, cwd=tmp_path)
    assert once_more.returncode == 0, once_more.stderr[-3000:]
    assert list((tmp_path / "multirun").iterdir()) == [older]
    assert {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(older)} == records


# --- 2. a sweep job is its overrides --------------------------------------------------------------------------
def test_reordered_and_extended_sweep_maps_each_job_to_its_record(tmp_path):
    sweep = tmp_path / "sweep"
    base = [*small(epochs=1), f"hydra.sweep.dir={sweep}"]
    first = run_cli(["-m", "seed=0,1", "train.lr=0.002,0.001", *base], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    records = {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)}
    assert len(records) == 4
    second = run_cli(["-m", "train.lr=0.002,0.001,0.0005", "seed=0,1", *base], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert len(jobs) == 6
    for job in jobs:
        summary = read_summary(job)
        assert summary["status"] == "completed", (job.name, summary["status"])
        lr = next(o for o in summary["overrides"] if o.startswith("train.lr="))
        assert yaml.safe_load((job / CONFIG_FILE).read_text())["train"]["lr"] == float(lr.split("=")[1])
        if job.name in records:
            assert (job / SUMMARY_FILE).read_bytes() == records[job.name], "a finished record was rewritten"
    assert [r["status"] for r in sweep_rows(sweep)] == ["completed"] * 6


def test_the_default_sweep_directory_ignores_order_and_speed_settings(tmp_path):
    """The same jobs, values reordered, with train.threads and logger added: the same sweep, nothing retrained."""
    first = run_cli(["-m", "seed=0,1", *small(epochs=1)], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [sweep] = (tmp_path / "multirun").iterdir()
    records = {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)}
    assert len(records) == 2 and not any("logger" in name for name in records)  # it names no record
    again = [o for o in small(epochs=1) if o != "logger=none"]
    second = run_cli(["-m", "train.threads=1", "seed=1,0", *again, "logger=none"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert list((tmp_path / "multirun").iterdir()) == [sweep]
    assert {job.name: (job / SUMMARY_FILE).read_bytes() for job in job_dirs(sweep)} == records


def _as_written_by_older_code(sweep: Path, job: Path) -> None:
    """Make the records look made by code that hashed configs otherwise: the claim and the summary's stored
    hash name the config by another hash (config.yaml, the config itself, stays)."""
    [claim] = (sweep / ".claims").iterdir()
    claim.rename(claim.with_name("0" * 16))
    summary = read_summary(job)
    (job / SUMMARY_FILE).write_text(json.dumps({**summary, "config_hash": "0" * 16}))


def test_a_record_made_under_another_hash_is_not_trained_again(tmp_path):
    """A finished sweep whose records were written by code that hashed configs otherwise, relaunched with job
    directories named otherwise: the new job finds the finished record of its config and trains nothing."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0", *small(epochs=1), f"hydra.sweep.dir={sweep}"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [old] = job_dirs(sweep)
    _as_written_by_older_code(sweep, old)
    before = {name: (old / name).read_bytes() for name in (SUMMARY_FILE, METRICS_FILE, CHECKPOINT_FILE)}
    second = run_cli([*args, "train.lr=0.002"], cwd=tmp_path)  # the default, named: another job directory
    assert second.returncode == 0, second.stderr[-3000:]
    [new] = [job for job in job_dirs(sweep) if job != old]
    assert read_summary(new)["status"] == "duplicate" and not (new / METRICS_FILE).exists()
    assert (new / read_summary(new)["duplicate_of"]).resolve() == old.resolve()
    assert {name: (old / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("owner_then", ["deleted", "cut_off"])
def test_a_duplicate_whose_owner_was_deleted_or_cut_off_trains_on_relaunch(tmp_path, owner_then):
    """The docstring's promise: a claim whose owner no longer holds a result passes to the claimant, also when
    the claimant already recorded itself a duplicate (it would otherwise stay one, and the config have no result):
    the owner's record deleted, or retrained (train.resume=fresh) and cut off, with no job of this launch to
    resume it."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0", *small(epochs=1), f"hydra.sweep.dir={sweep}"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    [owner] = job_dirs(sweep)
    named = [*args, "train.lr=0.002"]  # the default, named: another job directory of the same config
    assert run_cli(named, cwd=tmp_path).returncode == 0
    [dup] = [job for job in job_dirs(sweep) if job != owner]
    assert read_summary(dup)["status"] == "duplicate"
    if owner_then == "deleted":
        shutil.rmtree(owner)
    else:
        killed = run_cli([*args, "train.resume=fresh"], cwd=tmp_path,
                         env={"SHIFTVIT_FAULT": "after_rename:checkpoint.pt:1:kill"})
        assert killed.returncode != 0 and read_summary(owner)["status"] == "running", killed.stderr[-3000:]
    again = run_cli(named, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_summary(dup)["status"] == "completed" and read_summary(dup).get("duplicate_of") is None


def test_a_copied_sweep_trains_its_own_records(tmp_path):
    """A sweep folder copied with its claims, its job folders then deleted: the claims name the original sweep's
    records, which are not this sweep's; its jobs train instead of pointing outside it."""
    sweep, copy = tmp_path / "sweep", tmp_path / "copy"
    args = ["-m", "seed=0", *small(epochs=1)]
    assert run_cli([*args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path).returncode == 0
    shutil.copytree(sweep, copy)
    for job in job_dirs(copy):
        shutil.rmtree(job)
    again = run_cli([*args, f"hydra.sweep.dir={copy}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    [job] = job_dirs(copy)
    assert read_summary(job)["status"] == "completed" and read_summary(job).get("duplicate_of") is None


@pytest.mark.parametrize("older_code", [False, True], ids=["same_hash", "older_hash"])
def test_a_job_whose_twin_was_cut_off_trains_and_the_attempt_is_superseded(tmp_path, older_code):
    """A sweep cut off in its only job, relaunched with an override naming the default: the new job directory's
    config was claimed by the cut-off record. It trains (a duplicate of an unfinished record would leave the
    config without a result), and the analysis reads the cut-off attempt as superseded, not as a failed seed,
    also when the cut-off record was written by code that hashed configs otherwise."""
    from analysis import load_runs

    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0", *small(epochs=2), f"hydra.sweep.dir={sweep}"]
    env = cli_env(**{FAULT_ENV: f"after_rename:{METRICS_FILE}:1"})
    cut = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=env)
    assert cut.returncode != 0
    [old] = job_dirs(sweep)
    assert run_status(old) == "interrupted"
    if older_code:
        _as_written_by_older_code(sweep, old)
    second = run_cli([*args, "train.lr=0.002"], cwd=tmp_path)  # the default, named: another job directory
    assert second.returncode == 0, second.stderr[-3000:]
    [new] = [job for job in job_dirs(sweep) if job != old]
    assert read_summary(new)["status"] == "completed" and read_summary(new).get("duplicate_of") is None
    runs = load_runs(sweep, warn=False)
    assert list(runs["run_dir"]) == [str(new)] and list(runs["status"]) == ["completed"]
    assert runs.attrs["skipped"] == [(str(old), f"interrupted attempt superseded by {new} (the same config and "
                                                "seed, completed)")]


def test_a_relaunch_counts_only_its_own_jobs(tmp_path):
    """A launch this machine cannot run (fp16 on a CPU: asked of each job as it starts, since a cluster's node may
    have what the launching machine lacks) leaves refused job folders in the sweep (its overrides name other
    folders). The corrected relaunch's live count and exit code are about its own jobs: it finishes 2 of 2 and
    exits 0, while sweep.csv still lists every folder, the refused ones with their error."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *small(epochs=1), f"hydra.sweep.dir={sweep}"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    typo = run_cli([*args, "train.amp=fp16"], cwd=tmp_path)
    assert typo.returncode == 1 and "train.amp=fp16 needs a CUDA device" in typo.stderr
    # a relaunch within the file system's time resolution of the typo's launch (CI once met it): the typo's files
    # are no older than the relaunch's start, and the relaunch still tells its jobs from the typo's
    soon = time.time() + 60
    for job in job_dirs(sweep):
        for path in (job / ".hydra").iterdir():
            os.utime(path, (soon, soon))
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[sweep] 2/2 finished, 0 running, 0 queued" in again.stdout and "failed" not in again.stderr
    rows = sweep_rows(sweep)
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "failed", "failed"]
    assert all("train.amp=fp16" in r["launch_error"] for r in rows if r["status"] == "failed")
    # the analysis loads the two records and names the two refused jobs as skipped, with why
    from analysis import load_runs

    runs = load_runs(sweep, warn=False)
    assert len(runs) == 2 and list(runs["status"]) == ["completed"] * 2
    refused = [why for _, why in runs.attrs["skipped"]]
    assert len(refused) == 2 and all(w.startswith("refused at launch: train.amp=fp16 needs a CUDA device")
                                     for w in refused)


# --- 6 and 7. one launcher per sweep; Ctrl-C; a failed job ---------------------------------------------------
def test_second_launch_is_refused_and_ctrl_c_leaves_sweep_csv(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *small(epochs=3, num_train=512), f"hydra.sweep.dir={sweep}"]
    first = popen_cli(args, cwd=tmp_path)
    deadline = time.time() + 300
    while not any(read_metrics(job) for job in job_dirs(sweep)):
        assert first.poll() is None and time.time() < deadline, first.stdout.read()[-3000:]
        time.sleep(0.05)
    # Ctrl-C must land inside the first job, not between two jobs. Raced against the refused second launch (seconds),
    # the job's last two epochs needed 256 batches each (a fast machine finished 64-batch ones first); stopped within
    # a poll of its first epoch's row, the launch keeps the sweep's lock and stays inside that job on any machine
    first.send_signal(signal.SIGSTOP)
    try:
        second = run_cli(args, cwd=tmp_path)
    finally:
        first.send_signal(signal.SIGINT)  # pending while stopped: delivered where the launch stopped
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"in use by pid {first.pid} " in lines[0], second.stderr
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out[-3000:]
    assert "Traceback" not in out
    rows = sweep_rows(sweep)
    assert (sweep / SWEEP_CSV).exists() and "interrupted" in [r["status"] for r in rows]
    relaunch = run_cli(args, cwd=tmp_path)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    assert "resumed from" in relaunch.stdout + relaunch.stderr
    for job in job_dirs(sweep):
        assert [r["epoch"] for r in read_metrics(job)] == [1, 2, 3]
        assert read_summary(job)["status"] == "completed"


def test_an_interpolation_that_does_not_resolve_is_one_line_in_a_run_and_a_sweep(tmp_path, monkeypatch):
    """${oc.env:UNSET}: one line naming the key, with nothing written. In a sweep it was read as the launcher
    looked at the command's overrides, and Hydra turned the error into a warning that skipped the sweep's lock;
    every job then failed with a traceback."""
    monkeypatch.delenv("SHIFTVIT_TEST_UNSET", raising=False)
    for sweep in ([], ["-m", "seed=0,1"]):
        proc = run_cli([*sweep, "sweep_name=${oc.env:SHIFTVIT_TEST_UNSET}", *small(epochs=1)], cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: sweep_name: its interpolation does not resolve (") and \
            "'SHIFTVIT_TEST_UNSET' not found" in lines[0] and "Traceback" not in proc.stderr
        assert list(tmp_path.iterdir()) == []


def test_failed_job_does_not_stop_the_sweep_and_sweep_csv_is_written(tmp_path):
    """A job this machine cannot run (fp16 on a CPU) fails in one line; the sweep's other job goes on."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "train.amp=fp16,none", *small(epochs=1), f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error: train.amp=fp16 needs a CUDA device") == 1
    rows = {r["overrides"].split()[0]: r for r in sweep_rows(sweep)}
    assert rows["train.amp=fp16"]["status"] == "failed" and "CUDA" in rows["train.amp=fp16"]["launch_error"]
    assert rows["train.amp=none"]["status"] == "completed"
    assert (sweep / SWEEP_CSV).read_text().count("\n") == 3


def test_a_bad_value_in_a_sweep_is_refused_before_its_first_job(tmp_path):
    """Every planned job's config is checked before the first trains: a typo in the last value of a long grid
    would otherwise cost every job before it. One line names the job; nothing is written; a sweep folder that
    holds jobs keeps them as they were."""
    for grid, refused, first in (
            (["gamma=1/12,abc"], "gamma='abc' is not a number", "[job gamma=abc]"),
            # a budget no depths reach (attention at both τ, shift at τ=4 on shiftvit_nano): three of the four jobs
            (["mixer=attn,shift", "tau=2,4"], "cannot match the flops budget", "[job mixer=attn tau=2] (3 of the 4 "
                                                                               "jobs")):
        proc = run_cli(["-m", *grid, *small(epochs=1)], cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: {refused}") and first in lines[0], lines[0]
        assert "no job of this sweep started" in lines[0] and list(tmp_path.iterdir()) == []
    sweep = tmp_path / "sweep"
    assert run_cli(["-m", "seed=0", *small(epochs=1), f"hydra.sweep.dir={sweep}"], cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    assert run_cli(["-m", "gamma=1/12,abc", *small(epochs=1), f"hydra.sweep.dir={sweep}"], cwd=tmp_path).returncode == 2
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before


def test_sigint_in_a_single_run_checkpoints_and_says_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = popen_cli([*small(num_train=512), f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    deadline = time.time() + 300
    while not read_metrics(run_dir):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert sum(line.startswith("interrupted by SIGINT") for line in out.splitlines()) == 1
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["interrupted_by"] == "SIGINT"
    assert (run_dir / CHECKPOINT_FILE).exists()


def test_a_sweep_stopped_by_sigterm_exits_nonzero_and_gives_no_add_seeds_advice(tmp_path):
    """A single run preempted by SIGTERM exits 0 (it checkpointed: what a scheduler expects); a sweep stopped by it
    has not run what it was asked, so `run.py -m ... && python -m analysis.report ...` must not go on (128 + 15),
    and its last lines must not advise adding seeds to jobs that never finished: rerunning resumes them."""
    sweep = tmp_path / "sweep"
    proc = popen_cli(["-m", "mixer=shift,pool", *small(num_train=512), f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    deadline = time.time() + 300
    while not any(read_metrics(job) for job in sweep.glob("*/") if (job / METRICS_FILE).exists()):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert sum(line.startswith("interrupted by SIGTERM") for line in out.splitlines()) == 1, out[-3000:]
    assert "a verdict needs two or more" not in out and "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith(f"[sweep] {REPORT_HINT}"), out[-3000:]


# --- 6 (single runs) and 8. a busy directory, damaged files, unwritable places ---------------------------------
def test_busy_run_dir_is_refused_with_the_holder(reference, tmp_path):
    cfg, _ = reference
    with RunLock(tmp_path, "a test", "wait"):
        with pytest.raises(RecordError, match=rf"in use by pid {os.getpid()} on .*: wait for it to finish"):
            run_experiment(cfg, tmp_path)
    assert not (tmp_path / SUMMARY_FILE).exists()


@pytest.mark.parametrize("damage", ["truncate", "empty", "metrics"])
def test_damaged_record_gives_one_line_naming_the_file(reference, killed, tmp_path, damage):
    cfg, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    checkpoint, metrics = run_dir / CHECKPOINT_FILE, run_dir / METRICS_FILE
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:4096])
    elif damage == "empty":
        checkpoint.write_bytes(b"")
    else:
        metrics.write_text(metrics.read_text()[:-20])
    with pytest.raises(RecordError) as error:
        run_experiment(cfg, run_dir)
    message = str(error.value)
    damaged = metrics if damage == "metrics" else checkpoint
    assert message.startswith(f"{damaged} is unreadable") and "train.resume=fresh" in message
    assert "\n" not in message and "weights_only" not in message


def test_deleted_metrics_never_lead_to_a_completed_record_without_its_epochs(reference, killed, tmp_path):
    """A checkpoint two epochs in beside no metrics.jsonl: continuing would write a 'completed' record holding
    epoch 3 alone (and its best top-1 among one epoch): refused, with the way out."""
    cfg, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    (run_dir / METRICS_FILE).unlink()
    with pytest.raises(RecordError) as error:
        run_experiment(cfg, run_dir)
    message = str(error.value)
    assert message.startswith(f"{run_dir / METRICS_FILE} holds epochs none but {run_dir / CHECKPOINT_FILE} has "
                              "trained 1")
    assert message.endswith("train.resume=fresh archives the record and starts over")
    assert read_summary(run_dir)["status"] != "completed" and not (run_dir / METRICS_FILE).exists()


def test_a_single_run_is_refused_in_a_sweep_directory(reference, tmp_path):
    cfg, reference_dir = reference
    sweep = tmp_path / "sweep"
    shutil.copytree(reference_dir, sweep / "seed=0")
    (sweep / "seed=0" / ".hydra").mkdir()
    with pytest.raises(ConfigError, match=r"holds a sweep \(sweep.csv or other runs' directories\): a run there"):
        run_experiment(cfg, sweep)
    assert sorted(p.name for p in sweep.iterdir()) == ["seed=0"]  # nothing written


def _sigterm_at_batch(cfg: dict, run_dir: str, at: int) -> None:
    """A run that sends itself SIGTERM (a SLURM preemption notice) as its ``at``-th training batch is loaded."""
    from shiftvit import engine

    load, loaded = engine.Trainer._to_device, [0]

    def counting(self, x, y):
        if self.model.training:
            loaded[0] += 1
            if loaded[0] == at:
                os.kill(os.getpid(), signal.SIGTERM)
        return load(self, x, y)

    engine.Trainer._to_device = counting
    _child(cfg, run_dir, "", None)


@pytest.mark.parametrize("at", [5, 7], ids=["inside-a-window", "before-the-epochs-last-window"])
def test_preemption_with_gradient_accumulation_resumes_bit_exactly(tmp_path, at):
    """4 batches an epoch, a step every 3 (and one at the epoch's end): a SIGTERM in epoch 2 must neither lose
    the gradients of a half-accumulated window nor the epoch's last step after the resume."""
    cfg = composed(*SMALL, "train.accum_steps=3")
    assert run_forked(cfg, tmp_path / "reference") == 0
    run_dir = tmp_path / "run"
    process = multiprocessing.get_context("fork").Process(target=_sigterm_at_batch, args=(cfg, str(run_dir), at))
    process.start()
    process.join(300)
    assert read_summary(run_dir)["status"] == "interrupted"
    stopped = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert (stopped["epoch"], stopped["batch"]) == (1, 3), "stopped at the end of an accumulation window"
    assert run_forked(cfg, run_dir) == 0
    assert_same_records(run_dir, tmp_path / "reference")
    updates = [torch.load(d / CHECKPOINT_FILE, weights_only=True)["num_updates"]
               for d in (run_dir, tmp_path / "reference")]
    assert updates == [6, 6]


def test_an_attempt_cut_off_before_its_first_epoch_keeps_the_epochs_done(reference, tmp_path):
    cfg, _ = reference
    run_dir = tmp_path / "run"
    assert run_forked(cfg, run_dir, f"after_rename:{CHECKPOINT_FILE}:2") == -signal.SIGKILL
    done = read_summary(run_dir)["epochs_done"]
    assert done == 1  # recorded after epoch 1; epoch 2's checkpoint was on disk when the kill came
    assert run_forked(cfg, run_dir, f"before_rename:{CHECKPOINT_FILE}:1") == -signal.SIGKILL
    summary = read_summary(run_dir)
    assert summary["attempts"] == 2 and summary["epochs_done"] == done


@pytest.mark.parametrize("args", [["hydra.run.dir=/proc/shiftvit-run"],
                                  ["-m", "seed=0,1", "hydra.sweep.dir=/proc/shiftvit-sweep"],
                                  ["hydra.mode=MULTIRUN", "seed=0,1", "hydra.sweep.dir=/proc/shiftvit-sweep"]],
                         ids=["run", "sweep", "sweep-by-mode"])
def test_unwritable_output_dir_is_one_line(tmp_path, args):
    proc = run_cli(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write to /proc/shiftvit-"), proc.stderr
    assert "=DIR" in lines[0]


def test_an_output_dir_under_a_file_is_one_line_and_creates_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    proc = run_cli([f"hydra.run.dir={tmp_path / 'notes.txt' / 'run'}"], cwd=tmp_path, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot write to {tmp_path / 'notes.txt' / 'run'}") and "is a file" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_flops_cli_unknown_model_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shiftvit.flops", "bogus_model"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=cli_env())
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown model 'bogus_model'" in lines[0] and "--variants" in lines[0]
