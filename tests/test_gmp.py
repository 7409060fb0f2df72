"""GMP (Li et al., AAAI 2026): hand-computed branches, Table 4 options, a float64 reference,
fast == naive engine on real models, heads and discriminator, diagnostics, training.

Hand cases use two modalities ``v`` and ``a`` and 2-D gradients.  Throughout,
T = tanh(1) = 0.7615941559557649 and K = 1 - T = 0.2384058440442351, because every
coefficient below is 1 - tanh(alpha * ratio) with alpha * ratio = 1.
"""
import argparse
import itertools
import math

import pytest
import torch

from mmdg.data.base import Batch, Benchmark, TensorDataset
from mmdg.methods import build_method, resolve
from mmdg.models.model import build_model
from mmdg.strategies import ABLATIONS, GMP, build_strategy, gmp_combine
from mmdg.strategies.gmp import BRANCHES, MODULATE, PROJECT, plan
from mmdg.train import RunConfig, train

from conftest import MLP_ENCODERS, Toy, load_script

T = math.tanh(1.0)
K = 1.0 - T
D = torch.float64


def vec(*x):
    return torch.tensor(x, dtype=D)


def conf(total, n=2):
    """n per-sample confidences summing to ``total``."""
    return torch.full((n,), total / n, dtype=D)


# Confidences of case "A":
#   q sums: v 1.2, a 0.6  -> rho_v = 1.2/0.6 = 2,   rho_a = 0.5
#   c sums: v 0.8, a 0.4  -> sigma_v = c_a/c_v = 0.5, sigma_a = 2
#   alpha_k = alpha_p = 0.5:
#   k_v = 1 - tanh(0.5*2) = K, k_a = 1 (rho_a <= 1); p_v = 1 (sigma_v <= 1), p_a = 1 - tanh(0.5*2) = K
#   Gamma_v = 2/0.5 = 4 > 1 (classification stronger), Gamma_a = 0.5/2 = 0.25 < 1 (domain stronger)
Q_A = {"v": conf(1.2), "a": conf(0.6)}
C_A = {"v": conf(0.8), "a": conf(0.4)}
# Conflicting gradients of case A (raw): v: g_c = [2, 0], g_d = [-1, 1];  a: g_c = [0, 3], g_d = [1, -1]
GC_A = {"v": vec(2, 0), "a": vec(0, 3)}
GD_A = {"v": vec(-1, 1), "a": vec(1, -1)}


def close(x, y, tol=1e-12):
    torch.testing.assert_close(x, torch.as_tensor(y, dtype=x.dtype), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- hand-computed branches
def test_case_a_conflict_projects_stronger_task_per_modality():
    G, info = gmp_combine(GC_A, GD_A, Q_A, C_A, 0.5, 0.5)
    for key, want in (("rho", (2.0, 0.5)), ("sigma", (0.5, 2.0)), ("k", (K, 1.0)), ("p", (1.0, K)),
                      ("Gamma", (4.0, 0.25))):
        close(info["v"][key].double(), want[0], 1e-6)
        close(info["a"][key].double(), want[1], 1e-6)
    # v: gh_c = K*[2,0] = [2K, 0], gh_d = [-1, 1]; dot = -2K < 0 -> conflict; Gamma_v > 1 -> project g_c:
    #    g~_c = [2K, 0] - (-2K / 2) [-1, 1] = [2K - K, K] = [K, K];  G_v = [K - 1, K + 1] = [-T, 2 - T]
    assert info["v"]["branch"] == "project_cls"
    close(info["v"]["dot"], -2 * K)
    close(G["v"], [-T, 2 - T])
    # a: gh_c = [0, 3], gh_d = K*[1, -1]; dot = -3K < 0; Gamma_a < 1 -> project g_d:
    #    g~_d = [K, -K] - (-3K / 9) [0, 3] = [K, -K + K] = [K, 0];  G_a = [K, 3]
    assert info["a"]["branch"] == "project_dom"
    close(G["a"], [K, 3.0])


def test_projected_gradient_is_orthogonal_to_the_protected_one():
    G, _ = gmp_combine(GC_A, GD_A, Q_A, C_A, 0.5, 0.5)
    # v protected its (modulated) domain gradient gh_d = [-1, 1]: g~_c = G_v - gh_d is orthogonal to it
    assert abs(torch.dot(G["v"] - vec(-1, 1), vec(-1, 1))) < 1e-12
    # a protected its classification gradient gh_c = [0, 3]: g~_d = G_a - gh_c is orthogonal to it
    assert abs(torch.dot(G["a"] - vec(0, 3), vec(0, 3))) < 1e-12
    # and on random vectors, for both branches and PCGrad
    g = torch.Generator().manual_seed(0)
    for project in ("cls", "dom", "pcgrad"):
        gc, gd = torch.randn(50, generator=g, dtype=D), torch.randn(50, generator=g, dtype=D)
        gd = gd - 2 * (gc @ gd).abs() / (gc @ gc) * gc            # make gc . gd < 0
        Gp, info = gmp_combine({"v": gc}, {"v": gd}, {"v": conf(1.0)}, {"v": conf(1.0)}, 0.0, 0.0,
                               project=project)
        if project == "cls":
            assert abs((Gp["v"] - gd) @ gd) < 1e-10
        elif project == "dom":
            assert abs((Gp["v"] - gc) @ gc) < 1e-10
        else:  # PCGrad: both projected against the other original; G - (g~_c) = g~_d etc.
            gct = gc - (gc @ gd) / (gd @ gd) * gd
            assert abs(gct @ gd) < 1e-10 and abs((Gp["v"] - gct) @ gc) < 1e-10


def test_case_b_no_conflict_only_scales():
    # same confidences as case A; v: g_c = [1, 0], g_d = [1, 1]: gh_c = [K, 0], dot = K > 0 -> no projection,
    #   G_v = [K + 1, 1];   a: g_c = [0, 1], g_d = [0, 2]: gh_d = [0, 2K], dot = 2K > 0, G_a = [0, 1 + 2K]
    G, info = gmp_combine({"v": vec(1, 0), "a": vec(0, 1)}, {"v": vec(1, 1), "a": vec(0, 2)}, Q_A, C_A, 0.5, 0.5)
    assert info["v"]["branch"] == info["a"]["branch"] == "none"
    close(G["v"], [K + 1, 1.0])
    close(G["a"], [0.0, 1 + 2 * K])


def test_case_c_same_modality_stronger_on_both_tasks():
    # q sums v 1.2, a 0.6 -> rho_v = 2, rho_a = 0.5;  c sums v 0.25, a 1.0 -> sigma_v = 1/0.25 = 4, sigma_a = 0.25
    # alpha_k = 0.5, alpha_p = 0.25: k_v = 1 - tanh(0.5*2) = K, p_v = 1 - tanh(0.25*4) = K, k_a = p_a = 1
    # Gamma_v = 2/4 = 0.5 < 1 -> project g_d;  Gamma_a = 0.5/0.25 = 2 > 1 -> project g_c
    q, c = {"v": conf(1.2), "a": conf(0.6)}, {"v": conf(0.25), "a": conf(1.0)}
    G, info = gmp_combine({"v": vec(3, 0), "a": vec(1, 1)}, {"v": vec(-1, 2), "a": vec(-2, 0)}, q, c, 0.5, 0.25)
    close(info["v"]["k"].double(), K, 1e-6)
    close(info["v"]["p"].double(), K, 1e-6)
    close(info["v"]["Gamma"].double(), 0.5, 1e-6)
    close(info["a"]["Gamma"].double(), 2.0, 1e-6)
    # v: gh_c = [3K, 0], gh_d = [-K, 2K], dot = -3K^2 < 0; g~_d = [-K, 2K] - (-3K^2 / 9K^2) [3K, 0] = [0, 2K]
    #    G_v = [3K, 2K]
    assert info["v"]["branch"] == "project_dom"
    close(G["v"], [3 * K, 2 * K])
    # a: gh_c = [1, 1], gh_d = [-2, 0], dot = -2 < 0; g~_c = [1, 1] - (-2/4) [-2, 0] = [0, 1];  G_a = [-2, 1]
    assert info["a"]["branch"] == "project_cls"
    close(G["a"], [-2.0, 1.0])


def test_tie_gamma_one_projects_classification_as_authors_code():
    # equal confidences -> rho = sigma = 1 -> k = p = 1, Gamma = 1 (tie: authors' rho >= sigma)
    # g_c = [1, 0], g_d = [-1, 1], dot = -1; g~_c = [1, 0] - (-1/2) [-1, 1] = [0.5, 0.5]; G = [-0.5, 1.5]
    q = {"v": conf(1.0), "a": conf(1.0)}
    G, info = gmp_combine({"v": vec(1, 0), "a": vec(0, 0)}, {"v": vec(-1, 1), "a": vec(0, 0)}, q, q, 0.5, 0.5)
    assert info["v"]["branch"] == "project_cls"
    close(G["v"], [-0.5, 1.5])


def test_literal_coefficient_jumps_at_one_and_ogm_form_is_continuous():
    # rho_v = 1.0001/1 -> literal k_v = 1 - tanh(0.5 * 1.0001) ~ 1 - tanh(0.5) = 0.5379, OGM-GE form ~ 1
    q = {"v": conf(1.0001), "a": conf(1.0)}
    g = {"v": vec(1, 0), "a": vec(1, 0)}
    _, lit = gmp_combine(g, g, q, q, 0.5, 0.5)
    _, ogm = gmp_combine(g, g, q, q, 0.5, 0.5, ogm_form=True)
    assert lit["v"]["k"] == pytest.approx(1 - math.tanh(0.5 * 1.0001), abs=1e-6)
    assert ogm["v"]["k"] == pytest.approx(1 - math.tanh(0.5 * 0.0001), abs=1e-6)
    assert lit["a"]["k"] == ogm["a"]["k"] == 1.0          # rho_a < 1: never suppressed
    # case A with the OGM-GE form: k_v = 1 - tanh(0.5 * (2 - 1)) = 1 - tanh(0.5)
    _, info = gmp_combine(GC_A, GD_A, Q_A, C_A, 0.5, 0.5, ogm_form=True)
    assert info["v"]["k"] == pytest.approx(1 - math.tanh(0.5), abs=1e-6)


def test_three_modalities_compare_with_mean_of_others():
    # (binary-exact sums, so that the ratios equal to 1 are exactly 1)
    # q sums v 0.75, a 0.25, f 0.5: rho_v = 0.75/mean(0.25, 0.5) = 2, rho_a = 0.25/0.625 = 0.4, rho_f = 0.5/0.5 = 1
    # c sums v 0.25, a 0.5, f 0.75: sigma_v = mean(0.5, 0.75)/0.25 = 2.5, sigma_a = 0.5/0.5 = 1,
    #                                sigma_f = 0.375/0.75 = 0.5
    q = {"v": conf(0.75), "a": conf(0.25), "f": conf(0.5)}
    c = {"v": conf(0.25), "a": conf(0.5), "f": conf(0.75)}
    z = {m: vec(1, 0) for m in q}
    _, info = gmp_combine(z, z, q, c, 0.5, 0.4)
    for m, rho, sigma in (("v", 2.0, 2.5), ("a", 0.4, 1.0), ("f", 1.0, 0.5)):
        assert info[m]["rho"] == pytest.approx(rho, rel=1e-6) and info[m]["sigma"] == pytest.approx(sigma, rel=1e-6)
    # k_v = 1 - tanh(0.5*2) = K, p_v = 1 - tanh(0.4*2.5) = K; ratios equal to 1 are not suppressed
    assert info["v"]["k"] == pytest.approx(K, rel=1e-6) and info["v"]["p"] == pytest.approx(K, rel=1e-6)
    assert info["f"]["k"] == 1.0 and info["a"]["p"] == 1.0


def test_alpha_zero_without_conflict_equals_sum():
    g = torch.Generator().manual_seed(1)
    gc = {m: torch.rand(20, generator=g, dtype=D) for m in ("v", "a")}   # positive -> no conflict
    gd = {m: torch.rand(20, generator=g, dtype=D) for m in ("v", "a")}
    G, info = gmp_combine(gc, gd, Q_A, C_A, 0.0, 0.0)
    for m in gc:
        assert info[m]["branch"] == "none" and info[m]["k"] == 1.0 and info[m]["p"] == 1.0
        torch.testing.assert_close(G[m], gc[m] + gd[m], rtol=0, atol=0)


# --------------------------------------------------------------------------- Table 4 options
# Case A's conflicting gradients with each option (values derived from the case A comments):
#   unmodulated: v gh_c = [2,0], gh_d = [-1,1] (dot -2);  a gh_c = [0,3], gh_d = [1,-1] (dot -3)
#   project g_c of v: [2,0] - (-2/2)[-1,1] = [1,1];     project g_d of v: [-1,1] - (-2/4)[2,0] = [0,1]
#   project g_c of a: [0,3] - (-3/2)[1,-1] = [1.5,1.5]; project g_d of a: [1,-1] - (-3/9)[0,3] = [1,0]
TABLE4 = {
    # name: (v branch, G_v, a branch, G_a)
    "igdm_only": ("none", [2 * K - 1, 1], "none", [K, 3 - K]),          # scaling only, no projection
    "cagp_only": ("project_cls", [0, 2], "project_dom", [1, 3]),        # k = p = 1, adaptive projection
    "unified": ("none", [K, K], "none", [1, 2]),                        # k_v scales both; p ignored
    "no_k": ("none", [1, 1], "none", [K, 3 - K]),                       # only p (a's domain gradient)
    "no_p": ("none", [2 * K - 1, 1], "none", [1, 2]),                   # only k (v's class gradient)
    "proj_cls": ("project_cls", [0, 2], "project_cls", [2.5, 0.5]),     # always project g_c
    "proj_dom": ("project_dom", [2, 1], "project_dom", [1, 3]),         # always project g_d
    "pcgrad": ("project_both", [1, 2], "project_both", [2.5, 1.5]),     # both projected
    "reverse_cagp": ("project_dom", [2, 1], "project_cls", [2.5, 0.5]),  # protects the stronger task
    "base": ("none", [1, 1], "none", [1, 2]),                           # plain sum
}


@pytest.mark.parametrize("name", sorted(TABLE4))
def test_table4_option_defining_behaviour(name):
    G, info = gmp_combine(GC_A, GD_A, Q_A, C_A, 0.5, 0.5, **_ablation(name))
    bv, gv, ba, ga = TABLE4[name]
    assert (info["v"]["branch"], info["a"]["branch"]) == (bv, ba)
    close(G["v"], gv, 1e-7)
    close(G["a"], ga, 1e-7)


def _ablation(name):
    m, p = ABLATIONS[name]
    return {"modulate": m, "project": p}


def test_ablation_table_is_complete_and_errors_name_the_option():
    assert set(ABLATIONS) == set(TABLE4) | {"full"}
    assert ABLATIONS["full"] == ("decoupled", "adaptive")
    with pytest.raises(ValueError, match="ablation 'nope'"):
        GMP(ablation="nope")
    with pytest.raises(ValueError, match="ablation='pcgrad' sets modulate and project"):
        GMP(ablation="pcgrad", project="cls")
    with pytest.raises(ValueError, match="alpha_k"):
        gmp_combine(GC_A, GD_A, Q_A, C_A, -0.1, 0.5)
    with pytest.raises(ValueError, match="project='x'"):
        gmp_combine(GC_A, GD_A, Q_A, C_A, 0.5, 0.5, project="x")
    with pytest.raises(ValueError, match="engine"):
        GMP(engine="turbo")
    with pytest.raises(ValueError, match="log_every"):
        GMP(log_every=-1)
    with pytest.raises(ValueError, match="g_d has"):
        gmp_combine(GC_A, {"v": vec(0, 0)}, Q_A, C_A, 0.5, 0.5)
    with pytest.raises(TypeError, match="gmp_ablation.*expects str"):
        resolve("gmp", {"gmp_ablation": 3})
    # the plugin exposes every option
    _, (name, kw), hp = resolve("base+gmp", {"gmp_ablation": "no_k", "alpha_p": 0.1, "gmp_ogm_form": True})
    strat = build_strategy(name, **kw)
    assert (strat.modulate, strat.project, strat.alpha_p, strat.ogm_form) == ("p_only", "none", 0.1, True)
    for key in ("alpha_k", "alpha_p", "gmp_modulate", "gmp_project", "gmp_ablation", "gmp_ogm_form",
                "gmp_variant", "unimodal_weight", "gmp_engine", "gmp_log_every", "lambda_d"):
        assert key in hp


# --------------------------------------------------------------------------- float64 reference
def reference(g_c, g_d, q, c, ak, ap, modulate, project, ogm):
    """Straightforward per-modality GMP, written independently of mmdg (python floats for scalars)."""
    mods = list(g_c)
    qs = {m: float(q[m].sum()) for m in mods}
    cs = {m: float(c[m].sum()) for m in mods}
    out = {}
    for m in mods:
        others = [o for o in mods if o != m]
        rho = qs[m] / (sum(qs[o] for o in others) / len(others))
        sigma = (sum(cs[o] for o in others) / len(others)) / cs[m]

        def coef(r, a):
            return 1.0 - math.tanh(a * ((r - 1.0) if ogm else r)) if r > 1.0 else 1.0
        k = coef(rho, ak) if modulate in ("decoupled", "unified", "k_only") else 1.0
        p = {"decoupled": coef(sigma, ap), "p_only": coef(sigma, ap), "unified": k}.get(modulate, 1.0)
        gc, gd = k * g_c[m], p * g_d[m]
        dot = float(gc @ gd)
        new_c, new_d = gc, gd
        if project != "none" and dot < 0:
            cls_stronger = rho / sigma >= 1.0
            proj_c = {"adaptive": cls_stronger, "reverse": not cls_stronger, "cls": True, "dom": False,
                      "pcgrad": True}[project]
            proj_d = {"adaptive": not cls_stronger, "reverse": cls_stronger, "cls": False, "dom": True,
                      "pcgrad": True}[project]
            if proj_c:
                new_c = gc - dot / float(gd @ gd) * gd
            if proj_d:
                new_d = gd - dot / float(gc @ gc) * gc
        out[m] = new_c + new_d
    return out


@pytest.mark.parametrize("n_mod", [2, 3])
def test_matches_float64_reference_on_random_tensors(n_mod):
    g = torch.Generator().manual_seed(n_mod)
    mods = ["v", "a", "f"][:n_mod]
    checked = 0
    for trial, (modulate, project, ogm) in enumerate(itertools.product(MODULATE, PROJECT, (False, True))):
        gc = {m: torch.randn(40, generator=g, dtype=D) for m in mods}
        # a mix of conflicting and aligned pairs
        gd = {m: torch.randn(40, generator=g, dtype=D) + (-0.5 if (trial + i) % 2 else 0.5) * gc[m]
              for i, m in enumerate(mods)}
        q = {m: torch.rand(8, generator=g, dtype=D) for m in mods}
        c = {m: torch.rand(8, generator=g, dtype=D) for m in mods}
        ak, ap = [float(x) for x in torch.rand(2, generator=g, dtype=D)]
        want = reference(gc, gd, q, c, ak, ap, modulate, project, ogm)
        G, info = gmp_combine(gc, gd, q, c, ak, ap, modulate=modulate, project=project, ogm_form=ogm)
        # the vectorised plan (fast engine) gives the same update from Gram scalars
        stack = lambda f: torch.stack([f(m) for m in mods])  # noqa: E731
        pl = plan(stack(lambda m: q[m].sum()), stack(lambda m: c[m].sum()), stack(lambda m: gc[m] @ gd[m]),
                  stack(lambda m: gc[m] @ gc[m]), stack(lambda m: gd[m] @ gd[m]), ak, ap, modulate, project, ogm)
        for i, m in enumerate(mods):
            torch.testing.assert_close(G[m], want[m], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(pl["a"][i] * gc[m] + pl["b"][i] * gd[m], want[m], rtol=1e-10, atol=1e-12)
            assert BRANCHES[int(pl["branch"][i])] == info[m]["branch"]
            checked += info[m]["branch"] != "none"
    assert checked > 10        # projections were exercised


def test_zero_gradients_and_confidences_give_no_nan():
    z = vec(0, 0)
    cases = [({"v": z, "a": z}, {"v": z, "a": z}),                       # everything zero
             ({"v": z, "a": vec(1, 2)}, {"v": vec(-1, 3), "a": z})]      # one of each pair zero
    for project in PROJECT:
        for gc, gd in cases:
            G, info = gmp_combine(gc, gd, Q_A, C_A, 0.5, 0.5, project=project)
            for m in G:
                assert torch.isfinite(G[m]).all() and info[m]["branch"] == "none"
                torch.testing.assert_close(G[m], info[m]["k"].to(D) * gc[m] + info[m]["p"].to(D) * gd[m])
        # zero confidences: ratios stay finite
        zq = {"v": torch.zeros(2, dtype=D), "a": torch.zeros(2, dtype=D)}
        G, info = gmp_combine(GC_A, GD_A, zq, zq, 0.5, 0.5, project=project)
        assert all(torch.isfinite(G[m]).all() and math.isfinite(info[m]["Gamma"]) for m in G)
    zero = torch.zeros(2, dtype=D)
    pl = plan(torch.ones(2, dtype=D), torch.ones(2, dtype=D), zero, zero, zero, 0.5, 0.5, "decoupled", "pcgrad")
    assert all(torch.isfinite(v.double()).all() for v in pl.values())


# --------------------------------------------------------------------------- real models
def _batch(toy_bench, n=24, dtype=torch.float32):
    ds = TensorDataset.concat([toy_bench.dataset("d0", "train").with_domain(0),
                               toy_bench.dataset("d1", "train").with_domain(1)])
    b = ds.batch(torch.arange(0, 96, 96 // n)[:n])
    return Batch({m: x.to(dtype) for m, x in b.inputs.items()}, b.label, b.domain)


def _mlp_method(method="gmp", hp=None, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    model = build_model(Toy().input_shapes(), MLP_ENCODERS, 3)
    return build_method(method, model, 2, hp).to(dtype)


CONV_SHAPES = {"video": (3, 4, 8, 8), "audio": (1, 8, 12)}
CONV_ENCODERS = {"video": {"name": "small3d", "widths": (4, 8), "out_dim": 12},
                 "audio": {"name": "small2d", "widths": (4, 8), "out_dim": 12}}


def _conv_method(hp, seed=0):
    torch.manual_seed(seed)
    model = build_model(CONV_SHAPES, CONV_ENCODERS, 4)
    return build_method("gmp", model, 2, hp)


def _conv_batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch({m: torch.randn(n, *s, generator=g) for m, s in CONV_SHAPES.items()},
                 torch.randint(0, 4, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))


def _step_grads(meth, batch):
    meth.zero_grad(set_to_none=True)
    _, terms = meth.terms(batch)
    logs = meth.backward(terms)
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
             for p in meth.trainable_parameters()]
    return grads, logs, terms


def _assert_rel_close(xs, ys, rel=1e-5):
    for x, y in zip(xs, ys):
        scale = max(float(y.norm()), 1e-30)
        assert float((x - y).norm()) <= rel * scale, (float((x - y).norm()), scale)


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_fast_engine_equals_naive_on_a_real_model(model):
    """Three optimiser steps in lock-step; gradients agree to 1e-5 relative at every step."""
    conflicts = 0
    for ablation in ("full", "pcgrad", "reverse_cagp", "unified"):
        pair, batches = [], []
        for engine in ("fast", "naive"):
            hp = {"gmp_engine": engine, "gmp_log_every": 1, "gmp_ablation": ablation, "lambda_d": 1.0}
            meth = _mlp_method(hp=hp) if model == "mlp" else _conv_method(hp)
            pair.append((meth, torch.optim.Adam(meth.trainable_parameters(), lr=1e-2)))
        for step in range(3):
            batch = _batch(Toy(), 24) if model == "mlp" else _conv_batch(seed=step)
            (gf, lf, _), (gn, ln, _) = (_step_grads(m, batch) for m, _ in pair)
            _assert_rel_close(gf, gn)
            assert lf.keys() == ln.keys() and ("gmp/norm_G_a" in lf or "gmp/norm_G_audio" in lf)
            for k in lf:
                torch.testing.assert_close(lf[k].double(), ln[k].double(), rtol=1e-4, atol=1e-7)
            conflicts += sum(float(v) for k, v in lf.items() if k.startswith("gmp/conflict"))
            for _, opt in pair:
                opt.step()
    assert conflicts > 0        # the projection branches were exercised


def test_fast_equals_naive_with_unmodulated_terms_unimodal_heads_variant():
    batch = _batch(Toy(), 24)
    grads = []
    for engine in ("fast", "naive"):
        meth = _mlp_method(hp={"gmp_engine": engine, "gmp_variant": "unimodal_heads"})
        assert [o.name for o in meth.objectives] == ["ce", "domain_adv", "unimodal_heads"]
        grads.append(_step_grads(meth, batch)[0])
    _assert_rel_close(*grads)


def test_alpha_zero_no_projection_equals_base_exactly_and_heads_are_never_modulated():
    batch = _batch(Toy(), 24, torch.float64)
    base, _, _ = _step_grads(_mlp_method("base", dtype=D), batch)
    off, _, _ = _step_grads(_mlp_method("gmp", {"alpha_k": 0.0, "alpha_p": 0.0, "gmp_project": "none"}, D), batch)
    _assert_rel_close(off, base, 1e-12)
    for engine in ("fast", "naive"):
        meth = _mlp_method("gmp", {"alpha_k": 1.0, "alpha_p": 1.0, "gmp_engine": engine}, D)
        full, _, _ = _step_grads(meth, batch)
        enc_ids = {id(p) for ps in meth.model.encoder_parameters().values() for p in ps}
        heads = [i for i, p in enumerate(meth.trainable_parameters()) if id(p) not in enc_ids]
        assert heads and len(heads) < len(full)
        _assert_rel_close([full[i] for i in heads], [base[i] for i in heads], 1e-12)
        assert any(float((full[i] - base[i]).norm()) > 1e-6 for i in range(len(full)) if i not in heads)


def test_discriminator_minimises_domain_loss_and_encoders_get_the_reversed_gradient():
    batch = _batch(Toy(), 24, torch.float64)
    meth = _mlp_method("gmp", {"alpha_k": 0.0, "alpha_p": 0.0, "gmp_project": "none", "lambda_d": 0.3}, D)
    _, terms, = meth.terms(batch)
    assert all(not t.confidence[m].requires_grad for t in terms if t.confidence for m in t.confidence)
    meth.backward(terms)
    disc = meth.objectives[1]
    out = meth.model(batch.inputs)
    feats = {m: z.detach().requires_grad_() for m, z in out.feats.items()}
    logits, _ = disc.head(disc.fusion(feats))
    loss = 0.3 * torch.nn.functional.cross_entropy(logits, batch.domain)
    want = torch.autograd.grad(loss, list(disc.parameters()) + list(feats.values()))
    for p, g in zip(disc.parameters(), want):
        torch.testing.assert_close(p.grad, g)        # + lambda dL_d: the discriminator descends L_d
    # the encoders' domain gradient is -lambda dL_d/dz pulled back through the encoder
    z = meth.model.encoders["a"](batch.inputs["a"])
    enc = list(meth.model.encoders["a"].parameters())
    g_d = torch.autograd.grad(z, enc, grad_outputs=-want[-2])
    ce = torch.nn.functional.cross_entropy(meth.model(batch.inputs).logits, batch.label)
    g_c = torch.autograd.grad(ce, enc)
    for p, a, b in zip(enc, g_c, g_d):
        torch.testing.assert_close(p.grad, a + b)


# --------------------------------------------------------------------------- training
class Imbalanced(Benchmark):
    """m0 separates the classes strongly and shifts strongly with the domain; m1 is weak and stable."""

    name = "gmp_imbalanced"
    domains = ("d0", "d1", "d2")
    modalities = ("m0", "m1")
    classes = ("c0", "c1", "c2", "c3")
    strength = {"m0": (4.0, 3.0), "m1": (1.0, 0.0)}    # (class separation, domain shift)

    def input_shapes(self):
        return {m: (16,) for m in self.modalities}

    def dataset(self, domain, split):
        d = self.domains.index(self.check_domain(domain))
        g = torch.Generator().manual_seed(100 + 10 * d + (split == "test"))
        n = 200 if split == "train" else 100
        y = torch.randint(0, 4, (n,), generator=g)
        inputs = {}
        for i, m in enumerate(self.modalities):
            dirs = torch.nn.functional.normalize(torch.randn(7, 16, generator=torch.Generator().manual_seed(i)), dim=1)
            sep, shift = self.strength[m]
            inputs[m] = sep * dirs[y] + shift * dirs[4 + d] + torch.randn(n, 16, generator=g)
        return TensorDataset(inputs, y, torch.full((n,), d))


def _log_dev(values):
    return sum(abs(math.log(v)) for v in values) / len(values)


def test_gmp_pulls_rho_and_sigma_towards_one_compared_to_base():
    """Fig. 5's claim on a toy: the strong modality's |log rho| and |log sigma| end lower under GMP.

    "Base" is GMP with alpha = 0 and no projection, which equals the sum strategy exactly (tested
    above) and logs the same diagnostics.  The discriminator is the paper's MLP (hidden 32 here).
    Deviations are averaged over the last epoch's steps and two seeds.
    """
    enc = {m: {"name": "mlp", "hidden": 32, "out_dim": 32} for m in ("m0", "m1")}
    dev = {"base": [0.0, 0.0], "gmp": [0.0, 0.0]}
    for seed in (0, 1):
        for name, hp in (("base", {"alpha_k": 0.0, "alpha_p": 0.0, "gmp_project": "none"}),
                         ("gmp", {"alpha_k": 1.0, "alpha_p": 1.0})):
            cfg = RunConfig(target="d2", benchmark="gmp_imbalanced", method="gmp",
                            hparams={**hp, "lambda_d": 0.3, "disc_hidden": 32, "gmp_log_every": 1},
                            encoders=enc, epochs=5, batch_size=32, lr=3e-3, seed=seed, trace=True)
            last = train(cfg, progress=False, benchmark=Imbalanced())["epochs"][-1]["trace"]
            dev[name][0] += _log_dev(last["gmp/rho_m0"]) / 2
            dev[name][1] += _log_dev(last["gmp/sigma_m0"]) / 2
    assert dev["base"][0] > 0.5, dev           # Base leaves the strong modality clearly ahead
    assert dev["gmp"][0] < 0.85 * dev["base"][0], dev
    assert dev["gmp"][1] < 0.75 * dev["base"][1], dev


@pytest.mark.parametrize("method", ["gmp", "base+gmp"])
def test_training_through_the_trainer_with_diagnostics(method):
    cfg = RunConfig(target="d2", benchmark="toy", method=method, hparams={"gmp_log_every": 2},
                    encoders=MLP_ENCODERS, epochs=2, batch_size=16, seed=0, trace=True)
    rec = train(cfg, progress=False, benchmark=Toy())
    assert rec["complete"] and rec["final"]["test_acc"] >= 0
    row = rec["epochs"][0]                    # 96 source samples / batch 16 = 6 steps, logged at 0, 2, 4
    assert row["trace"]["_step"] == [0, 2, 4] and len(row["trace"]["gmp/rho_a"]) == 3
    for key in ("rho", "sigma", "k", "p", "Gamma", "cos", "norm_c", "norm_d", "norm_G", "conflict", "branch"):
        for m in ("a", "b"):
            vals = row["trace"][f"gmp/{key}_{m}"]
            assert all(math.isfinite(v) for v in vals)
            # epoch means are over the logging steps only
            assert row["train"][f"gmp/{key}_{m}"] == pytest.approx(sum(vals) / len(vals), rel=1e-5, abs=1e-7)
    rho = row["trace"]["gmp/rho_a"]
    assert all(r * s == pytest.approx(1.0, rel=1e-4) for r, s in zip(rho, row["trace"]["gmp/rho_b"]))
    assert "loss_domain_adv" in row["train"] and "domain_acc" in row["train"]
    # logging off: no gmp keys and no trace entries
    quiet = train(RunConfig(target="d2", benchmark="toy", method=method, encoders=MLP_ENCODERS, epochs=1,
                            batch_size=16, seed=0, trace=True), progress=False, benchmark=Toy())
    assert not any(k.startswith("gmp/") for k in quiet["epochs"][0]["train"]) and quiet["epochs"][0]["trace"] == {}


def test_gmp_needs_a_domain_term_and_the_plugin_adds_one():
    objs, (strat, _), _ = resolve("erm+gmp")
    assert [o for o, _ in objs] == ["ce", "domain_adv"] and strat == "gmp"
    meth = _mlp_method("erm")
    meth.strategy = GMP()
    _, terms = meth.terms(_batch(Toy(), 8))
    with pytest.raises(ValueError, match="needs a domain term"):
        meth.backward(terms)


# --------------------------------------------------------------------------- benchmark script
def test_overhead_benchmark_runs_on_cpu_and_gpu_config_constructs():
    bench = load_script("benchmarks/gmp_overhead.py")
    res = bench.main(["--config", "cpu", "--steps", "1", "--warmup", "0", "--batch", "4"])
    assert set(res["cpu"]) == {"fast", "naive"}
    args = argparse.Namespace(device="cpu", tiny=True, channels_last=False, compile=False)
    cfg = bench.config("gpu", args)
    assert cfg["shapes"] == bench.TINY_SHAPES and not cfg["amp"]
    meth, _ = bench.make(cfg, "gmp", {}, args)
    trainable = {n.split(".")[2] for n, p in meth.model.encoders.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}      # trunk frozen up to layer3
