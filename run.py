"""Hydra entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` for sweeps, ``--help``).

Kept thin and import-light: torch, timm and wandb load only once a job actually runs; the config is checked
before that (``shiftvit.config.check``), so ``--help`` and config errors answer fast.
"""
import errno
import os
import re
import sys
from pathlib import Path
from typing import List, Optional

import hydra
from omegaconf import DictConfig

from shiftvit import multirun
from shiftvit.config import HYDRA_VERSION_BASE, misplaced_key_hint, register_configs
from shiftvit.multirun import RUNS_DIR, SWEEPS_DIR


def is_sweep(argv: List[str]) -> bool:
    """Whether the command line asks Hydra for a sweep: ``-m``, ``--multirun`` or ``hydra.mode=MULTIRUN``."""
    return any(a in ("-m", "--multirun") or a.replace(" ", "") == "hydra.mode=MULTIRUN" for a in argv[1:])


def output_dir_error(argv: List[str]) -> str:
    """Why the run (or sweep) directory cannot be written, or '' when it can: answered here in one line,
    before Hydra fails on it with a traceback (it creates the directory and its log file first)."""
    multirun = is_sweep(argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(f"{key}=")]
    directory = given[-1] if given else (SWEEPS_DIR if multirun else RUNS_DIR)
    directory = directory.split("$", 1)[0] or "."  # interpolated parts (${now:...}) are created below this
    path = Path(directory)
    existing = path  # probed where it exists, so that a refused config leaves no empty run folder behind
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        probe = existing / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        return f"cannot write to {path} ({e.strerror or e}): choose a writable {key}=DIR"
    return ""


def one_line_config_error(message: str) -> str:
    """Hydra's multi-line composition errors as one line in the app's own style, nothing dropped but the
    search path and debugging hints: ``mixer=atn`` -> "Could not find 'mixer/atn': available options in
    'mixer': attn, dwconv, ..."."""
    noise = ("full_key:", "object_type=", "reference_type=", "Set the environment variable", "See https://",
             "Config search path", "provider=",
             "To append to your config use")  # Hydra suggests +key=value; the schema refuses new keys (config.check)
    parts: list = []  # (text, options listed under it or None)
    options = None
    for line in (line.strip() for line in message.strip().splitlines()):
        if not line or line.startswith(noise):
            continue
        if line.startswith("In '") and "': " in line:  # "In 'config': Could not find 'mixer/atn'"
            line = line.split("': ", 1)[1]
        if line.startswith("Available options in"):
            options = []
            parts.append((line[0].lower() + line[1:].rstrip(":"), options))
        elif options is not None:
            options.append(line)
        else:
            parts.append((line.rstrip("."), None))
    text = "; ".join(head if listed is None else f"{head}: {', '.join(listed)}" for head, listed in parts)
    text = text.replace("; available options", ": available options")
    misplaced = re.search(r"Could not override '([^']+)'", text)
    hint = misplaced_key_hint(misplaced.group(1)) if misplaced else ""
    return f"{text}; {hint}" if hint else text


def quoting_hint(override: str) -> str:
    """The way out of an override whose value holds an '=' (a sweep folder's name, such as
    ``multirun/gamma=1_12,1_6-mixer=attn,shift-f93771b1``, pasted unquoted), which Hydra's grammar reads only
    quoted, or ''."""
    key, _, value = override.partition("=")
    if "=" not in value or value[:1] in "'\"[":
        return ""
    return (f"; a value holding '=' is quoted for Hydra, and the whole override for the shell: "
            f"{multirun.quoted_override(key, value)}")


def _one_line_hydra_errors() -> None:
    """Config-composition errors (unknown group option, unknown key, bad override syntax) end like the app's
    own: one line, exit code 2. Hydra has no hook for this, so its reporter is wrapped; every other
    exception keeps Hydra's own report."""
    from hydra._internal import utils as hydra_utils
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    report = hydra_utils.run_and_report

    def run_and_report(func):
        def guarded():
            try:
                return func()
            except (ConfigCompositionException, MissingConfigException, OverrideParseException) as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                cause = f"\n{e.__cause__}" if e.__cause__ is not None else ""
                override = getattr(e, "override", None)
                where = f"cannot parse {override!r}: " if override else ""
                quote = quoting_hint(override) if override else ""
                print(f"error: {where}{one_line_config_error(str(e) + cause)}{quote}", file=sys.stderr)
                raise SystemExit(2) from None

        return report(guarded)

    hydra_utils.run_and_report = run_and_report


os.environ.setdefault(multirun.SWEEP_ID_ENV, multirun.continued_sweep_id(sys.argv))
register_configs()  # the schema and group options (shiftvit/config.py); torch-free
multirun.register_resolver()  # sweep job directories are named by their overrides (multirun.job_dir_name)

def torchrun_sweep_error(argv: List[str]) -> str:
    """Why this command cannot run, under torchrun, or '': a sweep there would run every job in every process
    (each taking the sweep's lock in turn, the others refused), not one job across the processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and is_sweep(argv):
        return ("a sweep (-m) does not run under torchrun, which would start the whole sweep in every process: "
                "launch each job with torchrun (one command per job), or sweep with hydra/launcher=submitit_slurm "
                "and hydra.launcher.tasks_per_node=N, which runs each job on N processes")
    return ""


if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join the group before Hydra picks a run dir
    from shiftvit import distributed

    processes = distributed.init_from_env()
    problem = torchrun_sweep_error(sys.argv)
    if problem:
        if processes.is_main:
            print(f"error: {problem}", file=sys.stderr, flush=True)
        distributed.barrier()  # said before any process exits (torchrun stops the others at the first exit)
        raise SystemExit(2)
    if not processes.is_main:
        sys.argv.append("hydra.output_subdir=null")


@hydra.main(version_base=HYDRA_VERSION_BASE, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    from shiftvit.app import main as app_main

    return app_main(cfg)


if __name__ == "__main__":
    if not any(a in ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info") for a in sys.argv[1:]):
        problem = output_dir_error(sys.argv)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(2)
    _one_line_hydra_errors()
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which checkpoints and exits 130 itself)
        print("interrupted by SIGINT: rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
