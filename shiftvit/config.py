"""The experiment's configuration: its schema (dataclasses, registered as Hydra structured configs), its checks,
and its resolution into the *effective* config a run records.

Where a setting lives, in one guess each:
  defined    here, as a dataclass field with its default (``TrainSettings.lr``, ``ModelConfig.norm``, the data
             sets' fields); the architecture vocabulary (variants, norms, mixer options) in ``shiftvit/spec.py``;
             the YAML files in ``conf/`` only override what differs (``conf/train/imagenet.yaml``) or compose
             groups (``conf/experiment/``, ``conf/scale/``).
  validated  types and unknown keys by OmegaConf while Hydra composes; values by the owner's ``check()``
             (``TrainSettings.check``, each data set's and mixer's options), the optimizer's and schedule's names
             by timm, the budget by ``flops.solve_depths``, all called from ``resolve`` below; what the machine
             must have (the device, the data's files) by ``preflight``. Both run before anything is written.
  recorded   by ``shiftvit/records.py`` (``config.yaml``, ``summary.json``; its ``SUMMARY_KEYS``).

Everything ``check`` asks runs without torch, so a bad value answers in well under a second; timm's names, the
budget and ``preflight`` need torch.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type

from . import spec

log = logging.getLogger(__name__)

MISSING = "???"  # OmegaConf's marker of a value the user must give (omegaconf.MISSING), without importing it

# match: the budget each run's depths are solved to (the reference's MACs | its parameters) | the depths as given
MATCH_FLOPS, MATCH_PARAMS, MATCH_NONE = MATCHES = ("flops", "params", "none")
DEFAULT_TOLERANCE = 0.02
AMP_CHOICES = ("none", "bf16", "fp16")
AUTO, ALWAYS, NEVER = "auto", "always", "never"
PROGRESS_MODES = (AUTO, ALWAYS, NEVER)  # auto: a bar on terminals only
# auto: wherever the data allows it (an in-memory tensor dataset, a batch-replayable augmentation, no workers)
DATA_ON_DEVICE_MODES = (AUTO, ALWAYS, NEVER)
# torch.compile modes with train.compile=true. Both run the same Inductor kernels, so the choice is speed-only;
# reduce-overhead replays the forward and backward as CUDA graphs (one launch per graph), for static shapes.
COMPILE_MODES = ("default", "reduce-overhead")
# what train.compile compiles (shiftvit/compiling.py): the whole model as one graph | each block on its own, the
# rest eager (regional compilation: blocks of a stage share one graph, so compiling takes far less time as the
# depth grows). Speed-only like the mode: the same operations, fused within a block instead of across blocks.
MODEL_SCOPE, BLOCKS_SCOPE = COMPILE_SCOPES = ("model", "blocks")
# CIFAR's training augmentation (data.augment): random crop after zero padding plus horizontal flip (He et al.,
# 2016: the usual CIFAR recipe), batched and exact on any device | timm's transform factory, per sample on the CPU
# (RandomResizedCrop at scale 0.6-1, bicubic, flip, and train.aa / color_jitter / reprob when set)
# data.augment of the CIFAR sources: the usual recipe as a batched tensor op, or timm's per-image transforms
CROP_FLIP, TIMM_AUGMENT = CIFAR_AUGMENTS = ("crop_flip", "timm")
# train keys that configure timm's transform factory, which data.augment=crop_flip does not use
TIMM_AUGMENT_TRAIN_KEYS = ("aa", "color_jitter", "reprob", "remode")
# what random erasing fills a box with (train.remode; timm's RandomErasing modes): a constant (zero after
# normalisation) | random per-channel colour | random per-pixel colour (the official and DeiT recipes')
REMODES = ("const", "rand", "pixel")
# train.device: devices.resolve_device reads them (auto: the local rank's GPU where CUDA is, else the CPU; cuda: the
# local rank's GPU)
DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key, the value and what is allowed."""


def _number(key: str, value: Any, *, positive: bool = False, integer: bool = False, minimum: Optional[float] = None,
            maximum: Optional[float] = None, below: Optional[float] = None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key}={value!r} must be {kind}")
    if positive and not value > 0:
        raise ConfigError(f"{key}={value!r} must be > 0")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}={value!r} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}={value!r} must be <= {maximum}")
    if below is not None and not value < below:
        raise ConfigError(f"{key}={value!r} must be < {below}")
    return value


def fraction_problem(key: str, value: float) -> Optional[str]:
    """Why ``data.<key>`` (``train_fraction``: of the training set kept, all of it included; ``val_fraction``: of the
    images held out, some left to train on) cannot be ``value``, or None."""
    whole_allowed = key == "train_fraction"
    if 0 < value < 1 or (whole_allowed and value == 1):
        return None
    return f"data.{key}={value} must be in (0, 1{']' if whole_allowed else ')'}"


def percent_text(fraction: float) -> str:
    """``2.5%`` for 0.025: a tolerance as a percentage, without the rounding of ``:.0%`` (which prints 0.025 as 2%)."""
    return f"{fraction * 100:g}%"


def check_tolerance(value: Any, key: str = "tolerance") -> float:
    """A relative budget tolerance: a fraction of the budget, above 0 and below 1 (the config's ``tolerance``, the
    report's ``--tolerance``: ``key`` names it in the error). Raises ``ConfigError``."""
    tolerance = _number(key, value, positive=True)
    if not tolerance < 1:  # a percentage typed for a fraction: tolerance=2 let the arms' budgets differ by 200 %
        raise ConfigError(f"{key}={tolerance!r} is a fraction of the budget and must be < 1: write "
                          f"{key}={DEFAULT_TOLERANCE} for ±{percent_text(DEFAULT_TOLERANCE)}")
    return tolerance


def _choice(key: str, value: Any, choices) -> Any:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(choices)}")
    return value


# --- training -----------------------------------------------------------------------------------------------------
@dataclass
class TrainSettings:
    """Everything that shapes optimisation (the ``train`` group). Defaults: the small-data CPU recipe
    (digits, relations, CIFAR at 32 px); ``conf/train/imagenet.yaml`` overrides them with the official one."""
    epochs: int = 20
    batch_size: int = 64
    opt: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    opt_eps: float = 1e-8
    momentum: float = 0.9
    sched: str = "cosine"
    warmup_epochs: int = 2
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    aa: Optional[str] = None
    color_jitter: Optional[float] = None
    reprob: float = 0.0
    remode: str = "const"  # REMODES
    clip_grad: Optional[float] = None
    accum_steps: int = 1
    ema: bool = True
    ema_decay: float = 0.998
    # timm's EMA warm-up: the decay starts low and grows towards ema_decay, min(ema_decay, 1 - (1 + step)^-2/3);
    # off: ema_decay from the first step (timm's ModelEma, the official and DeiT recipes)
    ema_warmup: bool = True
    amp: str = "none"  # AMP_CHOICES (fp16 on CUDA only)
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"  # COMPILE_MODES
    compile_scope: str = "model"  # COMPILE_SCOPES
    device: str = "auto"  # DEVICE_FORMS
    deterministic: bool = True
    threads: Optional[int] = None  # torch intra-op threads (None: torch's default, or a sweep's share)
    malloc: str = "retain"  # allocator.MODES: keep freed CPU memory (no page faults per batch) | system
    num_workers: int = 0
    # serve in-memory tensor datasets (digits, relations, MNIST-like, CIFAR with crop_flip) from a copy on the
    # device (on a CPU, the tensors themselves), batch by batch, augmented there (data.DeviceTensorLoader); the
    # same batches and random draws as a DataLoader, without its Python loop over the samples
    data_on_device: str = AUTO  # DATA_ON_DEVICE_MODES
    eval_every: int = 1
    # recipe rules, applied by resolve (the effective config holds the lr and epochs they give, and these at
    # their defaults): lr is per lr_base_size images of the total batch (batch_size x accum_steps x processes),
    # scaled linearly as timm's --lr-base-size and the official recipe (lr 5e-4 per 512) do; schedule_fraction
    # trains that share of epochs and warm-up epochs, rounded (the train_scheme experiment's short schedule)
    lr_base_size: Optional[int] = None
    schedule_fraction: float = 1.0
    aug_repeats: int = 0  # repeated augmentation (timm's --aug-repeats, DeiT's 3): each image so many times an epoch
    progress: str = AUTO  # PROGRESS_MODES: a bar on terminals only | always | never
    resume: str = "auto"  # records.RESUME_MODES: resume a record of the same config | archive it, start over

    def check(self) -> TrainSettings:
        from .allocator import MODES as MALLOC_MODES
        from .records import RESUME_MODES

        for key in ("epochs", "batch_size", "accum_steps", "eval_every"):
            _number(f"train.{key}", getattr(self, key), integer=True, minimum=1)
        for key in ("lr", "opt_eps"):
            _number(f"train.{key}", getattr(self, key), positive=True)
        for key in ("weight_decay", "warmup_lr", "min_lr", "mixup", "cutmix"):
            _number(f"train.{key}", getattr(self, key), minimum=0)
        for key in ("mixup_prob", "mixup_switch_prob", "reprob"):
            _number(f"train.{key}", getattr(self, key), minimum=0, maximum=1)
        # at 1 the smoothed target keeps nothing of the label, the momentum never forgets a gradient and the
        # average never takes a new weight
        _number("train.label_smoothing", self.label_smoothing, minimum=0, below=1)
        _number("train.momentum", self.momentum, minimum=0, below=1)
        _number("train.ema_decay", self.ema_decay, positive=True, below=1)
        if self.min_lr > self.lr:
            raise ConfigError(f"train.min_lr={self.min_lr} is above train.lr={self.lr}, so the schedule would raise "
                              "the rate: lower train.min_lr or raise train.lr")
        if self.clip_grad is not None:  # at 0 every gradient is scaled to nothing: no clipping is null
            _number("train.clip_grad", self.clip_grad, positive=True)
        if self.color_jitter is not None:
            _number("train.color_jitter", self.color_jitter, minimum=0)
        for key in ("warmup_epochs", "num_workers"):
            _number(f"train.{key}", getattr(self, key), integer=True, minimum=0)
        if self.threads is not None:
            _number("train.threads", self.threads, integer=True, minimum=1)
        if self.lr_base_size is not None:
            _number("train.lr_base_size", self.lr_base_size, integer=True, minimum=1)
        _number("train.schedule_fraction", self.schedule_fraction, positive=True, maximum=1)
        repeats = self.aug_repeats  # one copy of each image is no repetition
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0 or repeats == 1:
            raise ConfigError(f"train.aug_repeats={self.aug_repeats!r} must be 0 (off) or an integer >= 2")
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"train.device={self.device!r} is not one of: {', '.join(DEVICE_FORMS)} "
                              "(N: a GPU index)")
        _choice("train.amp", self.amp, AMP_CHOICES)
        _choice("train.remode", self.remode, REMODES)
        _choice("train.malloc", self.malloc, MALLOC_MODES)
        _choice("train.resume", self.resume, RESUME_MODES)
        _choice("train.progress", self.progress, PROGRESS_MODES)
        _choice("train.data_on_device", self.data_on_device, DATA_ON_DEVICE_MODES)
        _choice("train.compile_mode", self.compile_mode, COMPILE_MODES)
        _choice("train.compile_scope", self.compile_scope, COMPILE_SCOPES)
        if (self.mixup or self.cutmix) and self.batch_size % 2:
            raise ConfigError(f"train.batch_size={self.batch_size} must be even with mixup/cutmix")
        return self

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> TrainSettings:
        return _instance(cls, values, "train", "a training setting").check()

    def as_run(self, processes: int) -> TrainSettings:
        """The settings the run trains with, the recipe rules applied (``lr_base_size``, ``schedule_fraction``)
        for ``processes`` training processes; checked again, since a scaled lr may fall below ``min_lr``."""
        lr = self.lr
        if self.lr_base_size is not None:
            total = self.batch_size * self.accum_steps * processes
            lr = self.lr * (total / self.lr_base_size)
            if lr < self.min_lr:
                raise ConfigError(f"train.lr={self.lr} per {self.lr_base_size} images is {lr:.3g} at a total batch "
                                  f"of {total}, below train.min_lr={self.min_lr}: lower train.min_lr or raise "
                                  "train.lr")
        fraction = self.schedule_fraction
        return dataclasses.replace(
            self, lr=lr, lr_base_size=None, schedule_fraction=1.0, epochs=max(1, round(self.epochs * fraction)),
            warmup_epochs=round(self.warmup_epochs * fraction)).check()


# settings that change how fast a run goes or where it reports, not what it computes (a thread count can reorder float
# sums: the last digits of a loss): left out of the config hash
SPEED_ONLY_TRAIN_KEYS = ("progress", "num_workers", "threads", "device", "eval_every", "malloc", "resume",
                         "data_on_device", "compile_mode", "compile_scope")


def _instance(schema: Type, values: Dict[str, Any], prefix: str, what: str):
    unknown = spec.first_unknown(schema, values)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown} is not {what}; known: {', '.join(sorted(spec.field_names(schema)))}")
    return schema(**values)


# --- data ---------------------------------------------------------------------------------------------------------
# One dataclass per source: its options and defaults (shiftvit/data.py's builders take theirs from here).
@dataclass
class DataConfig:
    name: str = MISSING
    img_size: int = 32
    CHANNELS: ClassVar[int] = 3  # of the images the data set serves: the stem the run builds (data.py uses it too)

    def channels(self) -> int:
        """The input channels the model is built with (and the budget is counted at)."""
        return self.CHANNELS

    def check(self) -> None:
        _number("data.img_size", self.img_size, integer=True, minimum=1)
        for key in ("train_fraction", "val_fraction"):
            if hasattr(self, key):
                problem = fraction_problem(key, _number(f"data.{key}", getattr(self, key), positive=True))
                if problem:
                    raise ConfigError(problem)
        for key in ("num_train", "num_val", "num_classes", "in_chans"):
            if hasattr(self, key):
                _number(f"data.{key}", getattr(self, key), integer=True, minimum=1)
        if hasattr(self, "translate"):
            _number("data.translate", self.translate, integer=True, minimum=0)


@dataclass
class DigitsData(DataConfig):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), upsampled; works offline."""
    name: str = "digits"
    CHANNELS: ClassVar[int] = 1
    val_fraction: float = 0.2
    split_seed: int = 0
    translate: int = 2  # random translation (pixels of a 32-px image, scaled with img_size), train only
    train_fraction: float = 1.0  # keep this stratified, seeded fraction of the training split (a small-data regime)


@dataclass
class MnistData(DataConfig):
    """torchvision's MNIST from local files (root/MNIST/raw/*-ubyte, torchvision's layout); never downloaded."""
    name: str = "mnist"
    CHANNELS: ClassVar[int] = 1
    root: str = MISSING
    train_fraction: float = 1.0
    split_seed: int = 0
    translate: int = 2


@dataclass
class FashionMnistData(MnistData):
    name: str = "fashion_mnist"


@dataclass
class KmnistData(MnistData):
    name: str = "kmnist"


@dataclass
class RelationsData(DataConfig):
    """Procedural long-range diagnostic: label = do two marks half an image apart share a row?"""
    name: str = "relations"
    CHANNELS: ClassVar[int] = 1
    num_train: int = 4000
    num_val: int = 1000
    seed: int = 0


@dataclass
class SyntheticData(DataConfig):
    """Random tensors, for throughput and plumbing."""
    name: str = "synthetic"
    img_size: int = 224
    num_classes: int = 1000
    num_train: int = 512
    num_val: int = 128
    in_chans: int = 3
    seed: int = 0

    def channels(self) -> int:
        return self.in_chans

    def check(self) -> None:
        super().check()
        # one class is a task without a question: every run "completes" at 100 % top-1
        _number("data.num_classes", self.num_classes, integer=True, minimum=2)


@dataclass
class Cifar10Data(DataConfig):
    """torchvision's CIFAR-10 from a local folder holding cifar-10-batches-py."""
    name: str = "cifar10"
    root: str = MISSING
    download: bool = False
    # CIFAR_AUGMENTS: the usual CIFAR recipe (pad, crop, flip) as a batched tensor op that data.DeviceTensorLoader
    # runs on the GPU, or timm's per-sample PIL transforms (what CIFAR runs used before this option, and what
    # train.aa / color_jitter / reprob need). They draw different images, so the choice is part of the arm.
    augment: str = CROP_FLIP
    padding: int = 4  # crop_flip: pixels of zero padding (of a 32-px image) before the random 32-px crop
    train_fraction: float = 1.0  # keep this stratified, seeded fraction of the training set (a small-data regime)
    split_seed: int = 0

    def check(self) -> None:
        super().check()
        _choice("data.augment", self.augment, CIFAR_AUGMENTS)
        _number("data.padding", self.padding, integer=True, minimum=0)
        if self.augment != CROP_FLIP and self.padding != Cifar10Data.padding:
            raise ConfigError(f"data.padding={self.padding} applies to data.augment=crop_flip only; "
                              f"add data.augment=crop_flip or drop data.padding")


@dataclass
class Cifar100Data(Cifar10Data):
    name: str = "cifar100"


@dataclass
class ImageFolderData(DataConfig):
    """ImageNet-style folders: root/train/<class>/*.JPEG and root/val/<class>/*.JPEG."""
    name: str = "imagefolder"
    root: str = MISSING
    train_split: str = "train"
    val_split: str = "val"
    img_size: int = 224


DATASETS: Dict[str, Type[DataConfig]] = {
    cls.name: cls for cls in (DigitsData, MnistData, FashionMnistData, KmnistData, RelationsData, SyntheticData,
                              Cifar10Data, Cifar100Data, ImageFolderData)
}


# The CPU presets' testbeds (conf/scale/cpu*.yaml): small-data regimes in which the arms can differ. On the full
# digits, and on relations with all 4,000 training images, the arms reach the ceiling (README, "Sweeps"). Their
# raw-pixel baselines are stated in the scale files and in the README; a test recomputes them with
# analysis.headroom.
TESTBEDS: Dict[str, DataConfig] = {
    "digits_small": DigitsData(train_fraction=0.1),  # 143 training images, stratified; the full validation split
    "relations_small": RelationsData(num_train=500),  # 500 training images, 1,000 validation images
}


def data_config(values: Dict[str, Any]) -> DataConfig:
    """The checked options of a data set (``data.name`` picks which)."""
    values = dict(values)
    name = values.pop("name", None)
    if name not in DATASETS:
        raise ConfigError(f"data.name={name!r} is not one of: {', '.join(sorted(DATASETS))}")
    schema = DATASETS[name]
    unknown = spec.first_unknown(schema, values, exclude=("name",))
    if unknown:
        raise ConfigError(f"data.{unknown} is not an option of data={name}; its options: "
                          f"{', '.join(spec.field_names(schema, exclude=('name',)))}")
    chosen = schema(**values)
    chosen.check()
    return chosen


# The recipe of the small testbeds: a few steps per epoch, so more epochs
SMALL_DATA_TRAIN = dataclasses.replace(TrainSettings(), epochs=60, warmup_epochs=5)

# Mixer options that are a mixer plus the model options it needs (``mixer=identity_ln``). identity_ln is the
# strict "no token mixing" control: with GroupNorm(1) the identity model still normalises every image over all
# positions (C x H x W statistics), with LayerNorm over channels per token it does not. The patch merges and the
# final pooling mix spatially in both.
MIXER_PRESETS: Dict[str, Tuple[str, Dict[str, Any]]] = {"identity_ln": ("identity", {"norm": "ln"})}


# --- model, mixer, logger -----------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    """Architecture numbers live in ``spec.VARIANTS``; here only what a run may override."""
    name: str = MISSING  # the variant (the defaults list of conf/config.yaml picks it)
    norm: str = "gn1"  # spec.NORMS
    act: str = "gelu"  # spec.ACTS
    drop_path_rate: Optional[float] = None  # None: the variant's own
    drop_rate: float = 0.0
    img_size: Optional[int] = None  # None: the size the variant was designed for (the data must match)


WANDB, NO_LOGGER = LOGGERS = ("wandb", "none")
OFFLINE, ONLINE, DISABLED = WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class LoggerConfig:
    """wandb mirrors the local record; offline by default (no account needed), logger.mode=online to sync live."""
    name: str = WANDB  # LOGGERS
    mode: str = OFFLINE  # WANDB_MODES
    project: str = "shiftvit"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    init_timeout: float = 20.0


# Where a run reads its data from and how it got there, not which data it reads: the same data set copied to another
# disk (a cluster node's local scratch, a relaunch on another machine), or downloaded by the first run and read from
# disk by the next, is the same run, so these keys enter no config hash, no run or sweep directory name and no arm.
# Which data a run read is its record's data fingerprint (data.DataBundle), which a resume must match.
LOCATION_KEYS = ("data.root", "data.download")
DATA_LOCATION_KEYS = tuple(k.split(".", 1)[1] for k in LOCATION_KEYS if k.startswith("data."))  # within ``data``


def split_data_location(data: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A data config as (which data: every key but where it lies, where it lies: ``DATA_LOCATION_KEYS``)."""
    return ({k: v for k, v in data.items() if k not in DATA_LOCATION_KEYS},
            {k: v for k, v in data.items() if k in DATA_LOCATION_KEYS})


# command-line keys that never change a run's numbers, or say only where the data lies (the config hash leaves them
# out, and the logger is not in the effective config): sweep and job directories are named without them, so a
# relaunch that adds train.threads=1 or logger=none, or reads the data from another disk, finds the same records
# (conf/config.yaml's exclude_keys repeats it; a test holds the two equal)
NOT_IDENTITY_KEYS = (*(f"train.{key}" for key in SPEED_ONLY_TRAIN_KEYS), "logger",
                     *(f"logger.{f.name}" for f in dataclasses.fields(LoggerConfig)), "sweep_name", *LOCATION_KEYS)


@dataclass
class ReferenceArch:
    """The reference built otherwise than as its own, e.g. ``reference_arch.mixer=attn reference_arch.norm=ln``:
    the shift model at the budget of the same network with Swin's block, the paper's swap. None: the reference
    variant's own (shift, gn1, its tau and depths). A ShiftViT reference only: a timm model is counted as timm
    builds it."""
    mixer: Optional[str] = None  # spec.MIXER_OPTIONS, with that mixer's default options
    norm: Optional[str] = None  # spec.NORMS
    tau: Optional[float] = None  # MLP ratio
    depths: Optional[List[int]] = None  # four stage depths: Swin-T's 2,2,6,2 on any variant's width and input


# --- the whole experiment -----------------------------------------------------------------------------------------
@dataclass
class ExperimentConfig:
    """The top level: one experiment = model x mixer x data x train x logger, plus the knobs of the ablations."""
    model: ModelConfig = field(default_factory=ModelConfig)
    mixer: Any = MISSING  # a mixer's options (spec.MIXER_OPTIONS) plus its name
    data: Any = MISSING  # a data set's options (DATASETS)
    train: TrainSettings = field(default_factory=TrainSettings)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # shift ratio per direction (exact fraction: 1/12, 1/6 ...; floats accepted). None: the model's own (1/12,
    # or 1/16 for the base models). Applies to mixer=shift only; recorded as null for other mixers.
    gamma: Any = None
    tau: Optional[float] = None  # MLP ratio; None: the model's own
    depths: Optional[List[int]] = None  # four stage depths, e.g. [2,2,6,2]; None: the model's own, or solved
    # keep the budget of `reference` (default: the chosen model with its own mixer and tau): flops | params | none.
    # Matched by default, so that a mixer or tau sweep compares at equal cost unless the user says match=none.
    match: str = MATCH_FLOPS
    # a ShiftViT variant or any timm model (swin_tiny_patch4_window7_224), counted at the run's input size: a
    # budget is the cost of one image as the run sees it (a 224-px reference's own cost would not fit 32 px)
    reference: Optional[str] = None
    reference_arch: ReferenceArch = field(default_factory=ReferenceArch)
    tolerance: float = DEFAULT_TOLERANCE  # relative tolerance of the matched budget
    seed: int = 0  # SEED_KEY: runs that differ only in it are replicates of one arm
    # the group this run belongs to in wandb and in the analysis (default: the sweep's directory name)
    sweep_name: Optional[str] = None


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the source checkout's conf/ (run.py's config_path)
HYDRA_VERSION_BASE = "1.3"  # the Hydra behaviour run.py and every composition here ask for
SEED_KEY = "seed"  # ExperimentConfig's field that makes runs of one arm its replicates (a test holds it a field)
# the seeds the messages suggest where a verdict needs more than one: the paper's experiments run these three
MORE_SEEDS = f"{SEED_KEY}=0,1,2"


def group_options() -> Dict[str, List[str]]:
    """Every option of each config group, from this module and conf/ alike (as ``run.py --help`` lists them)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=HYDRA_VERSION_BASE):
        loader = GlobalHydra.instance().config_loader()
        return {group: sorted(loader.get_group_options(group)) for group in sorted(loader.list_groups(""))
                if group != "hydra"}


def settable_keys() -> Dict[str, List[str]]:
    """Every key a command line can set, dotted, with the group options it exists under (empty: under any):
    walked from the schema, each mixer's options and each data set's, so that a key put in the wrong place
    (``lr`` for ``train.lr``, ``mixer.gamma`` for ``gamma``) can be pointed to where it lives."""
    keys: Dict[str, List[str]] = {}

    def walk(node: Any, prefix: str, option: Optional[str]) -> None:
        for f in dataclasses.fields(node):
            key = f"{prefix}{f.name}"
            if (f.name == "name" and prefix in ("mixer.", "data.", "model.", "logger.")) or \
                    (not prefix and f.name in ("mixer", "data")):
                continue  # chosen by the group (mixer=attn), not set as a key
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                walk(type(default), f"{key}.", option)
            elif option is None:
                keys.setdefault(key, [])
            elif keys.get(key) != []:
                keys.setdefault(key, []).append(option)

    walk(ExperimentConfig, "", None)
    for name, options in spec.MIXER_OPTIONS.items():
        walk(options, "mixer.", f"mixer={name}")
    for name, schema in DATASETS.items():
        walk(schema, "data.", f"data={name}")
    return keys


def misplaced_key_hint(key: str) -> str:
    """Where a key the schema refused lives: ``did you mean train.lr``, ``mixer.window_size exists under
    mixer=attn or mixer=...: add that option``; '' when nothing is near."""
    keys = settable_keys()

    def under(options: List[str]) -> str:
        more = f" (and {len(options) - 3} more)" if len(options) > 3 else ""
        return " or ".join(options[:3]) + more

    key = key.lstrip("+~")
    if key in keys:  # set where its group option is not the chosen one
        return f"{key} exists under {under(keys[key])}: choose that option too"
    leaf = key.rsplit(".", 1)[-1]
    # the same name elsewhere (lr: train.lr), else a near spelling of it (seeed: seed), never a mere guess
    similarity = {k: difflib.SequenceMatcher(None, leaf, k.rsplit(".", 1)[-1]).ratio() for k in keys}
    near = sorted((k for k, ratio in similarity.items() if ratio >= 0.8), key=lambda k: -similarity[k])
    if not near:
        return ""
    return "did you mean " + " or ".join(k + (f" (under {under(keys[k])})" if keys[k] else "") for k in near[:3])


def _mixer_node(name: str) -> Type:
    """The config node of ``mixer=<name>``: the mixer's options dataclass plus its name."""
    options = spec.MIXER_OPTIONS[name]
    return dataclasses.make_dataclass(options.__name__, [("name", str, field(default=name))], bases=(options,))


def register_configs() -> None:
    """Register the schema and every group option with Hydra's ConfigStore (called by run.py before Hydra
    composes). The YAML files in conf/ extend these nodes: what differs from a default, or what an experiment
    fixes whatever the defaults are."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="schema", node=ExperimentConfig)
    for name in [*spec.VARIANTS, *spec.ALIASES]:
        cs.store(group="model", name=name, node=ModelConfig(name=name))
    for name in spec.MIXER_OPTIONS:
        cs.store(group="mixer", name=name, node=_mixer_node(name))
    for name, (mixer, model_options) in MIXER_PRESETS.items():
        cs.store(group="mixer", name=name, package="_global_",
                 node={"defaults": [f"/mixer/{mixer}@mixer", "_self_"], "model": dict(model_options)})
    for name, schema in DATASETS.items():
        cs.store(group="data", name=name, node=schema)
    for name, testbed in TESTBEDS.items():
        cs.store(group="data", name=name, node=testbed)
    cs.store(group="train", name="cpu", node=TrainSettings)
    cs.store(group="train", name="cpu_small", node=SMALL_DATA_TRAIN)
    for name in LOGGERS:
        cs.store(group="logger", name=name, node=LoggerConfig(name=name))


# --- resolution -------------------------------------------------------------------------------------------------
_WARNED: set = set()


def _warn(text: str) -> None:
    """A config warning, said by rank 0 alone where several processes run one job: each resolves the same config,
    and N processes said it N times."""
    from .distributed import info as processes_of_this_launch

    if processes_of_this_launch().is_main:
        log.warning(text)


def _warn_once(message: str, *args: Any) -> None:
    """A config warning (``_warn``), once per process: a run resolves its config more than once (checked, then run)."""
    text = message % args
    if text not in _WARNED:
        _WARNED.add(text)
        _warn(text)


def _check_gamma(value: Any) -> Optional[Fraction]:
    if value is None:
        return None
    try:
        gamma = spec.parse_gamma(value if isinstance(value, (int, float, str)) else str(value))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    # a rounded decimal is read exactly (0.0833 is 833/10000, not 1/12): it shifts floor(gamma * C) channels, so
    # near a simple fraction it can be another network than the one meant; say which fraction to write
    simple = gamma.limit_denominator(64)
    if simple != gamma and abs(simple - gamma) <= Fraction(1, 1000):
        _warn_once("gamma=%s is read exactly, as %s, not %s: write gamma=%s for that ratio", value, gamma, simple,
                   simple)
    return gamma


def _check_depths(value: Any) -> Optional[List[int]]:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != spec.NUM_STAGES or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value):
        raise ConfigError(f"depths={value!r} must be four integers >= 1, e.g. depths=[2,2,6,2]")
    return [int(d) for d in value]


def _input_size(model: str, chosen: Any, data_name: str, data_size: Optional[int]) -> int:
    """The size the model is built for. A variant runs at the size it was designed for unless the user says
    otherwise (``model.img_size``): at another size its stages shrink (a 224-px model on 32-px data ends
    in 1x1 maps) and it is no longer the model its name promises."""
    native = spec.native_img_size(model)
    if chosen is not None:
        _number("model.img_size", chosen, integer=True, minimum=1)
        if data_size is not None and data_size != chosen:
            raise ConfigError(f"model.img_size={chosen} but data={data_name} gives {data_size} px: "
                              f"set data.img_size={chosen} as well")
        return chosen
    if data_size is None or data_size == native:
        return native
    designed = [n for n in spec.VARIANTS if spec.native_img_size(n) == data_size]
    raise ConfigError(f"model {model} is designed for {native} px but data={data_name} gives {data_size} px: use a "
                      f"model designed for {data_size} px ({', '.join(designed) or 'none registered'}), "
                      f"data.img_size={native}, or model.img_size={data_size} to build {model} at {data_size} px")


def _model(values: Dict[str, Any]) -> ModelConfig:
    unknown = spec.first_unknown(ModelConfig, values)
    if unknown:
        raise ConfigError(f"model.{unknown} is not a model option; use the top-level gamma/tau/depths, or "
                          f"{', '.join('model.' + f for f in spec.field_names(ModelConfig))}")
    model = ModelConfig(**values)
    try:
        spec.variant_kwargs(model.name)
    except ValueError as e:
        raise ConfigError(f"model.name: {e}") from None
    _choice("model.norm", model.norm, spec.NORMS)
    _choice("model.act", model.act, spec.ACTS)
    return model


def _reference(value: Any, arch_values: Any, model: str) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The reference's name and, where it is built otherwise than as its own, its architecture in full. A timm
    name is looked up by ``resolve`` (that needs timm); a ShiftViT name is checked here."""
    name = model if value is None else value
    if not isinstance(name, str) or not name:
        raise ConfigError(f"reference={value!r} must be a model name: a ShiftViT variant or a timm model")
    variant = name in spec.VARIANTS or name in spec.ALIASES
    if not variant and name.startswith("shiftvit"):
        raise ConfigError(f"reference={name!r} is not a ShiftViT variant; choose one of: "
                          f"{', '.join([*spec.VARIANTS, *spec.ALIASES])}, or a timm model")
    arch = _instance(ReferenceArch, dict(arch_values or {}), "reference_arch", "a reference architecture knob")
    given = {k: v for k, v in dataclasses.asdict(arch).items() if v is not None}
    if not given:
        return name, None
    if not variant:
        key, val = next(iter(given.items()))
        raise ConfigError(f"reference_arch.{key}={val} applies to a ShiftViT reference, but reference={name} is a "
                          "timm model counted as timm builds it: drop reference_arch or give a ShiftViT variant")
    if arch.mixer is not None:
        _choice("reference_arch.mixer", arch.mixer, tuple(spec.MIXER_OPTIONS))
    if arch.norm is not None:
        _choice("reference_arch.norm", arch.norm, spec.NORMS)
    table = spec.variant_kwargs(name)
    tau = table["mlp_ratio"] if arch.tau is None else _number("reference_arch.tau", arch.tau, positive=True)
    try:
        depths = _check_depths(arch.depths)
    except ConfigError as e:
        raise ConfigError(f"reference_arch.{e}") from None
    return name, {"mixer": arch.mixer or "shift", "norm": arch.norm or ModelConfig.norm,
                  "tau": int(tau) if float(tau).is_integer() else tau,
                  "depths": list(table["depths"]) if depths is None else depths}


def plain_config(cfg: Any) -> Dict[str, Any]:
    """A composed config (a ``DictConfig``) as the plain dict ``check`` and ``resolve`` read, interpolations
    resolved; a mandatory value left unset (``???``, e.g. ``data.root`` of a data set on disk) is a ``ConfigError``
    naming the key and the way out."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or str(e)
        raise ConfigError(f"{key} is required here and has no value: set {key}=... on the command line") from None
    except InterpolationResolutionError as e:  # ${oc.env:UNSET}: one line naming the key, not a traceback
        key = getattr(e, "full_key", None) or "a value"
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].strip()  # OmegaConf's key and type lines follow
        raise ConfigError(f"{key}: its interpolation does not resolve ({why}): set {key}=... to a value, or what "
                          "it names") from None


def _refuse_appended_keys(cfg: Dict[str, Any]) -> None:
    """Hydra's ``+key=value`` appends a key the schema lacks (it opens the struct for it), so ``+gama=1/6`` would
    train the default gamma under a record whose overrides say 1/6, and a sweep over it collapse into duplicates.
    The groups with a schema of their own (train, model, data, mixer) refuse theirs where they are read."""
    for prefix, node, schema in (("", cfg, ExperimentConfig), ("logger.", cfg.get("logger") or {}, LoggerConfig)):
        known = {f.name for f in dataclasses.fields(schema)}
        for key in sorted(set(node) - known) if isinstance(node, dict) else ():
            hint = misplaced_key_hint(prefix + key)
            raise ConfigError(f"{prefix}{key} is not a setting{f' of {prefix[:-1]}' if prefix else ''}"
                              f"{f'; {hint}' if hint else ''}; known: {', '.join(sorted(known))}")


def check(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Validate a composed config (plain dict) without torch and return the effective config with the depths
    the user or the variant gives (the budget is solved by ``resolve``). Raises ``ConfigError``."""
    _refuse_appended_keys(cfg)
    model = _model(dict(cfg.get("model") or {}))
    table = spec.variant_kwargs(model.name)
    mixer_cfg = dict(cfg.get("mixer") or {})
    mixer = mixer_cfg.pop("name", "shift")
    if mixer in spec.MIXER_OPTIONS:
        try:
            mixer_cfg = dataclasses.asdict(spec.mixer_options(mixer, mixer_cfg))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    # a mixer registered from user code without an options dataclass is checked when the model is built

    gamma = _check_gamma(cfg.get("gamma"))
    if gamma is not None and mixer != "shift":
        _warn_once("gamma=%s has no effect with mixer=%s (gamma is the shift's channel ratio); the record says "
                   "gamma: null", cfg.get("gamma"), mixer)
    gamma = (gamma or Fraction(table["gamma"])) if mixer == "shift" else None
    tau = cfg.get("tau")
    tau = table["mlp_ratio"] if tau is None else _number("tau", tau, positive=True)
    tau = int(tau) if float(tau).is_integer() else tau  # 3 and 3.0 are one config (and one record)
    depths = _check_depths(cfg.get("depths"))
    match = _choice("match", cfg.get("match", ExperimentConfig.match), MATCHES)
    if match != MATCH_NONE and depths is not None:
        raise ConfigError(f"depths={depths} and match={match} conflict: the solver chooses depths; add match=none "
                          "to train the depths you gave")
    tolerance = check_tolerance(cfg.get("tolerance", DEFAULT_TOLERANCE))
    reference, reference_arch = _reference(cfg.get("reference"), cfg.get("reference_arch"), model.name)
    seed = _number("seed", cfg.get("seed", ExperimentConfig.seed), integer=True, minimum=0)
    data = dict(cfg.get("data") or {})
    data_options = data_config(data)
    img_size = _input_size(model.name, model.img_size, data_options.name, data_options.img_size)
    train = dataclasses.asdict(TrainSettings.from_dict(dict(cfg.get("train") or {})))
    if getattr(data_options, "augment", None) == CROP_FLIP:
        timm_keys = [f"train.{k}={train[k]!r}" for k in TIMM_AUGMENT_TRAIN_KEYS
                     if train[k] and train[k] != getattr(TrainSettings, k)]
        if timm_keys:
            raise ConfigError(f"{', '.join(timm_keys)} configure timm's transforms, which data.augment=crop_flip "
                              "does not use: drop them or use data.augment=timm")
    logger = dict(cfg.get("logger") or {})
    if logger:
        _choice("logger.name", logger.get("name"), LOGGERS)
        _choice("logger.mode", logger.get("mode", LoggerConfig.mode), WANDB_MODES)
    # at 1 the last block, or the head's input, would always be dropped
    if model.drop_path_rate is not None:
        _number("model.drop_path_rate", model.drop_path_rate, minimum=0, below=1)
    _number("model.drop_rate", model.drop_rate, minimum=0, below=1)
    return {
        "model": {"name": model.name, "norm": model.norm, "act": model.act, "img_size": img_size,
                  "drop_path_rate": table["drop_path_rate"] if model.drop_path_rate is None else model.drop_path_rate,
                  "drop_rate": model.drop_rate, "embed_dim": table["embed_dim"]},
        "mixer": {"name": mixer, **mixer_cfg},
        "gamma": None if gamma is None else str(gamma),
        "gamma_float": None if gamma is None else float(gamma),
        "tau": tau,
        "depths": depths if depths is not None else list(table["depths"]),
        "match": match,
        "reference": reference if match != MATCH_NONE else None,
        # None: the reference as its own (left out of the hash, so records from before the knob keep theirs)
        "reference_arch": reference_arch if match != MATCH_NONE else None,
        "tolerance": tolerance if match != MATCH_NONE else None,
        "data": data,
        "train": train,
        "seed": seed,
    }


def architecture(effective: Dict[str, Any]) -> Dict[str, Any]:
    """The model arguments that the budget depends on (everything but the depths and the input)."""
    mixer = dict(effective["mixer"])
    arch = dict(mixer=mixer.pop("name"), mixer_kwargs=mixer, mlp_ratio=effective["tau"],
                norm=effective["model"]["norm"], act=effective["model"]["act"])
    if effective["gamma"] is not None:
        arch["gamma"] = effective["gamma"]
    return arch


def resolve(cfg: Dict[str, Any], world_size: Optional[int] = None) -> Dict[str, Any]:
    """Validate a composed config (plain dict) and return the *effective* config: what the run really uses.

    Knobs that do not apply are null (gamma for a mixer other than shift), defaults are filled in from the
    variant table, and depths are solved when ``match`` asks for it; timm says whether it builds the optimizer
    and the schedule named. The recipe rules of ``train`` (``lr_base_size``, ``schedule_fraction``) are applied
    for this launch's number of processes (torchrun's ``WORLD_SIZE``, recorded as ``world_size``: part of the
    run's identity; ``world_size`` gives it for a job launched elsewhere, as a sweep checks its jobs before they
    start). Nothing here looks at this machine's devices or files (``preflight`` does), so any machine resolves a
    config to the same record. Raises ``ConfigError`` on bad input.
    """
    effective = check(cfg)
    from .distributed import info as processes_of_this_launch

    world_size = processes_of_this_launch().world_size if world_size is None else world_size
    effective["train"] = dataclasses.asdict(TrainSettings(**effective["train"]).as_run(world_size))
    # train.batch_size is per process: another number of processes is another total batch, data order and
    # schedule length, so another run (and never the resume of one), whether or not lr_base_size scales the lr
    effective["world_size"] = world_size
    _check_optimisation(effective["train"])  # timm, and so torch, from here on
    _check_augmentation(effective["train"])
    from .flops import BudgetError, count, solve_depths

    name, img_size = effective["model"]["name"], effective["model"]["img_size"]
    in_chans = data_config(effective["data"]).channels()  # the budget of the stem the run builds
    try:
        if effective["match"] != MATCH_NONE:
            _known_reference(effective["reference"])
            ref_arch = effective["reference_arch"]
            reference_kwargs = {} if ref_arch is None else dict(
                mixer=ref_arch["mixer"], norm=ref_arch["norm"], mlp_ratio=ref_arch["tau"],
                depths=tuple(ref_arch["depths"]))
            solution = solve_depths(effective["reference"], img_size, match=effective["match"],
                                    tolerance=effective["tolerance"], reference_kwargs=reference_kwargs,
                                    model=name, in_chans=in_chans, **architecture(effective))
            effective["depths"] = list(solution.depths)
        # build it once on the meta device (free): every architecture error surfaces here, before any data
        count(name, img_size, depths=tuple(effective["depths"]), in_chans=in_chans, **architecture(effective))
    except BudgetError as e:
        raise ConfigError(str(e)) from None
    except ValueError as e:
        raise ConfigError(f"{e}") from None
    return effective


def preflight(effective: Dict[str, Any]) -> None:
    """What the machine about to run an effective config (``resolve``'s) must have, asked before the run writes
    anything: ``train.device`` here, the data set's files where ``data.root`` says (``data.check_files`` owns the
    layouts). Raises ``ConfigError``; a warm-up as long as the run is allowed (short smoke runs) but said."""
    train = effective["train"]
    _check_device_here(train["device"])
    from .data import DataError, check_files
    from .devices import amp_device_error, resolve_device

    amp_error = amp_device_error(train["amp"], resolve_device(train["device"]))
    if amp_error:
        raise ConfigError(amp_error)

    try:
        check_files(**effective["data"])
    except DataError as e:
        raise ConfigError(str(e)) from None
    if train["warmup_epochs"] >= train["epochs"]:
        _warn(f"train.warmup_epochs={train['warmup_epochs']} >= train.epochs={train['epochs']}: the whole run warms "
              f"up, so the learning rate never reaches train.lr={train['lr']} nor decays; set train.warmup_epochs "
              "below train.epochs")


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _check_optimisation(train: Dict[str, Any]) -> None:
    """Build the optimizer and the schedule as ``engine.Trainer`` does, on a two-by-two layer: timm decides
    which names it knows, and an optimizer that needs a missing package fails here too."""
    import torch
    from timm.optim import list_optimizers

    from .engine import create_optimizer, create_scheduler

    settings = TrainSettings(**train)
    try:
        optimizer = create_optimizer(torch.nn.Linear(2, 2), settings)
    except Exception as e:  # timm's ValueError for an unknown name, an ImportError for a missing package, ...
        close = difflib.get_close_matches(str(train["opt"]).lower(), list_optimizers(), n=3)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise ConfigError(f"train.opt={train['opt']!r} is not an optimizer timm builds ({_one_line(e)}){hint}; "
                          "timm.optim.list_optimizers() names them all") from None
    try:
        scheduler = create_scheduler(optimizer, settings, updates_per_epoch=1)  # the data sets the real count
    except Exception as e:  # a ValueError for an unknown name, an AssertionError for plateau (per epoch only)
        scheduler, reason = None, _one_line(e)
    else:
        reason = "no schedule, and the trainer steps one every update"
    if scheduler is None:
        raise ConfigError(f"train.sched={train['sched']!r} is not a per-update schedule timm builds ({reason}): use "
                          f"train.sched={TrainSettings.sched}, constant (a fixed rate after the warm-up) or another "
                          "name timm.scheduler.create_scheduler_v2 accepts")


def _check_augmentation(train: Dict[str, Any]) -> None:
    """timm parses ``train.aa`` when the data is built, after the record is written: parse it now."""
    if train["aa"]:
        from timm.data import create_transform

        try:
            create_transform(32, is_training=True, auto_augment=train["aa"])
        except Exception as e:  # timm asserts on an unknown policy or option
            said = f" ({_one_line(e)})" if str(e).strip() else ""  # timm's asserts mostly say nothing
            raise ConfigError(f"train.aa={train['aa']!r} is not an augmentation policy timm builds{said}: e.g. "
                              "rand-m9-mstd0.5-inc1 (RandAugment), augmix-m5-w4-d2, original, v0") from None


def _check_device_here(device: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    from .devices import cuda_devices_if_absent

    count = cuda_devices_if_absent(torch.device(device))
    if count is None:
        return
    if count == 0:
        raise ConfigError(f"train.device={device!r} but this machine has no CUDA device: use train.device=auto "
                          "(the GPU where there is one) or cpu")
    raise ConfigError(f"train.device={device!r} but this machine has {count} CUDA device(s), cuda:0 to "
                      f"cuda:{count - 1}: use one of those, or train.device=auto")


def _known_reference(name: str) -> None:
    """A reference that is no ShiftViT variant must be a timm model; else one line naming it and the way out."""
    if name in spec.VARIANTS or name in spec.ALIASES:
        return
    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, [*spec.VARIANTS, *timm.list_models()], n=3)
    hint = f" (close: {', '.join(close)})" if close else ""
    raise ConfigError(f"reference={name!r} is neither a ShiftViT variant nor a timm model{hint}: give a variant "
                      "(python -m shiftvit.flops --variants -) or a timm model name (timm.list_models('swin*'))")


# Keys added after records existed, with the value that gives the numbers those records had: at that value they
# are left out of the hash, so an older record keeps its identity (and resumes) while any other value is a new arm.
ADDED_KEYS_AT_OLD_BEHAVIOUR: Dict[Tuple[str, ...], Any] = {
    ("train", "lr_base_size"): TrainSettings.lr_base_size,  # resolve applies both rules and leaves them at these
    ("train", "schedule_fraction"): TrainSettings.schedule_fraction,
    ("train", "aug_repeats"): TrainSettings.aug_repeats,
    ("reference_arch",): None,  # the reference as its own
    ("world_size",): 1,  # one process: every record from before the key
    ("data", "augment"): TIMM_AUGMENT,  # CIFAR's only augmentation before data.augment
    ("data", "padding"): Cifar10Data.padding,
    ("data", "train_fraction"): Cifar10Data.train_fraction,  # CIFAR's; digits and MNIST had theirs from the start
    ("data", "split_seed"): Cifar10Data.split_seed,
    ("train", "remode"): "const",  # timm's create_transform default, which runs got before the key
    ("train", "ema_warmup"): True,  # ModelEmaV3(use_warmup=True), which every EMA ran before the key
}


def is_added_key_at_old_behaviour(dotted_key: str, value: Any) -> bool:
    """Whether ``dotted_key`` (``data.augment``) is a key added later, at the value older records ran with: the
    analysis's arms leave it out as the hash does, so a record from before the key shares its arm."""
    path = tuple(dotted_key.split("."))
    return path in ADDED_KEYS_AT_OLD_BEHAVIOUR and ADDED_KEYS_AT_OLD_BEHAVIOUR[path] == value


def _holder(config: Dict[str, Any], path: Tuple[str, ...]) -> Optional[Dict[str, Any]]:
    """The mapping that holds ``path``'s last key (``config['data']`` for ``('data', 'root')``), or None."""
    holder: Any = config
    for parent in path[:-1]:
        holder = holder.get(parent) if isinstance(holder, dict) else None
    return holder if isinstance(holder, dict) else None


def config_hash(effective: Dict[str, Any]) -> str:
    """Identity of a run's numbers: the effective config minus settings that only change speed/reporting and
    where the data lies (``LOCATION_KEYS``)."""
    hashed = json.loads(json.dumps(effective, default=str))
    for path, old_behaviour in ADDED_KEYS_AT_OLD_BEHAVIOUR.items():
        holder = _holder(hashed, path)
        if holder is not None and path[-1] in holder and holder[path[-1]] == old_behaviour:
            del holder[path[-1]]
    for path in [("train", key) for key in SPEED_ONLY_TRAIN_KEYS] + [tuple(k.split(".")) for k in LOCATION_KEYS]:
        holder = _holder(hashed, path)
        if holder is not None:
            holder.pop(path[-1], None)
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]


def model_kwargs(effective: Dict[str, Any], num_classes: int, in_chans: int) -> Dict[str, Any]:
    """``timm.create_model`` arguments of the effective config."""
    m = effective["model"]
    return dict(num_classes=num_classes, in_chans=in_chans, img_size=m["img_size"],
                depths=tuple(effective["depths"]), drop_path_rate=m["drop_path_rate"], drop_rate=m["drop_rate"],
                **architecture(effective))
