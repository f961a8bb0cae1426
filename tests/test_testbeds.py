"""The CPU presets' testbeds (scale=cpu, scale=cpu_relations), the strict no-mixing control (mixer=identity_ln) and
the paper's training-scheme ablation (+experiment=train_scheme, conf/train_scheme/)."""
import re

import pytest
import timm
import torch
from helpers import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import shiftvit.models  # noqa: F401  (registers the variants with timm)
from analysis.headroom import headroom_of
from shiftvit.config import SMALL_DATA_TRAIN, TESTBEDS, ConfigError, TrainSettings, model_kwargs, resolve

SCALES = {"cpu": "digits_small", "cpu_relations": "relations_small"}
SCHEME_ARMS = ("resnet", "adamw", "gelu", "ln", "long", "vit")


def _compose(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _resolve(overrides) -> dict:
    return resolve(OmegaConf.to_container(_compose(overrides), resolve=True))


@pytest.mark.parametrize("scale,testbed", SCALES.items())
def test_cpu_scale_runs_on_its_testbed_with_the_small_data_recipe(scale, testbed):
    eff = _resolve([f"scale={scale}"])
    expected = TESTBEDS[testbed]
    assert eff["data"] == {k: v for k, v in vars(expected).items()}
    assert eff["train"]["epochs"] == SMALL_DATA_TRAIN.epochs > TrainSettings().epochs
    assert eff["model"]["name"] == "shiftvit_micro"
    # the command line still wins over the preset
    assert _resolve([f"scale={scale}", "train.epochs=3"])["train"]["epochs"] == 3


@pytest.mark.parametrize("scale,testbed", SCALES.items())
def test_cpu_scale_states_the_raw_pixel_baselines_it_has(scale, testbed):
    """The numbers in the preset's comment are what analysis.headroom measures on the same split, and they leave
    room: above chance, well below 100 %."""
    text = (ROOT / "conf" / "scale" / f"{scale}.yaml").read_text()
    stated = {name: float(value) for name, value in
              re.findall(r"(1-NN|logistic\s+regression) (\d+\.\d\d) %", text.replace("#", " ").replace("\n", " "))}
    bed = headroom_of(vars(TESTBEDS[testbed]))
    measured = {"1-NN": bed.nearest_neighbour, "logistic regression": bed.logistic_regression}
    stated = {re.sub(r"\s+", " ", k): v for k, v in stated.items()}
    assert stated == {k: round(v, 2) for k, v in measured.items()}
    assert bed.chance < bed.best_baseline[1] < 95


def test_digits_small_is_stratified_and_seeded():
    from shiftvit.data import build_data

    options = {k: v for k, v in vars(TESTBEDS["digits_small"]).items() if k != "name"}
    a, b = build_data("digits", **options), build_data("digits", **options)
    labels = a.train.tensors[1]
    assert torch.equal(labels, b.train.tensors[1]) and torch.equal(a.train.tensors[0], b.train.tensors[0])
    counts = torch.bincount(labels, minlength=10)
    assert counts.min() >= counts.max() - 1  # every class kept in proportion (digits is balanced)
    assert len(a.val) == len(build_data("digits").val)  # the full validation split


def _first_stage(overrides):
    eff = _resolve(["model=shiftvit_micro", "data=digits", *overrides])
    torch.manual_seed(0)
    model = timm.create_model(eff["model"]["name"], **model_kwargs(eff, 10, 1)).eval()
    return eff, model.layers[0]


def test_identity_ln_is_identity_with_per_token_norm_and_mixes_no_positions():
    eff, stage = _first_stage(["mixer=identity_ln"])
    assert eff["mixer"] == {"name": "identity"} and eff["model"]["norm"] == "ln"
    _, gn1_stage = _first_stage(["mixer=identity"])
    x = torch.randn(1, 24, 8, 8)
    poked = x.clone()
    poked[0, :, 3, 5] += 1.0
    with torch.no_grad():
        moved = (stage.forward_blocks(poked) - stage.forward_blocks(x)).abs().sum(1)[0]
        moved_gn1 = (gn1_stage.forward_blocks(poked) - gn1_stage.forward_blocks(x)).abs().sum(1)[0]
    elsewhere = torch.ones_like(moved, dtype=torch.bool)
    elsewhere[3, 5] = False
    assert moved[3, 5] > 0 and moved[elsewhere].max() == 0  # per token: nothing reaches another position
    assert moved_gn1[elsewhere].min() > 0  # GroupNorm(1)'s image-wide statistics reach every position


def test_identity_ln_respects_a_norm_given_on_the_command_line():
    assert _resolve(["mixer=identity_ln", "model.norm=bn"])["model"]["norm"] == "bn"


@pytest.fixture(scope="module")
def scheme_arms():
    return {arm: _resolve(["+experiment=train_scheme", f"+train_scheme={arm}"]) for arm in SCHEME_ARMS}


def _scheme(eff: dict) -> dict:
    t, m = eff["train"], eff["model"]
    return {"optimizer": (t["opt"], t["lr"], t["weight_decay"]), "act": m["act"], "norm": m["norm"],
            "schedule": (t["epochs"], t["warmup_epochs"])}


def test_train_scheme_changes_one_thing_at_a_time_from_the_resnet_scheme(scheme_arms):
    resnet = _scheme(scheme_arms["resnet"])
    assert resnet["optimizer"][0] == "momentum" and resnet["act"] == "relu" and resnet["norm"] == "bn"
    recipe = TrainSettings()
    vit = _scheme(scheme_arms["vit"])
    # the paper's LayerNorm is the official code's GroupNorm(1) (its norm_layer is 'GN1' or 'BN')
    assert vit == {"optimizer": (recipe.opt, recipe.lr, recipe.weight_decay), "act": "gelu", "norm": "gn1",
                   "schedule": (SMALL_DATA_TRAIN.epochs, SMALL_DATA_TRAIN.warmup_epochs)}
    changed = {"adamw": "optimizer", "gelu": "act", "ln": "norm", "long": "schedule"}
    for arm, what in changed.items():
        own = _scheme(scheme_arms[arm])
        assert {k for k in own if own[k] != resnet[k]} == {what}, arm
        assert own[what] == vit[what], arm  # the change is to the ViT-style value
    # 90/300 of the long schedule, as ResNet's 90 epochs are of DeiT's 300
    assert resnet["schedule"][0] == round(SMALL_DATA_TRAIN.epochs * 90 / 300)
    # nothing else differs between the arms: same model, budget, data and the rest of the recipe
    def rest(eff):
        return OmegaConf.to_yaml({k: v for k, v in eff.items() if k not in ("train", "model")}) + str(
            {k: v for k, v in eff["train"].items() if k not in ("opt", "lr", "weight_decay", "epochs",
                                                                  "warmup_epochs")})
    assert len({rest(eff) for eff in scheme_arms.values()}) == 1


def test_recipe_rules_give_the_paper_numbers_at_paper_scale(monkeypatch):
    """The train_scheme arms take the scale's recipe: the short schedule is 90/300 of it and SGD's lr 0.1 per 256
    images of the total batch, so at paper scale on 8 processes (the official 8 x 128) they are ResNet's 90
    epochs at lr 0.4, and the official recipe's AdamW lr is 5e-4 per 512 images (1e-3 at 1024)."""
    monkeypatch.setenv("WORLD_SIZE", "8")
    paper = {arm: _resolve(["+experiment=train_scheme", f"+train_scheme={arm}", "scale=paper",
                            "data.root=/data/imagenet"]) for arm in ("resnet", "adamw", "long", "vit")}
    assert _scheme(paper["resnet"])["optimizer"] == ("momentum", 0.4, 1e-4)
    assert _scheme(paper["resnet"])["schedule"] == (90, 6) == _scheme(paper["adamw"])["schedule"]
    assert _scheme(paper["long"])["schedule"] == (300, 20) == _scheme(paper["vit"])["schedule"]
    assert _scheme(paper["long"])["optimizer"][1] == 0.4 and _scheme(paper["vit"])["optimizer"][1] == 1e-3
    # the effective config holds what the run uses, the rules at their defaults (so they name no new identity)
    assert all((e["train"]["lr_base_size"], e["train"]["schedule_fraction"]) == (None, 1.0) for e in paper.values())
    monkeypatch.setenv("WORLD_SIZE", "1")
    one = _resolve(["+experiment=imagenet_300ep", "data.root=/data/imagenet"])["train"]
    assert (one["lr"], one["batch_size"]) == (5e-4 * 128 / 512, 128)


def test_a_scaled_lr_below_min_lr_is_refused_naming_both():
    with pytest.raises(ConfigError, match=r"train.lr=0.001 per 4096 images is 1.56e-05 at a total batch of 64, "
                                          r"below train.min_lr=0.0001: lower train.min_lr or raise train.lr"):
        _resolve(["train.lr=1e-3", "train.lr_base_size=4096", "train.min_lr=1e-4"])
