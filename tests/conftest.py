import os

import pytest
import torch

from shiftvit.config import register_configs

# deterministic, quiet, and fair to the 2-core CI machine
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
register_configs()  # what run.py does before Hydra composes: the schema and group options


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
