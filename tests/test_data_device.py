"""train.data_on_device: in-memory tensor datasets served from a copy on the training device, batched and
augmented there (data.DeviceTensorLoader). Checked on the CPU, where the same code runs with device=cpu: the
batches, and so a whole run, must equal the DataLoader's."""
import pytest
import torch
from helpers import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from shiftvit.app import run_experiment
from shiftvit.config import SPEED_ONLY_TRAIN_KEYS, ConfigError, TrainSettings, config_hash, resolve
from shiftvit.data import (
    DeviceTensorLoader,
    build_data,
    draw_translation,
    draw_translations,
    make_loaders,
    on_device_eligible,
    random_translate,
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
    assert on_device_eligible(bundle, num_workers=0) and not on_device_eligible(bundle, num_workers=2)
    cpu_train, cpu_val = make_loaders(bundle, 32, seed=3)
    dev_train, dev_val = make_loaders(bundle, 32, seed=3, device=CPU)
    assert isinstance(dev_train, DeviceTensorLoader) and len(dev_train) == len(cpu_train)
    assert len(dev_val) == len(cpu_val)
    for epoch, skip in ((0, 0), (1, 0), (2, 64)):  # skip: resumed in the middle of an epoch
        expected, got = _batches(cpu_train, epoch, skip), _batches(dev_train, epoch, skip)
        assert len(expected) == len(got) > 0
        for (xe, ye), (xg, yg) in zip(expected, got):
            assert torch.equal(ye, yg) and torch.equal(xe, xg) and xe.stride() == xg.stride()
    for (xe, ye), (xg, yg) in zip(_batches(cpu_val, 0), _batches(dev_val, 0)):
        assert torch.equal(ye, yg) and torch.equal(xe, xg)
    if name == "digits":  # the augmentation really ran: two draws differ
        first, second = _batches(dev_train, 0, rng_seed=1)[0][0], _batches(dev_train, 0, rng_seed=2)[0][0]
        assert not torch.equal(first, second)


@pytest.mark.parametrize("max_shift,count", [(1, 1), (4, 7), (3, 512), (2, 5000)])
def test_one_draw_per_batch_is_the_per_sample_draws(max_shift, count):
    torch.manual_seed(count)
    expected = torch.tensor([draw_translation(max_shift) for _ in range(count)])
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
    assert random_translate(2).max_shift == 2


def _composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def test_a_run_on_device_data_equals_the_run_on_the_dataloader(tmp_path):
    common = ("model=shiftvit_nano", "match=none", "data.train_fraction=0.3", "train.epochs=2", "logger=none",
              "train.threads=1")
    runs = {mode: run_experiment(_composed(*common, f"train.data_on_device={mode}"), tmp_path / mode)
            for mode in ("never", "always")}
    for key in ("val_top1", "ema_val_top1", "train_loss", "val_loss", "config_hash"):
        assert runs["never"][key] == runs["always"][key], key
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
