"""Sweeps: experiment configs, wandb sweep files, Hydra launchers, relaunch and resume of a sweep."""
import copy
import csv
import dataclasses
import functools
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, cli_env, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments import wandb_sweep
from shiftvit.config import SEED_KEY, ExperimentConfig, resolve
from shiftvit.multirun import (
    LAUNCH_ID_FILE,
    REPORT_HINT,
    SWEEP_CSV,
    expected_jobs,
    job_dirs,
    job_overrides,
    job_status,
    seeds_slowest,
    write_sweep_csv,
)
from shiftvit.records import read_metrics, read_summary

CONF = ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# the one-model grids (swap's arms are different models: tests/test_swap.py; imagenet_300ep is a single run)
ABLATIONS = [e for e in EXPERIMENTS if e not in ("swap", "imagenet_300ep")]


def _compose(overrides, hydra: bool = True):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


@functools.cache
def _grid(experiment: str) -> tuple:
    """Every job of the experiment's Hydra grid (seed 0), as override tuples."""
    params = dict(_compose([f"+experiment={experiment}"]).hydra.sweeper.params)
    grid = [[f"{k}={v}" for v in str(values).split(",")] for k, values in params.items() if k != "seed"]
    return tuple((f"+experiment={experiment}", *combo) for combo in itertools.product(*grid))


@functools.cache
def _resolved(overrides: tuple) -> dict:
    return resolve(OmegaConf.to_container(_compose(overrides, hydra=False), resolve=True))


def _effective(overrides) -> dict:
    """The effective config of a job (a copy: the caller may change it). Each grid job is resolved once (the
    solver counts models) for the tests that check its budget and its twin in the wandb sweep."""
    return copy.deepcopy(_resolved(tuple(overrides)))


@functools.cache
def _sweep(path: Path) -> dict:
    return wandb_sweep.check(path)


def _checked_sweep(path: Path) -> dict:
    """``wandb_sweep.check`` of a sweep file (it composes every job: seconds), once for the tests that read it."""
    return copy.deepcopy(_sweep(path))


@pytest.mark.parametrize("experiment", ABLATIONS)
def test_cpu_ablation_every_job_resolves_at_its_matched_budget(experiment):
    cfg = _compose([f"+experiment={experiment}"])
    assert dict(cfg.hydra.sweeper.params)["seed"] == "0,1,2" and cfg.match in ("flops", "params")
    # the CPU scale's testbed with headroom (tests/test_testbeds.py), not the full digits at the ceiling
    assert cfg.model.name == "shiftvit_micro" and cfg.data.name == "digits" and cfg.data.train_fraction < 1
    from shiftvit.flops import count

    cost = "total_macs" if cfg.match == "flops" else "total_params"
    reference = getattr(count("shiftvit_micro", 32), cost)
    for job in _grid(experiment):
        eff = _effective(job)
        kwargs = dict(mixer=eff["mixer"]["name"], depths=tuple(eff["depths"]), mlp_ratio=eff["tau"],
                      mixer_kwargs={k: v for k, v in eff["mixer"].items() if k != "name"},
                      norm=eff["model"]["norm"], act=eff["model"]["act"])
        if eff["gamma"]:
            kwargs["gamma"] = eff["gamma"]
        assert abs(getattr(count("shiftvit_micro", 32, **kwargs), cost) / reference - 1) <= 0.02, job


def test_mixers_params_twin_differs_from_mixers_in_the_matched_budget_only():
    flops, params = _compose(["+experiment=mixers"]), _compose(["+experiment=mixers_params"])
    assert dict(flops.hydra.sweeper.params) == dict(params.hydra.sweeper.params)
    assert (flops.match, params.match) == ("flops", "params")
    # parameters differ at matched FLOPs, so the twins solve different depths for the mixers with weights
    attn = [resolve(OmegaConf.to_container(_compose([f"+experiment={e}", "mixer=attn"], hydra=False),
                                           resolve=True))["depths"] for e in ("mixers", "mixers_params")]
    assert attn[0] != attn[1]


@pytest.mark.parametrize("experiment", ABLATIONS)
def test_paper_scale_shares_everything_but_model_data_schedule(experiment):
    cpu = _compose([f"+experiment={experiment}"])
    paper = _compose([f"+experiment={experiment}", "scale=paper"])
    assert paper.model.name == "shiftvit_r2_tiny" and paper.data.name == "imagefolder"
    assert paper.train.epochs == 300 and paper.data.img_size == 224
    assert dict(paper.hydra.sweeper.params) == dict(cpu.hydra.sweeper.params)
    assert paper.match == cpu.match and paper.mixer == cpu.mixer


def test_job_directories_leave_out_exactly_the_settings_that_never_change_a_run():
    """conf/config.yaml's exclude_keys repeats config.NOT_IDENTITY_KEYS (Hydra reads YAML); they must be equal."""
    from shiftvit.config import NOT_IDENTITY_KEYS

    excluded = _compose([]).hydra.job.config.override_dirname.exclude_keys
    assert list(excluded) == list(NOT_IDENTITY_KEYS)
    # and its job folder naming repeats multirun.JOB_SUBDIR, by which a sweep's unstarted jobs are found
    from shiftvit.multirun import JOB_SUBDIR, SWEEPS_DIR

    sweep = OmegaConf.to_container(_compose([]).hydra.sweep, resolve=False)
    assert sweep["subdir"] == JOB_SUBDIR
    assert sweep["dir"].startswith(f"{SWEEPS_DIR}/")  # where a relaunch looks for the sweep it continues
    # the variables run.py and torchrun's processes set, which the two folders read
    from shiftvit.distributed import RUN_STAMP_ENV, RUN_STAMP_FORMAT
    from shiftvit.multirun import RUNS_DIR, SWEEP_ID_ENV

    assert sweep["dir"] == f"{SWEEPS_DIR}/${{oc.env:{SWEEP_ID_ENV},defaults}}"
    run_dir = OmegaConf.to_container(_compose([]).hydra.run, resolve=False)["dir"]
    now = "/".join(f"${{now:{part}}}" for part in RUN_STAMP_FORMAT.split("/"))
    assert run_dir == f"{RUNS_DIR}/${{oc.env:{RUN_STAMP_ENV},{now}}}"


def test_expected_jobs_counts_the_grid():
    assert expected_jobs(["mixer=shift,attn", "gamma=1/12,1/6", "train.epochs=1"], None) == 4
    assert expected_jobs(["+experiment=mixers"], {"mixer": "shift,attn,dwconv", "seed": "0,1,2"}) == 9
    assert expected_jobs(["seed=range(0,3)"], None) == 3
    # the command line's seed replaces the experiment's own, it does not multiply it
    assert expected_jobs(["+experiment=mixers", "seed=0,1,2,3"], {"mixer": "shift,attn", "seed": "0,1,2"}) == 8


# --- wandb sweep files ------------------------------------------------------------------------------------------
SWEEPS = sorted((ROOT / "experiments" / "wandb_sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_wandb_sweep_renders_agent_commands_that_compose(path):
    sweep = _checked_sweep(path)
    assert sweep["metric"]["name"] == "val_top1"
    if sweep["method"] == "bayes":
        assert "early_terminate" in sweep
    commands = [wandb_sweep.agent_command(sweep, v) for v in wandb_sweep.parameter_sets(sweep, limit=None)]
    assert commands and all(c[:3] == ["/usr/bin/env", "python", "run.py"] for c in commands)
    for argv in commands:
        assert all("=" in a and not a.startswith("-") for a in argv[3:])  # args_no_hyphens: key=value
        cfg = _compose(argv[3:])
        assert cfg.logger.mode == "online"
    # the first command through run.py itself, as the agent runs it
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *commands[0][3:], "--cfg", "job"],
                          capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    composed = yaml.safe_load(proc.stdout)
    for arg in commands[0][3:]:
        key, value = arg.split("=", 1)
        if "." in key:
            node = composed
            for part in key.split("."):
                node = node[part]
            assert str(node) == value or float(node) == pytest.approx(float(value))


def _hash_without_logger(overrides) -> str:
    from shiftvit.config import config_hash

    eff = _effective(overrides)
    eff.pop("logger", None)  # the wandb sweep logs online, the Hydra grid as configured
    return config_hash(eff)


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e != "imagenet_300ep"])
def test_every_experiment_has_a_wandb_sweep_running_the_same_jobs(experiment):
    path = ROOT / "experiments" / "wandb_sweeps" / f"{experiment}.yaml"
    assert path.exists(), f"+experiment={experiment} has no wandb sweep file {path.name}"
    sweep = _checked_sweep(path)
    agent = {_hash_without_logger(wandb_sweep.agent_command(sweep, values)[3:])
             for values in wandb_sweep.parameter_sets(sweep, limit=None) if values.get("seed", 0) == 0}
    hydra = {_hash_without_logger(job) for job in _grid(experiment)}
    assert agent == hydra


def _sweep_file(tmp_path, parameters: dict) -> Path:
    sweep = yaml.safe_load((ROOT / "experiments" / "wandb_sweeps" / "mixers.yaml").read_text())
    sweep["parameters"] = {key: ({"values": value} if isinstance(value, list) else {"value": value})
                           for key, value in parameters.items()}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_wandb_sweep_check_composes_each_job_with_its_own_choices(tmp_path, capsys):
    """A key exists or not by the options chosen beside it: data.root once scale=paper chose ImageNet folders,
    mixer.window_size beside mixer=attn, never mixer.shift_size there. Checked against the default config alone,
    the first two were refused and the third passed, and every one of its jobs failed."""
    fine = {"paper scale": {"scale": "paper", "data.root": "/data/imagenet", "mixer": ["shift", "attn"],
                            "seed": [0, 1]},
            "attn options": {"mixer": "attn", "mixer.window_size": [4, 7], "seed": [0, 1, 2]}}
    for parameters in fine.values():
        assert wandb_sweep.main(["check", str(_sweep_file(tmp_path, parameters))]) == 0
    refused = {"a key the chosen mixer lacks": ({"mixer": "attn", "mixer.shift_size": [1, 2]},
                                                "does not compose: Could not override 'mixer.shift_size'"),
               "a value run.py refuses": ({"gamma": ["1/12", "1/2"], "seed": [0]},
                                          "would be refused: gamma=1/2 is outside (0, 1/4]"),
               "a bad seed": ({"mixer": "shift", "seed": [0, -1]}, "would be refused: seed=-1 must be >= 0")}
    for parameters, message in refused.values():
        capsys.readouterr()
        assert wandb_sweep.main(["check", str(_sweep_file(tmp_path, parameters))]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_gamma_sweep_passes_exact_fractions():
    sweep = wandb_sweep.load(ROOT / "experiments" / "wandb_sweeps" / "gamma.yaml")
    argv = wandb_sweep.agent_command(sweep, {"gamma": "1/12", "seed": 0})
    assert "gamma=1/12" in argv


def test_sweep_with_unknown_key_is_refused_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    command = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
    bad.write_text(yaml.safe_dump({"program": "run.py", "method": "grid", "metric": {"name": "val_top1"},
                                   "parameters": {"mixr": {"values": ["shift"]}}, "command": command}))
    with pytest.raises(wandb_sweep.SweepError, match=r"the job `run.py mixr=shift` does not compose: Could not "
                                                     r"override 'mixr'"):
        wandb_sweep.check(bad)
    assert wandb_sweep.main(["create", str(bad)]) == 2  # refused before contacting wandb
    assert "does not compose" in capsys.readouterr().err
    # wandb's default command passes --mixer=shift, which Hydra refuses in every job
    bad.write_text(yaml.safe_dump({"program": "run.py", "parameters": {"mixer": {"values": ["shift"]}}}))
    with pytest.raises(wandb_sweep.SweepError, match=r"the agent would pass --mixer=shift, which run.py refuses: "
                                                     r"give the sweep command: \[\$\{env\}"):
        wandb_sweep.check(bad)
    bad.write_text(yaml.safe_dump({"program": "run.py", "parameters": {"mixer": {"values": ["shift", "conv"]}}}))
    with pytest.raises(wandb_sweep.SweepError, match="parameter mixer='conv' is not an option of group 'mixer'"):
        wandb_sweep.check(bad)


# --- launchers, relaunch, resume -----------------------------------------------------------------------------------
def _rows(sweep_dir: Path):
    with open(sweep_dir / "sweep.csv") as f:
        return list(csv.DictReader(f))


def _job(sweep_dir: Path, override: str) -> Path:
    """The job directory of the job with this override (directories are named after their overrides)."""
    [job] = [j for j in job_dirs(sweep_dir) if override in j.name.split(",")]
    return job


SMALL = ["model=shiftvit_nano", "mixer=shift,identity", "train.epochs=1", "logger=none"]
# a job of a second or two: 2 batches of synthetic 32-px images, one epoch
TINY = ["model=shiftvit_nano", "logger=none", "data=synthetic", "data.img_size=32", "data.num_classes=4",
        "data.num_train=16", "data.num_val=8", "train.batch_size=8", "train.epochs=1", "train.warmup_epochs=0"]


def test_joblib_two_jobs_then_relaunch_trains_nothing(tmp_path):
    sweep = tmp_path / "joblib"
    args = ["-m", *SMALL, f"hydra.sweep.dir={sweep}"]
    proc = run_cli([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(sweep)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert {r["mixer"] for r in rows} == {"shift", "identity"}
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    # the workers mark their jobs with the launch's id (the callback is pickled into them): the launcher counts both
    assert len({(job / LAUNCH_ID_FILE).read_text() for job in jobs}) == 1
    assert "[sweep] 2/2 finished" in proc.stdout
    # the last line names the next step: the report's command, which runs as printed
    hint = proc.stdout.strip().splitlines()[-1]
    assert hint.startswith(f"[sweep] {REPORT_HINT} ")
    report = subprocess.run(shlex.split(hint.split(": ", 1)[1]), cwd=tmp_path, capture_output=True, text=True,
                            env=cli_env(), timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "2 runs loaded (2 completed)" in (sweep / "report" / "report.md").read_text()
    for job in jobs:
        assert yaml.safe_load((job / "config.yaml").read_text())["train"]["threads"] == max(
            1, (os.cpu_count() or 1) // 2)
    stamps = {job: (job / "checkpoint.pt").stat().st_mtime_ns for job in jobs}
    again = run_cli(args, cwd=tmp_path)  # same sweep, basic launcher this time
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("nothing to do") == 2
    assert {job: (job / "checkpoint.pt").stat().st_mtime_ns for job in jobs} == stamps


@pytest.fixture
def one_job_sweep(tmp_path_factory):
    """A finished one-job sweep (copied per test, which may change it)."""
    import shutil

    base = tmp_path_factory.getbasetemp() / "one_job_sweep"
    if not base.exists():
        proc = run_cli(["-m", "model=shiftvit_nano", "mixer=shift", "train.epochs=1", "logger=none",
                        f"hydra.sweep.dir={base}"], cwd=tmp_path_factory.getbasetemp())
        assert proc.returncode == 0, proc.stderr[-3000:]
    copy = tmp_path_factory.mktemp("sweep") / "sweep"
    shutil.copytree(base, copy)
    return copy


def test_the_monitor_rewrites_sweep_csv_when_a_job_ends(one_job_sweep):
    """Parallel launchers end jobs in their workers, where on_job_end cannot see the sweep: the launcher's
    monitor rewrites sweep.csv when it sees a job end."""
    import io

    from shiftvit.multirun import SWEEP_CSV, SweepMonitor

    (one_job_sweep / SWEEP_CSV).unlink()
    lines = SweepMonitor(one_job_sweep, total=1, stream=io.StringIO()).poll()
    assert lines[-1] == "[sweep] 1/1 finished, 0 running, 0 queued"
    with open(one_job_sweep / SWEEP_CSV) as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["completed"]


def test_a_refusal_older_than_the_record_is_not_its_status(one_job_sweep):
    """A launcher killed without its workers, then relaunched: the relaunch's job is refused ('in use by pid N')
    while the orphaned worker goes on writing the record. The record written after the refusal is the latest
    word (the worker's epochs here are one real run's record, the refusal a file dated before its last write)."""
    from shiftvit.multirun import LAUNCH_ERROR_FILE, launch_error, sweep_rows

    sweep = one_job_sweep
    [job] = job_dirs(sweep)
    refusal = job / LAUNCH_ERROR_FILE
    refusal.write_text(f"{job} is in use by pid 4242 (running this record)\n")
    written = (job / "summary.json").stat().st_mtime
    os.utime(refusal, (written - 5, written - 5))  # refused while the worker still trained
    assert launch_error(job) is None and job_status(job).startswith("completed")
    assert [r["launch_error"] for r in sweep_rows(sweep)] == [None]
    os.utime(refusal, (written + 5, written + 5))  # refused after the record's last write: this launch's word
    assert launch_error(job).endswith("(running this record)") and job_status(job).startswith("failed: ")


def test_submitit_local_two_jobs(tmp_path):
    sweep = tmp_path / "submitit"
    proc = run_cli(["-m", *SMALL, f"hydra.sweep.dir={sweep}", "hydra/launcher=submitit_local",
                    "hydra.launcher.timeout_min=10"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [read_summary(j)["status"] for j in job_dirs(sweep)] == ["completed", "completed"]
    for job in job_dirs(sweep):  # submitit's local executor runs both at once: each gets half the cores
        assert yaml.safe_load((job / "config.yaml").read_text())["train"]["threads"] == max(
            1, (os.cpu_count() or 1) // 2)
    assert (sweep / ".submitit").is_dir()
    assert [r["status"] for r in _rows(sweep)] == ["completed", "completed"]
    assert len({(job / LAUNCH_ID_FILE).read_text() for job in job_dirs(sweep)}) == 1
    assert "[sweep] 2/2 finished" in proc.stdout


def _hydra_grid(params: dict, task: list) -> list:
    """The jobs Hydra's basic sweeper makes of these sweeper params and command line, in its order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + task)
    return [tuple(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


@pytest.mark.parametrize("params, task", [
    ({"gamma": "1/24,1/12,1/4", "seed": "0,1,2"}, ["+experiment=gamma"]),  # an experiment's arms listed first
    ({"gamma": "1/24,1/12", "seed": "0,1,2"}, ["+experiment=gamma", "seed=0,1,2,3"]),  # the command line's seeds win
    ({}, ["mixer=shift,attn", "gamma=1/12,1/6", "seed=range(0,3)", "logger=none"]),
    ({"mixer": "shift,attn"}, ["seed=1,0"]),
])
def test_a_sweep_runs_seed_by_seed_and_keeps_its_jobs(params, task):
    """Hydra varies the first key slowest, so the seed goes first: a sweep cut off midway leaves its arms
    within one seed of each other. The grid, as Hydra's own sweeper makes it, is the same set of jobs."""
    new_params, new_task = seeds_slowest(params, task)
    assert next(iter(new_params)) == "seed" and not any(t.startswith("seed=") for t in new_task)
    before, after = _hydra_grid(params, task), _hydra_grid(new_params, new_task)
    assert sorted(map(sorted, after)) == sorted(map(sorted, before)) and len(after) == len(before) > 1
    seeds = [next(o for o in job if o.startswith("seed=")) for job in after]
    arms = len(after) // len(set(seeds))
    # every seed's jobs in one run of the list, each with every arm
    assert all(len(set(seeds[i:i + arms])) == 1 for i in range(0, len(seeds), arms))
    assert seeds_slowest({"mixer": "shift,attn"}, ["gamma=1/12"]) == ({"mixer": "shift,attn"}, ["gamma=1/12"])
    assert SEED_KEY == "seed" and SEED_KEY in {f.name for f in dataclasses.fields(ExperimentConfig)}


def test_a_launched_sweep_starts_every_arm_of_a_seed_before_the_next_seed(tmp_path):
    """Through run.py and Hydra: the experiment lists its arms (gamma) before its seeds. train.amp=fp16 is
    refused by every job on this CPU machine (asked where each job runs) before any training, so the order costs
    seconds to see (Hydra numbers its jobs)."""
    sweep = tmp_path / "order"
    proc = run_cli(["-m", "+experiment=gamma", "seed=0,1", "train.amp=fp16", "logger=none",
                    f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 1 and "10 of the 10 jobs of this launch failed" in proc.stderr, proc.stderr[-3000:]
    started = {}
    for job in job_dirs(sweep):
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        overrides = dict(o.split("=", 1) for o in hydra_cfg["overrides"]["task"])
        started[hydra_cfg["job"]["num"]] = (overrides["seed"], overrides["gamma"])
    order = [started[num] for num in sorted(started)]
    assert [seed for seed, _ in order] == ["0"] * 5 + ["1"] * 5
    assert [gamma for _, gamma in order[:5]] == [gamma for _, gamma in order[5:]] == [
        "1/24", "1/12", "1/8", "1/6", "1/4"]


def test_a_local_sweeps_size_comes_from_its_saved_overrides_and_the_experiments_params(tmp_path):
    from shiftvit.multirun import saved_sweep_size as _sweep_size

    assert _sweep_size(tmp_path) is None  # no multirun.yaml: torch's own thread count
    saved = {"hydra": {"overrides": {"task": ["mixer=shift,attn", "seed=0,1,2"]},
                       "sweeper": {"params": {"gamma": "1/12,1/6", "seed": "0,1"}}}}
    OmegaConf.save(OmegaConf.create(saved), tmp_path / "multirun.yaml")
    assert _sweep_size(tmp_path) == 2 * 3 * 2  # the command line's seeds win over the experiment's


def test_cut_off_sweep_resumes_with_the_same_command(tmp_path):
    sweep = tmp_path / "cut"
    # half of digits' training images: a cut-off job resumes at any size, and the kill still lands with two of
    # its epochs (12 batches each) to go
    args = ["-m", "model=shiftvit_nano", "mixer=shift,identity", "data.train_fraction=0.5", "train.epochs=3",
            "logger=none", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    start = time.time()
    # logger=none names no job
    identity_dir = sweep / "data.train_fraction=0.5,mixer=identity,model=shiftvit_nano,train.epochs=3"
    # an epoch's metrics row is written just before its checkpoint: wait for both
    while len(read_metrics(identity_dir)) < 1 or not (identity_dir / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() - start < 600
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep dies, job 1 in the middle
    proc.wait()
    shift, identity = _job(sweep, "mixer=shift"), _job(sweep, "mixer=identity")
    assert read_summary(shift)["status"] == "completed"
    assert read_summary(identity)["status"] == "running"  # as recorded; its process is gone:
    assert job_status(identity) == "interrupted"
    write_sweep_csv(sweep)
    assert [r["status"] for r in _rows(sweep)] == ["interrupted", "completed"]  # identity, shift
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert out.count("nothing to do") == 1 and "resumed from" in out
    assert [r["status"] for r in _rows(sweep)] == ["completed", "completed"]
    assert [r["epoch"] for r in read_metrics(identity)] == [1, 2, 3]


def test_adding_seeds_without_the_sweep_folder_names_the_sweep_that_holds_the_grid(tmp_path):
    """The seed names the sweep: the headline line relaunched with seed=0,1,2 but not its folder starts a new sweep
    and trains its seed 0 again. The launch says so at once, with the override that adds the seeds instead."""
    tiny = ["mixer=shift", *TINY]
    first = run_cli(["-m", *tiny], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [grid] = [p.parent for p in (tmp_path / "multirun").glob("*/multirun.yaml")]
    assert "holds a sweep of this grid" not in first.stdout
    seeds = run_cli(["-m", *tiny, "seed=0,1"], cwd=tmp_path)
    assert seeds.returncode == 0, seeds.stderr[-3000:]
    from shiftvit.multirun import sweep_dir_override

    note = f"[sweep] {Path('multirun') / grid.name} holds a sweep of this grid (seed=0): this launch starts a new " \
        "folder for seed=0,1 and trains every job of it"
    assert note in seeds.stdout and f"add {sweep_dir_override(Path('multirun') / grid.name)} to the command" \
        in seeds.stdout
    again = run_cli(["-m", *tiny, "seed=0,1"], cwd=tmp_path)  # its own folder found again: nothing new to say
    assert again.returncode == 0 and "holds a sweep of this grid" not in again.stdout, again.stderr[-3000:]


def test_jobs_not_run_that_duplicate_another_arm_are_neither_counted_nor_named_as_an_arm(tmp_path):
    """gamma has no effect with mixer=attn, so attn's gamma=1/6 jobs are duplicates of its gamma=1/12 jobs: once one
    of them recorded that, its seeds that never ran are no missing seeds of any arm (they will train nothing), and
    not "an arm with no run at all" either."""
    from analysis.report import build

    sweep = tmp_path / "sweep"
    args = ["-m", "mixer=shift,attn", "gamma=1/12,1/6", "seed=0,1", "match=none", *TINY, f"hydra.sweep.dir={sweep}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in job_dirs(sweep):  # seed 1 of every job never ran, as in a sweep cut off after its seed 0
        if "seed=1" in job_overrides(job):
            shutil.rmtree(job)
    text = build([sweep], tmp_path / "report")[0].read_text()
    assert "Not run: 3 jobs" in text and "With no run of their arm at all" not in text
    # cut off before any attn job ran: the baseline is queued, and the way out is to run it, beside the trend over
    # gamma that the shift arms alone make
    queued = "No comparison yet: the baseline arm (mixer=attn) has no run, and 4 of the sweep's planned jobs that " \
        "have not run ask for it (listed above). Relaunch the sweep's command to run them, then report again."
    for job in job_dirs(sweep):
        if "mixer=attn" in job_overrides(job):
            shutil.rmtree(job)
    text = build([sweep], tmp_path / "report")[0].read_text()
    assert queued in text and "## Trend over gamma" in text
    for job in job_dirs(sweep):  # and before shift's gamma=1/6: one arm, and the same way out
        if "gamma=1/6" in job_overrides(job):
            shutil.rmtree(job)
    text = build([sweep], tmp_path / "report")[0].read_text()
    assert queued in text and "Trend over" not in text


def test_a_sweep_cut_off_before_its_last_seed_counts_the_jobs_it_never_ran(tmp_path):
    """Killed once its first job has finished: the jobs that never started are rows of sweep.csv (queued), and
    the report says so before any number and counts them per arm. Seed by seed, the cut left both arms with
    seed 0 (the second may be interrupted) and neither with seed 1."""
    from analysis.report import NOT_RUN, build

    sweep = tmp_path / "cut"
    args = ["-m", "model=shiftvit_nano", "mixer=shift,identity", "seed=0,1", "train.epochs=1", "logger=none",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    first = sweep / "mixer=shift,model=shiftvit_nano,seed=0,train.epochs=1"
    start = time.time()
    while not (first / "summary.json").exists() or read_summary(first)["status"] != "completed":
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() - start < 600
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    write_sweep_csv(sweep)
    rows = {r["job"]: r for r in _rows(sweep)}
    assert len(rows) == 4 and rows[first.name]["status"] == "completed"
    for mixer in ("shift", "identity"):
        row = rows[f"mixer={mixer},model=shiftvit_nano,seed=1,train.epochs=1"]
        assert row["status"] == "queued" and not (sweep / row["job"]).exists()
        assert sorted(row["overrides"].split()) == sorted(["seed=1", f"mixer={mixer}", "model=shiftvit_nano",
                                                           "train.epochs=1", "logger=none"])
    md, _ = build([sweep], tmp_path / "report")
    text = md.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| arm"))
    assert f"| {NOT_RUN} |" in header  # shift's seed 1
    if (sweep / "mixer=identity,model=shiftvit_nano,seed=0,train.epochs=1" / "summary.json").exists():
        assert "Not run: 2 jobs" in text and f"({NOT_RUN}' column: mixer=shift 1, mixer=identity 1)" in text
    else:  # killed before the identity arm wrote a record: its jobs are named, since it has no row to count them in
        assert "Not run: 3 jobs" in text and f"'{NOT_RUN}' column: mixer=shift 1)" in text
        named = text.split("With no run of their arm at all: ", 1)[1].split("\n", 1)[0]
        assert [sorted(job.split()) for job in named.rstrip(".").replace("`", "").split("; ")] == [
            sorted(["seed=0", "model=shiftvit_nano", "mixer=identity", "train.epochs=1", "logger=none"]),
            sorted(["seed=1", "model=shiftvit_nano", "mixer=identity", "train.epochs=1", "logger=none"])]
    # another launch into the folder (Hydra rewrites multirun.yaml): the first launch's unrun jobs stay counted
    other = run_cli(["-m", "model=shiftvit_nano", "mixer=shift", "seed=0", "train.epochs=1", "logger=none",
                     f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert other.returncode == 0, other.stderr[-3000:]
    md, _ = build([sweep], tmp_path / "report")
    assert text.split("Not run: ", 1)[1][:8] == md.read_text().split("Not run: ", 1)[1][:8]
    assert sum(r["status"] == "queued" for r in _rows(sweep)) == sum(r["status"] == "queued" for r in rows.values())
    # the same command again runs only what is missing
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [r["status"] for r in _rows(sweep)] == ["completed"] * 4
    md, _ = build([sweep], tmp_path / "report")
    assert "Not run" not in md.read_text() and NOT_RUN not in md.read_text()


def test_a_one_seed_sweep_says_how_to_add_seeds_to_itself_and_they_reuse_its_jobs(tmp_path):
    """The headline line runs one seed per arm; the seed names the sweep, so the last line gives the override that
    adds seeds to this very folder (quoted: a sweep's name holds '=' and ','), and the relaunch finds the seed-0
    jobs done (duplicates of the first launch's) and trains only the new seeds."""
    args = ["-m", "mixer=shift", *TINY]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [hint] = [line for line in first.stdout.splitlines() if "a verdict needs two or more" in line]
    [sweep] = list((tmp_path / "multirun").iterdir())
    assert "=" in sweep.name
    added = shlex.split(hint.split("add ", 1)[1].split(" to the same command")[0])
    assert added == ["seed=0,1,2", f"hydra.sweep.dir='multirun/{sweep.name}'"]
    again = run_cli([*args, "seed=0,1", added[1]], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "a verdict needs two or more" not in again.stdout and list((tmp_path / "multirun").iterdir()) == [sweep]
    statuses = sorted((row["overrides"].split()[0], row["status"]) for row in _rows(sweep))
    assert statuses == [("mixer=shift", "completed"), ("seed=0", "duplicate"), ("seed=1", "completed")]
    third = run_cli(args, cwd=tmp_path)  # the first command again: its folder holds two seeds now, none to add
    assert third.returncode == 0 and "a verdict needs two or more" not in third.stdout, third.stdout[-3000:]


def test_a_sweep_hydra_refuses_before_its_first_job_leaves_no_folder(tmp_path, one_job_sweep):
    """mixer=shift,atn: Hydra refuses the second value as it composes the first job's batch. No job ran, so no
    multirun/<sweep named after the typo>/ holding only multirun.yaml, a lock and a header-only sweep.csv; a
    sweep folder that holds jobs keeps them."""
    proc = run_cli(["-m", "mixer=shift,atn", "logger=none"], cwd=tmp_path)
    assert proc.returncode != 0 and "Could not find 'mixer/atn'" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == [] and "wrote" not in proc.stdout
    sweep = one_job_sweep
    before = sorted(p.relative_to(sweep) for p in sweep.rglob("*") if p.name != SWEEP_CSV)
    plan = (sweep / "multirun.yaml").read_bytes()
    assert run_cli(["-m", "mixer=shift,atn", "logger=none", f"hydra.sweep.dir={sweep}"], cwd=tmp_path).returncode
    assert sorted(p.relative_to(sweep) for p in sweep.rglob("*") if p.name != SWEEP_CSV) == before
    # Hydra rewrote the plan before refusing the grid; the refused launch's jobs never become the sweep's
    assert (sweep / "multirun.yaml").read_bytes() == plan
    assert [row["status"] for row in _rows(sweep)] == ["completed"]


def test_a_sweep_judges_its_jobs_at_the_processes_their_launcher_gives_them():
    """The recipe scales the lr by the total batch: a job that submitit starts on 2 processes per node is judged on
    2, not on the launching process's 1 (which would refuse a grid that runs)."""
    from shiftvit.multirun import refused_job_error

    job = ["train.lr=0.001", "train.lr_base_size=256", "train.batch_size=64", "train.min_lr=0.0003", "logger=none"]
    answers = {}
    for tasks in (1, 2):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["hydra/launcher=submitit_local",
                                               f"hydra.launcher.tasks_per_node={tasks}", *job],
                          return_hydra_config=True)
            answers[tasks] = refused_job_error(cfg, [job])
    assert answers[1].startswith("train.lr=0.001 per 256 images is 0.00025 at a total batch of 64, below "
                                 "train.min_lr=0.0003") and "no job of this sweep started" in answers[1]
    assert answers[2] == ""  # 128 images in all: 0.0005
