"""Datasets and loaders. One builder per source, all returning the same ``DataBundle``.

Sources: ``digits`` (scikit-learn's bundled 8x8 handwritten digits, upsampled; the offline default),
``relations`` (a seeded procedural set whose label is a long-range spatial relation), ``synthetic`` (random
tensors, for throughput), ``cifar10`` / ``cifar100`` (torchvision, from a local root) and ``imagefolder``
(ImageNet-style ``train/`` and ``val/`` folders through timm's dataset and transform factories).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch import distributed as torch_dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler, TensorDataset

from .config import CROP_FLIP, DATASETS, TrainSettings, fraction_problem
from .config import Cifar10Data as C
from .config import DigitsData as D
from .config import ImageFolderData as I
from .config import MnistData as M
from .config import RelationsData as R
from .config import SyntheticData as S

# each builder's defaults are its data set's config (shiftvit/config.py), so the two cannot drift apart


class DataError(ValueError):
    """A dataset is missing, malformed or misconfigured."""


def data_error_message(error: DataError) -> str:
    """A ``DataError``'s own line, also when a DataLoader worker raised it: torch raises it again in the training
    process with a message of many lines ("Caught DataError in DataLoader worker process 0", the traceback, then
    the error's own line)."""
    text, marker = str(error), f"{DataError.__name__}: "
    return text.rsplit(marker, 1)[-1].strip() if text.startswith("Caught ") and marker in text else text


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    # each label's name, in label order (an image folder's class folders, CIFAR's meta file, torchvision's MNIST
    # names): what a run's predictions file records beside its class indices, which mean nothing without it
    class_names: Tuple[str, ...]
    in_chans: int
    img_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    # which data was read from data.root (``fingerprint``), where the config names only where it lies: a resume
    # must read the same (app.py), and runs of one config that read different data are not one arm (analysis).
    # Digits: its split as scikit-learn made it. None for the sources this code makes from the config alone
    # (relations, synthetic): the config hash and the commit cover them.
    fingerprint: Optional[str] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def content_fingerprint(*parts: Any) -> str:
    """A short hash of what a data set holds: arrays (numpy or torch) by dtype, shape and bytes, anything else by
    its JSON text. Written here because neither torchvision nor timm names a data set's content."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, (np.ndarray, torch.Tensor)):
            array = np.ascontiguousarray(part.numpy() if isinstance(part, torch.Tensor) else part)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.reshape(-1).view(np.uint8))
        else:
            digest.update(json.dumps(part, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _order_seed(seed: int, epoch: int) -> int:
    """The generator seed of an epoch's order: a function of (seed, epoch) only."""
    return seed * 100_003 + epoch


def _mixed_seed(*entropy: int) -> int:
    """A seed mixed from integers (numpy's SeedSequence): nearby inputs give unrelated streams, and every
    generator here (Python's, NumPy's, torch's) takes it."""
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """The seed of a process's random draws (augmentation, dropout, mixup, its loader's workers): one process
    keeps the run's seed; under torchrun each rank gets a stream of its own. One seed on every rank gave each
    process the same draws: the copies of an image that repeated augmentation spreads over the processes came out
    identical (no repeated augmentation at all), and every other draw was mirrored across ranks. Mixed (not
    ``seed + rank``, as timm does) so that one seed's rank 1 is not the next seed's rank 0, and on rank 0 too,
    whose draws would otherwise replay the numbers that initialised the weights."""
    return seed if world_size == 1 else _mixed_seed(seed, rank)


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): a resumed run sees exactly the same order,
    and ``skip`` batches can be dropped to resume in the middle of an epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        if not self.shuffle:
            order = range(self.n)
        else:
            g = torch.Generator().manual_seed(_order_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        return iter(list(order)[self.skip:])

    def __len__(self) -> int:
        return self.n - self.skip


class ResumableDistributedSampler(DistributedSampler):
    """torch's ``DistributedSampler``, ordered by (seed, epoch) as ``EpochSampler`` is (torch seeds the order with
    seed + epoch, so seed 1's first epoch was seed 0's second), and resumable in the middle of an epoch.
    ``num_replicas`` / ``rank``: None reads them from the process group."""

    def __init__(self, dataset: Dataset, seed: int, drop_last: bool = True, num_replicas: Optional[int] = None,
                 rank: Optional[int] = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=0, drop_last=drop_last)
        self.order_seed, self.skip = seed, 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:  # type: ignore[override]
        super().set_epoch(_order_seed(self.order_seed, epoch))
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class ShardSampler(Sampler):
    """Evaluation's split of a data set over the processes: rank r takes images r, r + world, r + 2·world, ...,
    each image exactly once. Written by hand because ``DistributedSampler`` (and timm's
    ``OrderedDistributedSampler``) pads the last shard with repeated images, so a validation set whose size the
    process count does not divide was scored with some images twice; their ``drop_last`` drops images instead.
    Shards may differ in length by one: evaluation runs no collective per batch (its totals are summed once at the
    end), so uneven shards cannot stall a rank. ``num_replicas`` / ``rank``: None reads them from the process
    group."""

    def __init__(self, dataset: Dataset, num_replicas: Optional[int] = None, rank: Optional[int] = None):
        import torch.distributed as dist

        self.n = len(dataset)
        self.num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        self.rank = dist.get_rank() if rank is None else rank

    def __iter__(self):
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))


class DrawKeys(Sampler):
    """A training sampler's indices, each with the key of its draw: (rank, epoch, position in the epoch), unique in
    the run and the same whatever the number of workers and wherever a resume starts (``skip`` positions are
    counted). ``SeededDraws`` seeds each image's augmentation from it."""

    def __init__(self, sampler: Sampler, rank: int = 0):
        self.sampler, self.rank, self.epoch, self.skip = sampler, rank, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip=skip)
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        return ((index, (self.rank, self.epoch, position)) for position, index in enumerate(self.sampler, self.skip))

    def __len__(self) -> int:
        return len(self.sampler)


class SeededDraws(Dataset):
    """A data set whose images are augmented one at a time (timm's per-sample transforms: image folders, CIFAR with
    ``data.augment=timm``), each from random numbers of its own: Python's, NumPy's and torch's generators are
    seeded from (run seed, the draw's key from ``DrawKeys``) for the image, then given back their state. Drawn
    from the generators of the process that loads them, the augmentations depended on how many DataLoader workers
    there were (each seeded on its own), and a resumed run drew others than the run it continued (a checkpoint
    cannot hold the workers' generators). Written here because neither torch nor timm seeds per sample."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, draw = key
        seed = _mixed_seed(self.seed, *draw)
        python, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):  # the CPU generator's state comes back; CUDA's is never touched
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed the GPUs' generators too
            try:
                return self.dataset[index]
            finally:
                random.setstate(python)
                np.random.set_state(numpy_state)


class ResumableRepeatAugSampler(RepeatAugSampler):
    """timm's repeated-augmentation sampler (DeiT's ``RASampler``: each image ``num_repeats`` times per epoch, the
    copies spread over the processes, an epoch as long as the data set), ordered by (seed, epoch) as
    ``EpochSampler`` is (timm seeds the order with the epoch alone, so every seed would see one order), and
    resumable in the middle of an epoch. ``num_replicas`` / ``rank``: None reads them from the process group, as
    ``DistributedSampler`` does."""

    def __init__(self, dataset: Dataset, seed: int, num_repeats: int, num_replicas: Optional[int] = None,
                 rank: Optional[int] = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, num_repeats=num_repeats)
        self.seed, self.skip = seed, 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:  # type: ignore[override]
        super().set_epoch(_order_seed(self.seed, epoch))
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return super().__len__() - self.skip


# --- tensor sources -----------------------------------------------------------------------------------------
def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    problem = fraction_problem("val_fraction", val_fraction)
    if problem:
        raise DataError(problem)
    return train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)


def _subsample(x: np.ndarray, y: np.ndarray, train_fraction: float, seed: int):
    """A stratified, seeded fraction of the training set: a small-data regime in which a testbed that is at
    its ceiling with all its images has headroom again (the validation set is left whole)."""
    from sklearn.model_selection import train_test_split

    problem = fraction_problem("train_fraction", train_fraction)
    if problem:
        raise DataError(problem)
    if train_fraction == 1:
        return x, y
    n_classes = len(np.unique(y))
    if round(train_fraction * len(y)) < n_classes:
        raise DataError(f"data.train_fraction={train_fraction} keeps fewer than one image per class "
                        f"({len(y)} training images, {n_classes} classes): use at least {n_classes / len(y):.3g}")
    x, _, y, _ = train_test_split(x, y, train_size=train_fraction, random_state=seed, stratify=y)
    return x, y


def _tensor_bundle(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray, img_size: int,
                   class_names: Sequence[str], translate: int, in_chans: int) -> DataBundle:
    """Grey images in [0, 1] (N, H, W) -> upsampled to ``img_size``, standardised on the training set, with a
    random translation of ``translate`` pixels of a 32-px image (scaled to ``img_size``) for training."""
    def up(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)
        return torch.nn.functional.interpolate(t, size=(img_size, img_size), mode="bilinear", align_corners=False)

    tr, va, mean, std = _standardize(up(x_tr), up(x_va))
    scale = max(1, img_size // 8)
    return DataBundle(
        train=TransformedTensorDataset(tr, torch.as_tensor(y_tr), RandomTranslate(translate * scale // 4)),
        val=TensorDataset(va, torch.as_tensor(y_va)), class_names=tuple(class_names), in_chans=in_chans,
        img_size=img_size, mean=mean, std=std)


def _standardize(train: torch.Tensor, val: torch.Tensor):
    mean = train.mean(dim=(0, 2, 3))
    std = train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    norm = lambda t: (t - mean[None, :, None, None]) / std[None, :, None, None]  # noqa: E731
    return norm(train), norm(val), tuple(mean.tolist()), tuple(std.tolist())


class BatchAugment:
    """A random augmentation drawn per sample from the global RNG (which checkpoints save and restore) and applied
    to a whole batch in one call, on the batch's device: ``DeviceTensorLoader`` runs it on the GPU, a
    ``DataLoader`` calls it sample by sample. A batch of ``n`` draws the numbers ``n`` single samples would draw,
    in the same order (``tests/test_data_device.py`` holds that), so where a batch is cut changes nothing.

    Written here because torchvision's v2 transforms draw one set of parameters per call (a whole batch would
    share one crop), and kornia's batched augmentations (not a dependency) draw each parameter for the whole batch
    in turn, so a batch would not draw what its samples draw one at a time in a DataLoader."""

    def draw(self, count: int) -> Optional[torch.Tensor]:
        """The random parameters of ``count`` samples (one row each), on the CPU; None: nothing random."""
        return None

    def apply(self, x: torch.Tensor, params: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x[None], self.draw(1))[0]


class RandomTranslate(BatchAugment):
    """Random integer translation with zero fill, up to ``max_shift`` pixels each way: a light augmentation for
    tiny images."""

    def __init__(self, max_shift: int):
        self.max_shift = max_shift

    def draw(self, count: int) -> Optional[torch.Tensor]:
        return draw_translations(self.max_shift, count) if self.max_shift > 0 else None

    def apply(self, x: torch.Tensor, params: Optional[torch.Tensor]) -> torch.Tensor:
        return x if params is None else translate_batch(x, params.to(x.device, non_blocking=True))


class CropFlip(BatchAugment):
    """CIFAR images stored as uint8 (N, C, H, W) -> float, normalised, resized to ``img_size``; for training, first
    a random crop of the original size after ``padding`` pixels of zero (black) padding and a horizontal flip with
    probability 1/2: torchvision's ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
    ``Normalize(mean, std)``. The crop is a translation with zero fill, so every step is a gather or an exact
    elementwise op, and the device it runs on does not change a bit (the resize, when ``img_size`` is not the
    stored size, is bilinear, per image)."""

    def __init__(self, padding: int, img_size: int, mean: Tuple[float, ...], std: Tuple[float, ...],
                 train: bool = True):
        self.padding, self.img_size, self.train = padding, img_size, train
        self.mean, self.std = torch.tensor(mean)[None, :, None, None], torch.tensor(std)[None, :, None, None]
        # on each device once: a blocking copy per batch would make the host wait for the GPU's queued steps
        self._stats_on: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}

    def draw(self, count: int) -> Optional[torch.Tensor]:
        if not self.train:
            return None
        # one integer per sample codes (dy, dx, flip), so a batch draws what single samples draw (as in
        # draw_translations); decoded in apply
        side = 2 * self.padding + 1
        return torch.randint(0, 2 * side * side, (count, 1))

    def apply(self, x: torch.Tensor, params: Optional[torch.Tensor]) -> torch.Tensor:
        if params is not None:
            code = params[:, 0].to(x.device, non_blocking=True)
            side = 2 * self.padding + 1
            flip = (code % 2).bool()
            offsets = torch.stack((code // (2 * side) - self.padding, (code // 2) % side - self.padding), dim=1)
            x = translate_batch(x, offsets)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = x.to(torch.float32, copy=True).div_(255)
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = torch.nn.functional.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear",
                                                align_corners=False)
        if x.device not in self._stats_on:
            self._stats_on[x.device] = self.mean.to(x.device), self.std.to(x.device)
        mean, std = self._stats_on[x.device]
        return x.sub_(mean).div_(std)


def draw_translations(max_shift: int, count: int) -> torch.Tensor:
    """``count`` samples' (dy, dx) in one call, from the global RNG (which checkpoints save and restore): the CPU
    generator fills a tensor element by element, so these are the numbers ``count`` single draws of one sample's
    (dy, dx) would give, in the same order, and leave the RNG in the same state (``tests/test_data_device.py``
    holds that), without a Python call per sample."""
    return torch.randint(-max_shift, max_shift + 1, (count, 2))


def translate_batch(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """A roll with zero fill for a whole batch at once, on the batch's device: image b moves by
    ``offsets[b] = (dy, dx)`` pixels. One gather, instead of a Python loop over the samples."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] - offsets[:, :1]  # (B, H): the source row of each row
    cols = torch.arange(w, device=x.device)[None, :] - offsets[:, 1:]  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
    # every index advanced, so the result is (B, C, H, W) with the default strides a collated batch has (a
    # channels-last-looking stride would send the convolutions down another path, with other roundings)
    picked = x[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[:, None, None],
               rows.clamp(0, h - 1)[:, None, :, None], cols.clamp(0, w - 1)[:, None, None, :]]
    return torch.where(inside, picked, torch.zeros((), dtype=x.dtype, device=x.device))


class TransformedTensorDataset(TensorDataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        super().__init__(images, labels)
        self.transform = transform

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        if self.transform is not None:
            x = self.transform(x)  # a BatchAugment writes a new tensor: the stored image is never touched
        return x, y


def build_digits(img_size: int = D.img_size, val_fraction: float = D.val_fraction, split_seed: int = D.split_seed,
                 translate: int = D.translate, train_fraction: float = D.train_fraction, **_: Any) -> DataBundle:
    """scikit-learn's 1,797 8x8 digits, upsampled (bilinear) to ``img_size``; fixed stratified split, of whose
    training part ``train_fraction`` is kept (stratified, seeded by ``split_seed``)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_tr, x_va, y_tr, y_va = _split(digits.images.astype(np.float32) / 16.0, digits.target, val_fraction, split_seed)
    x_tr, y_tr = _subsample(x_tr, y_tr, train_fraction, split_seed)
    class_names = [str(c) for c in digits.target_names]
    bundle = _tensor_bundle(x_tr, y_tr, x_va, y_va, img_size, class_names, translate, D.CHANNELS)
    # the images each split holds, in its order: which images the config's split names is scikit-learn's
    # algorithm run on scikit-learn's copy of the set, neither of which the config hash covers
    bundle.fingerprint = content_fingerprint(class_names, x_tr, y_tr, x_va, y_va)
    return bundle


# torchvision's class for each MNIST-like set: its files are read from root/<class name>/raw/
MNIST_LIKE = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def build_mnist_like(name: str = M.name, root: str = "", img_size: int = M.img_size,
                     train_fraction: float = M.train_fraction, split_seed: int = M.split_seed,
                     translate: int = M.translate, **_: Any) -> DataBundle:
    """MNIST, Fashion-MNIST or KMNIST from local files in torchvision's layout
    (``root/MNIST/raw/train-images-idx3-ubyte`` ...; never downloaded), 28 px upsampled to ``img_size``,
    the official test set as validation, ``train_fraction`` of the training set (stratified, seeded)."""
    from torchvision import datasets

    cls = getattr(datasets, MNIST_LIKE[name])
    if not root:
        raise DataError(f"{name}: set data.root to the folder that holds {cls.__name__}/raw/")
    _require_dir(Path(root), name)
    files = _mnist_files(cls, root)
    for path in files:  # torchvision's own errors name no file ("shape '[60, 28, 28]' is invalid ...")
        problem = _idx_problem(path) if path.is_file() else None  # a missing one: torchvision's message below
        if problem:
            raise DataError(f"{name}: {str(path)!r} {problem}: fetch it again (torchvision.datasets."
                            f"{cls.__name__}(root, download=True) where a network exists, then gunzip)")
    try:
        train, val = (cls(root, train=split, download=False) for split in (True, False))
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True to download it"
        raise DataError(f"{name}: no dataset under {str(Path(root) / cls.__name__ / 'raw')!r} ({e})") from None
    except Exception as e:  # a foreign idx file
        raise DataError(f"{name}: cannot read {str(Path(root) / cls.__name__ / 'raw')!r}: "
                        f"{type(e).__name__}: {e}") from None
    for split, images, labels in ((train, files[0], files[1]), (val, files[2], files[3])):
        if len(split.data) != len(split.targets):  # torchvision reads them without comparing
            raise DataError(f"{name}: {str(images)!r} holds {len(split.data)} images but {str(labels)!r} "
                            f"{len(split.targets)} labels: the two files of a split must come together; fetch them "
                            "again")
    x_tr, y_tr = _subsample(train.data.numpy() / 255.0, train.targets.numpy(), train_fraction, split_seed)
    bundle = _tensor_bundle(x_tr, y_tr, val.data.numpy() / 255.0, val.targets.numpy(), img_size, cls.classes,
                            translate, M.CHANNELS)
    bundle.fingerprint = content_fingerprint(list(cls.classes), train.data, train.targets, val.data, val.targets)
    return bundle


RELATIONS_CLASSES = ("different rows", "same row")  # make_relations' labels 0 and 1


def make_relations(num_samples: int, img_size: int = 32, seed: int = 0, mark: int = 3,
                   min_distance: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two marks at least ``min_distance`` apart horizontally; label 1 iff they lie on the same row.

    The marks are identical squares on a noisy background, so nothing local tells the classes apart: a
    mixer has to relate two positions half an image apart. Exactly balanced, reproducible from ``seed``.
    """
    rng = np.random.default_rng(seed)
    min_distance = img_size // 2 if min_distance is None else min_distance
    if min_distance + mark > img_size:
        raise DataError(f"relations: min_distance={min_distance} + mark={mark} does not fit img_size={img_size}")
    images = rng.normal(0.0, 0.1, size=(num_samples, 1, img_size, img_size)).astype(np.float32)
    labels = np.arange(num_samples) % 2
    rng.shuffle(labels)
    rows = img_size - mark + 1
    for i, same in enumerate(labels):
        c1 = rng.integers(0, img_size - mark - min_distance + 1)
        c2 = rng.integers(c1 + min_distance, img_size - mark + 1)
        if rng.random() < 0.5:
            c1, c2 = c2, c1
        r1 = rng.integers(0, rows)
        r2 = r1 if same else (r1 + rng.integers(mark, rows - mark + 1)) % rows  # rows at least `mark` apart
        for r, c in ((r1, c1), (r2, c2)):
            images[i, 0, r:r + mark, c:c + mark] += 1.0
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def build_relations(img_size: int = R.img_size, num_train: int = R.num_train, num_val: int = R.num_val,
                    seed: int = R.seed, **_: Any) -> DataBundle:
    x_tr, y_tr = make_relations(num_train, img_size, seed)
    x_va, y_va = make_relations(num_val, img_size, seed + 1)
    tr, va, mean, std = _standardize(x_tr, x_va)
    return DataBundle(TensorDataset(tr, y_tr), TensorDataset(va, y_va), RELATIONS_CLASSES, R.CHANNELS, img_size, mean,
                      std)


def build_synthetic(img_size: int = S.img_size, num_classes: int = S.num_classes, num_train: int = S.num_train,
                    num_val: int = S.num_val, in_chans: int = S.in_chans, seed: int = S.seed, **_: Any) -> DataBundle:
    """Random images and labels: for throughput and plumbing, not for accuracy."""
    g = torch.Generator().manual_seed(seed)
    def make(n: int):
        return TensorDataset(torch.randn(n, in_chans, img_size, img_size, generator=g),
                             torch.randint(0, num_classes, (n,), generator=g))
    return DataBundle(make(num_train), make(num_val), tuple(str(c) for c in range(num_classes)), in_chans, img_size,
                      (0.0,) * in_chans, (1.0,) * in_chans)


# --- file sources ---------------------------------------------------------------------------------------------
def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what}: directory {str(path)!r} does not exist")
    return path


def _posterize(img, bits_to_keep: int, **_: Any):
    """timm's posterize op, with 0 bits kept giving the black image that Pillow before 13 made of it.
    RandAugment's posterize keeps 0 bits at the top of its magnitude range (``rand-m9-mstd0.5-inc1`` reaches it
    now and then); Pillow 13's ``ImageOps.posterize`` refuses 0 bits with a ValueError, which ended the official
    recipe's training within its first epoch. Written here because timm passes the 0 on."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def _image_transforms(aug: Optional[Dict[str, Any]], img_size: int, is_training: bool, mean, std):
    from timm.data import auto_augment, create_transform

    for name, op in list(auto_augment.NAME_TO_OP.items()):  # before the factory looks the ops up
        if op is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize
    aug = aug or {}
    return create_transform(
        img_size, is_training=is_training, auto_augment=aug.get("aa") if is_training else None,
        color_jitter=aug.get("color_jitter") or 0.0, re_prob=aug.get("reprob", 0.0) if is_training else 0.0,
        re_mode=aug.get("remode") or TrainSettings.remode,
        interpolation="bicubic", mean=mean, std=std, crop_pct=aug.get("crop_pct", 0.875) if img_size >= 128 else 1.0,
        scale=tuple(aug.get("scale", (0.08, 1.0))) if img_size >= 128 else (0.6, 1.0))


def _local_cifar(name: str):
    from torchvision import datasets

    base = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100

    class LocalCIFAR(base):  # type: ignore[misc, valid-type]
        """torchvision's reader, minus its md5 re-hash of ~170 MB at every start (which also refuses any
        re-packed copy): we require every file to be present (_cifar_files); unpickling validates the content."""

        def _check_integrity(self) -> bool:
            return all(f.is_file() for f in _cifar_files(self, self.root))

        def _load_meta(self) -> None:  # same as torchvision's, without the md5 check
            import pickle

            path = Path(self.root) / self.base_folder / self.meta["filename"]
            if not path.is_file():
                raise RuntimeError(f"metadata file {path} not found")
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    LocalCIFAR.__name__ = base.__name__
    return LocalCIFAR


def _unreadable_pickle(files: List[Path]) -> Optional[str]:
    """The first of ``files`` that does not unpickle, quoted (None if all do): torchvision's reader reads them all
    and names none in its error. Only called once reading has failed."""
    import pickle

    for path in files:
        try:
            with open(path, "rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception:  # truncated, foreign, unreadable: this is the file to name
            return repr(str(path))
    return None


def _cifar_files(cls, root: str) -> List[Path]:
    """The files torchvision's CIFAR reader opens under ``root``: the pickled batches and the class names."""
    folder = Path(root) / cls.base_folder
    return [*(folder / f for f, _ in (*cls.train_list, *cls.test_list)), folder / cls.meta["filename"]]


def _mnist_files(cls, root: str) -> List[Path]:
    """The uncompressed files torchvision's MNIST-like reader opens (its downloads, minus the .gz)."""
    folder = Path(root) / cls.__name__ / "raw"
    return [folder / os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


# the idx format's type codes -> bytes per item (unsigned and signed byte, short, int, float, double)
IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def _idx_problem(path: Path) -> Optional[str]:
    """What is wrong with an idx file (MNIST's format: a header with its shape, then the bytes), from its header and
    size alone; None when nothing is. The header: two zero bytes, the type code (8: unsigned bytes), the number of
    dimensions, then each dimension as a big-endian 32-bit integer."""
    try:
        with open(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[:2] != b"\0\0":
                return "is not an idx file (its first bytes are not an idx header)"
            dims = f.read(4 * header[3])
        size = path.stat().st_size
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if len(dims) < 4 * header[3]:
        return "is truncated inside its header"
    if header[2] not in IDX_ITEM_BYTES:
        return f"has idx type code {header[2]:#x}, not one of the idx format's"
    shape = [int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4)]
    expected = 4 + len(dims) + int(np.prod(shape, dtype=np.int64)) * IDX_ITEM_BYTES[header[2]]
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        return f"is {state}: its header says {'×'.join(map(str, shape))} ({expected} bytes), the file has {size}"
    return None


def _missing(root: str, files: List[Path]) -> str:
    """What is missing, in a few words: the root itself, or the first file missing and how many more."""
    if not Path(root).is_dir():
        return f"data.root={root!r} is not a folder"
    missing = [str(f) for f in files if not f.is_file()]
    more = f" (and {len(missing) - 1} more files)" if len(missing) > 1 else ""
    return f"{missing[0]!r} is missing{more}" if missing else ""


def _image_extensions() -> Tuple[str, ...]:
    from timm.data import get_img_extensions  # what timm's folder reader takes for an image

    return tuple(get_img_extensions())


def _holds_an_image(folder: Path, below: bool = True) -> bool:
    """An image file under ``folder`` (``below``: in a folder below it, as a split's class folders); stops at the
    first one found. A folder without one is no class to timm's reader."""
    extensions = _image_extensions()
    for here, _, files in os.walk(folder):
        if (Path(here) != folder or not below) and any(f.lower().endswith(extensions) for f in files):
            return True
    return False


def check_files(name: str, root: str = "", download: bool = C.download, train_split: str = I.train_split,
                val_split: str = I.val_split, **_: Any) -> None:
    """That a file source's files are where its builder will look, from the folders' listings alone (no file is
    read, so a corrupt one still fails in the builder): a run calls it before it writes its record. Sources
    without files pass. Raises ``DataError``, one line naming the layout expected and the way out."""
    if name in ("cifar10", "cifar100"):
        cls = _local_cifar(name)
        if not root:
            raise DataError(f"{name}: set data.root to the folder that holds {cls.base_folder}/")
        missing = "" if download else _missing(root, _cifar_files(cls, root))
        if missing:
            files = ", ".join(f.name for f in _cifar_files(cls, root))
            raise DataError(f"{name}: {missing}: {name} expects <root>/{cls.base_folder}/ with the files of the "
                            f"python version as distributed ({files}); point data.root at the folder that holds "
                            f"{cls.base_folder}/, or set data.download=true where a network exists")
    elif name in MNIST_LIKE:
        from torchvision import datasets

        cls = getattr(datasets, MNIST_LIKE[name])
        if not root:
            raise DataError(f"{name}: set data.root to the folder that holds {cls.__name__}/raw/")
        files = _mnist_files(cls, root)
        gzipped = [f for f in files if not f.is_file() and f.with_name(f.name + ".gz").is_file()]
        if gzipped:  # as torchvision downloads them, and as they are distributed
            raise DataError(f"{name}: {str(gzipped[0])!r} is there only gzipped ({gzipped[0].name}.gz): torchvision "
                            f"reads the files uncompressed; gunzip them there (gunzip -k {gzipped[0].parent}/*.gz)")
        missing = _missing(root, files)
        if missing:
            raise DataError(f"{name}: {missing}: {name} expects <root>/{cls.__name__}/raw/ with the "
                            "uncompressed files of torchvision's layout (never downloaded here); point data.root at "
                            f"the folder that holds {cls.__name__}/, or fetch them once with "
                            f"torchvision.datasets.{cls.__name__}(root, download=True)")
    elif name == "imagefolder":
        if not root:
            raise DataError("imagefolder: set data.root to the folder that holds the train/ and val/ class folders")
        layout = f"<root>/{train_split}/<class>/<image> and <root>/{val_split}/<class>/<image>"
        for split in (train_split, val_split):
            folder = Path(root) / split
            if not folder.is_dir():
                missing = _missing(root, []) or f"{str(folder)!r} is not a folder"
                raise DataError(f"imagefolder: {missing}: imagefolder expects {layout}; point "
                                "data.root at the folder that holds them, or name the split folders with "
                                "data.train_split / data.val_split")
            if not _holds_an_image(folder):
                raise DataError(f"imagefolder: no images ({', '.join(_image_extensions())}) in the class folders of "
                                f"{str(folder)!r}: imagefolder expects {layout}; put the images there, one folder "
                                "per class")
        train_folder, val_folder = Path(root) / train_split, Path(root) / val_split
        classes = [{entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")
                    and _holds_an_image(entry, below=False)} for folder in (train_folder, val_folder)]
        if classes[0] != classes[1]:
            raise DataError(_class_folders_differ(train_folder, val_folder, *classes))


def _class_folders_differ(train_folder: Path, val_folder: Path, train_classes: set, val_classes: set) -> str:
    def some(names: set) -> str:
        names = sorted(names)
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    only = [f"{some(names)} only in {str(folder)!r}" for names, folder in
            ((train_classes - val_classes, train_folder), (val_classes - train_classes, val_folder)) if names]
    return (f"imagefolder: the class folders of the two splits differ ({'; '.join(only)}): a class is its folder's "
            "name, the same in both, so give both splits the same class folders")


CIFAR_STATS = {  # per-channel mean and std of each training set, as the CIFAR recipes normalise
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def build_cifar(name: str = C.name, root: str = "", img_size: int = C.img_size, download: bool = C.download,
                augment: str = C.augment, padding: int = C.padding, train_fraction: float = C.train_fraction,
                split_seed: int = C.split_seed, aug: Optional[Dict[str, Any]] = None, **_: Any) -> DataBundle:
    """torchvision's CIFAR-10/100 from ``root`` (the python pickled batches, as distributed), ``train_fraction`` of
    the training set (stratified, seeded by ``split_seed``), the official test set as validation. ``augment``:
    ``timm`` (per-sample PIL transforms from timm's factory, with ``aug``'s options) or ``crop_flip`` (the images
    held as one uint8 tensor, augmented a batch at a time by ``CropFlip``, on the GPU with data on the device)."""
    if not root:
        raise DataError(f"{name}: set data.root to the folder that holds cifar-10-batches-py / cifar-100-python")
    cls = _local_cifar(name)
    mean, std = CIFAR_STATS[name]
    if not download:
        _require_dir(Path(root), name)

    def transform(is_training: bool):
        return None if augment == CROP_FLIP else _image_transforms(aug, img_size, is_training, mean, std)

    try:
        train = cls(root, train=True, download=download, transform=transform(True))
        val = cls(root, train=False, download=False, transform=transform(False))
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
        raise DataError(f"{name}: no valid dataset under {str(root)!r} ({e}); "
                        "set data.download=true where a network exists") from None
    except Exception as e:  # a download without a network; unpickling a truncated or foreign file
        if download and isinstance(e, OSError):  # urllib's URLError and the socket's errors are OSErrors
            raise DataError(f"{name}: cannot download it into {str(root)!r} ({type(e).__name__}: {e}): without a "
                            f"network, put {cls.base_folder}/ there and set data.download=false") from None
        raise DataError(f"{name}: cannot read {_unreadable_pickle(_cifar_files(cls, root)) or repr(str(root))} "
                        f"({type(e).__name__}: {e}): fetch the dataset again") from None
    class_names = tuple(train.classes)  # the meta file's, in label order
    expected = 10 if name == "cifar10" else 100
    if len(class_names) != expected:
        raise DataError(f"{name}: the meta file under {str(Path(root) / cls.base_folder)!r} names "
                        f"{len(class_names)} classes, not {expected}: fetch the dataset again")
    content = content_fingerprint(list(class_names), train.data, np.asarray(train.targets), val.data,
                                  np.asarray(val.targets))
    train.data, targets = _subsample(train.data, np.asarray(train.targets), train_fraction, split_seed)
    train.targets = targets.tolist()
    if augment == CROP_FLIP:
        def tensors(split, is_training: bool) -> TransformedTensorDataset:
            images = torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) uint8 -> NCHW
            return TransformedTensorDataset(images, torch.as_tensor(split.targets, dtype=torch.long),
                                            CropFlip(padding, img_size, mean, std, train=is_training))
        train, val = tensors(train, True), tensors(val, False)
    return DataBundle(train, val, class_names, C.CHANNELS, img_size, mean, std, fingerprint=content)


def build_imagefolder(root: str = "", train_split: str = I.train_split, val_split: str = I.val_split,
                      img_size: int = I.img_size,
                      aug: Optional[Dict[str, Any]] = None, **_: Any) -> DataBundle:
    """ImageNet-style ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg`` via timm's factories."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset

    if not root:
        raise DataError("imagefolder: set data.root to the folder that holds the train/ and val/ class folders")
    base = _require_dir(Path(root), "imagefolder")
    splits = {}
    folders = {split: _require_dir(base / split, "imagefolder") for split in (train_split, val_split)}
    for split, folder in folders.items():
        try:
            splits[split] = StrictImages(create_dataset("", root=str(folder), split=split,
                                                        is_training=split == train_split), folder)
        except Exception as e:
            raise DataError(f"imagefolder: cannot read {str(folder)!r}: {e}") from None
        if len(splits[split]) == 0:
            raise DataError(f"imagefolder: no images found under {str(folder)!r}")
    train, val = splits[train_split], splits[val_split]
    class_names = tuple(sorted(train.reader.class_to_idx, key=train.reader.class_to_idx.get))
    if val.reader.class_to_idx != train.reader.class_to_idx:  # check_files says it first; kept for other callers
        raise DataError(_class_folders_differ(base / train_split, base / val_split,
                                              set(train.reader.class_to_idx), set(val.reader.class_to_idx)))
    mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    train.transform = _image_transforms(aug, img_size, True, mean, std)
    val.transform = _image_transforms(aug, img_size, False, mean, std)
    # the files' names and classes, not their bytes: reading 1.3 M images to start a run would cost minutes
    content = content_fingerprint(list(class_names), *(split.file_list() for split in (train, val)))
    return DataBundle(train, val, class_names, I.CHANNELS, img_size, mean, std, fingerprint=content)


class StrictImages(Dataset):
    """timm's folder dataset (its reader: the files, their classes, timm's order), each image read whole or the run
    stopped with the file named. timm's ``ImageDataset`` skips an image it cannot read and serves the next one
    under that index (a warning in the log): a corrupt file silently changed the data set, one image twice and
    another never, in validation too."""

    def __init__(self, dataset: Dataset, split_folder: Path):
        self.reader, self.folder, self.transform = dataset.reader, split_folder, None

    def __len__(self) -> int:
        return len(self.reader)

    def file_list(self) -> List[Tuple[str, int]]:
        """(path below the split's folder, class index) of every image, in the reader's order."""
        root = os.path.join(str(self.reader.root), "")  # os.path.relpath per file costs seconds on ImageNet
        return [(path[len(root):] if path.startswith(root) else os.path.relpath(path, self.reader.root), target)
                for path, target in self.reader.samples]

    def __getitem__(self, index: int):
        from PIL import Image

        fileobj, target = self.reader[index]
        try:
            with fileobj:
                img = Image.open(fileobj).convert("RGB")  # decodes every pixel: a truncated file fails here
        except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for an unreadable image
            path = self.folder / self.reader.filename(index)
            raise DataError(f"imagefolder: cannot read the image {str(path)!r} ({type(e).__name__}: {e}): replace "
                            "or remove it, then rerun the same command to resume") from None
        return (self.transform(img) if self.transform is not None else img), target


BUILDERS: Dict[str, Callable[..., DataBundle]] = {
    "digits": build_digits,
    "relations": build_relations,
    "synthetic": build_synthetic,
    "cifar10": functools.partial(build_cifar, name="cifar10"),
    "cifar100": functools.partial(build_cifar, name="cifar100"),
    "imagefolder": build_imagefolder,
    **{name: functools.partial(build_mnist_like, name=name) for name in MNIST_LIKE},
}


assert set(BUILDERS) == set(DATASETS), "every data set has a builder and a config (config.DATASETS)"


def build_data(name: str, **options: Any) -> DataBundle:
    if name not in BUILDERS:
        raise DataError(f"unknown data {name!r}; choose one of: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](**options)


class DeviceTensorLoader:
    """The batches a ``DataLoader`` (no workers) makes of an in-memory tensor dataset, cut from a copy of it
    held on the training device, augmented there in one call per batch: for a 32-px model on a GPU, a Python
    loop collating 64 samples per step costs more than the step. Same sampler, same order, same random draws
    from the same RNG (``BatchAugment``: so the same numbers, and the setting stays speed-only);
    ``train.data_on_device``.

    Written here because a ``DataLoader`` always indexes sample by sample (or hands a list of indices to a
    dataset that must then do the batching), and timm's GPU prefetcher only overlaps the copy, it still
    collates on the CPU."""

    def __init__(self, dataset: TensorDataset, batch_size: int, sampler: Sampler, drop_last: bool,
                 device: torch.device):
        if not _replayable(dataset):
            raise DataError("train.data_on_device: this dataset's transform runs per sample on the CPU; use "
                            "train.data_on_device=never")
        images, labels = dataset.tensors
        self.images, self.labels = images.to(device), labels.to(device)
        self.augment: Optional[BatchAugment] = getattr(dataset, "transform", None)
        self.batch_size, self.sampler, self.drop_last, self.device = batch_size, sampler, drop_last, device

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long).to(self.device)  # one copy per epoch
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            x, y = self.images.index_select(0, index), self.labels.index_select(0, index)
            if self.augment is not None:
                x = self.augment.apply(x, self.augment.draw(len(index)))
            yield x, y


def _replayable(dataset: Dataset) -> bool:
    """Tensors in memory, with no augmentation or one a whole batch can replay (``BatchAugment``)."""
    return isinstance(dataset, TensorDataset) and (getattr(dataset, "transform", None) is None
                                                   or _batch_augment(dataset) is not None)


def on_device_eligible(bundle: DataBundle, num_workers: int) -> bool:
    """Whether ``DeviceTensorLoader`` can serve this bundle."""
    return num_workers == 0 and _replayable(bundle.train) and _replayable(bundle.val)


# what make_loaders hands the trainer: each yields (images, labels) batches and has a sampler with set_epoch
Loader = Union[DataLoader, "AugmentedLoader", "DeviceTensorLoader"]
# the signals that stop a run with a checkpoint (Ctrl-C, a scheduler's preemption notices): the training process
# catches them (engine._SignalCatcher) and stops after its step
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None),
                                 getattr(signal, "SIGUSR2", None)) if s)


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A DataLoader worker's start: the stop signals are the training process's. A scheduler (or ``kill -TERM
    -PGID``) signals every process of the job; a worker it killed made PyTorch raise "DataLoader worker is killed by
    signal" in the training process mid-step, and the run was recorded as failed, without its mid-epoch checkpoint.
    SIGINT and SIGUSR1/2 are ignored. SIGTERM is what the training process itself ends a worker with (PyTorch's
    ``terminate()`` of a worker that does not stop, and multiprocessing's at exit, which then waits for it), so it is
    taken by a thread that tells the senders apart, as PyTorch's own handler does: the parent's ends the worker,
    anyone else's is left to the parent (which stops its workers itself; a worker whose parent died exits on its
    own, by PyTorch's watchdog)."""
    for sig in STOP_SIGNALS:
        if sig != getattr(signal, "SIGTERM", None):
            signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):  # not on macOS: there PyTorch's handler stays, and a group's SIGTERM kills
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # every thread started from here on too
        threading.Thread(target=_end_on_the_parents_sigterm, args=(os.getppid(),), daemon=True,
                         name="sigterm-from-parent").start()


def _end_on_the_parents_sigterm(parent: int) -> None:
    """Wait for SIGTERMs (blocked in every thread of the worker) and end the worker on its parent's, quietly, as
    PyTorch's worker handler does (exit status 0); ignore everyone else's."""
    while True:
        sender = signal.sigwaitinfo({signal.SIGTERM}).si_pid
        if sender == parent or os.getppid() != parent:
            os._exit(0)


def make_loaders(bundle: DataBundle, batch_size: int, seed: int, num_workers: int = 0,
                 distributed: bool = False, drop_last: bool = True, device: Optional[torch.device] = None,
                 aug_repeats: int = 0) -> Tuple[Loader, Loader]:
    """Train/val loaders; the train order is a function of (seed, epoch) only (see ``EpochSampler``). With
    ``device``, tensor datasets are served from a copy on that device (``DeviceTensorLoader``); with
    ``aug_repeats``, each image comes that many times an epoch (``ResumableRepeatAugSampler``)."""
    val_sampler: Optional[Sampler] = ShardSampler(bundle.val) if distributed else None
    if aug_repeats:  # one replica without a process group; with one, the group's size and rank
        train_sampler: Sampler = ResumableRepeatAugSampler(bundle.train, seed, aug_repeats,
                                                           num_replicas=None if distributed else 1,
                                                           rank=None if distributed else 0)
    elif distributed:
        train_sampler = ResumableDistributedSampler(bundle.train, seed, drop_last=True)
    else:
        train_sampler = EpochSampler(len(bundle.train), seed)
    # a small data set gets smaller batches, at least two an epoch; under torchrun, counted on each process's share
    # (the whole set's count left 3 processes on 60 images with no batch at all, and timm's scheduler asserting)
    available = len(train_sampler) if distributed else len(bundle.train)
    batch_size = min(batch_size, max(1, available // (2 if drop_last else 1)))
    if device is not None:
        return (DeviceTensorLoader(bundle.train, batch_size, train_sampler, drop_last, device),
                DeviceTensorLoader(bundle.val, batch_size, val_sampler or SequentialSampler(bundle.val), False,
                                   device))
    # A loader-owned generator: creating an iterator must not draw from the global RNG, or resuming in the
    # middle of an epoch (a fresh iterator) would shift every random number drawn afterwards. The workers' seeds
    # come from it: a stream of each process's own (rank_seed), as the training process's draws.
    rank, world_size = (torch_dist.get_rank(), torch_dist.get_world_size()) if distributed else (0, 1)
    generator = torch.Generator().manual_seed(rank_seed(seed, rank, world_size))
    common = dict(num_workers=num_workers, pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0,
                  generator=generator, worker_init_fn=_leave_stop_signals_to_the_trainer if num_workers else None)
    train_set: Dataset = _unaugmented(bundle.train)
    if not _replayable(bundle.train):  # augmented image by image: each image from a seed of its own
        train_set, train_sampler = SeededDraws(train_set, seed), DrawKeys(train_sampler, rank)
    train = DataLoader(train_set, batch_size=batch_size, sampler=train_sampler, drop_last=drop_last, **common)
    val = DataLoader(_unaugmented(bundle.val), batch_size=batch_size, sampler=val_sampler, shuffle=False, **common)
    return AugmentedLoader.around(train, bundle.train), AugmentedLoader.around(val, bundle.val)


def _unaugmented(dataset: Dataset) -> Dataset:
    """A tensor dataset's images as stored, for ``AugmentedLoader`` to augment; any other dataset as it is."""
    return TensorDataset(*dataset.tensors) if _batch_augment(dataset) is not None else dataset


def _batch_augment(dataset: Dataset) -> Optional[BatchAugment]:
    transform = getattr(dataset, "transform", None)
    return transform if isinstance(dataset, TensorDataset) and isinstance(transform, BatchAugment) else None


class AugmentedLoader:
    """A ``DataLoader`` over a tensor dataset's stored images whose batches are augmented here, in the training
    process, as they are handed out: the random draws come from the global RNG (which checkpoints restore) in the
    order a loader without workers draws them (``BatchAugment``), whatever ``train.num_workers`` is. Drawn in
    the workers, each worker's own RNG (seeded per worker) would give other numbers for every worker count, and
    nothing a resume could restore: ``num_workers`` would change the run's numbers, not only its speed."""

    def __init__(self, loader: DataLoader, augment: BatchAugment):
        self.loader, self.augment = loader, augment
        self.sampler, self.batch_size = loader.sampler, loader.batch_size

    @classmethod
    def around(cls, loader: DataLoader, dataset: Dataset) -> Union[DataLoader, AugmentedLoader]:
        """``loader`` itself when ``dataset`` has no batch augmentation, else the loader that applies it."""
        augment = _batch_augment(dataset)
        return loader if augment is None else cls(loader, augment)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield self.augment.apply(x, self.augment.draw(len(x))), y


__all__ = ["BUILDERS", "AugmentedLoader", "BatchAugment", "CropFlip", "DataBundle", "DataError", "DeviceTensorLoader",
           "EpochSampler", "RandomTranslate", "ShardSampler", "StrictImages", "build_data", "check_files",
           "content_fingerprint", "data_error_message", "draw_translations", "make_loaders", "make_relations",
           "on_device_eligible", "rank_seed", "translate_batch"]
