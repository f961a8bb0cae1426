import itertools

import pytest
import timm
import torch
from timm.models._features_fx import create_feature_extractor, get_graph_node_names

import shiftvit.models  # noqa: F401  (registers the models with timm)
from shiftvit.models import ACTS, MIXERS, NORMS

# The official table (the paper's Table 4; microsoft/SPACH): C, depths, tau, n_div, params in millions.
OFFICIAL = {
    "shiftvit_light_tiny": (96, (2, 2, 6, 2), 4, 12, 19.61),
    "shiftvit_r4_tiny": (96, (2, 2, 12, 3), 4, 12, 31.43),
    "shiftvit_r2_tiny": (96, (6, 8, 18, 6), 2, 12, 28.57),
    "shiftvit_light_small": (96, (2, 2, 18, 2), 4, 12, 33.80),
    "shiftvit_r4_small": (96, (2, 6, 24, 4), 4, 12, 51.52),
    "shiftvit_r2_small": (96, (10, 18, 36, 10), 2, 12, 50.30),
    "shiftvit_light_base": (128, (2, 2, 18, 2), 4, 16, 59.71),
    "shiftvit_r4_base": (128, (4, 6, 22, 4), 4, 16, 87.27),
    "shiftvit_r2_base": (128, (10, 18, 36, 10), 2, 16, 89.03),
}
SMALL = ["shiftvit_nano", "shiftvit_micro"]


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def official_state_dict_shapes(C, depths, tau, num_classes=1000):
    """The official checkpoint layout (microsoft/SPACH shiftvit.py), written out from its description."""
    shapes = {"patch_embed.proj.weight": (C, 3, 4, 4), "patch_embed.proj.bias": (C,),
              "patch_embed.norm.weight": (C,), "patch_embed.norm.bias": (C,)}
    dim = C
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            shapes.update({p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
                           p + "mlp.fc1.weight": (tau * dim, dim, 1, 1), p + "mlp.fc1.bias": (tau * dim,),
                           p + "mlp.fc2.weight": (dim, tau * dim, 1, 1), p + "mlp.fc2.bias": (dim,)})
        if i < 3:
            shapes.update({f"layers.{i}.downsample.norm.weight": (dim,), f"layers.{i}.downsample.norm.bias": (dim,),
                           f"layers.{i}.downsample.reduction.weight": (2 * dim, dim, 2, 2)})
            dim *= 2
    shapes.update({"norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (num_classes, dim),
                   "head.bias": (num_classes,)})
    return shapes


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_variant_keys_shapes_and_params(name):
    C, depths, tau, n_div, params_m = OFFICIAL[name]
    model = meta_model(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_state_dict_shapes(C, depths, tau)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - params_m) / params_m <= 0.001, n
    assert model.layers[0].blocks[0].token_mixer.channels_per_direction == C // n_div


def test_official_checkpoint_loads_strict_and_reproduces_outputs():
    C, depths, tau, _, _ = OFFICIAL["shiftvit_light_tiny"]
    checkpoint = {k: torch.randn(s) * 0.02 for k, s in official_state_dict_shapes(C, depths, tau).items()}
    a = timm.create_model("shiftvit_light_tiny").eval()
    a.load_state_dict(checkpoint, strict=True)
    b = timm.create_model("shiftvit_light_tiny").eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_aliases_are_the_r2_models():
    for alias, target in [("shiftvit_tiny", "shiftvit_r2_tiny"), ("shiftvit_small", "shiftvit_r2_small"),
                          ("shiftvit_base", "shiftvit_r2_base")]:
        a, b = meta_model(alias), meta_model(target)
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_constructor_overrides_are_honoured():
    m = meta_model("shiftvit_r2_tiny", num_classes=10, drop_path_rate=0.1, drop_rate=0.3, in_chans=1, img_size=64)
    assert m.head.out_features == 10 and m.num_classes == 10
    assert m.patch_embed.proj.in_channels == 1
    assert m.head_drop.p == 0.3
    assert m.layers[3].blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    assert isinstance(m.layers[0].blocks[0].drop_path, torch.nn.Identity)  # rate 0 at the first block
    assert m.img_size == (64, 64)
    m = meta_model("shiftvit_r2_tiny", gamma=1 / 6, mlp_ratio=4, depths=(2, 2, 6, 2))
    assert [len(s.blocks) for s in m.layers] == [2, 2, 6, 2]
    assert m.layers[0].blocks[0].mlp.fc1.out_channels == 4 * 96
    assert m.layers[0].blocks[0].token_mixer.channels_per_direction == 16


def test_default_drop_path_is_the_variants():
    m = meta_model("shiftvit_r2_small")
    assert m.layers[3].blocks[-1].drop_path.drop_prob == pytest.approx(0.4)


@pytest.mark.parametrize("mixer,norm,act", list(itertools.product(sorted(MIXERS), sorted(NORMS), sorted(ACTS))))
def test_every_mixer_norm_act_small_32px_forward_backward(mixer, norm, act):
    model = timm.create_model("shiftvit_nano", mixer=mixer, norm=norm, act=act, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_deterministic_training_reads_no_uninitialized_memory():
    """run.py's deterministic mode turns off PyTorch's NaN fill of every new tensor (engine.seed_everything),
    which PyTorch's docs allow for a program that reads no uninitialized memory. Every mixer and every norm, trained
    from one seed with the fill on and off, ends at the same bits: a read of uninitialized memory would differ (NaN
    against whatever the memory held)."""
    from shiftvit.engine import seed_everything

    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory

    def train(fill: bool) -> dict:
        seed_everything(0, deterministic=True)
        assert not torch.utils.deterministic.fill_uninitialized_memory  # what run.py trains with
        torch.utils.deterministic.fill_uninitialized_memory = fill
        states = {}
        for mixer, norm in [(mixer, "gn1") for mixer in sorted(MIXERS)] + [("shift", "bn"), ("shift", "ln")]:
            model = timm.create_model("shiftvit_nano", mixer=mixer, norm=norm, num_classes=10, depths=(1, 1, 1, 1))
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
            for _ in range(2):  # the second step reads the optimizer's state
                x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
            states[mixer, norm] = model.state_dict()
        return states

    try:
        filled, unfilled = train(fill=True), train(fill=False)
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.utils.deterministic.fill_uninitialized_memory = before[1]
    for arm, state in filled.items():
        assert all(torch.equal(value, unfilled[arm][key]) for key, value in state.items()), arm


@pytest.mark.parametrize("mixer,norm,act", list(itertools.product(sorted(MIXERS), sorted(NORMS), sorted(ACTS))))
def test_every_mixer_norm_act_at_224_forward_backward(mixer, norm, act):
    model = timm.create_model("shiftvit_light_tiny", mixer=mixer, norm=norm, act=act, depths=(1, 1, 1, 1),
                              num_classes=5)
    x = torch.randn(2 if norm == "bn" else 1, 3, 224, 224)
    out = model(x)
    assert out.shape == (x.shape[0], 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["shiftvit_light_tiny", "shiftvit_nano"])
def test_features_only_returns_four_stages_with_strides(name):
    model = timm.create_model(name, features_only=True)
    size = model.pretrained_cfg["input_size"][-1] if hasattr(model, "pretrained_cfg") else 224
    size = 224 if "tiny" in name else 32
    patch = 4 if "tiny" in name else 2
    feats = model(torch.randn(1, 3, size, size))
    assert len(feats) == 4
    assert model.feature_info.reduction() == [patch, 2 * patch, 4 * patch, 8 * patch]
    for f, red, ch in zip(feats, model.feature_info.reduction(), model.feature_info.channels()):
        assert f.shape[1] == ch and f.shape[-1] == size // red


def test_features_equal_stage_outputs_before_merging():
    model = timm.create_model("shiftvit_nano").eval()
    x = torch.randn(1, 3, 32, 32)
    final, inter = model.forward_intermediates(x)
    with torch.no_grad():
        h = model.patch_embed(x)
        for i, stage in enumerate(model.layers):
            h = stage.blocks(h)
            assert torch.allclose(inter[i], h)
            h = stage.downsample(h)
        assert torch.allclose(final, model.norm(h))
    assert torch.allclose(final, model.forward_features(x))


def test_timm_head_conventions():
    model = timm.create_model("shiftvit_light_tiny", num_classes=7).eval()
    x = torch.randn(1, 3, 224, 224)
    feats = model.forward_features(x)
    assert tuple(feats.shape[-2:]) == model.pretrained_cfg["pool_size"]
    assert feats.shape[1] == model.num_features == model.head_hidden_size == 768
    assert model.forward_head(feats, pre_logits=True).shape == (1, 768)
    assert model.get_classifier() is model.head
    model.reset_classifier(0, "")
    assert model(x).shape == (1, 768, 7, 7)
    model.reset_classifier(3, "avg")
    assert model(x).shape == (1, 3)
    for size in (96, 128):
        assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


def test_no_weight_decay_and_group_matcher():
    model = timm.create_model("shiftvit_nano", mixer="attn")
    nwd = model.no_weight_decay()
    assert "layers.0.blocks.0.norm2.weight" in nwd and "head.bias" in nwd
    assert "layers.0.blocks.0.token_mixer.attn.relative_position_bias_table" in nwd
    assert "layers.0.blocks.0.mlp.fc1.weight" not in nwd
    groups = timm.models.group_parameters(model, model.group_matcher(coarse=False))
    assert sum(len(v) for v in groups.values()) == len(list(model.named_parameters()))
    from timm.optim import create_optimizer_v2
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    assert len(opt.param_groups) > 2


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    a = timm.create_model("shiftvit_nano")
    b = timm.create_model("shiftvit_nano")
    b.load_state_dict(a.state_dict())
    b.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 32, 32)
    a(x).sum().backward()
    b(x).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), n


def test_torchscript_shift_model():
    model = timm.create_model("shiftvit_nano").eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-6)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_every_mixer_compiles_as_one_graph_forward_and_backward(mixer):
    """train.compile for every mixer: TorchDynamo captures the training forward whole (fullgraph=True raises on
    any graph break, so no mixer falls back to eager Python) and AOTAutograd derives the backward; both equal
    eager. The aot_eager backend stops short of Inductor's code generation, which costs a minute per model on a
    CPU; Inductor itself is checked on CUDA (tests/test_cuda.py)."""
    import torch._dynamo

    torch.manual_seed(0)
    model = timm.create_model("shiftvit_nano", mixer=mixer, num_classes=10, img_size=32).train()
    x = torch.randn(4, 3, 32, 32)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.manual_seed(1)  # the same draws for the random mixer and drop-path in both passes
    out = compiled(x)
    out.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    expected = model(x)
    expected.square().mean().backward()
    assert torch.allclose(out, expected, atol=1e-5)
    for n, p in model.named_parameters():
        assert torch.allclose(grads[n], p.grad, atol=1e-5), n


def test_fx_trace_shift_model():
    model = timm.create_model("shiftvit_nano").eval()
    _, eval_nodes = get_graph_node_names(model)
    extractor = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = list(extractor(x).values())[0]
        assert torch.allclose(out, model(x), atol=1e-6)


def test_window_attention_matches_timm_swin_block():
    from timm.models.swin_transformer import SwinTransformerBlock

    from shiftvit.models.mixers import WindowAttentionMixer

    for block_idx, shift in [(0, 0), (1, 3)]:
        ours = WindowAttentionMixer(64, (14, 14), block_idx=block_idx, window_size=7, head_dim=32).eval()
        theirs = SwinTransformerBlock(64, (14, 14), num_heads=2, window_size=7, shift_size=shift).eval()
        theirs.attn.load_state_dict(ours.attn.state_dict())
        x = torch.randn(2, 64, 14, 14)
        with torch.no_grad():
            expected = theirs._attn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            assert torch.allclose(ours(x), expected, atol=1e-5)


def test_window_attention_masks_padding():
    """A 5x5 map in a 7x7 window: real tokens must attend only to the 25 real tokens."""
    from shiftvit.models.mixers import WindowAttentionMixer

    mixer = WindowAttentionMixer(32, (14, 14), window_size=7, head_dim=16).eval()
    x = torch.randn(1, 32, 5, 5)
    attn = mixer.attn
    tokens = x.flatten(2).transpose(1, 2)[0]  # 25 x C, row-major positions (i, j)
    q, k, v = attn.qkv(tokens).view(25, 3, 2, 16).permute(1, 2, 0, 3)  # 3 x heads x 25 x d
    pos = [(i, j) for i in range(5) for j in range(5)]
    bias = torch.stack([torch.stack([
        attn.relative_position_bias_table[(a[0] - b[0] + 6) * 13 + (a[1] - b[1] + 6)] for b in pos]) for a in pos])
    scores = q @ k.transpose(-1, -2) * 16 ** -0.5 + bias.permute(2, 0, 1)
    out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(25, 32)
    expected = attn.proj(out).T.reshape(1, 32, 5, 5)
    with torch.no_grad():
        assert torch.allclose(mixer(x), expected, atol=1e-5)


def test_window_clamped_when_larger_than_feature_map():
    model = timm.create_model("shiftvit_nano", mixer="attn", mixer_kwargs={"window_size": 7})
    assert model.layers[3].blocks[0].token_mixer.window_size == 2  # 2x2 map at stage 4: the whole map
    assert model.layers[0].blocks[0].token_mixer.window_size == 4  # 16x16 map: largest window <= 7 tiling it
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 10)  # 6x6 stage-3 map in 4x4 windows: padded
    big = timm.create_model("shiftvit_light_tiny", mixer="attn", depths=(1, 1, 1, 1))
    assert [s.blocks[0].token_mixer.window_size for s in big.layers] == [7, 7, 7, 7]  # Swin's at 224


# --- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,message", [
    (dict(mixer="conv"), "unknown mixer 'conv'; choose one of: attn, dwconv, global_attn, identity, mlp, pool"),
    (dict(norm="layernorm"), "unknown norm 'layernorm'; choose one of: bn, gn1, ln"),
    (dict(act="silu"), "unknown act 'silu'; choose one of: gelu, relu"),
    (dict(gamma="1/3"), "gamma=1/3 is outside (0, 1/4]"),
    (dict(gamma=0), "outside (0, 1/4]"),
    (dict(gamma="1/48"), "shifts floor(1/48*32) = 0 channels at a stage of width 32"),
    (dict(mlp_ratio=0), "mlp_ratio (tau)=0 must be > 0"),
    (dict(mlp_ratio=-2), "must be > 0"),
    (dict(img_size=40), "img_size=40x40 must be a multiple of 16"),
    (dict(mixer="attn", gamma="1/6"), "gamma applies only to mixer='shift'"),
    (dict(mixer="dwconv", mixer_kwargs={"window_size": 7}), "mixer 'dwconv' has no option 'window_size'"),
    (dict(depths=(1, 0, 1, 1)), "depths=(1, 0, 1, 1) must be 4 integers >= 1"),
])
def test_bad_model_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        timm.create_model("shiftvit_nano", **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_fixed_resolution_mixer_refuses_other_sizes():
    model = timm.create_model("shiftvit_nano", mixer="mlp")
    with pytest.raises(ValueError, match="built for a 16x16 feature map and cannot take 24x24"):
        model(torch.randn(1, 3, 48, 48))


def test_input_not_multiple_of_size_divisor_is_refused():
    model = timm.create_model("shiftvit_nano")
    with pytest.raises(ValueError, match="input 36x32 must be a multiple of 16"):
        model(torch.randn(1, 3, 36, 32))
