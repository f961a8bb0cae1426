import os

import pytest
import torch

from shiftvit.config import register_configs

# pytest-xdist's workers share the cores: each takes its share of threads, and so does every process a test starts
# (run.py, torchrun, a sweep: they read OMP_NUM_THREADS), or a few processes with every core each run many times
# slower than one after another. One process alone (-n 0) keeps the 2 cores of the CI machine.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, CORES // WORKERS))
torch.set_num_threads(THREADS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)
# deterministic and quiet
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
register_configs()  # what run.py does before Hydra composes: the schema and group options


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# each worker imports torch and starts training processes: past a few, more workers add memory, not speed
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int:
    """-n auto: one worker per core, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, CORES))
