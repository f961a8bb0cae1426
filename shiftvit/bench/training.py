"""What the framework costs: training images/s of ``run.py``'s engine against a loop written by hand around the
same model and loader, and ``run.py``'s start-up against ``import torch`` alone."""
from __future__ import annotations

import collections
import copy
import gc
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .timing import synchronizer

ROOT = Path(__file__).resolve().parents[2]  # the checkout: run.py lives there


class _OpCounter:
    """Counts the ATen operations dispatched while active: on a GPU each is (at least) one kernel launch, and a
    small model's step is bound by how fast the host launches them, so the count says what a loop adds. Written
    here because PyTorch's profiler records far more than a count needs (and slows the step more)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.by_op[func.overloadpacket.__name__] += 1
                return func(*args, **(kwargs or {}))

        self.by_op: collections.Counter = collections.Counter()
        self.mode = _Mode()

    @property
    def count(self) -> int:
        return sum(self.by_op.values())


class _Loops:
    """The two loops, built in one process on the same data and the same initial weights, run epoch by epoch in
    turn: what a researcher would write by hand (AdamW, cross-entropy with the same label smoothing), and
    ``run.py``'s engine (``shiftvit.engine.Trainer``, with the settings ``run.py`` gets from the same command
    line). Interleaving the epochs lets a drift of the machine touch both alike."""

    def __init__(self, model_name: str, batch_size: int, device: str, data: str, data_options: Dict[str, Any],
                 compile: bool, compile_mode: str, deterministic: bool, epochs: int, run_dir: Path, seed: int = 0):
        import timm

        import shiftvit.models  # noqa: F401  (registers the models with timm)

        from ..config import TrainSettings
        from ..data import build_data, make_loaders, on_device_eligible
        from ..engine import Trainer, seed_everything

        seed_everything(seed, deterministic)
        self.dev = torch.device(device)
        self._sync = synchronizer(self.dev)
        bundle = build_data(data, **data_options)
        settings = TrainSettings(epochs=epochs, batch_size=batch_size, device=device, ema=False, compile=compile,
                                 compile_mode=compile_mode, deterministic=deterministic)
        self.model = timm.create_model(model_name, num_classes=bundle.num_classes, in_chans=bundle.in_chans)
        engine_model = copy.deepcopy(self.model)
        self.model.to(self.dev)
        # cut a batch at a time from tensors on the device, as run.py's engine does (train.data_on_device=auto) and
        # anyone would for a data set this small: both sides get the same batches the same way
        on_device = self.dev if on_device_eligible(bundle, num_workers=0) else None
        self.train, _ = make_loaders(bundle, batch_size, seed, device=on_device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.forward = torch.compile(self.model, mode=compile_mode) if compile else self.model
        self.trainer = Trainer(engine_model, bundle, settings, run_dir, seed)

    def bare_epoch(self, epoch: int) -> Tuple[int, int]:
        """(images, batches) of one epoch of the hand-written loop."""
        self.model.train()
        self.train.sampler.set_epoch(epoch)
        seen = batches = 0
        for x, y in self.train:
            x, y = x.to(self.dev, non_blocking=True), y.to(self.dev, non_blocking=True)
            loss = self.criterion(self.forward(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            seen, batches = seen + x.shape[0], batches + 1
        return seen, batches

    def engine_epoch(self, epoch: int) -> Tuple[int, int]:
        from ..engine import _SignalCatcher

        self.trainer.partial = {"loss_sum": 0.0, "samples": 0.0, "seconds": 0.0}
        with _SignalCatcher() as catcher:
            if self.trainer.train_one_epoch(epoch, catcher) is None:
                raise RuntimeError("the engine's loss stopped being finite: no rate to compare")
        return int(self.trainer.partial["samples"]), len(self.trainer.train_loader)

    def rate(self, epoch_fn: Callable[[int], Tuple[int, int]], epoch: int) -> float:
        """Images/s of one epoch, the device's queue drained before and after."""
        self._sync()
        start = time.perf_counter()
        seen, _ = epoch_fn(epoch)
        self._sync()
        return seen / (time.perf_counter() - start)

    def count_ops(self, epoch_fn: Callable[[int], Tuple[int, int]], epoch: int) -> Tuple[_OpCounter, int]:
        """The ATen operations of one epoch, by name, and the epoch's batches."""
        counter = _OpCounter()
        with counter.mode:
            _, batches = epoch_fn(epoch)
        return counter, batches

    def ops_per_step(self, epoch_fn: Callable[[int], Tuple[int, int]], epoch: int) -> float:
        counter, batches = self.count_ops(epoch_fn, epoch)
        return counter.count / max(batches, 1)



def bench_overhead(epochs: int = 3, model_name: str = "shiftvit_nano", device: str = "cpu", data: str = "digits",
                   batch_size: int = 64, data_options: Optional[Dict[str, Any]] = None, compile: bool = False,
                   compile_mode: str = "default", startup: bool = True,
                   deterministic: bool = True, startup_repeats: int = 3) -> Dict[str, object]:
    """Training images/s of ``run.py``'s engine against a bare loop, and start-up; with ``compile`` both sides
    compile the model (``train.compile=true``). The median epoch is compared, so the first epoch's compilation
    stays out of both numbers from three epochs on.

    Three rates: the bare loop and the engine in this process, epoch by epoch in turn (``engine_ratio``, the one
    to compare), and ``run.py`` itself in a process of its own (its ``train_images_per_s``; ``step_rate_ratio``
    divides it by the bare loop's, across two processes). Eager runs also count the ATen operations per step of
    each loop (``aten_ops_per_step``). Start-up: the fastest of ``startup_repeats`` starts of each."""
    import subprocess
    import sys
    import tempfile

    from ..records import read_metrics

    data_options = dict(data_options or {})
    with tempfile.TemporaryDirectory() as tmp:
        loops = _Loops(model_name, batch_size, device, data, data_options, compile, compile_mode, deterministic,
                       epochs, Path(tmp) / "engine")
        bare, engine = [], []
        for epoch in range(epochs):
            bare.append(loops.rate(loops.bare_epoch, epoch))
            engine.append(loops.rate(loops.engine_epoch, epoch))
        ops = {} if compile else {"bare": loops.ops_per_step(loops.bare_epoch, epochs),
                                  "engine": loops.ops_per_step(loops.engine_epoch, epochs)}
        del loops  # its models and data leave the device before run.py starts
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        cmd = [sys.executable, str(ROOT / "run.py"), f"model={model_name}", f"data={data}", f"train.epochs={epochs}",
               f"train.batch_size={batch_size}", f"train.device={device}", "match=none", "logger=none",
               "train.ema=false", f"train.compile={str(compile).lower()}", f"train.compile_mode={compile_mode}",
               f"train.deterministic={str(deterministic).lower()}",
               *(f"data.{k}={v}" for k, v in data_options.items()), f"hydra.run.dir={tmp}/run"]
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        framework = [r["train_images_per_s"] for r in read_metrics(Path(tmp) / "run")]

    def wall(args: List[str]) -> float:
        times = []
        for _ in range(startup_repeats):
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        return min(times)

    result: Dict[str, object] = {}
    if startup:  # seven interpreter starts: a minute where importing torch is slow (a cold GPU machine)
        help_s = wall([sys.executable, str(ROOT / "run.py"), "--help"])
        torch_s = wall([sys.executable, "-c", "import torch"])
        result = dict(help_s=help_s, import_torch_s=torch_s, startup_ratio=help_s / torch_s,
                      startup_repeats=startup_repeats)
    return dict(benchmark="overhead", model=model_name, data=data, data_options=data_options, device=device,
                batch_size=batch_size, epochs=epochs, compile=compile, compile_mode=compile_mode if compile else None,
                deterministic=deterministic, threads=torch.get_num_threads(), interleaved=True,
                bare_images_per_s=bare, engine_images_per_s=engine, run_py_images_per_s=framework,
                engine_ratio=statistics.median(engine) / statistics.median(bare),
                step_rate_ratio=statistics.median(framework) / statistics.median(bare),
                aten_ops_per_step=ops, **result)


def _print_overhead(r: Dict[str, object]) -> None:
    compiled = f"compiled ({r['compile_mode']})" if r.get("compile") else "eager"
    if "deterministic" in r:
        compiled += ", deterministic" if r["deterministic"] else ", not deterministic"
    print(f"training throughput, {r['model']} on {r['data']} {r.get('data_options') or ''}, batch {r['batch_size']}, "
          f"{r['device']}, {compiled}, {r['epochs']} epochs, {r['threads']} threads (median epoch)")
    print(f"  bare PyTorch loop      {statistics.median(r['bare_images_per_s']):>9.1f} images/s")
    if "engine_images_per_s" in r:
        print(f"  run.py's engine        {statistics.median(r['engine_images_per_s']):>9.1f} images/s  "
              "(this process, epochs in turn with the bare loop's)")
        print(f"  ratio engine / bare    {r['engine_ratio']:>9.3f}")
    print(f"  run.py, own process    {statistics.median(r['run_py_images_per_s']):>9.1f} images/s")
    print(f"  ratio run.py / bare    {r['step_rate_ratio']:>9.3f}  (two processes)")
    for loop, ops in (r.get("aten_ops_per_step") or {}).items():
        print(f"  ATen ops per step, {loop:<7}{ops:>7.1f}")
    if "help_s" in r:
        print(f"start-up: run.py --help {r['help_s']:.2f} s, python -c 'import torch' {r['import_torch_s']:.2f} s, "
              f"ratio {r['startup_ratio']:.2f}")
