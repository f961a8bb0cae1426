"""The same application, called from Python (no subprocess): configs composed by Hydra's compose API."""
import gzip
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from shiftvit.app import run_experiment
from shiftvit.bench.loader import write_cifar
from shiftvit.config import ConfigError, config_hash, resolve
from shiftvit.data import (
    DataError,
    EpochSampler,
    ResumableDistributedSampler,
    ShardSampler,
    build_data,
    check_files,
    make_relations,
)
from shiftvit.records import read_metrics, read_summary
from shiftvit.tracking import Tracker

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


FAST = ("train.epochs=1", "logger=none", "train.ema=false")


def test_nan_loss_is_recorded_as_diverged(tmp_path):
    summary = run_experiment(composed(*FAST, "train.lr=1e30", "train.warmup_epochs=0", "train.epochs=3"), tmp_path)
    assert summary["status"] == "diverged"
    assert read_summary(tmp_path)["status"] == "diverged"
    assert summary["epochs_done"] < 3


@pytest.mark.parametrize("overrides,message", [
    (["gamma=abc"], "gamma='abc' is not a number"),
    (["gamma=0.3"], "gamma=0.3 is outside (0, 1/4]"),
    (["gamma=1/48"], "shifts floor(1/48*24) = 0 channels at a stage of width 24"),
    (["tau=-1"], "tau=-1.0 must be > 0"),
    (["depths=[1,2]"], "depths=[1, 2] must be four integers >= 1"),
    (["depths=[2,2,6,2]", "match=flops"], "depths=[2, 2, 6, 2] and match=flops conflict"),
    (["train.epochs=0"], "train.epochs=0 must be >= 1"),
    (["+train.foo=1"], "train.foo is not a training setting"),
    (["train.amp=fp8"], "train.amp='fp8' is not one of: none, bf16, fp16"),
    (["train.malloc=jemalloc"], "train.malloc='jemalloc' is not one of: retain, system"),
    (["train.compile_mode=max-autotune"], "train.compile_mode='max-autotune' is not one of: default, reduce-overhead"),
    (["train.compile_scope=layers"], "train.compile_scope='layers' is not one of: model, blocks"),
    (["+mixer.window_size=7"], "mixer.window_size is not an option of mixer=shift"),
    (["mixer=attn", "+mixer.gamma=1/6"], "mixer.gamma is not an option of mixer=attn"),
    (["model.norm=layer"], "model.norm='layer' is not one of: gn1, ln, bn"),
    (["+data.colour=1"], "data.colour is not an option of data=digits"),
    (["seed=-1"], "seed=-1 must be >= 0"),
    (["tau=0"], "tau=0.0 must be > 0"),
    (["match=macs"], "match='macs' is not one of: flops, params, none"),
    (["tolerance=2"], "tolerance=2.0 is a fraction of the budget and must be < 1: write tolerance=0.02 for ±2%"),
    (["data.img_size=40", "model.img_size=40"], "img_size=40x40 must be a multiple of 16"),
    (["data.img_size=64"], "model shiftvit_micro is designed for 32 px but data=digits gives 64 px"),
    (["model=shiftvit_nano", "mixer=attn"], "closest reachable is depths=[1, 1, 1, 1]"),
])
def test_resolve_rejects_bad_values_in_one_line(overrides, message):
    with pytest.raises((ConfigError, ValueError)) as err:
        resolve(composed(*overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides,message", [
    (["tau=abc"], "Value 'abc' of type 'str' could not be converted to Float"),
    (["train.epochs=1.5"], "Value '1.5' of type 'float' could not be converted to Integer"),
    (["train.lr_typo=1"], "Key 'lr_typo' not in 'TrainSettings'"),
    (["mixer.window_size=3"], "Key 'window_size' not in 'ShiftOptions'"),
])
def test_the_schema_refuses_bad_types_and_unknown_keys_while_composing(overrides, message):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        composed(*overrides)
    assert message in str(err.value) + str(err.value.__cause__)


def test_gamma_forms_and_effective_config(caplog):
    from shiftvit import config

    assert resolve(composed("gamma=1/12"))["gamma"] == "1/12"
    config._WARNED.clear()  # said once per process: a run resolves its config twice (checked, then run)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shiftvit.config"):
        assert resolve(composed("gamma=0.0833"))["gamma"] == "833/10000"
        resolve(composed("gamma=0.0833"))
        resolve(composed("gamma=0.125"))  # 1/8 exactly: nothing to say
        attn = resolve(composed("mixer=attn", "gamma=1/6"))  # a ratio the mixer does not have: said, not silent
        resolve(composed("mixer=attn"))
    assert [r.getMessage() for r in caplog.records] == [
        "gamma=0.0833 is read exactly, as 833/10000, not 1/12: write gamma=1/12 for that ratio",
        "gamma=1/6 has no effect with mixer=attn (gamma is the shift's channel ratio); the record says gamma: null"]
    assert resolve(composed("gamma=0.25"))["gamma"] == "1/4"
    assert resolve(composed())["gamma"] == "1/12"  # the variant's own
    assert attn["gamma"] is None and attn["gamma_float"] is None
    assert config_hash(attn) == config_hash(resolve(composed("mixer=attn", "gamma=1/12")))
    assert config_hash(resolve(composed("gamma=1/6"))) != config_hash(resolve(composed("gamma=1/12")))
    # speed-only settings do not change the identity of a run, nor does the folder the data is read from
    assert config_hash(resolve(composed("train.num_workers=2"))) == config_hash(resolve(composed()))
    here, there = (resolve(composed("data=cifar10", f"data.root={root}")) for root in ("/data/cifar", "/scratch/c"))
    assert config_hash(here) == config_hash(there) != config_hash(resolve(composed("data=cifar100", "data.root=/d")))
    fetched = resolve(composed("data=cifar10", "data.root=/data/cifar", "data.download=true"))  # how it got there
    assert config_hash(fetched) == config_hash(here)
    from shiftvit.app import config_difference

    assert config_difference(here, there) == "the same values under another config hash"


def test_the_number_of_processes_is_part_of_a_runs_identity(monkeypatch):
    """train.batch_size is per process: two processes train on another total batch, order and schedule length.
    One process hashes as every record from before world_size was recorded did."""
    one = resolve(composed())
    assert one["world_size"] == 1
    assert config_hash(one) == config_hash({k: v for k, v in one.items() if k != "world_size"})
    monkeypatch.setenv("WORLD_SIZE", "2")
    two = resolve(composed())
    assert two["world_size"] == 2 and two["train"] == one["train"] and config_hash(two) != config_hash(one)


def test_match_flops_solves_depths_on_micro():
    eff = resolve(composed("model=shiftvit_micro", "mixer=attn", "match=flops"))
    assert eff["depths"] != [4, 4, 12, 4] and eff["match"] == "flops" and eff["reference"] == "shiftvit_micro"
    from shiftvit.flops import count
    ref = count("shiftvit_micro", 32).total_macs
    got = count("shiftvit_micro", 32, mixer="attn", depths=tuple(eff["depths"])).total_macs
    assert abs(got / ref - 1) <= 0.02


def test_cpu_paths_bf16_channels_last_accumulation_mixup_clip(tmp_path):
    # synthetic data keeps this to a few steps: bf16 autocast is slow on CPUs without bf16 units
    summary = run_experiment(composed(
        *FAST, "data=synthetic", "data.img_size=32", "data.num_classes=10", "data.num_train=128",
        "data.num_val=32", "train.batch_size=32", "train.amp=bf16", "train.channels_last=true",
        "train.accum_steps=2", "train.mixup=0.2", "train.cutmix=1.0", "train.clip_grad=1.0", "train.ema=true",
        "mixer=dwconv"), tmp_path)
    assert summary["status"] == "completed" and summary["ema_val_top1"] is not None
    rows = read_metrics(tmp_path)
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"]) and rows[0]["val_top1"] >= 0


def test_cifar10_from_local_files_trains(tmp_path):
    write_cifar(tmp_path / "cifar", num_train=100, num_val=20)
    bundle = build_data("cifar10", root=str(tmp_path / "cifar"))
    assert len(bundle.train) == 100 and len(bundle.val) == 20 and bundle.num_classes == 10
    assert bundle.class_names == tuple(f"c{i}" for i in range(10))  # the meta file's names, in label order
    x, y = bundle.train[0]
    assert x.shape == (3, 32, 32)
    summary = run_experiment(composed(*FAST, "data=cifar10", f"data.root={tmp_path / 'cifar'}",
                                      "train.batch_size=16"), tmp_path / "run")
    assert summary["status"] == "completed" and summary["epochs_done"] == 1


def test_cifar_missing_or_malformed_names_the_path(tmp_path):
    with pytest.raises(DataError, match=f"directory '{tmp_path / 'nope'}' does not exist"):
        build_data("cifar10", root=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"no valid dataset under '{tmp_path / 'empty'}'"):
        build_data("cifar10", root=str(tmp_path / "empty"))
    write_cifar(tmp_path / "bad", num_train=100, num_val=20)
    batch = tmp_path / "bad" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:300])  # truncated: torchvision's error named no file
    named = re.escape(f"cifar10: cannot read '{batch}' (") + r".+\): fetch the dataset again"
    with pytest.raises(DataError, match=named):
        build_data("cifar10", root=str(tmp_path / "bad"))
    # a meta file naming another number of classes would change the model's head: refused, naming the folder
    import pickle

    write_cifar(tmp_path / "meta", num_train=100, num_val=20)
    folder = tmp_path / "meta" / "cifar-10-batches-py"
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}, protocol=2))
    with pytest.raises(DataError, match=re.escape(f"cifar10: the meta file under '{folder}' names 2 classes, not 10")):
        build_data("cifar10", root=str(tmp_path / "meta"))


def write_imagefolder(root: Path, classes=("cat", "dog"), per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagefolder_trains_a_step(tmp_path):
    write_imagefolder(tmp_path / "imgs")
    bundle = build_data("imagefolder", root=str(tmp_path / "imgs"), img_size=32)
    assert bundle.num_classes == 2 and len(bundle.train) == 12 and bundle.class_names == ("cat", "dog")
    assert bundle.train[0][0].shape == (3, 32, 32)
    summary = run_experiment(composed(*FAST, "data=imagefolder", f"data.root={tmp_path / 'imgs'}",
                                      "data.img_size=32", "train.batch_size=4"), tmp_path / "run")
    assert summary["status"] == "completed"
    assert len(read_metrics(tmp_path / "run")) == 1


def test_imagefolder_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="set data.root"):
        build_data("imagefolder", root="")
    (tmp_path / "imgs" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=f"directory '{tmp_path / 'imgs' / 'val'}' does not exist"):
        build_data("imagefolder", root=str(tmp_path / "imgs"))


def test_imagefolder_classes_must_match_before_anything_is_written(tmp_path):
    write_imagefolder(tmp_path / "imgs", classes=("c1", "c2", "c10"), per_class=1)
    (tmp_path / "imgs" / "val" / "c10").rename(tmp_path / "imgs" / "val" / "c11")
    message = (f"the class folders of the two splits differ (c10 only in '{tmp_path / 'imgs' / 'train'}'; c11 only "
               f"in '{tmp_path / 'imgs' / 'val'}')")
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_experiment(composed(*FAST, "data=imagefolder", f"data.root={tmp_path / 'imgs'}", "data.img_size=32"),
                       tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # a folder without images is no class to timm's reader, nor to the check
    (tmp_path / "imgs" / "val" / "c11").rename(tmp_path / "imgs" / "val" / "c10")
    (tmp_path / "imgs" / "val" / "empty").mkdir()
    check_files("imagefolder", root=str(tmp_path / "imgs"))


def test_the_official_recipe_s_augmentation_runs_at_every_magnitude_and_erases_with_noise(tmp_path):
    """RandAugment's posterize keeps 0 bits at the top of its range (rand-m9-mstd0.5-inc1 reaches it about once
    in 700 images): Pillow 13 refuses that with a ValueError, which ended ImageNet training in its first epoch;
    it is the black image older Pillow made. Random erasing fills with per-pixel noise, as DeiT's recipe."""
    from PIL import Image
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing

    write_imagefolder(tmp_path / "imgs", per_class=1)
    recipe = composed("+experiment=imagenet_300ep", f"data.root={tmp_path / 'imgs'}")["train"]
    bundle = build_data("imagefolder", root=str(tmp_path / "imgs"), img_size=32,
                        aug={k: recipe[k] for k in ("aa", "color_jitter", "reprob", "remode")})
    steps = bundle.train.transform.transforms
    [erasing] = [t for t in steps if isinstance(t, RandomErasing)]
    assert erasing.mode == "pixel" and erasing.probability == 0.25
    [policy] = [t for t in steps if isinstance(t, RandAugment)]
    [posterize] = [op for op in policy.ops if op.name == "PosterizeIncreasing"]
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0  # 0 bits kept
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert set(map(tuple, np.asarray(posterize(image)).reshape(-1, 3).tolist())) == {(0, 0, 0)}
    posterize.magnitude = 5  # 2 bits kept
    assert set(map(tuple, np.asarray(posterize(image)).reshape(-1, 3).tolist())) == {(192, 64, 0)}


def test_ema_decays_at_its_setting_from_the_first_step_without_warm_up():
    """train.ema_warmup=false is timm's ModelEma (the official recipe's): 0.99996 from the first average. With timm's
    warm-up the decay is min(decay, 1 - (1 + step)^-2/3), below 0.99981 for all 375k steps of 300 ImageNet epochs."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)
    from shiftvit.config import TrainSettings
    from shiftvit.engine import Trainer

    bundle = build_data("synthetic", num_train=8, num_val=4, img_size=32)
    decays = {}
    for warmup in (True, False):
        model = timm.create_model("shiftvit_nano", num_classes=bundle.num_classes)
        trainer = Trainer(model, bundle, TrainSettings(ema_decay=0.99996, ema_warmup=warmup), "unused", seed=0)
        decays[warmup] = [trainer.ema.get_decay(step) for step in (2, 375_000)]  # step 1 copies the weights
    assert decays[False] == [0.99996, 0.99996]
    assert decays[True][0] < 0.5 and decays[True][1] < 0.99981


def test_relations_is_balanced_reproducible_and_long_range():
    x1, y1 = make_relations(200, 32, seed=3)
    x2, y2 = make_relations(200, 32, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert y1.sum().item() == 100
    for img, label in zip(x1[:50], y1[:50]):
        rows, cols = torch.nonzero(img[0] > 0.6, as_tuple=True)
        assert (cols.max() - cols.min()).item() >= 16
        same_row = (rows.max() - rows.min()).item() < 3
        assert same_row == bool(label)


def test_epoch_sampler_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(50, seed=1), EpochSampler(50, seed=1)
    a.set_epoch(3)
    b.set_epoch(3, skip=20)
    assert list(a)[20:] == list(b) and len(b) == 30
    a.set_epoch(4)
    assert list(a) != list(b)


def test_distributed_order_is_a_function_of_seed_and_epoch_alone():
    """Under torchrun as in one process, two seeds never share an epoch's order (torch's sampler seeds with
    seed + epoch: seed 1's first epoch was seed 0's second), and a resumed sampler skips what was done."""
    def order(seed, epoch, rank=0, skip=0):
        sampler = ResumableDistributedSampler(range(100), seed, num_replicas=2, rank=rank)
        sampler.set_epoch(epoch, skip=skip)
        return list(sampler)

    orders = {(seed, epoch): order(seed, epoch) for seed in range(3) for epoch in range(3)}
    assert len({tuple(o) for o in orders.values()}) == len(orders)
    assert order(1, 2, skip=10) == order(1, 2)[10:] and order(1, 2) == order(1, 2)
    assert sorted(order(0, 1) + order(0, 1, rank=1)) == list(range(100))


def test_shard_sampler_scores_every_validation_image_once():
    """Evaluation's shards over the processes cover the validation set exactly once, whatever the process count
    (``DistributedSampler`` repeats images to even the shards out)."""
    for n in (1, 7, 369, 370):
        for world in (1, 2, 3, 8):
            shards = [list(ShardSampler(range(n), num_replicas=world, rank=rank)) for rank in range(world)]
            assert sorted(i for shard in shards for i in shard) == list(range(n)), (n, world)
            assert [len(ShardSampler(range(n), num_replicas=world, rank=r)) for r in range(world)] == \
                [len(shard) for shard in shards]


def test_wandb_online_without_key_warns_once_and_falls_back(tmp_path, monkeypatch, caplog):
    """One line, once: a log record (the run's log file has it), not a Python warning beside it (printed twice)."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="shiftvit"):
        warnings.simplefilter("always")
        tracker = Tracker(True, tmp_path, {"a": {"b": 1}}, mode="online", init_timeout=5)
        tracker.log({"x": 1.0}, step=0)
        tracker.finish()
    ours = [r for r in caplog.records if r.name.startswith("shiftvit") and "wandb" in r.getMessage()]
    assert len(ours) == 1 and "offline" in ours[0].getMessage()
    assert not [w for w in caught if "wandb" in str(w.message) and issubclass(w.category, RuntimeWarning)]


def test_tracker_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="logger.mode='sometimes' is not one of: offline, online, disabled"):
        Tracker(True, tmp_path, {}, mode="sometimes")


def signal_after_first_epoch(run_dir: Path, signum: int) -> None:
    """Send this process ``signum`` once the run in ``run_dir`` has recorded its first epoch (from a thread)."""
    import os
    import threading
    import time

    def send():
        deadline = time.time() + 300
        while not read_metrics(run_dir) and time.time() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    threading.Thread(target=send, daemon=True).start()


def test_sigusr2_checkpoints_then_hands_over_to_the_installed_handler(tmp_path):
    """submitit installs a SIGUSR2 handler that requeues the job: we checkpoint first, then call it."""
    import signal

    import torch

    received = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))

    signal_after_first_epoch(tmp_path, signal.SIGUSR2)
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_experiment(composed("train.epochs=6", "logger=none", "train.ema=false"), tmp_path)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert exit_info.value.code == 0
    assert received == [signal.SIGUSR2]  # the previous handler ran after our checkpoint
    summary = read_summary(tmp_path)
    assert summary["status"] == "interrupted" and summary["interrupted_by"] == "SIGUSR2"
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1


def test_model_and_data_sizes_must_agree_or_the_adaptation_is_asked_for():
    with pytest.raises(ConfigError, match=r"model shiftvit_tiny is designed for 224 px but data=digits gives 32 px: "
                                          r"use a model designed for 32 px "
                                          r"\(shiftvit_nano, shiftvit_micro, shiftvit_light_micro\), "
                                          r"data.img_size=224, or model.img_size=32"):
        resolve(composed("model=shiftvit_tiny"))
    adapted = resolve(composed("model=shiftvit_tiny", "model.img_size=32"))
    assert adapted["model"]["img_size"] == 32
    with pytest.raises(ConfigError, match=r"model.img_size=64 but data=digits gives 32 px: set data.img_size=64"):
        resolve(composed("model=shiftvit_tiny", "model.img_size=64"))
    assert resolve(composed("model=shiftvit_tiny", "model.img_size=64", "data.img_size=64"))["model"]["img_size"] == 64
    assert resolve(composed())["model"]["img_size"] == 32  # the default pair agrees


def test_conf_repeats_no_default_of_the_schema():
    """The defaults live in shiftvit/config.py; conf/ only overrides what differs (no copy to drift apart)."""
    import dataclasses

    import yaml

    from shiftvit.config import TrainSettings

    defaults = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    imagenet = yaml.safe_load((CONF / "train" / "imagenet.yaml").read_text())
    repeated = {k: v for k, v in imagenet.items() if k != "defaults" and defaults.get(k) == v}
    assert not repeated, f"conf/train/imagenet.yaml repeats defaults of TrainSettings: {repeated}"
    top = yaml.safe_load((CONF / "config.yaml").read_text())
    assert set(top) == {"defaults", "hydra"}, "the top-level knobs' defaults belong to config.ExperimentConfig"
    for group in ("model", "mixer", "data", "logger"):
        assert not list((CONF / group).glob("*.yaml")), f"conf/{group}/ is generated from shiftvit/config.py"


def test_each_option_default_has_one_owner():
    """Mixer constructors and data builders take their defaults from the options dataclasses."""
    import dataclasses
    import inspect

    from shiftvit import data, spec
    from shiftvit.config import DATASETS
    from shiftvit.models.mixers import mixer_options

    for name in spec.MIXER_OPTIONS:
        given = {k: v for k, v in mixer_options(name).items() if k != "gamma"}
        assert given == spec.option_defaults(name), name
    for name, schema in DATASETS.items():
        builder = data.BUILDERS[name]
        params = inspect.signature(builder).parameters
        for f in dataclasses.fields(schema):
            if f.name in params and f.default is not dataclasses.MISSING and f.name not in ("root", "name"):
                assert params[f.name].default == f.default, (name, f.name)


def write_idx(folder: Path, split: str, n: int, classes: int = 10, seed: int = 0) -> None:
    """MNIST's idx format, uncompressed, as torchvision keeps it in <root>/<Class>/raw/."""
    import struct

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
    images[np.arange(n), labels * 2, :] = 255  # a row that tells the class
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    (folder / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_like_sets_read_torchvision_layout_with_a_training_fraction(tmp_path, name, folder):
    write_idx(tmp_path / folder / "raw", "train", 200)
    write_idx(tmp_path / folder / "raw", "t10k", 50, seed=1)
    bundle = build_data(name, root=str(tmp_path))
    assert (len(bundle.train), len(bundle.val), bundle.num_classes, bundle.in_chans) == (200, 50, 10, 1)
    assert len(bundle.class_names) == 10 and len(set(bundle.class_names)) == 10  # torchvision's names of the set
    assert bundle.train[0][0].shape == (1, 32, 32)
    part = build_data(name, root=str(tmp_path), train_fraction=0.25)
    labels = [int(y) for _, y in part.train]
    assert len(labels) == 50 and sorted(set(labels)) == list(range(10)) and len(part.val) == 50  # stratified


def test_a_data_fingerprint_names_what_the_files_hold_not_where_they_lie(tmp_path):
    """The same images under another root, or re-pickled, have the same fingerprint; one image or label changed,
    another file set or another class assignment do not. Digits' is its split; data this code makes from the
    config alone has none."""
    import pickle

    def cifar_print(root: Path) -> str:
        return build_data("cifar10", root=str(root)).fingerprint

    write_cifar(tmp_path / "a", num_train=40, num_val=20)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    repacked = tmp_path / "b" / "cifar-10-batches-py" / "data_batch_2"
    batch = pickle.loads(repacked.read_bytes(), encoding="latin1")
    repacked.write_bytes(pickle.dumps(batch, protocol=4))
    assert cifar_print(tmp_path / "a") == cifar_print(tmp_path / "b")
    assert cifar_print(tmp_path / "a") == build_data("cifar10", root=str(tmp_path / "a"), train_fraction=0.5,
                                                     augment="crop_flip").fingerprint  # the files, as read
    one_pixel = {**batch, "data": batch["data"].copy()}
    one_pixel["data"][0, 0] ^= 1
    one_label = {**batch, "labels": [(batch["labels"][0] + 1) % 10, *batch["labels"][1:]]}
    for changed in (one_pixel, one_label):
        repacked.write_bytes(pickle.dumps(changed, protocol=2))
        assert cifar_print(tmp_path / "b") != cifar_print(tmp_path / "a")

    write_idx(tmp_path / "m" / "MNIST" / "raw", "train", 60)
    write_idx(tmp_path / "m" / "MNIST" / "raw", "t10k", 20, seed=1)
    mnist = build_data("mnist", root=str(tmp_path / "m")).fingerprint
    write_idx(tmp_path / "m" / "MNIST" / "raw", "t10k", 20, seed=2)
    assert mnist and build_data("mnist", root=str(tmp_path / "m")).fingerprint != mnist

    write_imagefolder(tmp_path / "i1", per_class=2)
    shutil.copytree(tmp_path / "i1", tmp_path / "i2")
    folder = build_data("imagefolder", root=str(tmp_path / "i1"), img_size=32).fingerprint
    assert build_data("imagefolder", root=str(tmp_path / "i2"), img_size=32).fingerprint == folder
    (tmp_path / "i2" / "train" / "cat" / "0.png").rename(tmp_path / "i2" / "train" / "dog" / "9.png")
    assert build_data("imagefolder", root=str(tmp_path / "i2"), img_size=32).fingerprint != folder

    # digits: the split scikit-learn draws, which the config names by its seed and fractions
    digits = build_data("digits").fingerprint
    assert digits and build_data("digits", img_size=16, translate=0).fingerprint == digits
    assert len({digits, build_data("digits", split_seed=1).fingerprint,
                build_data("digits", train_fraction=0.5).fingerprint}) == 3
    assert build_data("relations", num_train=8, num_val=4).fingerprint is None  # made by this code from the config


def test_mnist_like_missing_files_name_the_folder(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=f"mnist: no dataset under '{tmp_path / 'data' / 'MNIST' / 'raw'}'"):
        build_data("mnist", root=str(tmp_path / "data"))


def one_line_data_error(call, *args, match: str, **kwargs) -> None:
    with pytest.raises(DataError) as err:
        call(*args, **kwargs)
    assert match in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_mnist_like_broken_files_are_named_with_the_way_out(tmp_path):
    """torchvision's errors name no file: a truncated idx file read as "no dataset under ... (shape '[60, 28, 28]' is
    invalid ...)", and labels of another split were taken without a word until the first batch."""
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, "train", 60)
    write_idx(raw, "t10k", 20)
    images = raw / "train-images-idx3-ubyte"
    whole = images.read_bytes()
    images.write_bytes(whole[:-100])
    one_line_data_error(build_data, "mnist", root=str(tmp_path), match=(
        f"mnist: '{images}' is truncated: its header says 60×28×28 (47056 bytes), the file has 46956: fetch it again"))
    images.write_bytes(whole[:2] + b"\x07" + whole[3:])
    one_line_data_error(build_data, "mnist", root=str(tmp_path), match=(
        f"mnist: '{images}' has idx type code 0x7, not one of the idx format's: fetch it again"))
    images.write_bytes(whole)
    write_idx(tmp_path / "other", "t10k", 20)
    (raw / "train-labels-idx1-ubyte").write_bytes((tmp_path / "other" / "t10k-labels-idx1-ubyte").read_bytes())
    one_line_data_error(build_data, "mnist", root=str(tmp_path), match=(
        f"mnist: '{images}' holds 60 images but '{raw / 'train-labels-idx1-ubyte'}' 20 labels"))
    for path in raw.iterdir():  # as distributed, and as torchvision downloads them: gzipped
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    one_line_data_error(check_files, "mnist", root=str(tmp_path), match=(
        f"mnist: '{images}' is there only gzipped (train-images-idx3-ubyte.gz): torchvision reads the files "
        f"uncompressed; gunzip them there (gunzip -k {raw}/*.gz)"))


def test_mnist_trains_end_to_end(tmp_path):
    write_idx(tmp_path / "data" / "MNIST" / "raw", "train", 64)
    write_idx(tmp_path / "data" / "MNIST" / "raw", "t10k", 32, seed=1)
    summary = run_experiment(composed(*FAST, "data=mnist", f"data.root={tmp_path / 'data'}", "train.batch_size=16"),
                             tmp_path / "run")
    assert summary["status"] == "completed" and summary["data"] == "mnist"


def test_digits_training_fraction_is_stratified_seeded_and_checked():
    full = build_data("digits")
    tenth = build_data("digits", train_fraction=0.1)
    labels = [int(y) for _, y in tenth.train]
    assert len(labels) == int(0.1 * len(full.train)) and sorted(set(labels)) == list(range(10))  # sklearn floors
    assert len(tenth.val) == len(full.val)  # the validation set stays whole
    again = build_data("digits", train_fraction=0.1)
    assert torch.equal(tenth.train.tensors[0], again.train.tensors[0])  # the same images for the same seed
    other = build_data("digits", train_fraction=0.1, split_seed=1)
    assert not torch.equal(tenth.train.tensors[1], other.train.tensors[1])
    with pytest.raises(DataError, match=r"data.train_fraction=0 must be in \(0, 1\]"):
        build_data("digits", train_fraction=0)
    with pytest.raises(DataError, match="keeps fewer than one image per class"):
        build_data("digits", train_fraction=0.001)


@pytest.mark.parametrize("data", [("data=digits", "data.train_fraction=0.1"),
                                  ("data=synthetic", "data.img_size=32", "data.in_chans=2", "data.num_classes=10",
                                   "data.num_train=64", "data.num_val=64")], ids=["digits", "synthetic"])
def test_the_budget_is_counted_with_the_stem_the_run_builds(data, tmp_path):
    """Digits are grey: the run builds a 1-channel stem, so the budget a refusal names is the MACs the reference
    run records (7.9 M for shiftvit_nano on digits), not those of an RGB stem (7.965 M)."""
    from shiftvit.config import data_config
    from shiftvit.flops import count

    reference = run_experiment(composed("model=shiftvit_nano", *data, "match=none", "train.epochs=1",
                                        "train.warmup_epochs=0", "logger=none", "train.threads=1"),
                               tmp_path / "reference")
    channels = data_config(composed(*data)["data"]).channels()
    assert channels == (1 if "data=digits" in data else 2)
    assert reference["macs"] == count("shiftvit_nano", 32, in_chans=channels).total_macs
    with pytest.raises(ConfigError) as refused:
        resolve(composed("model=shiftvit_nano", *data, "mixer=attn"))
    assert f"flops budget of shiftvit_nano ({reference['macs'] / 1e6:.4g} M MACs)" in str(refused.value)


def test_the_wandb_mirror_ends_as_the_record_does(tmp_path):
    """wandb's summary holds the record's own numbers and status: the median throughput (not the last epoch's,
    which a history row left pending until finish() used to write over it); a run cut off is not "finished"
    there (exit code 1, marked preempting); its resumption's offline run holds every epoch; and
    train.resume=fresh starts another wandb run, the archived record keeping its own offline runs."""
    import signal

    from wandb_log import ending, history, run_id, summary, written

    def wandb_logs(run_dir: Path) -> list:
        """The offline runs in order: their folders are named offline-run-<start time>-<id>."""
        return [written(path) for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))]

    done = run_experiment(composed("train.epochs=2", "data.train_fraction=0.1", "train.threads=1"),
                          tmp_path / "done")
    log, = wandb_logs(tmp_path / "done")
    mirrored = summary(log)
    assert [row["epoch"] for row in history(log)] == [1, 2]
    assert mirrored["status"] == "completed" and ending(log) == {"exit_code": 0, "preempting": False}
    for key in ("train_images_per_s", "eval_images_per_s"):  # the median of 2 epochs is not the last one's
        assert mirrored[key] == done[key] != history(log)[-1][key]

    cut = tmp_path / "cut"

    signal_after_first_epoch(cut, signal.SIGTERM)
    with pytest.raises(SystemExit):
        run_experiment(composed("train.epochs=4", "data.train_fraction=0.1", "train.threads=1"), cut)
    log, = wandb_logs(cut)
    assert summary(log)["status"] == "interrupted" and summary(log)["interrupted_by"] == "SIGTERM"
    assert ending(log) == {"exit_code": 1, "preempting": True}
    first_id = run_id(log)
    # resumed offline: another offline run of the same id, holding every epoch (the earlier ones replayed)
    resumed = run_experiment(composed("train.epochs=4", "data.train_fraction=0.1", "train.threads=1"), cut)
    assert resumed["status"] == "completed" and resumed["attempts"] == 2
    newest = wandb_logs(cut)[-1]  # (two attempts started within one second would share one folder)
    assert run_id(newest) == first_id and [row["epoch"] for row in history(newest)] == list(range(1, 5))
    assert [row["val_top1"] for row in history(newest)] == [row["val_top1"] for row in read_metrics(cut)]
    assert summary(newest)["status"] == "completed" and ending(newest)["exit_code"] == 0
    fresh = run_experiment(composed("train.epochs=4", "data.train_fraction=0.1", "train.threads=1",
                                    "train.resume=fresh"), cut)  # the same config: without the archive's count,
    # the same wandb id, and online wandb would resume the archived record's run
    assert fresh["status"] == "completed"
    log, = wandb_logs(cut)  # the finished record's offline runs went to the archive with it
    archived, = (cut / ".archive").iterdir()
    assert run_id(log) == f"{first_id}-1" and len(wandb_logs(archived)) >= 1


def test_an_interruption_says_whether_a_checkpoint_was_kept(tmp_path):
    """Stopped while reading its data, a run has no checkpoint: the line must not say that it holds one."""
    from shiftvit.app import _interrupted_message
    from shiftvit.records import CHECKPOINT_FILE

    before = _interrupted_message("SIGINT", tmp_path, None)
    assert before == (f"interrupted by SIGINT before its first checkpoint: nothing trained is kept, and {tmp_path} "
                      f"holds its record; rerun the same command with hydra.run.dir={tmp_path} to train it again")
    assert _interrupted_message("SIGINT", tmp_path, tmp_path.parent).endswith("; rerun the same command to train "
                                                                             "it again")
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    assert _interrupted_message("SIGINT", tmp_path, None) == (
        f"interrupted by SIGINT: {tmp_path} holds the checkpoint; rerun the same command with "
        f"hydra.run.dir={tmp_path} to resume")
