"""Hydra entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` for sweeps, ``--help``).

Kept thin and import-light: torch, timm and wandb load only once a job actually runs, so ``--help`` and
config errors answer fast.
"""
import os
import sys

import hydra
from omegaconf import DictConfig

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
