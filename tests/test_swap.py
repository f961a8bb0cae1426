"""The paper's swap (+experiment=swap): Swin-T's network with window attention + LayerNorm, the same network with
the shift, and the tau-2 shift model at the attention network's FLOPs; and the knobs it rests on (``reference``
as any ShiftViT variant or timm model, ``reference_arch``)."""

import pytest
import timm
import torch
import yaml
from helpers import ROOT, WITH_TORCH_PROBE, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from shiftvit.config import DEFAULT_TOLERANCE, ConfigError, config_hash, resolve
from shiftvit.flops import BudgetError, count, main, solve_depths
from shiftvit.multirun import expected_jobs

ARMS = ("attn", "light", "shift_t")
SWIN_T = "swin_tiny_patch4_window7_224"


def _compose(overrides, hydra: bool = False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _resolve(overrides) -> dict:
    return resolve(OmegaConf.to_container(_compose(overrides), resolve=True))


def _cost(eff: dict):
    """The run's model as the trainer builds it (shiftvit.config.model_kwargs), counted."""
    kwargs = dict(mixer=eff["mixer"]["name"], mixer_kwargs={k: v for k, v in eff["mixer"].items() if k != "name"},
                  mlp_ratio=eff["tau"], norm=eff["model"]["norm"], act=eff["model"]["act"],
                  depths=tuple(eff["depths"]))
    if eff["gamma"]:
        kwargs["gamma"] = eff["gamma"]
    return count(eff["model"]["name"], eff["model"]["img_size"], **kwargs)


def _arms(*overrides) -> dict:
    return {arm: _resolve(["+experiment=swap", f"+swap_arm={arm}", *overrides]) for arm in ARMS}


@pytest.fixture(scope="module")
def cpu_arms():
    return _arms()


@pytest.fixture(scope="module")
def paper_arms():
    return _arms("scale=paper")


def test_experiment_sweeps_three_arms_by_three_seeds():
    cfg = _compose(["+experiment=swap"], hydra=True)
    params = {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}
    assert params == {"+swap_arm": "attn,light,shift_t", "seed": "0,1,2"}
    assert expected_jobs(["+experiment=swap"], params) == 9
    assert cfg.model.name == "shiftvit_micro" and cfg.data.name == "digits"  # CPU scale unless told otherwise


def test_cpu_arms_shape_norm_and_budget(cpu_arms):
    attn, light, shift_t = (cpu_arms[a] for a in ARMS)
    assert (attn["mixer"]["name"], attn["model"]["norm"], attn["tau"], attn["depths"]) == ("attn", "ln", 4,
                                                                                           [2, 2, 6, 2])
    assert (light["mixer"]["name"], light["model"]["norm"], light["tau"], light["depths"]) == ("shift", "gn1", 4,
                                                                                               [2, 2, 6, 2])
    assert attn["match"] == light["match"] == "none"
    assert (shift_t["mixer"]["name"], shift_t["tau"], shift_t["match"]) == ("shift", 2, "flops")
    assert shift_t["reference_arch"] == {"mixer": "attn", "norm": "ln", "tau": 4, "depths": [2, 2, 6, 2]}
    # Shift-T's trade: more, thinner blocks, in shiftvit_micro's proportions (stage 3 the deepest)
    assert sum(shift_t["depths"]) > 2 * sum(attn["depths"]) and shift_t["depths"][2] == max(shift_t["depths"])
    a, s, t = (_cost(cpu_arms[arm]).total_macs for arm in ARMS)
    # within the default tolerance too: the arm's wider one (for Shift-T at paper scale) changes nothing here
    assert abs(t / a - 1) <= DEFAULT_TOLERANCE and shift_t["depths"] == [6, 6, 19, 6]
    assert s < a / 1.4  # the attention, about a third of Swin's MACs, removed and not spent elsewhere


def test_cpu_arms_are_the_light_micro_variant(cpu_arms):
    """The arms are written on the scale's model; on shiftvit_micro's width and input, Swin-T's depths and tau 4
    are shiftvit_light_micro, parameter for parameter."""
    attn, light = _cost(cpu_arms["attn"]), _cost(cpu_arms["light"])
    swin_shaped = count("shiftvit_light_micro", 32, mixer="attn", norm="ln")
    assert (attn.total_macs, attn.total_params) == (swin_shaped.total_macs, swin_shaped.total_params)
    own = count("shiftvit_light_micro", 32)
    assert (light.total_macs, light.total_params) == (own.total_macs, own.total_params)
    # as a named reference it gives the shift_t arm's depths
    named = _resolve(["+experiment=swap", "+swap_arm=shift_t", "reference=shiftvit_light_micro",
                      "reference_arch.tau=null", "reference_arch.depths=null"])
    assert named["depths"] == cpu_arms["shift_t"]["depths"]


def test_paper_arms_are_swin_t_light_t_and_shift_t(paper_arms):
    attn, light, shift_t = (paper_arms[a] for a in ARMS)
    assert {e["model"]["name"] for e in paper_arms.values()} == {"shiftvit_r2_tiny"}
    assert all(e["model"]["img_size"] == 224 for e in paper_arms.values())
    a, s, t = (_cost(e) for e in (attn, light, shift_t))
    assert round(a.total_macs / 1e9, 2) == 4.49 and a.total_macs == count(SWIN_T, 224).total_macs  # Swin-T's budget
    assert (a.total_macs, a.total_params) == (count("shiftvit_light_tiny", 224, mixer="attn", norm="ln").total_macs,
                                              count("shiftvit_light_tiny", 224, mixer="attn", norm="ln").total_params)
    assert (s.total_macs, s.total_params) == (count("shiftvit_light_tiny", 224).total_macs,
                                              count("shiftvit_light_tiny", 224).total_params)
    assert round(s.total_macs / 1e9, 2) == 2.96
    # Shift-T itself, as the paper pairs it with Swin-T: 2.03 % over Swin-T's budget, so the arm's tolerance is
    # wider than the default one (which would drop a block: 6,8,17,6)
    assert shift_t["depths"] == [6, 8, 18, 6] and shift_t["tolerance"] > DEFAULT_TOLERANCE
    assert (t.total_macs, t.total_params) == (count("shiftvit_r2_tiny", 224).total_macs,
                                              count("shiftvit_r2_tiny", 224).total_params)
    assert DEFAULT_TOLERANCE < t.total_macs / a.total_macs - 1 <= shift_t["tolerance"]


def test_reference_may_be_a_timm_model_at_the_runs_input_size():
    eff = _resolve(["model=shiftvit_r2_tiny", "data=synthetic", f"reference={SWIN_T}"])
    assert eff["reference"] == SWIN_T and eff["reference_arch"] is None
    budget = count(SWIN_T, eff["model"]["img_size"]).total_macs
    assert round(budget / 1e9, 2) == 4.49
    assert abs(_cost(eff).total_macs / budget - 1) <= eff["tolerance"]
    # the solver's own account of it agrees
    sol = solve_depths(SWIN_T, 224, model="shiftvit_r2_tiny")
    assert list(sol.depths) == eff["depths"] and sol.target == budget


def test_flops_cli_solves_a_model_at_a_timm_models_budget(capsys):
    assert main(["shiftvit_r2_tiny", "--mixer", "shift", "--match", "flops", "--reference", SWIN_T, "--rows"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:2] == ["shiftvit_r2_tiny[shift]", "6,8,17,6"]


def test_unreachable_budget_of_another_model_names_both_in_one_line():
    with pytest.raises(BudgetError) as err:
        solve_depths("shiftvit_nano", 32, model="shiftvit_light_micro", mixer="attn", norm="ln", tolerance=0.025)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("cannot match the flops budget of shiftvit_nano (")
    assert ") within ±2.5% for " in msg  # the swap arms' tolerance as given, not rounded to "±2%"
    assert "for shiftvit_light_micro with mixer=attn, norm=ln: the closest reachable is depths=[1, 1, 1, 1]" in msg


def test_timm_reference_composes_through_run_py(tmp_path):
    proc = run_cli(["model=shiftvit_r2_tiny", "data=synthetic", f"reference={SWIN_T}", "--cfg", "job"], cwd=tmp_path,
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    job = yaml.safe_load(proc.stdout)
    assert job["reference"] == SWIN_T and job["model"]["name"] == "shiftvit_r2_tiny"


def test_timm_reference_is_counted_at_the_runs_size_not_its_own():
    """A fixed-size timm model (Swin's windows) is built for the size counted: at 32 px its budget is that of
    32-px images, not of the 224-px ones it was made for."""
    budget = count(SWIN_T, 32).total_macs
    assert budget < count(SWIN_T, 224).total_macs / 20
    eff = _resolve([f"reference={SWIN_T}"])  # shiftvit_micro on the 32-px digits
    assert eff["model"]["img_size"] == 32
    assert abs(_cost(eff).total_macs / budget - 1) <= eff["tolerance"]


def test_unknown_reference_is_one_line_naming_it_and_the_way_out():
    with pytest.raises(ConfigError) as err:
        _resolve(["reference=swin_tiny_patch4_window7_22"])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("reference='swin_tiny_patch4_window7_22' is neither a ShiftViT variant nor a timm model")
    assert f"close: {SWIN_T}" in msg and "python -m shiftvit.flops --variants -" in msg


def test_unknown_timm_reference_exits_2_in_one_line(tmp_path):
    proc = run_cli(["reference=resnet5O", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: reference='resnet5O' is neither"), proc.stderr
    assert "resnet50" in lines[0]


@pytest.mark.parametrize("args,message", [
    (["reference=shiftvit_foo"], "error: reference='shiftvit_foo' is not a ShiftViT variant; choose one of: "),
    (["reference_arch.norm=layer"], "error: reference_arch.norm='layer' is not one of: gn1, ln, bn"),
    (["reference_arch.mixer=atn"], "error: reference_arch.mixer='atn' is not one of: shift, identity, attn"),
    (["reference_arch.tau=0"], "error: reference_arch.tau=0.0 must be > 0"),
    (["reference_arch.depths=[2,2,6]"], "error: reference_arch.depths=[2, 2, 6] must be four integers >= 1"),
    ([f"reference={SWIN_T}", "reference_arch.norm=ln"],
     f"error: reference_arch.norm=ln applies to a ShiftViT reference, but reference={SWIN_T} is a timm model"),
    (["reference_arch.width=2"], "error: Could not override 'reference_arch.width'"),
])
def test_reference_errors_answer_before_torch_is_imported(tmp_path, args, message):
    proc = run_cli([*args, "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                   command=WITH_TORCH_PROBE)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "torch imported: False"


def test_reference_arch_is_recorded_and_hashed():
    plain = _resolve([])
    assert plain["reference_arch"] is None
    # a config from before the knob (no key at all) keeps its hash, so its records still resume
    assert config_hash({k: v for k, v in plain.items() if k != "reference_arch"}) == config_hash(plain)
    built = _resolve(["reference_arch.tau=3"])
    assert built["reference_arch"] == {"mixer": "shift", "norm": "gn1", "tau": 3, "depths": [4, 4, 12, 4]}
    assert config_hash(built) != config_hash(plain)
    # unmatched, there is no budget: neither the reference nor how it is built is part of the run
    unmatched = _resolve(["match=none", "reference_arch.mixer=attn"])
    assert unmatched["reference"] is None and unmatched["reference_arch"] is None


@pytest.mark.parametrize("mixer,norm", [("attn", "ln"), ("shift", "gn1")])
def test_light_micro_trains_a_step(mixer, norm):
    model = timm.create_model("shiftvit_light_micro", mixer=mixer, norm=norm)
    assert model.depths == (2, 2, 6, 2) and model.num_classes == 10
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
