"""CIFAR's training batches, the loader alone (``python -m shiftvit.bench loader``): images/s of timm's per-sample PIL
transforms through a ``DataLoader`` (``data.augment=timm``), of the pad-crop-flip augmentation through a
``DataLoader`` (``data.augment=crop_flip``, sample by sample) and of the same augmentation cut and applied a batch at
a time on the device (``DeviceTensorLoader``, ``train.data_on_device``); beside them, the training steps of a
small model on a batch already on the device: the rate a loader must keep up with so that it does not bound a
32-px ablation job. Every case runs in one process, rounds interleaved.

Without ``--root`` it writes a CIFAR folder of random images (the distributed file format, so the same reader
and the same transforms run), since nothing can be downloaded here; a loader's speed does not depend on what
the pixels show."""
from __future__ import annotations

import pickle
import statistics
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

import numpy as np
import torch

from .timing import _device_name, time_interleaved

# torchvision's file names and keys of each distributed set (torchvision.datasets.CIFAR10 / CIFAR100)
CIFAR_FILES = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test="test_batch",
                    meta="batches.meta", names_key="label_names", labels_key="labels", classes=10),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test="test", meta="meta",
                     names_key="fine_label_names", labels_key="fine_labels", classes=100),
}


def write_cifar(root: Path, name: str = "cifar10", num_train: int = 50_000, num_val: int = 10_000,
                seed: int = 0) -> Path:
    """A CIFAR folder under ``root`` in the distributed format (Python-2 pickles of uint8 rows, labels and the
    class names), of random images and labels; returns ``root``."""
    files = CIFAR_FILES[name]
    folder = root / files["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_parts = np.array_split(np.arange(num_train), len(files["train"]))
    for file_name, rows in [*zip(files["train"], map(len, train_parts)), (files["test"], num_val)]:
        # the distributed files are Python-2 pickles whose keys unpickle as str under latin1
        batch = {"batch_label": file_name, files["labels_key"]: rng.integers(0, files["classes"], rows).tolist(),
                 "data": rng.integers(0, 256, (rows, 3 * 32 * 32), dtype=np.uint8),
                 "filenames": [f"{i}.png" for i in range(rows)]}
        with open(folder / file_name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / files["meta"], "wb") as f:
        pickle.dump({files["names_key"]: [f"c{i}" for i in range(files["classes"])]}, f, protocol=2)
    return root


def _passes(loader: Iterable, batches: int, device: torch.device) -> Callable[[], None]:
    """``batches`` batches of a fresh pass, each on ``device`` as the engine receives it."""
    def run() -> None:
        for i, (x, y) in enumerate(loader):
            x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if i + 1 == batches:
                break
    return run


def _training_steps(model_name: str, batch_size: int, img_size: int, num_classes: int, batches: int,
                    device: torch.device) -> Callable[[], None]:
    """``batches`` training steps (forward, backward, AdamW) of ``model_name`` on one batch held on ``device``."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    model = timm.create_model(model_name, num_classes=num_classes, img_size=img_size).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def run() -> None:
        for _ in range(batches):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return run


def bench_loader(root: Optional[str] = None, name: str = "cifar10", num_train: int = 50_000, batch_size: int = 256,
                 img_size: int = 32, batches: int = 20, repeats: int = 5, device: str = "cpu",
                 model: Optional[str] = "shiftvit_micro", seed: int = 0) -> Dict[str, object]:
    from ..config import CROP_FLIP, TIMM_AUGMENT
    from ..data import build_data, make_loaders

    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = root or str(write_cifar(Path(tmp), name, num_train, num_val=batch_size, seed=seed))
        timm_data = build_data(name, root=folder, img_size=img_size, augment=TIMM_AUGMENT)
        crop_flip = build_data(name, root=folder, img_size=img_size, augment=CROP_FLIP)
    batches = min(batches, len(crop_flip.train) // batch_size)
    if batches < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the {len(crop_flip.train)} training images")
    fns = {
        "timm_dataloader": _passes(make_loaders(timm_data, batch_size, seed)[0], batches, dev),
        "crop_flip_dataloader": _passes(make_loaders(crop_flip, batch_size, seed)[0], batches, dev),
        "crop_flip_on_device": _passes(make_loaders(crop_flip, batch_size, seed, device=dev)[0], batches, dev),
    }
    if model:
        fns[f"train_{model}"] = _training_steps(model, batch_size, img_size, crop_flip.num_classes, batches, dev)
    times = time_interleaved(fns, repeats, warmup=1, device=dev)
    rates = {case: batches * batch_size / statistics.median(ts) for case, ts in times.items()}
    return dict(benchmark="loader", data=name, root=root, num_train=len(crop_flip.train), batch_size=batch_size,
                img_size=img_size, batches=batches, repeats=repeats, model=model, device=_device_name(dev),
                threads=torch.get_num_threads(), torch=torch.__version__, images_per_s=rates,
                ratio_to_timm={case: rate / rates["timm_dataloader"] for case, rate in rates.items()})


def _print_loader(r: Dict[str, object]) -> None:
    source = r["root"] or "random images in CIFAR's format"
    print(f"{r['data']} training batches ({source}, {r['num_train']} images), batch {r['batch_size']}, "
          f"{r['img_size']} px, {r['device']}, {r['threads']} threads; median of {r['repeats']} interleaved rounds "
          f"of {r['batches']} batches")
    print(f"{'case':<28}{'images/s':>12}{'÷ timm':>9}")
    for case, rate in r["images_per_s"].items():
        print(f"{case:<28}{rate:>12,.0f}{r['ratio_to_timm'][case]:>9.2f}")
