"""wandb sweeps for run.py: check a sweep file, show the agent's command lines, create and run it.

    python -m experiments.wandb_sweep check experiments/wandb_sweeps/*.yaml        # every job composes and is valid
    python -m experiments.wandb_sweep commands experiments/wandb_sweeps/mixers.yaml   # what the agent will execute
    python -m experiments.wandb_sweep create experiments/wandb_sweeps/mixers.yaml --project shiftvit [--entity ME]
    wandb agent ME/shiftvit/SWEEP_ID                                     # on each machine, from the repo root

Command lines are rendered with wandb's own agent code (``create_sweep_command_args``), so what is checked
here is what the agent runs. ``create`` refuses a sweep with a job that does not compose, or that run.py would
refuse, before any job starts.
"""
from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import yaml

from shiftvit.config import CONF_DIR, HYDRA_VERSION_BASE, LoggerConfig, group_options

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "run.py"  # what every job runs: the Hydra app, with the sweep's parameters as overrides


class SweepError(ValueError):
    """A sweep file that would launch jobs that cannot compose."""


def load(path: Path) -> Dict[str, Any]:
    try:
        sweep = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SweepError(f"{path}: cannot read the sweep file ({e})") from None
    if not isinstance(sweep, dict) or "parameters" not in sweep:
        raise SweepError(f"{path}: a sweep file needs a 'parameters' mapping")
    return sweep


def _sample(spec: Dict[str, Any], rng: random.Random) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    dist = spec.get("distribution", "uniform")
    lo, hi = spec["min"], spec["max"]
    if dist in ("int_uniform",):
        return rng.randint(lo, hi)
    if dist in ("log_uniform_values",):
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dist in ("log_uniform",):
        return math.exp(rng.uniform(lo, hi))
    return rng.uniform(lo, hi)


def parameter_sets(sweep: Dict[str, Any], limit: Optional[int] = None, seed: int = 0) -> List[Dict[str, Any]]:
    """The grid (``method: grid``) or ``limit`` samples of the search space (random / bayes)."""
    params = sweep["parameters"]
    if sweep.get("method", "grid") == "grid":
        keys = list(params)
        choices = [params[k]["values"] if "values" in params[k] else [params[k]["value"]] for k in keys]
        sets = [dict(zip(keys, combo)) for combo in itertools.product(*choices)]
        return sets[:limit] if limit else sets
    rng = random.Random(seed)
    return [{k: _sample(v, rng) for k, v in params.items()} for _ in range(limit or 5)]


def agent_command(sweep: Dict[str, Any], values: Dict[str, Any]) -> List[str]:
    """The argv the wandb agent would execute for one parameter set (mirrors ``wandb.wandb_agent``)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(sweep.get("command"))
    variables = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    variables.update(interpreter=["python"], program=[sweep.get("program", PROGRAM)], env=["/usr/bin/env"])
    argv: List[str] = []
    for item in map(str, command):
        argv += (variables.get(item[2:-1]) or []) if item.startswith("${") and item.endswith("}") else [item]
    return argv


# random and Bayesian sweeps: the jobs composed by check() (their keys are the grid's; only the values vary)
CHECKED_SAMPLES = 20


def check(path: Path) -> Dict[str, Any]:
    """Refuse a sweep whose jobs cannot run: a group option that does not exist, or a command line the agent
    would execute that does not compose (a key the config, or the group chosen beside it, lacks) or holds a value
    ``run.py`` refuses. Each job is composed with its own overrides, as ``run.py`` would: ``data.root`` is a key
    once ``scale=paper`` chose an image folder, ``mixer.window_size`` only beside ``mixer=attn``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from shiftvit.config import ConfigError
    from shiftvit.config import check as check_values

    sweep = load(path)
    program = sweep.get("program", PROGRAM)
    if program != PROGRAM:
        raise SweepError(f"{path}: program must be {PROGRAM}, not {program!r}")
    groups = group_options()
    for key, spec in sweep["parameters"].items():
        group = key.removeprefix("+")  # +group=option adds a group that the defaults list does not name
        if group in groups:
            values = spec.get("values", [spec.get("value")])
            bad = [v for v in values if str(v) not in groups[group]]
            if bad:
                raise SweepError(f"{path}: parameter {key}={bad[0]!r} is not an option of group {group!r} "
                                 f"({', '.join(groups[group])})")
    # the seeds of one configuration compose alike: composed once (composing is the slow part), checked each
    jobs: Dict[tuple, List[Dict[str, Any]]] = {}
    for values in parameter_sets(sweep, limit=None if sweep.get("method", "grid") == "grid" else CHECKED_SAMPLES):
        jobs.setdefault(tuple((k, repr(v)) for k, v in values.items() if k != "seed"), []).append(values)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=HYDRA_VERSION_BASE):
        for seeds in jobs.values():
            argv = agent_command(sweep, seeds[0])
            if program not in argv:
                raise SweepError(f"{path}: the sweep command {sweep.get('command')} never runs the program: give "
                                 "command: [${env}, ${interpreter}, ${program}, ${args_no_hyphens}]")
            overrides = argv[argv.index(program) + 1:]
            hyphenated = [arg for arg in overrides if arg.startswith("-")]
            if hyphenated:  # wandb's default command passes --key=value, which Hydra refuses in every job
                raise SweepError(f"{path}: the agent would pass {hyphenated[0]}, which run.py refuses: give the "
                                 "sweep command: [${env}, ${interpreter}, ${program}, ${args_no_hyphens}]")
            try:
                composed = OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)
                for values in seeds:
                    check_values({**composed, "seed": values.get("seed", composed.get("seed"))})
            except ConfigError as e:
                raise SweepError(f"{path}: the job `run.py {' '.join(overrides)}` would be refused: {e}") from None
            except Exception as e:  # Hydra's composition errors: a key or an option the job's config lacks
                reason = " ".join(str(e).split("\n")[0].split())
                raise SweepError(f"{path}: the job `run.py {' '.join(overrides)}` does not compose: {reason}; "
                                 "`python run.py --cfg job` with those overrides shows the keys") from None
    return sweep


def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.wandb_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate sweep files against the configs")
    c.add_argument("files", nargs="+", type=Path)
    s = sub.add_parser("commands", help="print the command lines the agent would run")
    s.add_argument("file", type=Path)
    s.add_argument("--limit", type=int, default=None)
    k = sub.add_parser("create", help="check, then register the sweep with wandb (needs an account)")
    k.add_argument("file", type=Path)
    k.add_argument("--project", default=LoggerConfig.project)
    k.add_argument("--entity", default=None)
    args = p.parse_args(argv)
    try:
        if args.command == "check":
            for f in args.files:
                check(f)
                print(f"ok {f}")
        elif args.command == "commands":
            sweep = check(args.file)
            for values in parameter_sets(sweep, args.limit):
                print(" ".join(agent_command(sweep, values)))
        elif args.command == "create":
            import wandb

            sweep = check(args.file)
            sweep_id = wandb.sweep(sweep=sweep, project=args.project, entity=args.entity)
            print(f"created sweep {sweep_id}; run agents from {ROOT} with:\n  wandb agent "
                  f"{(args.entity + '/') if args.entity else ''}{args.project}/{sweep_id}")
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
