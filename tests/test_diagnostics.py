"""Fusion-Overfitting diagnostics on constructed cases whose answers are known."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdg.data.base import make_loader
from mmdg.diagnostics import (Features, FeatureTracker, canonical_correlations, cross_modal_similarity,
                              extract_features, feature_stats, fit_linear_probe, fusion_overfitting_report,
                              group_derangement, linear_cka, probe_modalities, shuffle_reliance)
from mmdg.feature_stats import effective_rank, gaussian_entropy
from mmdg.train import RunConfig, build_run, train

from conftest import MLP_ENCODERS


def _cfg(**kw):
    base = dict(target="d0", benchmark="toy", method="erm", epochs=2, batch_size=16, encoders=MLP_ENCODERS)
    base.update(kw)
    return RunConfig(**base)


def with_spectrum(n, s, seed=0, center=True):
    """An (n, len(s)) matrix whose (centred, if ``center``) singular values are exactly ``s``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, len(s)))
    if center:
        a -= a.mean(0)
    u, _ = np.linalg.qr(a)                      # orthonormal columns (orthogonal to 1 if centred)
    v, _ = np.linalg.qr(rng.standard_normal((len(s), len(s))))
    return u @ np.diag(s) @ v.T


def np_erank(w):
    p = np.asarray(w, dtype=np.float64) / np.sum(w)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


# ---------------------------------------------------------------- feature extraction

def test_extract_features_matches_encoders_in_eval_mode():
    _, split, method = build_run(_cfg(head_dropout=0.3))
    method.train()
    f = extract_features(method, split.val)
    assert method.training and method.model.training               # previous mode restored
    method.eval()
    with torch.no_grad():
        expected = method.model.encode(split.val.inputs)
    for m in ("a", "b"):
        torch.testing.assert_close(f.feats[m], expected[m])
        assert f.feats[m].dtype == torch.float32 and not f.feats[m].requires_grad
    assert torch.equal(f.label, split.val.label) and torch.equal(f.domain, split.val.domain)
    g = extract_features(method.model, make_loader(split.val, 7))  # a loader works too
    torch.testing.assert_close(g.feats["a"], f.feats["a"])
    with pytest.raises(ValueError, match="device='cuda'.*parameters are on 'cpu'"):
        extract_features(method, split.val, device="cuda")
    with pytest.raises(TypeError, match="MultimodalModel or a Method"):
        extract_features(object(), split.val)


# ---------------------------------------------------------------- unimodal probing

def _separable_vs_noise(n, k=4, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    a = torch.randn(n, d, generator=g) * 0.5
    a[torch.arange(n), y] += 3.0                                     # class k lights up dimension k
    b = torch.randn(n, d, generator=g)                               # pure noise
    return Features({"a": a, "b": b}, y, torch.zeros(n, dtype=torch.long))


def test_probe_separable_modality_vs_noise_modality():
    train, target = _separable_vs_noise(400, seed=1), _separable_vs_noise(2000, seed=2)
    res = probe_modalities(train, {"target": target})
    assert res["a"]["train"] == 100.0 and res["a"]["target"] > 99.0
    assert abs(res["b"]["target"] - 25.0) < 5.0                      # chance for 4 classes
    assert res["concat"]["target"] > 98.0
    assert probe_modalities(train, {"target": target}) == res        # deterministic


def test_probe_reaches_the_regularised_optimum():
    f = _separable_vs_noise(200, seed=3)
    x, y, wd = f.feats["b"], f.label, 1e-2
    probe = fit_linear_probe(x, y, 4, weight_decay=wd)
    w, b = probe.weight.clone().requires_grad_(), probe.bias.clone().requires_grad_()
    xs = (x.double() - x.double().mean(0)) / x.double().std(0, correction=0)
    loss = F.cross_entropy(xs @ w.T + b, y) + 0.5 * wd * (w * w).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    assert gw.abs().max() < 1e-6 and gb.abs().max() < 1e-6           # stationary point of a convex loss
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        fit_linear_probe(x, y, 3)


# ---------------------------------------------------------------- entropy and effective rank

def test_effective_rank_of_a_known_spectrum():
    s = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.0])
    z = torch.from_numpy(with_spectrum(40, s))
    assert effective_rank(z).item() == pytest.approx(np_erank(s), rel=1e-9)
    assert effective_rank(z, spectrum="eigen").item() == pytest.approx(np_erank(s ** 2), rel=1e-9)
    raw = torch.from_numpy(with_spectrum(40, s, seed=1, center=False) + 0.0)
    assert effective_rank(raw, center=False).item() == pytest.approx(np_erank(s), rel=1e-9)
    assert effective_rank(torch.from_numpy(with_spectrum(40, np.ones(7)))).item() == pytest.approx(7.0)
    assert effective_rank(torch.full((5, 3), 2.0)).item() == 0.0


def test_gaussian_entropy_of_a_known_covariance():
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    w = with_spectrum(500, np.full(3, math.sqrt(499)), seed=2)       # unbiased covariance exactly I
    z = w @ np.linalg.cholesky(cov).T + 4.0
    expected = 0.5 * np.linalg.slogdet(cov + 1e-4 * np.eye(3))[1] + 1.5 * math.log(2 * math.pi * math.e)
    assert gaussian_entropy(torch.from_numpy(z)).item() == pytest.approx(expected, rel=1e-10)
    stats = feature_stats({"m": torch.from_numpy(z)})["m"]
    assert stats["entropy"] == pytest.approx(expected) and stats["dim"] == 3 and stats["n"] == 500
    assert stats["effective_rank_eig"] == pytest.approx(np_erank(np.linalg.eigvalsh(cov)), rel=1e-9)


def test_tracker_records_every_epoch_without_changing_the_run():
    cfg = _cfg(head_hidden=16, head_dropout=0.3)                     # dropout draws from the global RNG
    _, split, _ = build_run(cfg)
    tracker = FeatureTracker({"train": split.train, "target": split.test})

    def hook(epoch, method, row):
        torch.rand(100)                                              # a hook that consumes RNG
        tracker(epoch, method, row)

    plain = train(cfg, progress=False)
    hooked = train(cfg, progress=False, on_epoch_end=hook)
    assert [r["val"] for r in hooked["epochs"]] == [r["val"] for r in plain["epochs"]]
    assert hooked["final"] == plain["final"]
    assert [h["epoch"] for h in tracker.history] == [0, 1]
    row = hooked["epochs"][1]["features"]
    assert set(row) == {"train", "target"} and "a/b" in row["target"]["cross"]
    assert 1.0 <= row["train"]["stats"]["a"]["effective_rank"] <= 16
    json.dumps(hooked["epochs"])                                     # the record stays serialisable


# ---------------------------------------------------------------- co-occurrence reliance

def test_group_derangement_moves_every_sample_within_its_group():
    groups = torch.tensor([[0, 0], [0, 0], [1, 0], [0, 1], [1, 0], [0, 0], [2, 2]])
    perm = group_derangement(groups, torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(7))
    assert torch.equal(groups[perm], groups)
    assert perm[6] == 6 and perm[3] == 3                             # singletons stay
    assert all(perm[i] != i for i in (0, 1, 2, 4, 5))


def test_shuffle_reliance_re_pairs_within_class_and_domain_only():
    n = 60
    label, dom = torch.arange(n) % 3, (torch.arange(n) // 3) % 2
    own = torch.stack([label, dom, torch.arange(n)], 1).double()     # each sample's (class, domain, id)
    seen = []

    def check(feats):
        seen.append(feats)
        return torch.zeros(len(feats["a"]), 3)
    res = shuffle_reliance(check, Features({"a": own, "b": own.clone()}, label, dom), repeats=2)
    for feats in seen[1:]:                                           # seen[0] is the intact pass
        assert torch.equal(feats["a"][:, :2], feats["b"][:, :2])     # same class and domain
        assert (feats["a"][:, 2] != feats["b"][:, 2]).all()          # but another sample
    assert len(seen) == 5 and res["a"]["repaired"] == 1.0


def _cooccurrence_data(n_per, shared, seed):
    """2 classes x 2 domains. a = u + noise, b = u' + (2y-1)/2 + noise; u' = u if ``shared``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(4 * n_per) % 2
    dom = torch.arange(4 * n_per) // (2 * n_per)
    u = torch.randn(4 * n_per, generator=g)
    u2 = u if shared else torch.randn(4 * n_per, generator=g)
    a = torch.stack([u + 0.05 * torch.randn(4 * n_per, generator=g), torch.randn(4 * n_per, generator=g)], 1)
    b = torch.stack([u2 + (y - 0.5) + 0.05 * torch.randn(4 * n_per, generator=g),
                     torch.randn(4 * n_per, generator=g)], 1)
    return Features({"a": a, "b": b}, y, dom)


def _agreement(feats):      # predicts from b - a only: needs the instance-level pairing
    d = feats["b"][:, 0] - feats["a"][:, 0]
    return torch.stack([-d, d], 1)


def test_shuffle_reliance_separates_agreement_from_unimodal_models():
    source, target = _cooccurrence_data(250, True, 0), _cooccurrence_data(250, False, 1)
    src = shuffle_reliance(_agreement, source, repeats=3)
    assert src["a"]["acc"] > 99.0 and src["a"]["repaired"] == 1.0
    # re-paired: b_j - a_i = u_j - u_i +- 1/2, so accuracy ~ Phi(0.5 / sqrt 2) ~ 64 %
    assert src["a"]["drop"] > 25.0 and src["b"]["drop"] > 25.0
    assert 55.0 < src["b"]["acc_shuffled"] < 72.0
    tgt = shuffle_reliance(_agreement, target, repeats=3)            # no shared nuisance on the target
    assert abs(tgt["a"]["drop"]) < 5.0

    def only_b(feats):          # uses one modality: re-pairing within class cannot change its accuracy
        return torch.stack([-feats["b"][:, 0], feats["b"][:, 0]], 1)
    res = shuffle_reliance(only_b, source, repeats=2)
    assert res["a"]["drop"] == 0.0 and res["b"]["drop"] == 0.0

    # cross-modal dependence: high on the source (shared u), near zero on the target
    s, t = cross_modal_similarity(source)["a/b"], cross_modal_similarity(target)["a/b"]
    assert s["cca_top"] > 0.85 and t["cca_top"] < 0.15
    assert s["cka"] > 0.3 and t["cka"] < 0.05


def test_shuffle_reliance_through_a_model_that_ignores_one_modality():
    _, split, method = build_run(_cfg())
    model = method.model
    with torch.no_grad():                                           # the linear head reads only modality a
        model.classifier.net.weight[:, 16:] = 0.0
    f = extract_features(model, split.val)
    res = shuffle_reliance(method, f, repeats=2)
    assert res["a"]["drop"] == 0.0 and res["b"]["drop"] == 0.0     # within-class re-pairing
    assert res["a"]["acc"] == pytest.approx(100.0 * (model.classify(
        {m: f.feats[m] for m in ("a", "b")}, shares=False)[0].argmax(1) == f.label).float().mean().item())


# ---------------------------------------------------------------- CKA and CCA

def test_linear_cka_against_the_hsic_formula():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 5))
    y = x[:, :3] @ rng.standard_normal((3, 4)) + 0.5 * rng.standard_normal((60, 4))
    h = np.eye(60) - 1.0 / 60
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = np.trace(k @ l_) / math.sqrt(np.trace(k @ k) * np.trace(l_ @ l_))
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, rel=1e-10)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(3 * x @ q + 1)) == pytest.approx(1.0)


def test_canonical_correlations_against_qr_angles():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((80, 3))
    y = np.c_[x[:, 0] + 0.3 * rng.standard_normal(80), rng.standard_normal((80, 3))]
    qx, _ = np.linalg.qr(x - x.mean(0))
    qy, _ = np.linalg.qr(y - y.mean(0))
    expected = np.linalg.svd(qx.T @ qy, compute_uv=False)            # cosines of principal angles
    got = canonical_correlations(torch.from_numpy(x), torch.from_numpy(y), reg=0.0)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-8)
    r = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert canonical_correlations(torch.from_numpy(x[:, :1]), torch.from_numpy(-y[:, :1]),
                                  reg=0.0).item() == pytest.approx(abs(r))
    # wide features: plain CCA of independent sets is spuriously high; a few PCs are not
    xw, yw = torch.randn(40, 30, dtype=torch.float64), torch.randn(40, 30, dtype=torch.float64)
    assert canonical_correlations(xw, yw)[0] > 0.9
    assert canonical_correlations(xw, yw, n_components=3).mean() < 0.5


def test_fusion_overfitting_report_on_a_trained_model():
    cfg = _cfg(method="mer", hparams={"mer_hidden": 32, "mer_dim": 16})
    rec = train(cfg, progress=False, keep_model=True)
    _, split, _ = build_run(cfg)
    rep = fusion_overfitting_report(rec["_method"], split, repeats=2)
    assert set(rep) == {"probe", "stats", "cross", "reliance"}
    assert set(rep["probe"]) == {"a", "b", "concat"} and set(rep["probe"]["a"]) == {"train", "val", "target"}
    assert rep["probe"]["a"]["train"] > 60.0                         # 3 classes; a carries the class strongly
    assert set(rep["reliance"]) == {"train", "val", "target"}
    assert all(math.isfinite(v) for s in rep["stats"].values() for m in s.values() for v in m.values())
    json.dumps(rep)
