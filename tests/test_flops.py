import pytest
import torch

import shiftvit.models  # noqa: F401  (registers the models with timm)
from shiftvit.flops import BudgetError, component_of, count, count_model, main, solve_depths

# GMACs of the official models (the paper's Table 4; microsoft/SPACH)
OFFICIAL_GMACS = {
    "shiftvit_light_tiny": 2.96, "shiftvit_r4_tiny": 4.58, "shiftvit_r2_tiny": 4.58,
    "shiftvit_light_small": 5.74, "shiftvit_r4_small": 8.51, "shiftvit_r2_small": 8.74,
    "shiftvit_light_base": 10.19, "shiftvit_r4_base": 15.13, "shiftvit_r2_base": 15.54,
}


@pytest.mark.parametrize("name,gmacs", list(OFFICIAL_GMACS.items()))
def test_official_gmacs_within_two_percent(name, gmacs):
    cost = count(name, 224)
    assert abs(cost.total_macs / 1e9 - gmacs) / gmacs <= 0.02
    assert cost.macs["mixer"] == 0  # the shift is free
    assert cost.macs["mlp"] > 0.9 * cost.total_macs


def test_swin_tiny_with_the_same_counter():
    cost = count("swin_tiny_patch4_window7_224", 224)
    assert abs(cost.total_macs / 1e9 - 4.5) / 4.5 <= 0.02
    assert abs(cost.total_params / 1e6 - 28.29) / 28.29 <= 0.01
    assert cost.macs["mixer"] > 1e9  # qkv, proj and the attention matmuls are counted


def test_attention_macs_match_the_closed_form():
    """Window attention per block: 4*N*C^2 (qkv+proj) + 2*N*w^2*C (QK^T and AV); MLP: 2*tau*N*C^2."""
    cost = count("shiftvit_r2_tiny", 224, mixer="attn", depths=(1, 1, 1, 1))
    for stage, (C, side) in enumerate([(96, 56), (192, 28), (384, 14), (768, 7)]):
        n, w = side * side, min(7, side)
        assert cost.blocks_macs[stage] == 4 * n * C * C + 2 * n * w * w * C + 2 * 2 * n * C * C


def test_count_model_on_a_real_model_equals_meta_count():
    model = shiftvit.build_shiftvit("shiftvit_nano")
    real = count_model(model, (32, 32))
    assert real.macs == count("shiftvit_nano", 32).macs
    assert real.total_params == sum(p.numel() for p in model.parameters())
    assert model.training  # counting does not leave the model in eval mode


@pytest.mark.parametrize("path,component", [
    ("patch_embed.proj", "embed"), ("layers.0.downsample.norm", "merge"), ("layers.1.blocks.3.norm2", "norm"),
    ("layers.1.blocks.3.token_mixer.attn.qkv", "mixer"), ("layers.0.blocks.0.mlp.fc1", "mlp"), ("head", "head"),
    ("head.fc", "head"), ("norm", "norm"), ("fc", "head"),
    # timm's peers: ResNet's stem, block convs (tokens and channels at once) and BatchNorms, ConvNeXt's depthwise
    # token mixer, MLP-Mixer's token and channel MLPs
    ("conv1", "embed"), ("bn1", "embed"), ("layer1.0.conv2", "other"), ("layer1.0.bn2", "norm"),
    ("stages.2.blocks.1.conv_dw", "mixer"), ("blocks.3.mlp_tokens.fc1", "mixer"), ("blocks.3.mlp_channels.fc2", "mlp"),
])
def test_component_rules(path, component):
    assert component_of(path) == component


def test_the_peers_token_mixers_are_counted_as_mixers():
    """Closed forms: ConvNeXt-T's 7x7 depthwise convs (3,3,9,3 blocks of 96..768 channels at 56..7 px) and
    MLP-Mixer-B/16's token MLPs (196 tokens, 384 hidden, 768 channels, 12 blocks); ResNet-50's block BatchNorms.
    Before, ConvNeXt's mixer read 0 MACs, the shift's defining claim, and ResNet's norms 0 parameters."""
    import timm

    stages = list(zip((56, 28, 14, 7), (96, 192, 384, 768), (3, 3, 9, 3)))
    convnext = count("convnext_tiny", 224)
    assert convnext.macs["mixer"] == sum(49 * side * side * c * n for side, c, n in stages)
    assert convnext.params["mixer"] == sum((49 + 1) * c * n for _, c, n in stages)  # weights and bias
    assert count("mixer_b16_224", 224).macs["mixer"] == 12 * 2 * 196 * 384 * 768
    with torch.device("meta"):
        resnet = timm.create_model("resnet50")
    block_norms = sum(p.numel() for name, module in resnet.named_modules()
                      if isinstance(module, torch.nn.BatchNorm2d) and name.startswith("layer")
                      and "downsample" not in name for p in module.parameters())
    assert count("resnet50", 224).params["norm"] == block_norms > 0


@pytest.mark.parametrize("variant", [
    dict(mixer="attn"), dict(mixer="dwconv"), dict(mixer="pool"), dict(mlp_ratio=4), dict(mlp_ratio=1),
    dict(mlp_ratio=3), dict(mixer="global_attn"), dict(mixer="mlp"), dict(mixer="attn", norm="bn", act="relu"),
])
def test_solver_matches_flops_when_recounted_independently(variant):
    sol = solve_depths("shiftvit_r2_tiny", 224, match="flops", **variant)
    assert min(sol.depths) >= 1
    target = count("shiftvit_r2_tiny", 224).total_macs
    # independent recount: build the solved model for real on the meta device and count it whole
    with torch.device("meta"):
        import timm
        model = timm.create_model("shiftvit_r2_tiny", depths=sol.depths, **variant)
    recount = count_model(model, (224, 224))
    assert abs(recount.total_macs / target - 1) <= 0.02
    assert recount.total_macs == sol.macs and recount.total_params == sol.params


def test_solver_keeps_reference_itself_and_tau_trade():
    assert solve_depths("shiftvit_r2_tiny", 224).depths == (6, 8, 18, 6)
    assert solve_depths("shiftvit_r2_tiny", 224, gamma="1/6").depths == (6, 8, 18, 6)  # gamma costs nothing
    tau4 = solve_depths("shiftvit_r2_tiny", 224, mlp_ratio=4).depths
    assert sum(tau4) < 38 and tau4[2] == max(tau4)  # wider MLP -> shallower, stage 3 still deepest


def test_solver_match_params():
    sol = solve_depths("shiftvit_r2_tiny", 224, match="params", mixer="attn")
    target = count("shiftvit_r2_tiny", 224).total_params
    recount = count("shiftvit_r2_tiny", 224, mixer="attn", depths=sol.depths).total_params
    assert abs(recount / target - 1) <= 0.02


def test_solver_match_none_keeps_depths():
    sol = solve_depths("shiftvit_micro", 32, match="none", mixer="attn")
    assert sol.depths == (4, 4, 12, 4)


def test_solver_small_model_and_32px():
    sol = solve_depths("shiftvit_micro", 32, mixer="dwconv")
    recount = count("shiftvit_micro", 32, mixer="dwconv", depths=sol.depths).total_macs
    assert abs(recount / count("shiftvit_micro", 32).total_macs - 1) <= 0.02


def test_solver_unreachable_budget_names_budget_and_closest():
    with pytest.raises(BudgetError) as err:
        solve_depths("shiftvit_nano", 32, mixer="attn")
    msg = str(err.value)
    budget = count("shiftvit_nano", 32).total_macs
    assert f"flops budget of shiftvit_nano ({budget / 1e6:.4g} M MACs)" in msg  # digits enough to compare
    assert "closest reachable is depths=[1, 1, 1, 1]" in msg and "\n" not in msg
    assert "no depths cost less" in msg
    # where the same architecture can be matched: the micro model's budget, and the solver agrees
    fits = solve_depths("shiftvit_micro", 32, mixer="attn")
    assert msg.endswith(f"it can be met at the budget of shiftvit_micro (depths={list(fits.depths)})")


def test_solver_rejects_bad_match_and_depths():
    with pytest.raises(ValueError, match="match='macs' is not one of: flops, params, none"):
        solve_depths("shiftvit_nano", 32, match="macs")
    with pytest.raises(ValueError, match="depths are what the solver chooses"):
        solve_depths("shiftvit_nano", 32, depths=(1, 1, 1, 1))


def test_cli_prints_component_table(capsys):
    assert main(["shiftvit_r2_tiny", "swin_tiny_patch4_window7_224"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {"embed", "mixer", "mlp", "norm", "merge", "head", "other", "total"}
    assert rows["total"][1] == "4.582" and rows["total"][5] == "4.491"
    assert rows["mixer"][1] == "0.000"


def test_cli_table_of_small_models_in_m_macs_at_the_runs_channels(capsys):
    """At 32 px a G column read 0.015 for every model; a digits run builds a 1-channel stem (--in-chans 1)."""
    assert main(["shiftvit_micro", "--mixer", "shift,attn", "--match", "flops", "--img-size", "32",
                 "--in-chans", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = lines[-1].split()
    assert "M MACs" in lines[1] and "GMACs" not in lines[1]
    assert total[1] == f"{count('shiftvit_micro', 32, in_chans=1).total_macs / 1e6:.3f}" == "15.067"
    assert total[1] != total[5]  # the two budgets, 2 % apart, read apart


def test_cli_match_flops(capsys):
    assert main(["shiftvit_r2_tiny", "--mixer", "attn", "--match", "flops"]) == 0
    out = capsys.readouterr().out
    assert "d=" in out
    total = float(out.splitlines()[-1].split()[1])
    assert abs(total / 4.582 - 1) <= 0.02


def test_cli_says_when_shiftvit_options_leave_a_timm_model_as_it_is(capsys):
    assert main(["shiftvit_nano", "resnet18", "--mixer", "attn", "--gamma", "1/6"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("note: --mixer, --gamma apply to ShiftViT models only; resnet18 counted as timm builds "
                            "it\n")
    assert "shiftvit_nano[attn]" in captured.out and "resnet18" in captured.out
    assert main(["shiftvit_nano", "--mixer", "attn"]) == 0 and capsys.readouterr().err == ""


def test_cli_rows_and_variants(capsys):
    assert main(["shiftvit_micro", "--mixer", "shift,attn,dwconv", "--match", "flops", "--rows"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "depths", "GMACs"]
    assert [line.split()[0] for line in out[1:]] == ["shiftvit_micro[shift]", "shiftvit_micro[attn]",
                                                     "shiftvit_micro[dwconv]"]
    assert out[1].split()[1] == "4,4,12,4"
    assert main(["-", "--variants"]) == 0
    listing = capsys.readouterr().out
    assert "shiftvit_r2_tiny" in listing and "28.57" in listing and "4.5816" in listing


def test_cli_unreachable_budget_is_one_line_error(capsys):
    assert main(["shiftvit_nano", "--mixer", "attn", "--match", "flops"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: shiftvit_nano[attn]: cannot match the flops budget")
