"""train.compile_scope=blocks: regional compilation, one graph per kind of block, equal to eager."""
import copy

import pytest
import timm
import torch
import torch._dynamo
from timm.layers import DropPath
from torch._dynamo.utils import counters

import shiftvit.models  # noqa: F401  (registers the models)
from shiftvit.compiling import TensorDropPath, compile_model, compile_regions, use_tensor_drop_paths


def test_tensor_drop_path_drops_scales_and_keeps_no_state():
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 1, 1)
    layer = TensorDropPath(0.25).train()
    y = layer(x)
    dropped = (y[:, 0] == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.02  # binomial sd 0.003
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))  # survivors scaled by 1/keep
    assert torch.equal(y[:, 0], y[:, 1])  # one draw per sample, as timm's
    assert layer.eval()(x) is x and layer.state_dict() == {} == DropPath(0.25).state_dict()
    everything = TensorDropPath(1.0).train()(x)  # keep probability 0: zeros, not 0/0
    assert torch.equal(everything, torch.zeros_like(x))
    assert TensorDropPath(0.25, scale_by_keep=False).train()(x).unique().tolist() == [0.0, 1.0]


def test_blocks_compile_one_graph_per_kind_of_block_and_equal_eager():
    """Dynamo guards on timm DropPath's float probability: compiled block by block as they are, the blocks of a
    stage (each its own stochastic-depth rate) compiled a graph each until Dynamo's limit of 8, then ran eager.
    With the probability in a tensor they share one per stage; forward and backward equal eager."""
    torch.manual_seed(0)
    model = timm.create_model("shiftvit_nano", num_classes=10, img_size=32, drop_path_rate=0.3).train()
    blocks = compile_regions(model)
    reference = copy.deepcopy(model)
    use_tensor_drop_paths(reference)  # the same draws as the compiled blocks
    torch._dynamo.reset()
    counters.clear()
    assert compile_model(model, "default", "blocks", backend="aot_eager") is model
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    out = model(x)
    out.square().mean().backward()
    # one graph per stage, and one more for the first block, whose rate 0 makes its drop paths nn.Identity
    kinds = {(b.norm2.num_channels, type(b.drop_path)) for b in blocks}
    assert counters["stats"]["unique_graphs"] == len(kinds) < len(blocks)
    assert not any(type(m) is DropPath for m in model.modules())
    torch.manual_seed(1)
    expected = reference(x)
    expected.square().mean().backward()
    assert torch.allclose(out, expected, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name
    # the state dict keeps its keys (a checkpoint loads into an eager model) and holds no probability
    assert list(model.state_dict()) == list(timm.create_model("shiftvit_nano", num_classes=10).state_dict())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), reference.eval()(x), atol=1e-5)


def test_a_model_without_blocks_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no blocks to compile one by one .*compile it whole"):
        compile_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), "default", "blocks", backend="aot_eager")
    with pytest.raises(ValueError, match="'layers' is not one of: model, blocks"):
        compile_model(torch.nn.Linear(2, 2), "default", "layers")
