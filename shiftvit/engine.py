"""Training and evaluation built from timm's parts, with exact resume and preemption handling.

timm provides the optimizer (AdamW without weight decay on norms, biases and the relative-position tables),
the per-iteration cosine schedule with warm-up, Mixup/CutMix, the losses, model EMA and gradient clipping.
What is written here is only what no library offers in this shape: a loop that checkpoints atomically,
resumes *bit-exactly* on CPU (data order from (seed, epoch), all RNG states saved, mid-epoch position
included), stops cleanly on SIGINT/SIGTERM/SIGUSR1, and records a NaN loss as a diverged run instead of crashing.
"""
from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from timm.scheduler.scheduler import Scheduler

from . import distributed as dist_utils
from .compiling import compile_model
from .config import ALWAYS, AUTO, NEVER, TrainSettings
from .data import STOP_SIGNALS, DataBundle, make_loaders, on_device_eligible, rank_seed
from .devices import (  # noqa: F401  (also engine API)
    AMP_DTYPES,
    amp_device_error,
    autocast_for,
    cuda_devices_if_absent,
    resolve_device,
)
from .records import (
    CHECKPOINT_FILE,
    COMPLETED,
    DIVERGED,
    METRICS_FILE,
    RecordError,
    atomic_write_bytes,
    read_metrics,
    write_metrics,
    write_predictions,
)

log = logging.getLogger(__name__)

class Interrupted(Exception):
    """Raised after a preemption signal once the checkpoint is on disk."""


@dataclass
class FitResult:
    status: str
    history: List[Dict[str, Any]]
    train_images_per_s: Optional[float]
    eval_images_per_s: Optional[float]
    epochs_done: int


def reseed(seed: int) -> None:
    """Seed every generator a training step draws from: Python's, NumPy's and torch's (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def use_deterministic_algorithms(fill_uninitialized_memory: bool = False) -> None:
    """``train.deterministic=true``: PyTorch's deterministic algorithms, for the whole process."""
    # cuBLAS is deterministic only with a fixed workspace; it reads this before its first call
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # With deterministic algorithms on, PyTorch by default also writes NaN into every tensor it allocates before the
    # kernel that fills it runs (convolution and norm outputs and gradients: an extra write of each, an extra launch
    # on a GPU). Its docs: a program that reads no uninitialized memory "can [turn it] off for better performance
    # and still be deterministic" (torch.utils.deterministic). Ours reads none: the same seed trains to the same
    # bits either way (tests/test_models.py). What the fill costs: ``bench profile --deterministic filled``.
    torch.utils.deterministic.fill_uninitialized_memory = fill_uninitialized_memory
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int, deterministic: bool) -> None:
    reseed(seed)
    if deterministic:
        use_deterministic_algorithms()


def _rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _SignalCatcher:
    """SIGINT (Ctrl-C), SIGTERM / SIGUSR1 (SLURM's preemption notices) set a flag that the loop checks after
    each step, so every interruption ends with a checkpoint and an ``interrupted`` record.

    SIGUSR2 is caught too when a handler is already installed for it (submitit's timeout/preemption
    handler, which requeues the job): the checkpoint is written first, then that handler is called.
    """

    SIGNALS = STOP_SIGNALS

    def __init__(self):
        self.received: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                if sig == getattr(signal, "SIGUSR2", None) and not callable(signal.getsignal(sig)):
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. some launchers): preemption is then the launcher's job
            self._previous.clear()
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, exc_type, exc, tb) -> None:
        # torchrun stops the other processes with SIGTERM once it sees one gone: this one has yet to record how the
        # run ended (rank 0) and exits right after, so that SIGTERM must not end it first. So too when the run stops
        # for a signal and another process is killed meanwhile (a scheduler's kill after its notice), unless a
        # handler of SIGTERM's own was installed (a launcher's), which stays
        peer_lost = exc is not None and dist_utils.peer_lost(exc)
        stopping = isinstance(exc, Interrupted) and not callable(self._previous.get(signal.SIGTERM))
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if (peer_lost or stopping) and sig == signal.SIGTERM else handler)


def create_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    """timm's optimizer as the settings name it (AdamW without weight decay on norms, biases and tables)."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, s.opt, lr=s.lr, weight_decay=s.weight_decay, eps=s.opt_eps,
                               momentum=s.momentum)


def create_scheduler(optimizer: torch.optim.Optimizer, s: TrainSettings,
                     updates_per_epoch: int) -> Optional[Scheduler]:
    """timm's schedule as the settings name it, stepped every update (None where timm has no such schedule)."""
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer, sched=s.sched, num_epochs=s.epochs, warmup_epochs=s.warmup_epochs, warmup_lr=s.warmup_lr,
        min_lr=s.min_lr, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return scheduler


class Trainer:
    def __init__(self, model: nn.Module, data: DataBundle, settings: TrainSettings, run_dir: Path, seed: int,
                 on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None,
                 dist: Optional[dist_utils.DistInfo] = None,
                 on_start: Optional[Callable[[int, int], None]] = None):
        """``on_epoch(row)``: after each epoch's row; ``on_start(epoch, batch)``: where ``fit`` starts training (its
        checkpoint's position, or 0, 0), before it does."""
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.utils import ModelEmaV3

        s = self.settings = settings.check()  # the settings' own checks (config.TrainSettings.check)
        self.dist = dist or dist_utils.info()
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.on_epoch, self.on_start = on_epoch, on_start
        if s.threads:
            torch.set_num_threads(s.threads)
        self.device = resolve_device(s.device, self.dist.local_rank)
        amp_error = amp_device_error(s.amp, self.device)
        if amp_error:
            raise ValueError(amp_error)
        self.memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.data = data
        self.train_loader, self.val_loader = make_loaders(
            data, s.batch_size, seed, s.num_workers, distributed=self.dist.enabled, device=self._data_device(data),
            aug_repeats=s.aug_repeats)
        self.updates_per_epoch = math.ceil(len(self.train_loader) / s.accum_steps)
        self.optimizer = create_optimizer(self.model, s)
        self.scheduler = create_scheduler(self.optimizer, s, self.updates_per_epoch)
        mixing = s.mixup > 0 or s.cutmix > 0
        self.mixup = Mixup(mixup_alpha=s.mixup, cutmix_alpha=s.cutmix, prob=s.mixup_prob,
                           switch_prob=s.mixup_switch_prob, label_smoothing=s.label_smoothing,
                           num_classes=data.num_classes) if mixing else None
        if mixing:
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif s.label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(s.label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.eval_criterion = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler("cuda") if s.amp == "fp16" else None
        self.ema = ModelEmaV3(self.model, decay=s.ema_decay, use_warmup=s.ema_warmup) if s.ema else None
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if s.compile:  # scope blocks compiles the blocks in place: evaluation runs them compiled too (EMA's copy not)
            self.train_model = compile_model(self.train_model, s.compile_mode, s.compile_scope)
        self.history: List[Dict[str, Any]] = []
        self.start_epoch, self.start_batch = 0, 0
        self.partial: Dict[str, float] = {"loss_sum": 0.0, "samples": 0.0, "seconds": 0.0}
        self.num_updates = 0
        self.diverged = False
        if self.dist.enabled:  # the model was built from the shared seed (and DDP made the ranks' weights one)
            reseed(rank_seed(seed, self.dist.rank, self.dist.world_size))

    # --- checkpointing --------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def save_checkpoint(self, epoch: int, batch: int) -> None:
        """``epoch``/``batch``: where training continues (batch > 0 means in the middle of ``epoch``). Called on
        every rank at once: each process's random state and partial epoch sums are its own, and rank 0 writes
        them all (``ranks``)."""
        own = {"rng": _rng_state(), "partial": dict(self.partial)}
        ranks = dist_utils.gather_objects(own)
        if not self.dist.is_main:
            return
        import io

        state = {
            "epoch": epoch, "batch": batch, "num_updates": self.num_updates, "partial": own["partial"],
            "ranks": ranks if self.dist.enabled else None,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": own["rng"],
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.module.state_dict() if self.ema else None, "diverged": self.diverged,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        # read the metrics first: a checkpoint is never ahead of its metrics rows (see fit), so resuming
        # from it and dropping the rows at or after its epoch rewrites each epoch's row exactly once
        metrics = read_metrics(self.run_dir)
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError ... for a damaged file
            raise RecordError(
                f"{self.checkpoint_path} is unreadable ({type(e).__name__}{': ' if str(e) else ''}"
                f"{(str(e).splitlines() or [''])[0][:80]}): "
                "delete it to restart this run from epoch 1, or train.resume=fresh to archive the record "
                "and start over") from None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema and state["ema"]:
            self.ema.module.load_state_dict(state["ema"])
        # this process's own state where the checkpoint holds every rank's (world_size is part of the run's
        # identity, so a resumed run has as many ranks as the one that wrote it)
        if self.dist.enabled and not state.get("ranks"):
            raise RecordError(
                f"{self.checkpoint_path} was written by older code, whose processes shared one random stream and "
                "rank 0's loss: resuming it now would finish the run under two schemes; train.resume=fresh "
                "archives the record and starts over")
        own = state["ranks"][self.dist.rank] if self.dist.enabled else state
        _set_rng_state(own["rng"])
        self.start_epoch, self.start_batch = state["epoch"], state["batch"]
        self.num_updates = state["num_updates"]
        self.partial = dict(own["partial"])
        self.diverged = bool(state.get("diverged", False))
        # rows are numbered from 1, as printed; the checkpoint counts the epochs done
        self.history = [r for r in metrics if r["epoch"] <= self.start_epoch]
        held = [r["epoch"] for r in self.history]
        if held != list(range(1, self.start_epoch + 1)):  # a record completed from here would lack those epochs
            raise RecordError(
                f"{self.run_dir / METRICS_FILE} holds epochs {_epochs_text(held)} but {self.checkpoint_path} has "
                f"trained {self.start_epoch}: continuing would record a run without all its epochs; "
                "train.resume=fresh archives the record and starts over")
        if self.dist.is_main:  # every rank resumes from the same checkpoint: one line
            # epochs numbered from 1, as every other line prints them (the checkpoint counts those done)
            where = (f"in epoch {self.start_epoch + 1}, after its batch {self.start_batch}" if self.start_batch else
                     f"after epoch {self.start_epoch}")
            log.info("resumed from %s %s", self.checkpoint_path, where)
        return True

    # --- loops ----------------------------------------------------------------------------------------------
    def _autocast(self):
        return autocast_for(self.device, self.settings.amp)

    def _data_device(self, data: DataBundle) -> Optional[torch.device]:
        """Where the batches are cut (``train.data_on_device``): None for the CPU DataLoader."""
        mode = self.settings.data_on_device
        if mode == NEVER:
            return None
        if on_device_eligible(data, self.settings.num_workers):
            return self.device
        if mode == ALWAYS:
            raise ValueError("train.data_on_device=always needs an in-memory tensor dataset (digits, relations, "
                             "mnist, synthetic, cifar with data.augment=crop_flip) and train.num_workers=0; use "
                             "train.data_on_device=auto")
        if self.dist.is_main and self.settings.num_workers == 0 and self.device.type == "cuda":
            log.info("data: a DataLoader transforms every image on the CPU, one at a time; on a GPU that can bound "
                     "a small model's step (for CIFAR, data.augment=crop_flip augments on the GPU: a new arm, not a "
                     "speed setting; or raise train.num_workers)")
        return None

    def _to_device(self, x: torch.Tensor, y: torch.Tensor):
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def _progress(self, total: int, desc: str):
        from tqdm.auto import tqdm

        mode = self.settings.progress
        show = (mode == ALWAYS) or (mode == AUTO and sys.stderr.isatty())
        return tqdm(total=total, desc=desc, disable=not (show and self.dist.is_main), leave=False,
                    dynamic_ncols=True)

    def train_one_epoch(self, epoch: int, catcher: _SignalCatcher) -> Optional[float]:
        """Returns the mean train loss, or None if the loss stopped being finite."""
        s = self.settings
        sampler = self.train_loader.sampler
        sampler.set_epoch(epoch, skip=self.start_batch * self.train_loader.batch_size)
        # the loader now holds only the batches left after a mid-epoch resume: count the epoch's batches whole,
        # or its last (partial) accumulation window would never be stepped
        epoch_batches = self.start_batch + len(self.train_loader)
        self.train_model.train()
        bar = self._progress(epoch_batches, f"epoch {epoch + 1}/{s.epochs}")
        bar.update(self.start_batch)
        batch = self.start_batch
        self.start_batch = 0
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        # The loss sum and the finiteness check stay on the device until the epoch ends (or a signal stops it):
        # reading either per step would make the host wait for every step's kernels, and a small model on a GPU
        # is bound by how fast the host queues them. A loss that stops being finite is caught at the epoch's
        # end; the steps after it are wasted, never recorded.
        loss_sum = torch.tensor(self.partial["loss_sum"], dtype=torch.float64, device=self.device)
        all_finite = torch.ones((), dtype=torch.bool, device=self.device)
        for x, y in self.train_loader:
            x, y = self._to_device(x, y)
            if self.mixup is not None:
                x, y = self.mixup(x, y)
            with self._autocast():
                loss = self.criterion(self.train_model(x), y)
            detached = loss.detach()
            all_finite &= torch.isfinite(detached)
            loss_sum += detached.double() * x.shape[0]  # the same float64 sum as loss.item() * n, in order
            scaled = loss / s.accum_steps
            if self.scaler:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
            batch += 1
            window_done = batch % s.accum_steps == 0 or batch == epoch_batches
            if window_done:
                self._optimizer_step()
            self.partial["samples"] += x.shape[0]
            if not bar.disable:
                elapsed = self.partial["seconds"] + time.perf_counter() - started
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                img_s=f"{self.partial['samples'] / max(elapsed, 1e-9):.0f}")
            bar.update(1)
            # stop only between optimizer steps: the gradients of a half-accumulated window are not checkpointed
            if window_done and dist_utils.broadcast_flag(catcher.received is not None):
                self.partial["seconds"] += time.perf_counter() - started
                bar.close()
                if self._any_rank_diverged(all_finite):  # never checkpoint weights a non-finite loss stepped
                    return None
                self.partial["loss_sum"] = loss_sum.item()
                self.save_checkpoint(epoch, batch)
                raise Interrupted(signal.Signals(catcher.received or signal.SIGTERM).name)
        bar.close()
        # the epoch's one wait for the device, and its one all-reduce: every process's loss sum and images (the
        # epoch's mean loss is over all of them, not rank 0's share) and whether any saw a non-finite loss
        summed = dist_utils.all_reduce_sum(torch.stack([
            loss_sum, torch.tensor(self.partial["samples"], dtype=torch.float64, device=self.device),
            (~all_finite).double()]))
        own_loss, total_loss, total_samples, non_finite = torch.cat([loss_sum.reshape(1), summed]).tolist()
        self.partial["seconds"] += time.perf_counter() - started
        if non_finite:
            return None
        self.partial["loss_sum"] = own_loss
        return total_loss / max(total_samples, 1)

    def _any_rank_diverged(self, all_finite: torch.Tensor) -> bool:
        """Whether any process saw a non-finite loss: all ranks must stop together, or the others would wait in
        the next all-reduce for one that left."""
        return dist_utils.broadcast_flag(not bool(all_finite.item()))

    def _optimizer_step(self) -> None:
        from timm.utils import dispatch_clip_grad

        s = self.settings
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if s.clip_grad:
            dispatch_clip_grad(self.model.parameters(), s.clip_grad)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        self.scheduler.step_update(num_updates=self.num_updates)
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, predictions: bool = False) -> Dict[str, Any]:
        """Loss, top-1 and top-5 over the validation set, and images/s; with ``predictions``, also every image's
        top-1 class and label in the data set's order (``"predictions"``: two int64 arrays, on every rank)."""
        model.eval()
        # loss_sum, top1, top5, n: summed on the device, read once at the end (no wait per batch)
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        kept: List[torch.Tensor] = []
        started = time.perf_counter()
        k = min(5, self.data.num_classes)
        for x, y in self.val_loader:
            x, y = self._to_device(x, y)
            with self._autocast():
                out = model(x)
            out = out.float()
            top = out.topk(k, dim=1).indices
            totals += torch.stack([self.eval_criterion(out, y).double() * x.shape[0],
                                   (top[:, 0] == y).sum().double(), (top == y[:, None]).any(dim=1).sum().double(),
                                   torch.full((), x.shape[0], dtype=torch.float64, device=self.device)])
            if predictions:
                kept.append(torch.stack([top[:, 0], y]))
        totals = dist_utils.all_reduce_sum(totals).cpu()
        seconds = time.perf_counter() - started
        n = max(totals[3].item(), 1.0)
        metrics: Dict[str, Any] = {
            "val_loss": totals[0].item() / n, "val_top1": 100 * totals[1].item() / n,
            "val_top5": 100 * totals[2].item() / n, "images_per_s": totals[3].item() / max(seconds, 1e-9)}
        if predictions:
            mine = torch.cat(kept, dim=1).cpu().numpy() if kept else np.zeros((2, 0), dtype=np.int64)
            metrics["predictions"] = _in_data_set_order(dist_utils.gather_objects(mine))
        return metrics

    def fit(self) -> FitResult:
        s = self.settings
        self.load_checkpoint()
        if self.on_start is not None:
            self.on_start(self.start_epoch, self.start_batch)
        # a run whose checkpoint says it diverged is never trained past that point
        last_epoch = self.start_epoch if self.diverged else s.epochs
        with _SignalCatcher() as catcher:
            for epoch in range(self.start_epoch, last_epoch):
                mean_loss = self.train_one_epoch(epoch, catcher)
                if mean_loss is None:
                    self.diverged = True
                    log.warning("loss is not finite at epoch %d: run marked diverged", epoch + 1)
                    break
                row: Dict[str, Any] = {"epoch": epoch + 1, "train_loss": mean_loss,
                                       "lr": self.optimizer.param_groups[0]["lr"],
                                       "train_images_per_s": self.partial["samples"] * self.dist.world_size
                                       / max(self.partial["seconds"], 1e-9),
                                       "epoch_s": self.partial["seconds"]}
                if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs:
                    metrics = self.evaluate(self.model, predictions=epoch + 1 == s.epochs)
                    row["eval_images_per_s"] = metrics.pop("images_per_s")
                    predicted_and_target = metrics.pop("predictions", None)
                    if predicted_and_target is not None and self.dist.is_main:  # before the row that records them
                        write_predictions(self.run_dir, *predicted_and_target, self.data.class_names)
                    row.update(metrics)
                    if self.ema is not None:
                        row["ema_val_top1"] = self.evaluate(self.ema.module)["val_top1"]
                    if not math.isfinite(metrics["val_loss"]):
                        self.diverged = True
                self.history.append(row)
                self.partial = {"loss_sum": 0.0, "samples": 0.0, "seconds": 0.0}
                # the row before the checkpoint that moves past it: a kill between the two retrains this
                # epoch and rewrites its row, never skips it
                if self.dist.is_main:
                    write_metrics(self.run_dir, self.history)
                self.save_checkpoint(epoch + 1, 0)
                if self.dist.is_main:  # every rank holds the same row (its sums are all-reduced): one line
                    log.info("epoch %d/%d %s", epoch + 1, s.epochs, " ".join(
                        f"{k}={v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)))
                if self.on_epoch is not None:
                    self.on_epoch(row)
                if self.diverged:
                    break
        return FitResult(DIVERGED if self.diverged else COMPLETED, self.history,
                         _median(self.history, "train_images_per_s"), _median(self.history, "eval_images_per_s"),
                         len(self.history))


def _in_data_set_order(shards: List[np.ndarray]) -> np.ndarray:
    """One (2, n) array from every rank's (2, n_r) evaluation shard: ``data.ShardSampler`` gives rank r the images
    r, r + world, r + 2·world, ..., so image i is item i // world of rank i % world's shard."""
    world = len(shards)
    total = sum(shard.shape[1] for shard in shards)
    merged = np.empty((2, total), dtype=np.int64)
    for rank, shard in enumerate(shards):
        merged[:, rank::world] = shard
    return merged


def _epochs_text(epochs: List[int]) -> str:
    return "none" if not epochs else ", ".join(map(str, epochs)) if len(epochs) <= 6 else \
        f"{', '.join(map(str, epochs[:3]))}, ..., {epochs[-1]} ({len(epochs)} rows)"


def _median(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(values)) if values else None
