"""torchrun support: process-group set-up before Hydra starts, so all ranks share one run directory."""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:
    import torch


# a record's interrupted_by where another process of the run ended without saying why (the OOM killer, a signal):
# its end cut this process's collective short, as a kill of this process would have ended the run
PEER_ENDED = "the end of another process"
# gloo's words for a connection that the process at its other end closed (by exiting) or lost (killed)
_PEER_GONE = ("by peer", "Broken pipe")
# a single run's folder under torchrun: rank 0's clock, in this variable, which conf/config.yaml's hydra.run.dir
# reads in this format (its ${now:...} parts otherwise; a test holds the two equal)
RUN_STAMP_ENV = "SHIFTVIT_RUN_STAMP"
RUN_STAMP_FORMAT = "%Y-%m-%d/%H-%M-%S-%f"
_FAILURE_KEY = "shiftvit/failure/{rank}"
_START_FAILURE_KEY = "shiftvit/start_failure/{rank}"
# how long a process that cannot start waits for the others to say they cannot either: a config error reaches every
# process within a second or two of the others; one that only this process meets (its node's data missing) has the
# others running on, waiting for it in a collective, so it must not wait for them at all
START_FAILURE_WAIT_S = 10.0


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env() -> DistInfo:
    """Join the torchrun group (gloo for CPU tensors, NCCL for CUDA ones) and agree on a run stamp.

    The stamp (rank 0's clock, broadcast) goes into ``RUN_STAMP_ENV``, which the Hydra run dir uses, so
    every rank of a job writes into the same directory.
    """
    d = info()
    if not d.enabled:
        return d
    _join(d)
    dist = _dist()
    stamp = [datetime.datetime.now().strftime(RUN_STAMP_FORMAT) if d.is_main else None]
    dist.broadcast_object_list(stamp, src=0)
    os.environ[RUN_STAMP_ENV] = stamp[0]
    return d


def init_from_slurm() -> DistInfo:
    """Inside a multi-task SLURM job started by submitit (``hydra.launcher.tasks_per_node=N``): export the
    torch.distributed variables from SLURM's (submitit's helper) and join the group. No-op elsewhere."""
    if info().enabled or int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SUBMITIT_EXECUTOR" not in os.environ:
        return info()
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    d = info()
    _join(d)
    return d


def _dist():
    """``torch.distributed``, imported at the first collective: ``info`` stays free of torch, so a process that
    only checks its config (and says what is wrong in one line) never loads it."""
    import torch.distributed

    return torch.distributed


def _join(d: DistInfo) -> None:
    """Join the process group once: gloo for CPU tensors, NCCL for CUDA ones (on this rank's GPU)."""
    import torch

    dist = _dist()
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def gather_objects(value: Any) -> List[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` without a process group)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        gathered: List[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, value)
        return gathered
    return [value]


def broadcast_flag(flag: bool) -> bool:
    """True on every rank if it is True on any rank (e.g. a preemption signal seen by one process)."""
    import torch

    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)
    return flag


def peer_lost(error: BaseException) -> bool:
    """Whether ``error`` is a collective cut short because another process of the group is gone: gloo's transport
    names the connection that its end closed, and the collective can never complete."""
    text = str(error)
    return isinstance(error, RuntimeError) and "gloo/transport/" in text and any(s in text for s in _PEER_GONE)


def _group_store() -> Any:
    """The process group's key-value store (torchrun's agent holds it, or rank 0 under SLURM), through which
    processes tell each other how they failed. Raises RuntimeError where there is no group (any more), and
    AttributeError should torch move this private accessor: its callers catch both, and carry on unsaid."""
    return _dist().distributed_c10d._get_default_store()


def say_failure(message: str) -> None:
    """A process other than rank 0 that fails on an error of its own says so before it exits: rank 0, which alone
    writes the record, finds its collective cut short (``peer_lost``) and records this (``peer_failure``). The group's
    store outlives the process (torchrun's agent holds it, or rank 0 under SLURM). Best effort: unsaid, the record
    reads as the interruption that a kill is."""
    d = info()
    if not d.enabled or d.is_main:
        return
    try:
        _group_store().set(_FAILURE_KEY.format(rank=d.rank), message)
    except (RuntimeError, AttributeError):  # no store (any more), or torch moved it
        pass


def start_failures(message: str, wait_s: float = START_FAILURE_WAIT_S) -> Optional[List[str]]:
    """A process of the group that cannot start its job says so in the group's store, then waits up to ``wait_s``
    for every other process to say the same. Returns every process's message, in rank order, where all failed;
    None where some did not (they are running, and this failure is this process's own) or no store answers. Outside
    a process group: ``[message]``."""
    d = info()
    if not d.enabled:
        return [message]
    try:
        store = _group_store()
        store.set(_START_FAILURE_KEY.format(rank=d.rank), message)
        keys = [_START_FAILURE_KEY.format(rank=rank) for rank in range(d.world_size)]
        deadline = time.monotonic() + wait_s
        # polled: the store's own timed wait warns of its socket's time-out in C++ when it runs out
        while not store.check(keys):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        return [store.get(key).decode() for key in keys]
    except (RuntimeError, AttributeError):  # no group's store (any more), or torch moved it
        return None


def peer_failure() -> Optional[str]:
    """What another process said of its failure (``say_failure``), naming its rank; None where none did (a process
    killed says nothing)."""
    d = info()
    try:
        store = _group_store()
        for rank in range(d.world_size):
            key = _FAILURE_KEY.format(rank=rank)
            if rank != d.rank and store.check([key]):
                return f"rank {rank} of {d.world_size} failed: {store.get(key).decode()}"
    except (RuntimeError, AttributeError):
        pass
    return None
