"""Fusion modules, logit shares, heads and gradient reversal."""
import pytest
import torch

from mmdg.models.fusion import FUSIONS, build_fusion
from mmdg.models.heads import SharesHead, grad_reverse, projector
from mmdg.models.model import build_model

DIMS = {"v": 5, "a": 3}


def feats(n=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(n, d, generator=g, dtype=dtype) for m, d in DIMS.items()}


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_parts_sum_to_fused(name):
    fus = build_fusion(name, DIMS).double()
    out = fus(feats())
    assert out.fused.shape == (4, fus.out_dim)
    assert set(out.parts) == set(DIMS)
    torch.testing.assert_close(sum(out.parts.values()), out.fused)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_linear_shares_sum_to_logits(name):
    fus = build_fusion(name, DIMS).double()
    head = SharesHead(fus.out_dim, 6).double()
    logits, shares = head(fus(feats()))
    torch.testing.assert_close(sum(shares.values()), logits)


def test_concat_shares_are_weight_column_blocks():
    fus = build_fusion("concat", DIMS).double()
    head = SharesHead(fus.out_dim, 6).double()
    z = feats()
    _, shares = head(fus(z))
    w, b = head.net.weight, head.net.bias
    torch.testing.assert_close(shares["v"], z["v"] @ w[:, :5].t() + b / 2)
    torch.testing.assert_close(shares["a"], z["a"] @ w[:, 5:].t() + b / 2)


def test_mlp_head_shares_zero_the_other_modalities():
    fus = build_fusion("concat", DIMS).double()
    head = SharesHead(fus.out_dim, 6, hidden=7).double().eval()
    z = feats()
    _, shares = head(fus(z))
    only_v = torch.cat([z["v"], torch.zeros_like(z["a"])], 1)
    torch.testing.assert_close(shares["v"], head.net(only_v))


def test_fusion_checks_shapes_and_order():
    fus = build_fusion("concat", DIMS)
    with pytest.raises(ValueError, match="modality 'v'.*shape \\(N, 5\\)"):
        fus({"v": torch.zeros(2, 4), "a": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="in this order"):
        fus({"a": torch.zeros(2, 3), "v": torch.zeros(2, 5)})
    with pytest.raises(KeyError, match="valid choices"):
        build_fusion("attention", DIMS)


def test_grad_reverse_negates_and_scales():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (grad_reverse(x, 0.3) * torch.tensor([2.0, 5.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.6, -1.5]))


def test_projector_shapes_and_norm_check():
    p = projector(10, 4, hidden=8, norm="layer")
    assert p(torch.randn(3, 10)).shape == (3, 4)
    with pytest.raises(ValueError, match="norm"):
        projector(10, 4, norm="group")


def test_build_model_contract():
    model = build_model({"v": (5,), "a": (3,)}, {"v": {"name": "mlp"}, "a": {"name": "mlp", "out_dim": 8}}, 4)
    out = model({"v": torch.randn(2, 5), "a": torch.randn(2, 3)})
    assert out.logits.shape == (2, 4) and out.feats["a"].shape == (2, 8)
    assert set(model.encoder_parameters()) == {"v", "a"}
    with pytest.raises(KeyError, match="lacks modalities"):
        model({"v": torch.randn(2, 5)})
    with pytest.raises(ValueError, match="needs a 'name'"):
        build_model({"v": (5,)}, {"v": {}}, 4)
    with pytest.raises(TypeError, match="unknown parameter.*width"):
        build_model({"v": (5,)}, {"v": {"name": "mlp", "width": 3}}, 4)
