"""t-SNE: perplexity calibration, the KL gradient against autograd, and that clusters stay apart."""
import math

import numpy as np
import pytest
import torch

from mmdg.diagnostics.embedding import conditional_affinities, joint_affinities, kl_divergence, kl_gradient, tsne


def clusters(n_per=30, dim=10, sep=8.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, dim, generator=g) * sep
    x = torch.cat([c + torch.randn(n_per, dim, generator=g) for c in centres])
    return x, torch.arange(3).repeat_interleave(n_per)


@pytest.mark.parametrize("perplexity", [5.0, 20.0])
def test_rows_have_the_requested_perplexity(perplexity):
    x, _ = clusters()
    p = conditional_affinities(x, perplexity).numpy()
    assert np.allclose(p.sum(1), 1.0) and np.allclose(np.diag(p), 0.0)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)      # nats, independently in numpy
    assert np.allclose(np.exp(entropy), perplexity, rtol=1e-3)
    # each row is a Gaussian kernel of the squared distances: log-ratios are linear in d^2
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1).double().numpy()
    i, j, k = 0, 5, 40
    beta = -(np.log(p[i, j]) - np.log(p[i, k])) / (d2[i, j] - d2[i, k])
    assert beta > 0
    assert np.log(p[i, 7] / p[i, j]) == pytest.approx(-beta * (d2[i, 7] - d2[i, j]), rel=1e-6, abs=1e-9)


def test_kl_gradient_matches_autograd():
    x, _ = clusters(n_per=6, dim=4)
    p = joint_affinities(x, 5.0)
    y = torch.randn(x.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    num = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
    off = ~torch.eye(len(y), dtype=torch.bool)
    q = num[off] / num[off].sum()
    kl = (p[off] * torch.log(p[off] / q)).sum()
    (auto,) = torch.autograd.grad(kl, y)
    assert torch.allclose(kl_gradient(p, y.detach()), auto, rtol=1e-6, atol=1e-10)


def test_tsne_keeps_clusters_apart_and_lowers_kl():
    x, y = clusters()
    emb = tsne(x, perplexity=10.0, iterations=400, seed=0)
    assert emb.shape == (90, 2) and torch.isfinite(emb).all()
    d = torch.cdist(emb, emb)
    d.fill_diagonal_(float("inf"))
    assert (y[d.argmin(1)] == y).all()                              # 1-NN in the map recovers the clusters
    start = torch.randn(90, 2, generator=torch.Generator().manual_seed(1))
    assert kl_divergence(x, emb, 10.0) < 0.5 * kl_divergence(x, start, 10.0)
    assert torch.equal(emb, tsne(x, perplexity=10.0, iterations=400, seed=0))   # deterministic


@pytest.mark.parametrize("bad, match", [(torch.zeros(3, 2), "at least 4"), (torch.zeros(10), r"\(N, D\)"),
                                        (torch.full((10, 2), math.nan), "non-finite")])
def test_bad_input_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        tsne(bad, perplexity=2.0)


def test_perplexity_range_is_checked():
    with pytest.raises(ValueError, match="perplexity"):
        tsne(torch.randn(10, 3), perplexity=30.0)
