"""What every benchmark shares: timers that wait for the device, interleaved rounds, page-fault counts, the
device's name and the JSON output (the autocast contexts are run.py's: ``devices.autocast_for``)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ..devices import machine
from ..records import machine_label


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Wait for queued kernels (CUDA launches are asynchronous: a timer must stop after the work, not the call)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_interleaved(fns: Dict[str, Callable[[], None]], repeats: int, warmup: int = 2,
                     device: torch.device = torch.device("cpu")) -> Dict[str, List[float]]:
    """Run each function ``warmup`` times, then ``repeats`` rounds in which every function runs once."""
    sync = synchronizer(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def _minor_faults(call: Callable[[], object]) -> Optional[int]:
    """Page faults the kernel served during one call (each one maps and zeroes a fresh 4 KiB page)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _machine() -> str:
    """The CPU and the vector instructions torch's kernels use on it, as a report names a run's."""
    return machine_label(machine())


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_machine()})"


def _write(result: Dict[str, object], out: Optional[str]) -> None:
    if out:
        from ..records import atomic_write_bytes

        path = Path(out)
        atomic_write_bytes(path, json.dumps(result, indent=2).encode())
        print(f"wrote {path}")
