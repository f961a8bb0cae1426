"""Values that used to pass the config and fail only inside the engine, after the run's record was written (or, for
the numeric ones, never fail at all): each is now one line before anything is written. ``check`` answers without
torch, ``resolve`` asks timm for the optimizer's and schedule's names, ``preflight`` asks this machine for the device
and the data's files."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import WITH_TORCH_PROBE, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from shiftvit.app import run_experiment
from shiftvit.bench.loader import write_cifar
from shiftvit.config import ConfigError, check, misplaced_key_hint, preflight, resolve, settable_keys
from shiftvit.data import DataError, check_files

CONF = Path(__file__).resolve().parents[1] / "conf"
FAST = ("train.epochs=1", "train.warmup_epochs=0", "logger=none", "train.ema=false")
NO_SUCH_GPU = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU here, on any machine


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def one_line_error(call, *args, match: str) -> str:
    with pytest.raises(ConfigError) as err:
        call(*args)
    message = str(err.value)
    assert match in message and "\n" not in message, message
    return message


# answered by config.check, before torch is imported
CHEAP = [
    (["train.device=gpu"], "train.device='gpu' is not one of: auto, cpu, cuda, cuda:N"),
    (["train.device=cuda:x"], "train.device='cuda:x' is not one of"),
    (["train.label_smoothing=1.5"], "train.label_smoothing=1.5 must be < 1"),
    (["train.label_smoothing=-0.1"], "train.label_smoothing=-0.1 must be >= 0"),
    (["train.clip_grad=-1"], "train.clip_grad=-1.0 must be > 0"),
    (["train.clip_grad=0"], "train.clip_grad=0.0 must be > 0"),
    (["train.weight_decay=-1"], "train.weight_decay=-1.0 must be >= 0"),
    (["train.mixup=-1"], "train.mixup=-1.0 must be >= 0"),
    (["train.cutmix=-1"], "train.cutmix=-1.0 must be >= 0"),
    (["train.mixup_prob=1.5"], "train.mixup_prob=1.5 must be <= 1"),
    (["train.mixup_switch_prob=-0.5"], "train.mixup_switch_prob=-0.5 must be >= 0"),
    (["train.reprob=2"], "train.reprob=2.0 must be <= 1"),
    (["train.color_jitter=-0.4"], "train.color_jitter=-0.4 must be >= 0"),
    (["train.ema_decay=1.5"], "train.ema_decay=1.5 must be < 1"),
    (["train.ema_decay=1"], "train.ema_decay=1.0 must be < 1"),
    (["train.ema_decay=0"], "train.ema_decay=0.0 must be > 0"),
    (["train.remode=noise"], "train.remode='noise' is not one of: const, rand, pixel"),
    (["train.momentum=1"], "train.momentum=1.0 must be < 1"),
    (["train.momentum=-0.9"], "train.momentum=-0.9 must be >= 0"),
    (["train.opt_eps=0"], "train.opt_eps=0.0 must be > 0"),
    (["train.warmup_lr=-1e-6"], "train.warmup_lr=-1e-06 must be >= 0"),
    (["train.min_lr=-1e-5"], "train.min_lr=-1e-05 must be >= 0"),
    (["train.min_lr=0.01"], "train.min_lr=0.01 is above train.lr=0.002, so the schedule would raise the rate"),
    (["model.drop_rate=1"], "model.drop_rate=1.0 must be < 1"),
    (["model.drop_path_rate=1"], "model.drop_path_rate=1.0 must be < 1"),
    (["train.aug_repeats=1"], "train.aug_repeats=1 must be 0 (off) or an integer >= 2"),
    (["train.lr_base_size=0"], "train.lr_base_size=0 must be >= 1"),
    (["train.schedule_fraction=1.5"], "train.schedule_fraction=1.5 must be <= 1"),
    (["data=synthetic", "data.num_classes=1"], "data.num_classes=1 must be >= 2"),
]

# answered by config.resolve: timm owns the names
TIMM_NAMES = [
    (["train.opt=adamx"], "train.opt='adamx' is not an optimizer timm builds (ValueError: Optimizer adamx not found "
                          "in registry); close: adamax"),
    (["train.sched=cosin"], "train.sched='cosin' is not a per-update schedule timm builds (ValueError: Unknown "
                            "scheduler 'cosin'.): use train.sched=cosine"),
    (["train.sched=none"], "train.sched='none' is not a per-update schedule timm builds (no schedule"),
    (["train.sched=plateau"], "train.sched='plateau' is not a per-update schedule timm builds (AssertionError"),
    # timm parsed it only when the data was built, after the record was written: a bare AssertionError, or for
    # CIFAR one that blamed the data set
    (["train.aa=randx-m9"], "train.aa='randx-m9' is not an augmentation policy timm builds: e.g. "
                            "rand-m9-mstd0.5-inc1"),
    (["train.aa=rand-q9"], r"train.aa='rand-q9' is not an augmentation policy timm builds"),
]


@pytest.mark.parametrize("overrides,message", CHEAP)
def test_check_refuses_nonsense_training_values_in_one_line(overrides, message):
    one_line_error(check, composed(*overrides), match=message)


@pytest.mark.parametrize("overrides,message", CHEAP + TIMM_NAMES)
def test_resolve_refuses_them_in_one_line(overrides, message):
    one_line_error(resolve, composed(*overrides), match=message)


def test_resolve_does_not_look_at_this_machine():
    """A config resolves to the same record anywhere (a hash computed away from the data and the GPUs)."""
    effective = resolve(composed("data=cifar10", "data.root=/nonexistent", f"train.device={NO_SUCH_GPU}"))
    assert effective["data"]["root"] == "/nonexistent" and effective["train"]["device"] == NO_SUCH_GPU


def test_preflight_refuses_a_gpu_this_machine_lacks(monkeypatch):
    one_line_error(preflight, resolve(composed(f"train.device={NO_SUCH_GPU}")),
                   match=f"train.device='{NO_SUCH_GPU}' but this machine has")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line_error(preflight, resolve(composed("train.device=cuda")),
                   match="train.device='cuda' but this machine has no CUDA device: use train.device=auto")
    preflight(resolve(composed("train.device=cpu")))
    preflight(resolve(composed("train.device=auto")))
    # fp16 needs CUDA's gradient scaler: asked of the device the run would train on, auto's included
    for device in ("cpu", "auto"):
        one_line_error(preflight, resolve(composed("train.amp=fp16", f"train.device={device}")),
                       match="train.amp=fp16 needs a CUDA device, and this run trains on cpu: use train.amp=bf16")
    preflight(resolve(composed("train.amp=bf16", "train.device=auto")))


@pytest.mark.parametrize("overrides", [
    ["train.sched=constant"],  # the way out the sched message names
    ["train.opt=lookahead_adamw"],  # timm's own prefix
    ["train.opt=momentum", "train.momentum=0"],
    ["train.device=cpu", "train.label_smoothing=0", "train.clip_grad=1.0", "train.mixup=0.8", "train.cutmix=1.0",
     "train.mixup_prob=1", "train.mixup_switch_prob=0", "train.min_lr=0.002", "train.warmup_lr=0"],
    ["train.device=auto"],
    ["train.aa=rand-m9-mstd0.5-inc1", "train.reprob=0.25", "train.remode=pixel"],
    ["train.aa=augmix-m5-w4-d2"],
])
def test_good_values_still_resolve(overrides):
    assert resolve(composed(*overrides))["train"]["device"] in ("auto", "cpu")


def test_a_warm_up_as_long_as_the_run_is_said_in_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="shiftvit"):
        preflight(resolve(composed("train.epochs=2", "train.warmup_epochs=1")))
        assert not caplog.records
        preflight(resolve(composed("train.epochs=2", "train.warmup_epochs=2")))
    [record] = caplog.records
    assert record.getMessage().startswith("train.warmup_epochs=2 >= train.epochs=2: the whole run warms up")
    assert "\n" not in record.getMessage()


# --- the data set's files ------------------------------------------------------------------------------------------
def write_imagefolder(root: Path, classes=("cat", "dog"), splits=("train", "val"), images: bool = True) -> None:
    from PIL import Image

    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            if images:
                Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / split / c / "0.png")


def test_cifar_files_are_checked_without_reading_them(tmp_path):
    with pytest.raises(DataError, match=f"cifar10: data.root='{tmp_path / 'nope'}' is not a folder: cifar10 expects "
                                        "<root>/cifar-10-batches-py/"):
        check_files("cifar10", root=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"'.*/empty/cifar-10-batches-py/data_batch_1' is missing \(and 6 more files\)"
                                        r".*or set data.download=true where a network exists"):
        check_files("cifar10", root=str(tmp_path / "empty"))
    write_cifar(tmp_path / "c100", name="cifar100", num_train=10, num_val=10)
    with pytest.raises(DataError, match="cifar10: .* expects <root>/cifar-10-batches-py/ with the files of the python "
                                        r"version as distributed \(data_batch_1, .*, test_batch, batches.meta\)"):
        check_files("cifar10", root=str(tmp_path / "c100"))
    check_files("cifar100", root=str(tmp_path / "c100"))
    (tmp_path / "c100" / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataError, match=r"cifar100: '.*/cifar-100-python/meta' is missing: .*\(train, test, meta\)"):
        check_files("cifar100", root=str(tmp_path / "c100"))
    check_files("cifar10", root=str(tmp_path / "nope"), download=True)  # torchvision fetches it
    with pytest.raises(DataError, match="cifar10: set data.root"):
        check_files("cifar10")


def test_imagefolder_layout_is_checked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"imagefolder: '{tmp_path / 'empty' / 'train'}' is not a folder: imagefolder "
                                        "expects <root>/train/<class>/<image> and <root>/val/<class>/<image>"):
        check_files("imagefolder", root=str(tmp_path / "empty"))
    write_imagefolder(tmp_path / "train_only", splits=("train",))
    with pytest.raises(DataError, match="'.*/train_only/val' is not a folder"):
        check_files("imagefolder", root=str(tmp_path / "train_only"))
    write_imagefolder(tmp_path / "no_images", images=False)
    with pytest.raises(DataError, match=r"no images \(\.png.*\) in the class folders of '.*/no_images/"):
        check_files("imagefolder", root=str(tmp_path / "no_images"))
    write_imagefolder(tmp_path / "ok")
    check_files("imagefolder", root=str(tmp_path / "ok"))
    (tmp_path / "ok" / "val").rename(tmp_path / "ok" / "test")
    check_files("imagefolder", root=str(tmp_path / "ok"), val_split="test")


def test_mnist_files_are_checked(tmp_path):
    with pytest.raises(DataError, match=r"mnist: '.*/MNIST/raw/train-images-idx3-ubyte' is missing \(and 3 more "
                                        r"files\): mnist expects <root>/MNIST/raw/"):
        check_files("mnist", root=str(tmp_path))
    check_files("digits")  # no files: nothing to check


@pytest.mark.parametrize("overrides,message", [
    (["data=cifar10", "data.root=/nonexistent"], "cifar10: data.root='/nonexistent' is not a folder"),
    (["data=imagefolder", "data.img_size=32", "data.root={tmp}"], "imagefolder: '{tmp}/train' is not a folder"),
])
def test_preflight_checks_the_data_files(tmp_path, overrides, message):
    overrides = [o.format(tmp=tmp_path) for o in overrides]
    one_line_error(preflight, resolve(composed(*overrides)), match=message.format(tmp=tmp_path))


# --- nothing is written ------------------------------------------------------------------------------------------
# the last two need app.run_experiment to call config.preflight before it writes
@pytest.mark.parametrize("overrides", [
    ["train.opt=adamx"], ["train.sched=cosin"], ["train.label_smoothing=1.5"],
    [f"train.device={NO_SUCH_GPU}"], ["data=cifar10", "data.root=/nonexistent"],
])
def test_a_refused_run_leaves_a_finished_record_untouched(tmp_path, overrides):
    """With train.resume=fresh a refused config used to archive the record it would replace."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    held = {"config.yaml": "seed: 0\n", "summary.json": '{"status": "completed"}\n'}
    for name, text in held.items():
        (run_dir / name).write_text(text)
    with pytest.raises(ConfigError):
        run_experiment(composed(*FAST, "train.resume=fresh", *overrides), run_dir)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["run", *held])
    assert {name: (run_dir / name).read_text() for name in held} == held


def test_a_refused_run_creates_no_directory(tmp_path):
    with pytest.raises(ConfigError):
        run_experiment(composed(*FAST, "train.opt=adamx"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message,torch_loaded", [
    (["train.clip_grad=-1"], "error: train.clip_grad=-1.0 must be > 0", False),
    (["train.device=gpu"], "error: train.device='gpu' is not one of: auto, cpu, cuda, cuda:N", False),
    (["train.opt=adamx"], "error: train.opt='adamx' is not an optimizer timm builds", True),
    (["data=cifar10", "data.root=/nonexistent"], "error: cifar10: data.root='/nonexistent' is not a folder", True),
])
def test_cli_answers_in_one_line_and_writes_no_record(tmp_path, args, message, torch_loaded):
    proc = run_cli([*args, "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                   command=WITH_TORCH_PROBE)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"torch imported: {torch_loaded}"
    assert not (tmp_path / "run").exists()  # not even Hydra's folder (.hydra/, run.log): a typo leaves nothing


def test_a_sweep_folder_pasted_unquoted_is_told_how_to_quote_it(tmp_path):
    """Sweep folders are named after their overrides, with '=' and ',' in them: pasted as hydra.sweep.dir unquoted,
    Hydra's grammar refuses them, and the line names the quoting that works (which then relaunches the sweep)."""
    folder = "multirun/gamma=1_12,1_6-mixer=attn,shift-f93771b1"
    proc = run_cli(["-m", "mixer=shift,attn", f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot parse 'hydra.sweep.dir={folder}': ")
    assert lines[0].endswith(f"and the whole override for the shell: \"hydra.sweep.dir='{folder}'\"")
    assert not (tmp_path / "multirun").exists()
    quoted = run_cli(["mixer=shift", f"hydra.sweep.dir='{folder}'", "--cfg", "hydra", "--package",
                      "hydra.sweep.dir"], cwd=tmp_path)
    assert quoted.returncode == 0 and folder in quoted.stdout, quoted.stderr
    typo = run_cli(["-m", "mixer=shift,,attn"], cwd=tmp_path)  # a malformed list is no quoting matter
    assert typo.returncode == 2 and "quoted" not in typo.stderr, typo.stderr


def test_a_refused_run_keeps_a_folder_that_holds_anything_but_hydras_files(tmp_path):
    """The refused run's folder goes only when Hydra's files are all it holds: a file of the user's, or an earlier
    attempt's lock, keeps it and everything in it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me\n")
    proc = run_cli(["train.lr=-1", "logger=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: train.lr=-1.0 must be > 0"), proc.stderr
    assert (run_dir / "notes.txt").read_text() == "keep me\n" and (run_dir / ".hydra" / "overrides.yaml").exists()


def test_a_refused_run_in_the_default_folder_leaves_no_dated_folder(tmp_path):
    """The default run folder is outputs/<date>/<time>/: a refusal takes the date's folder and outputs/ with it
    when they hold nothing else, and keeps them when they do."""
    proc = run_cli(["seed=-1", "logger=none"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: seed=-1 must be >= 0"), proc.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "outputs" / "earlier").mkdir(parents=True)
    assert run_cli(["seed=-1", "logger=none"], cwd=tmp_path).returncode == 2
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == ["outputs",
                                                                                           "outputs/earlier"]


def test_a_key_in_the_wrong_place_is_pointed_to_where_it_lives():
    """What a refused key would be, from the schema itself: every key it names composes (Hydra is the judge)."""
    assert misplaced_key_hint("model.depths") == "did you mean depths or reference_arch.depths"
    assert misplaced_key_hint("epochs") == "did you mean train.epochs"
    assert misplaced_key_hint("data.num_train") == ("data.num_train exists under data=relations or data=synthetic: "
                                                    "choose that option too")
    assert misplaced_key_hint("+data.roots").startswith("did you mean data.root (under data=mnist or ")
    assert misplaced_key_hint("train.foo") == ""  # nothing near: no guess
    keys = settable_keys()
    assert "mixer" not in keys and "data" not in keys  # groups, chosen as mixer=attn, not keys
    by_option = {}
    for key, options in keys.items():
        by_option.setdefault(options[0] if options else "", []).append(key)
    for option, some_keys in by_option.items():  # each key is in the config composed as the hint says
        cfg = composed(*([option] if option else []))
        for key in some_keys:
            node = cfg
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, (option, key)
                node = node[part]
