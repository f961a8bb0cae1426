"""train.data_on_device: in-memory tensor datasets served from a copy on the training device, batched and
augmented there (data.DeviceTensorLoader). Checked on the CPU, where the same code runs with device=cpu: the
batches, and so a whole run, must equal the DataLoader's."""
import pytest
import torch
from helpers import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from shiftvit.app import run_experiment
from shiftvit.bench.loader import write_cifar
from shiftvit.config import SPEED_ONLY_TRAIN_KEYS, ConfigError, TrainSettings, check, config_hash, resolve
from shiftvit.data import (
    AugmentedLoader,
    CropFlip,
    DataError,
    DeviceTensorLoader,
    RandomTranslate,
    build_data,
    draw_translations,
    make_loaders,
    on_device_eligible,
    translate_batch,
)

CPU = torch.device("cpu")


def _batches(loader, epoch: int, skip: int = 0, rng_seed: int = 7):
    if hasattr(loader.sampler, "set_epoch"):  # the training sampler (validation is sequential)
        loader.sampler.set_epoch(epoch, skip=skip)
    torch.manual_seed(rng_seed)  # the augmentation draws from the global RNG, as checkpoints restore it
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("name,options", [("digits", {"train_fraction": 0.3}), ("relations", {"num_train": 300,
                                                                                               "num_val": 100})])
def test_device_batches_equal_the_dataloaders(name, options):
    bundle = build_data(name, **options)
    _assert_device_batches_equal_the_dataloaders(bundle)
    if name == "digits":  # the augmentation really ran: two draws differ
        dev_train, _ = make_loaders(bundle, 32, seed=3, device=CPU)
        first, second = _batches(dev_train, 0, rng_seed=1)[0][0], _batches(dev_train, 0, rng_seed=2)[0][0]
        assert not torch.equal(first, second)


def _assert_device_batches_equal_the_dataloaders(bundle) -> None:
    assert on_device_eligible(bundle, num_workers=0) and not on_device_eligible(bundle, num_workers=2)
    stored = bundle.train.tensors[0].clone()  # the per-sample transforms work on the stored images themselves
    cpu_train, cpu_val = make_loaders(bundle, 32, seed=3)
    dev_train, dev_val = make_loaders(bundle, 32, seed=3, device=CPU)
    assert isinstance(dev_train, DeviceTensorLoader) and len(dev_train) == len(cpu_train)
    assert len(dev_val) == len(cpu_val)
    for epoch, skip in ((0, 0), (1, 0), (2, 64)):  # skip: resumed in the middle of an epoch
        expected, got = _batches(cpu_train, epoch, skip), _batches(dev_train, epoch, skip)
        assert len(expected) == len(got) > 0
        for (xe, ye), (xg, yg) in zip(expected, got):
            assert torch.equal(ye, yg) and torch.equal(xe, xg) and xe.stride() == xg.stride()
    expected, got = _batches(cpu_val, 0), _batches(dev_val, 0)
    assert len(expected) == len(got) > 0
    for (xe, ye), (xg, yg) in zip(expected, got):
        assert torch.equal(ye, yg) and torch.equal(xe, xg)
    assert torch.equal(bundle.train.tensors[0], stored)  # and write new tensors, never into those


@pytest.mark.parametrize("max_shift,count", [(1, 1), (4, 7), (3, 512), (2, 5000)])
def test_one_draw_per_batch_is_the_per_sample_draws(max_shift, count):
    torch.manual_seed(count)  # one sample's draw, as the per-sample loader drew it before batches were cut
    expected = torch.stack([torch.randint(-max_shift, max_shift + 1, (2,)) for _ in range(count)])
    after_expected = torch.rand(3)
    torch.manual_seed(count)
    got = draw_translations(max_shift, count)
    assert torch.equal(got, expected) and torch.equal(torch.rand(3), after_expected)


def test_translate_batch_is_the_per_sample_roll_with_zero_fill():
    x = torch.randn(49, 2, 9, 11)
    offsets = torch.tensor([(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)])
    got = translate_batch(x, offsets)
    for b, (dy, dx) in enumerate(offsets.tolist()):
        expected = torch.roll(x[b], shifts=(dy, dx), dims=(-2, -1))
        rows, cols = torch.arange(9), torch.arange(11)
        keep = ((rows - dy >= 0) & (rows - dy < 9))[:, None] & ((cols - dx >= 0) & (cols - dx < 11))[None, :]
        assert torch.equal(got[b], expected * keep), (dy, dx)
    per_sample = RandomTranslate(3)  # what a DataLoader calls, one image at a time: the same roll
    torch.manual_seed(0)
    (dy, dx), = draw_translations(3, 1).tolist()
    torch.manual_seed(0)
    assert torch.equal(per_sample(x[0]), translate_batch(x[:1], torch.tensor([[dy, dx]]))[0])


def _composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def test_a_run_on_device_data_equals_the_run_on_the_dataloader_with_or_without_workers(tmp_path):
    """The speed settings of the data path change no number: the augmentation draws the same random numbers
    whether the batches are cut on the device, collated by the DataLoader, or collated in a worker process."""
    common = ("model=shiftvit_nano", "match=none", "data.train_fraction=0.3", "train.epochs=2", "logger=none",
              "train.threads=1")
    ways = {"never": ("train.data_on_device=never",), "always": ("train.data_on_device=always",),
            "worker": ("train.data_on_device=never", "train.num_workers=1")}
    runs = {way: run_experiment(_composed(*common, *overrides), tmp_path / way) for way, overrides in ways.items()}
    for key in ("val_top1", "ema_val_top1", "train_loss", "val_loss", "config_hash"):
        assert runs["never"][key] == runs["always"][key] == runs["worker"][key], key
    # a speed setting: it is recorded, and leaves the config hash alone
    assert "data_on_device" in SPEED_ONLY_TRAIN_KEYS
    cfg = _composed("train.data_on_device=always")
    assert config_hash(resolve(cfg)) == config_hash(resolve(_composed()))


def test_data_on_device_is_checked_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"train.data_on_device='gpu' is not one of: auto, always, never"):
        TrainSettings(data_on_device="gpu").check()
    with pytest.raises(ValueError, match="train.data_on_device=always needs an in-memory tensor dataset"):
        run_experiment(_composed("model=shiftvit_nano", "match=none", "logger=none", "train.epochs=1",
                                 "data.train_fraction=0.3", "train.data_on_device=always",
                                 "train.num_workers=1"), tmp_path / "run")


# --- repeated augmentation (train.aug_repeats) ----------------------------------------------------------------------
def test_repeated_augmentation_repeats_each_image_in_a_seeded_resumable_order():
    """timm's sampler, each image 3 times in a row, an epoch about as long as the data set; the order depends on the
    seed as well as the epoch (timm's alone would give every seed one order), and a resumed epoch is its tail."""
    bundle = build_data("digits", train_fraction=0.3)
    n = len(bundle.train)

    def order(seed: int, epoch: int, skip: int = 0) -> list:
        sampler = make_loaders(bundle, 8, seed=seed, aug_repeats=3)[0].sampler
        sampler.set_epoch(epoch, skip=skip)
        return list(sampler)

    first = order(0, 0)
    assert len(first) == (n // 256 * 256 if n >= 256 else n)  # DeiT's epoch: rounded down to 256 images
    assert all(first[i] == first[i + 1] == first[i + 2] for i in range(0, len(first) - 2, 3))
    assert first == order(0, 0) and first != order(1, 0) and first != order(0, 1)
    assert order(0, 0, skip=24) == first[24:]
    # the device loader serves the same batches as the DataLoader, resumed or not
    cpu_train, _ = make_loaders(bundle, 32, seed=3, aug_repeats=3)
    dev_train, _ = make_loaders(bundle, 32, seed=3, device=CPU, aug_repeats=3)
    for epoch, skip in ((0, 0), (1, 64)):
        expected, got = _batches(cpu_train, epoch, skip), _batches(dev_train, epoch, skip)
        assert len(expected) == len(got) > 0
        assert all(torch.equal(ye, yg) and torch.equal(xe, xg) for (xe, ye), (xg, yg) in zip(expected, got))


def test_a_run_with_repeated_augmentation_trains_and_names_its_arm(tmp_path):
    common = ("model=shiftvit_nano", "match=none", "data.train_fraction=0.3", "train.epochs=1", "logger=none",
              "train.threads=1")
    summary = run_experiment(_composed(*common, "train.aug_repeats=3"), tmp_path / "run")
    assert summary["status"] == "completed"
    effective = resolve(_composed(*common, "train.aug_repeats=3"))
    assert effective["train"]["aug_repeats"] == 3
    plain = resolve(_composed(*common))
    assert config_hash(effective) != config_hash(plain)  # other batches, other numbers: another arm
    older = {**plain, "train": {k: v for k, v in plain["train"].items() if k != "aug_repeats"}}
    assert config_hash(older) == config_hash(plain)  # a record from before the key keeps its hash
    with pytest.raises(ConfigError, match=r"train.aug_repeats=1 must be 0 \(off\) or an integer >= 2"):
        TrainSettings(aug_repeats=1).check()


# --- CIFAR: data.augment=crop_flip, the augmentation a batch can replay ---------------------------------------------
@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), num_train=200, num_val=50)


@pytest.mark.parametrize("img_size", [32, 48])  # 48: the resize to the model's input runs in the batch too
def test_cifar_crop_flip_batches_equal_the_dataloaders(cifar_root, img_size):
    bundle = build_data("cifar10", root=str(cifar_root), augment="crop_flip", img_size=img_size)
    assert bundle.train[0][0].shape == (3, img_size, img_size) and bundle.train.tensors[0].dtype == torch.uint8
    _assert_device_batches_equal_the_dataloaders(bundle)
    timm_bundle = build_data("cifar10", root=str(cifar_root), img_size=img_size, augment="timm")  # PIL, per sample
    assert not on_device_eligible(timm_bundle, num_workers=0)
    with pytest.raises(DataError, match="runs per sample on the CPU"):
        make_loaders(timm_bundle, 32, seed=3, device=CPU)


def test_crop_flip_is_torchvisions_pad_crop_flip_to_tensor_normalize():
    """Each code is one of torchvision's (top, left, flip) choices of RandomCrop(32, padding) and
    RandomHorizontalFlip, each choice is one code (so uniform draws of the code are torchvision's distribution),
    and the pixels are those of ToTensor and Normalize."""
    from torchvision.transforms import functional as TF

    padding, mean, std = 2, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    padded = TF.pad(image, [padding], fill=0)
    side = 2 * padding + 1
    torchvision_outputs = {}
    for top in range(side):
        for left in range(side):
            for flip in (False, True):
                crop = TF.crop(padded, top, left, 32, 32)
                crop = TF.hflip(crop) if flip else crop
                torchvision_outputs[top, left, flip] = TF.normalize(crop.float() / 255, mean, std)
    augment = CropFlip(padding, 32, mean, std)
    codes = torch.arange(2 * side * side)[:, None]
    ours = augment.apply(image.expand(len(codes), -1, -1, -1), codes)
    matched = []
    for out in ours:
        hits = [choice for choice, expected in torchvision_outputs.items() if torch.equal(out, expected)]
        assert len(hits) == 1
        matched.append(hits[0])
    assert sorted(matched) == sorted(torchvision_outputs)
    # validation: no draw, only ToTensor and Normalize
    evaluate = CropFlip(padding, 32, mean, std, train=False)
    state = torch.get_rng_state()
    assert evaluate.draw(5) is None and torch.equal(torch.get_rng_state(), state)
    assert torch.equal(evaluate(image), TF.normalize(image.float() / 255, mean, std))


@pytest.mark.parametrize("count", [1, 7, 600])
def test_one_crop_flip_draw_per_batch_is_the_per_sample_draws(count):
    augment = CropFlip(4, 32, (0.5,) * 3, (0.5,) * 3)
    torch.manual_seed(count)
    expected = torch.cat([augment.draw(1) for _ in range(count)])
    after_expected = torch.rand(3)
    torch.manual_seed(count)
    assert torch.equal(augment.draw(count), expected) and torch.equal(torch.rand(3), after_expected)


def test_a_cifar_run_on_device_data_equals_the_run_on_the_dataloader(tmp_path, cifar_root):
    common = ("model=shiftvit_nano", "match=none", "data=cifar10", f"data.root={cifar_root}", "data.augment=crop_flip",
              "train.epochs=1", "train.batch_size=32", "logger=none", "train.threads=1")
    runs = {mode: run_experiment(_composed(*common, f"train.data_on_device={mode}"), tmp_path / mode)
            for mode in ("never", "always")}
    for key in ("val_top1", "ema_val_top1", "train_loss", "val_loss", "config_hash"):
        assert runs["never"][key] == runs["always"][key], key
    assert runs["never"]["status"] == "completed"


def test_cifar_augment_is_part_of_the_arm_and_older_records_keep_their_hash():
    base = ("data=cifar10", "data.root=/data/cifar")
    assert resolve(_composed(*base))["data"]["augment"] == "crop_flip"  # the default: the usual CIFAR recipe
    timm_arm = resolve(_composed(*base, "data.augment=timm"))
    added = ("augment", "padding", "train_fraction", "split_seed")
    older = {**timm_arm, "data": {k: v for k, v in timm_arm["data"].items() if k not in added}}
    assert config_hash(older) == config_hash(timm_arm)  # a record from before data.augment resumes
    crop_flip = config_hash(resolve(_composed(*base, "data.augment=crop_flip")))
    assert crop_flip != config_hash(timm_arm)
    assert config_hash(resolve(_composed(*base, "data.augment=crop_flip", "data.padding=2"))) != crop_flip
    assert config_hash(resolve(_composed(*base, "data.augment=crop_flip", "data.train_fraction=0.1"))) != crop_flip


@pytest.mark.parametrize("overrides,message", [
    (("data.augment=autoaugment",), r"data.augment='autoaugment' is not one of: crop_flip, timm"),
    (("data.augment=timm", "data.padding=2"), r"data.padding=2 applies to data.augment=crop_flip only"),
    (("data.padding=-1",), r"data.padding=-1 must be >= 0"),
    (("train.aa=rand-m9-mstd0.5", "train.reprob=0.25"),
     r"train.aa='rand-m9-mstd0.5', train.reprob=0.25 configure timm's transforms, which data.augment=crop_flip "
     r"does not use: drop them or use data.augment=timm"),
])
def test_cifar_augment_options_are_checked_before_anything_runs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check(_composed("data=cifar10", "data.root=/data/cifar", *overrides))


def test_data_on_device_always_names_the_cifar_augment_that_allows_it(tmp_path, cifar_root):
    with pytest.raises(ValueError, match="cifar with data.augment=crop_flip"):
        run_experiment(_composed("model=shiftvit_nano", "match=none", "logger=none", "train.epochs=1", "data=cifar10",
                                 f"data.root={cifar_root}", "data.augment=timm", "train.data_on_device=always"),
                       tmp_path / "run")


def test_auto_cuts_tensor_batches_on_the_cpu_too_and_leaves_workers_to_the_dataloader(tmp_path):
    """On a CPU the batched cut is the tensors themselves, no copy, and skips the DataLoader's loop over samples."""
    import timm
    from torch.utils.data import DataLoader

    import shiftvit.models  # noqa: F401  (registers the models with timm)
    from shiftvit.engine import Trainer

    bundle = build_data("digits", train_fraction=0.3)
    model = timm.create_model("shiftvit_nano", num_classes=bundle.num_classes, in_chans=bundle.in_chans)
    loaders = {options: Trainer(model, bundle, TrainSettings(epochs=1, device="cpu", **dict(options)), tmp_path,
                                seed=0).train_loader
               for options in ((), (("data_on_device", "never"),), (("num_workers", 1),))}
    assert isinstance(loaders[()], DeviceTensorLoader) and loaders[()].images is bundle.train.tensors[0]
    for options, workers in (((("data_on_device", "never"),), 0), ((("num_workers", 1),), 1)):
        # the DataLoader collates the stored images (in its workers, if any); this process augments them
        loader = loaders[options]
        assert isinstance(loader, AugmentedLoader) and loader.augment is bundle.train.transform
        assert isinstance(loader.loader, DataLoader) and loader.loader.num_workers == workers
        assert not hasattr(loader.loader.dataset, "transform")


@pytest.mark.parametrize("augment", ["timm", "crop_flip"])
def test_cifar_train_fraction_keeps_a_stratified_seeded_part_and_the_whole_test_set(cifar_root, augment):
    def labels(bundle):
        return bundle.train.tensors[1].tolist() if augment == "crop_flip" else list(bundle.train.targets)

    whole = build_data("cifar10", root=str(cifar_root), augment=augment)
    half = build_data("cifar10", root=str(cifar_root), augment=augment, train_fraction=0.5)
    assert len(half.train) == len(whole.train) // 2 and len(half.val) == len(whole.val)
    assert labels(half) == labels(build_data("cifar10", root=str(cifar_root), augment=augment, train_fraction=0.5))
    assert labels(half) != labels(build_data("cifar10", root=str(cifar_root), augment=augment, train_fraction=0.5,
                                             split_seed=1))
    for c in range(10):  # stratified: each class keeps half of its images, give or take the rounding
        assert abs(labels(half).count(c) - labels(whole).count(c) / 2) <= 1
    with pytest.raises(DataError, match=r"data.train_fraction=0.01 keeps fewer than one image per class"):
        build_data("cifar10", root=str(cifar_root), augment=augment, train_fraction=0.01)


def test_cifar_headroom_is_the_same_images_whichever_the_augmentation(cifar_root, tmp_path, monkeypatch):
    """The raw-pixel baselines read the unaugmented images: CIFAR's uint8 tensor (crop_flip) and torchvision's
    arrays (timm) are the same pixels, so the same baselines."""
    from analysis.headroom import headroom_of

    monkeypatch.setenv("SHIFTVIT_CACHE", str(tmp_path))
    beds = {augment: headroom_of({"name": "cifar10", "root": str(cifar_root), "augment": augment,
                                  "train_fraction": 0.5}) for augment in ("crop_flip", "timm")}
    assert beds["crop_flip"].baselines_done and beds["crop_flip"].train_images == 100
    for field in ("nearest_neighbour", "logistic_regression", "train_images", "val_images", "chance"):
        assert getattr(beds["crop_flip"], field) == getattr(beds["timm"], field), field
