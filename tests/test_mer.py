"""MER-DG's entropy estimator and objective, against independent float64 computations."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmdg.feature_stats import effective_rank, gaussian_entropy
from mmdg.methods import resolve
from mmdg.objectives import (Context, build_objective, marginal_entropy_loss, mer_loss, mer_parts,
                             spectral_entropy_loss)
from mmdg.train import RunConfig, build_run, train

from conftest import MLP_ENCODERS

EPS = 1e-4


# ---------------------------------------------------------------- independent references (numpy, float64)

def ref_marginal(z, eps=EPS):
    z = np.asarray(z, dtype=np.float64)
    var = ((z - z.mean(0)) ** 2).sum(0) / (len(z) - 1)
    return float(np.mean(np.maximum(0.0, 1.0 - np.sqrt(var + eps))))


def ref_spectral(z, eps=EPS):
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    mu = z.mean(0)
    sd = np.sqrt(((z - mu) ** 2).mean(0))
    x = (z - mu) / np.maximum(sd + eps, eps)
    sign, logdet = np.linalg.slogdet(x.T @ x / (n - 1) + eps * np.eye(d))
    assert sign > 0
    return float(-logdet / d)


def whitened(n, d, seed=0):
    """n samples with zero mean and unbiased covariance exactly I (up to float64 rounding)."""
    z = np.random.default_rng(seed).standard_normal((n, d))
    z -= z.mean(0)
    chol = np.linalg.cholesky(z.T @ z / (n - 1))
    return np.linalg.solve(chol, z.T).T


def t(x, **kw):
    return torch.tensor(x, dtype=torch.float32, **kw)


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("n,d", [(16, 8), (16, 128), (64, 32), (3, 2)])
def test_values_match_float64_reference(n, d):
    g = torch.Generator().manual_seed(n * 1000 + d)
    z = torch.randn(n, d, generator=g) * torch.rand(d, generator=g) * 2 + torch.randn(d, generator=g)
    marg, spec = mer_parts(z)
    assert marg.dtype == spec.dtype == torch.float32
    assert marg.item() == pytest.approx(ref_marginal(z.numpy()), rel=1e-5, abs=1e-6)
    assert spec.item() == pytest.approx(ref_spectral(z.numpy()), rel=1e-4, abs=1e-5)
    assert mer_loss(z, alpha_marg=0.5, alpha_spec=2.0).item() == pytest.approx(
        0.5 * ref_marginal(z.numpy()) + 2.0 * ref_spectral(z.numpy()), rel=1e-4)
    assert marginal_entropy_loss(z).item() == marg.item() and spectral_entropy_loss(z).item() == spec.item()


def test_identity_covariance_gives_zero_marginal_and_near_zero_spectral():
    n, d = 1000, 6
    w = whitened(n, d)
    marg, spec = mer_parts(torch.from_numpy(w))          # float64 in, float64 out
    assert spec.dtype == torch.float64
    assert marg.item() == 0.0                             # std = sqrt(1 + eps) >= 1: hinge inactive
    # x = w / (sd + eps) with biased sd = sqrt((n-1)/n)  =>  R = (1/(sd + eps)^2 + eps) I
    sd = math.sqrt((n - 1) / n)
    assert spec.item() == pytest.approx(-math.log(1 / (sd + EPS) ** 2 + EPS), abs=1e-9)
    assert abs(spec.item()) < 2e-3


def test_variance_below_one_is_penalised_linearly_in_std():
    w = whitened(500, 4, seed=1) * np.array([0.25, 0.5, 1.0, 3.0])
    expected = np.mean([max(0.0, 1 - math.sqrt(s ** 2 + EPS)) for s in (0.25, 0.5, 1.0, 3.0)])
    assert marginal_entropy_loss(torch.from_numpy(w)).item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, -0.8])
def test_known_2d_correlation_gives_half_log_one_minus_rho_squared(rho):
    n = 4000
    chol = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
    z = whitened(n, 2, seed=2) @ chol.T * np.array([3.0, 0.5]) + np.array([10.0, -2.0])
    assert np.corrcoef(z.T)[0, 1] == pytest.approx(rho, abs=1e-12)
    spec = spectral_entropy_loss(t(z)).item()
    # R = n/(n-1) * C up to O(eps/std): L_spec = -1/2 log det R
    assert spec == pytest.approx(-0.5 * math.log(1 - rho ** 2) - math.log(n / (n - 1)), abs=5e-4)
    assert spec == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=1e-3)


def test_rank_deficient_batch_matches_gram_eigenvalues():
    """N <= D: the D - N + 1 null directions of R each contribute -log(eps)/D, a constant."""
    n, d = 16, 128
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(3))
    zz = z.double().numpy()
    x = (zz - zz.mean(0)) / (zz.std(0) + EPS)
    lam = np.linalg.eigvalsh(x @ x.T / (n - 1))          # the N x N Gram matrix: one eigenvalue ~ 0
    lam = np.sort(lam)[1:]                               # the N - 1 non-zero ones
    expected = -(np.log(lam + EPS).sum() + (d - n + 1) * math.log(EPS)) / d
    assert spectral_entropy_loss(z).item() == pytest.approx(expected, rel=1e-4)
    assert (d - n + 1) / d * -math.log(EPS) == pytest.approx(8.13, abs=0.01)  # the note's constant


# ---------------------------------------------------------------- gradients and degenerate batches

@pytest.mark.parametrize("n,d", [(256, 6), (16, 32)])
def test_gradient_step_increases_gaussian_entropy(n, d):
    g = torch.Generator().manual_seed(4)
    mix = torch.full((d, d), 0.8) + 0.2 * torch.eye(d)   # strongly correlated
    z = (0.3 * torch.randn(n, d, generator=g) @ mix).requires_grad_()
    h0, loss0 = gaussian_entropy(z).item(), mer_loss(z)
    loss0.backward()
    with torch.no_grad():
        z1 = z - 0.05 * z.grad / z.grad.norm() * math.sqrt(n)
    assert gaussian_entropy(z1).item() > h0 + 1e-3
    assert mer_loss(z1).item() < loss0.item()


def test_rank_deficient_and_constant_batches_are_finite():
    g = torch.Generator().manual_seed(5)
    low_rank = torch.randn(8, 2, generator=g) @ torch.randn(2, 64, generator=g)
    for z in (torch.randn(16, 128, generator=g), low_rank, torch.full((8, 5), 3.0)):
        z = z.clone().requires_grad_()
        loss = mer_loss(z)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # constant batch: every std is 0, x = 0, R = eps I
    marg, spec = mer_parts(torch.full((8, 5), 3.0))
    assert marg.item() == pytest.approx(1 - math.sqrt(EPS))
    assert spec.item() == pytest.approx(-math.log(EPS), rel=1e-5)
    assert torch.isfinite(gaussian_entropy(torch.full((8, 5), 3.0)))


def test_single_sample_and_single_dimension():
    z = torch.randn(1, 5, requires_grad=True)
    loss = mer_loss(z)
    loss.backward()                                      # attached to the graph, zero gradient
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
    z = torch.randn(10, 1, generator=torch.Generator().manual_seed(6)) * 0.3
    marg, spec = mer_parts(z)
    assert spec.item() == 0.0                            # D < 2: no spectral term
    assert marg.item() == pytest.approx(ref_marginal(z.numpy()), rel=1e-5)


def test_autocast_bf16_on_cpu_computes_in_float32():
    lin = nn.Linear(12, 32)
    x = torch.randn(24, 12, generator=torch.Generator().manual_seed(7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = lin(x)
        loss = mer_loss(z)
        h = gaussian_entropy(z)
    assert z.dtype == torch.bfloat16 and loss.dtype == torch.float32 and h.dtype == torch.float32
    assert loss.item() == pytest.approx(mer_loss(z.detach().float()).item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(lin.weight.grad).all() and lin.weight.grad.abs().sum() > 0


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        mer_loss(torch.randn(5))
    with pytest.raises(ValueError, match="eps"):
        mer_loss(torch.randn(5, 3), eps=0.0)
    with pytest.raises(ValueError, match="spectrum"):
        effective_rank(torch.randn(5, 3), spectrum="svd")


# ---------------------------------------------------------------- the objective (variant A)

def _ctx():
    return Context(["a", "b"], {"a": 16, "b": 8}, num_classes=3, num_domains=2)


def test_objective_is_lambda_times_sum_over_modalities_of_projected_mer():
    obj = build_objective("mer", _ctx(), weight=3.0, hidden=32)
    proj = obj.projectors["a"]
    assert [type(layer) for layer in proj] == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.LayerNorm,
                                               nn.ReLU, nn.Linear]
    assert proj[-1].out_features == 128 and proj[0].in_features == 16
    g = torch.Generator().manual_seed(8)
    feats = {"a": torch.randn(16, 16, generator=g), "b": torch.randn(16, 8, generator=g)}
    out = type("Out", (), {"feats": feats})()
    term = obj(out, None)
    with torch.no_grad():
        za, zb = obj.projectors["a"](feats["a"]), obj.projectors["b"](feats["b"])
    assert not torch.allclose(za.norm(dim=1), torch.ones(16))           # not L2-normalised
    expected = 3.0 * (ref_marginal(za) + ref_spectral(za) + ref_marginal(zb) + ref_spectral(zb))
    assert term.kind == "other" and term.loss.item() == pytest.approx(expected, rel=1e-4)
    assert {"mer", "mer_marg_a", "mer_spec_b"} <= set(term.logs)

    on_feats = build_objective("mer", _ctx(), weight=2.0, on="features")
    assert len(list(on_feats.parameters())) == 0
    expected = 2.0 * sum(ref_marginal(f) + ref_spectral(f) for f in feats.values())
    assert on_feats(out, None).loss.item() == pytest.approx(expected, rel=1e-4)


def test_objective_errors():
    with pytest.raises(ValueError, match="on must be 'projector' or 'features'"):
        build_objective("mer", _ctx(), on="head")
    with pytest.raises(ValueError, match="hidden must be an int >= 1"):
        build_objective("mer", _ctx(), hidden=0)
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        build_objective("mer", _ctx(), weight=-1.0)


def _cfg(method, **kw):
    base = dict(target="d0", benchmark="toy", method=method, epochs=2, batch_size=16, encoders=MLP_ENCODERS,
                hparams={"mer_hidden": 32, "mer_dim": 16})
    base.update(kw)
    return RunConfig(**base)


def test_mer_method_equals_erm_plus_mer_and_registers_projectors():
    assert resolve("mer")[:2] == resolve("erm+mer")[:2]
    objs, _, hp = resolve("mer")
    assert objs[-1] == ("mer", {"weight": 3.0, "alpha_marg": 1.0, "alpha_spec": 1.0, "dim": 128,
                                "hidden": 2048, "on": "projector"})
    _, _, method = build_run(_cfg("mer"))
    proj = [p for m in method.objectives[-1].projectors.values() for p in m.parameters()]
    assert proj and {id(p) for p in proj} <= {id(p) for p in method.trainable_parameters()}


@pytest.mark.parametrize("name", ["mer", "erm+mer"])
def test_training_updates_the_projectors(name):
    cfg = _cfg(name)
    _, _, init = build_run(cfg)                          # same seed: the run's initial weights
    rec = train(cfg, progress=False, keep_model=True)
    trained = rec["_method"].objectives[-1].projectors
    for m, proj in init.objectives[-1].projectors.items():
        for p0, p1 in zip(proj.parameters(), trained[m].parameters()):
            assert not torch.allclose(p0, p1.detach().cpu())
    row = rec["epochs"][-1]["train"]
    assert math.isfinite(row["mer"]) and row["loss_mer"] == pytest.approx(3.0 * row["mer"], rel=1e-5)
    assert math.isfinite(rec["final"]["test_acc"])
