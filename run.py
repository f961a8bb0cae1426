"""Hydra entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` for sweeps, ``--help``).

Kept thin and import-light: torch, timm and wandb load only once a job actually runs, so ``--help`` and
config errors answer fast.
"""
import hashlib
import os
import re
import sys

import hydra
from omegaconf import DictConfig


def sweep_id(argv) -> str:
    """A sweep directory name that depends only on the command's overrides, so relaunching the same
    command finds the same directory (finished jobs are skipped, cut-off ones resume). How it is launched
    (``hydra/launcher=...``, ``hydra.*`` settings) is not part of the sweep's identity."""
    items = sorted(a for a in argv[1:] if "=" in a and not a.startswith(("-", "hydra.", "hydra/", "+hydra")))
    slug = re.sub(r"[^A-Za-z0-9=,.+_-]+", "_", "-".join(items))[:80] or "defaults"
    return f"{slug}-{hashlib.sha256(repr(items).encode()).hexdigest()[:8]}"


os.environ.setdefault("SHIFTVIT_SWEEP_ID", sweep_id(sys.argv))

if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join the group before Hydra picks a run dir
    from shiftvit import distributed

    if not distributed.init_from_env().is_main:
        sys.argv.append("hydra.output_subdir=null")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from shiftvit.app import main as app_main

    return app_main(cfg)


if __name__ == "__main__":
    main()
