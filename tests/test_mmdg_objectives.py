"""SimMMDG's objectives (SupCon on shared halves, shared/specific distance, translation) and RNA-Net."""
import math

import numpy as np
import pytest
import torch

from mmdg.methods import resolve
from mmdg.models.model import ModelOutput
from mmdg.objectives import Context, build_objective
from mmdg.objectives.rna import rna_loss
from mmdg.objectives.simmmdg import shared_specific_distance, split_halves, supcon_loss, translation_loss
from mmdg.train import RunConfig, build_run, train

from conftest import MLP_ENCODERS


# ---------------------------------------------------------------- independent reference (numpy, float64)

def ref_supcon(z, labels, temperature, base_temperature=None):
    """Khosla et al. L^sup_out with loops: anchors = all views, positives = same label, not itself."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 2:
        z = z[:, None]
    n, v, _ = z.shape
    items = [(z[i, k] / np.linalg.norm(z[i, k]), labels[i]) for k in range(v) for i in range(n)]
    tb = temperature if base_temperature is None else base_temperature
    per_anchor = []
    for a, (za, ya) in enumerate(items):
        others = [b for b in range(len(items)) if b != a]
        denom = sum(math.exp(za @ items[b][0] / temperature) for b in others)
        pos = [b for b in others if items[b][1] == ya]
        if not pos:
            continue
        per_anchor.append(-np.mean([za @ items[p][0] / temperature - math.log(denom) for p in pos]))
    return (temperature / tb) * float(np.mean(per_anchor))


@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_matches_float64_reference(views, temperature):
    g = torch.Generator().manual_seed(views)
    z = torch.randn(6, views, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 2, 1, 0])
    z_in = z if views > 1 else z[:, 0]
    got = supcon_loss(z_in, y, temperature)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_supcon(z.numpy(), y.tolist(), temperature), rel=1e-10)
    # float32 input: computed in float32, same value to float32 precision
    assert supcon_loss(z_in.float(), y, temperature).item() == pytest.approx(got.item(), rel=1e-4)


def test_supcon_reference_temperature_quirk_is_an_explicit_scale():
    z = torch.randn(8, 2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    plain = supcon_loss(z, y, 0.1)
    quirk = supcon_loss(z, y, 0.1, base_temperature=0.07)
    assert quirk.item() == pytest.approx(plain.item() * 0.1 / 0.07, rel=1e-12)
    assert quirk.item() == pytest.approx(ref_supcon(z.numpy(), y.tolist(), 0.1, 0.07), rel=1e-10)
    assert supcon_loss(z, y, 0.1, base_temperature=0.1).item() == pytest.approx(plain.item(), rel=1e-12)


def test_supcon_is_scale_invariant_and_lower_for_clustered_classes():
    y = torch.tensor([0, 0, 1, 1])
    z = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(2))
    assert supcon_loss(3.0 * z, y, 0.1).item() == pytest.approx(supcon_loss(z, y, 0.1).item(), rel=1e-5)
    clustered = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]])[:, None].repeat(1, 2, 1)
    assert supcon_loss(clustered, y, 0.1) < supcon_loss(z, y, 0.1)


def test_supcon_without_positives_is_an_attached_zero_and_errors():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]), 0.1)       # one view, all labels distinct
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(z, torch.tensor([0, 1, 2]), 0.0)
    with pytest.raises(ValueError, match="base_temperature"):
        supcon_loss(z, torch.tensor([0, 1, 2]), 0.1, base_temperature=-1.0)
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(z, torch.tensor([0, 1]), 0.1)


# ---------------------------------------------------------------- hand-made values

def test_split_and_distance_on_hand_made_tensors():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])        # shared (1, 2), specific (3, 4): MSE 4
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0]])        # MSE 1
    assert torch.equal(split_halves(a)[0], a[:, :2]) and torch.equal(split_halves(a)[1], a[:, 2:])
    assert shared_specific_distance(a).item() == pytest.approx(-4.0)
    assert shared_specific_distance({"a": a, "b": b}).item() == pytest.approx(-2.5)
    with pytest.raises(ValueError, match="even"):
        split_halves(torch.zeros(2, 3))


def test_rna_on_hand_made_tensors():
    a = torch.tensor([[3.0, 4.0], [0.0, 1.0]])      # norms 5, 1: mean 3
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])      # mean 1
    assert rna_loss({"a": a, "b": b}).item() == pytest.approx(4.0)          # (3/1 - 1)^2
    assert rna_loss({"a": a, "b": b}, ["b", "a"]).item() == pytest.approx((1 / 3 - 1) ** 2)
    assert rna_loss({"a": b, "b": 2 * b}).item() == pytest.approx(0.25)
    c = 3 * b                                       # pairs (a,b), (a,c), (b,c)
    assert rna_loss({"a": a, "b": b, "c": c}).item() == pytest.approx((4.0 + 0.0 + (1 / 3 - 1) ** 2) / 3)
    with pytest.raises(ValueError, match="2 modalities"):
        rna_loss({"a": a})


def test_translation_loss_values_shape_and_gradients():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert translation_loss(x, 5 * x).item() == pytest.approx(0.0, abs=1e-5)
    assert translation_loss(x, x.flip(1)).item() == pytest.approx(math.sqrt(2.0))
    ctx = Context(["a", "b", "c"], {"a": 4, "b": 6, "c": 2}, 3, 2)
    obj = build_objective("translation", ctx, weight=0.1, hidden=8)
    assert sorted(obj.translators) == ["a->b", "a->c", "b->a", "b->c", "c->a", "c->b"]
    feats = {m: torch.randn(5, d, requires_grad=True) for m, d in ctx.feat_dims.items()}
    term = obj(ModelOutput(feats, torch.zeros(5, 3), {}), None)
    assert term.loss.shape == () and term.kind == "other"
    assert term.loss.item() == pytest.approx(0.1 * term.logs["translation"].item())
    assert term.logs["translation"].item() == pytest.approx(
        np.mean([term.logs[f"trans_{k}"].item() for k in obj.translators]))
    term.loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())   # target not detached
    assert all(p.grad is not None for p in obj.parameters())


def test_supcon_objective_uses_projected_shared_halves_only():
    torch.manual_seed(0)
    ctx = Context(["a", "b"], {"a": 6, "b": 4}, 3, 2)
    obj = build_objective("supcon_shared", ctx, weight=3.0, temperature=0.1, base_temperature=0.07,
                          dim=5, hidden=8).eval()
    feats = {"a": torch.randn(8, 6, requires_grad=True), "b": torch.randn(8, 4, requires_grad=True)}
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    batch = type("B", (), {"label": y})()
    term = obj(ModelOutput(feats, torch.zeros(8, 3), {}), batch)
    z = torch.stack([obj.projectors["a"](feats["a"][:, :3]), obj.projectors["b"](feats["b"][:, :2])], 1)
    expect = 3.0 * ref_supcon(z.detach().numpy(), y.tolist(), 0.1, 0.07)
    assert term.loss.item() == pytest.approx(expect, rel=1e-4)
    term.loss.backward()
    assert feats["a"].grad[:, 3:].abs().sum() == 0 and feats["a"].grad[:, :3].abs().sum() > 0


# ---------------------------------------------------------------- methods

SMALL = {"con_hidden": 32, "con_dim": 16, "trans_hidden": 32}


def _cfg(method, **hp):
    return RunConfig(target="d0", benchmark="toy", method=method, epochs=2, batch_size=16,
                     encoders=MLP_ENCODERS, hparams=hp)


@pytest.mark.parametrize("name,hp", [
    ("simmmdg", SMALL),
    ("simmmdg+gmp", SMALL),
    ("simmmdg+mer", {**SMALL, "mer_hidden": 32, "mer_dim": 16}),
    ("rna", {}),
])
def test_methods_train_and_lower_their_loss(name, hp):
    torch.set_num_threads(1)
    rec = train(_cfg(name, **hp), progress=False, keep_model=True)
    rows = [e["train"] for e in rec["epochs"]]
    # the summed non-adversarial loss (the domain discriminator's loss is a min-max game)
    total = [sum(v for k, v in r.items() if k.startswith("loss_") and k != "loss_domain_adv") for r in rows]
    assert all(math.isfinite(t) for t in total) and total[1] < total[0], (name, rows)
    names = [o.name for o in rec["_method"].objectives]
    if name.startswith("simmmdg"):
        assert names[:4] == ["ce", "supcon_shared", "ss_distance", "translation"]
        r = rows[-1]
        assert r["loss_supcon_shared"] == pytest.approx(3.0 * r["supcon"], rel=1e-5)
        assert r["loss_ss_distance"] == pytest.approx(0.7 * r["ss_distance"], rel=1e-5)
        assert r["loss_translation"] == pytest.approx(0.1 * r["translation"], rel=1e-5)
    if name == "simmmdg+gmp":
        assert "domain_adv" in names and rec["_method"].strategy.name == "gmp"
    if name == "simmmdg+mer":
        assert names[-1] == "mer"
    if name == "rna":
        assert names == ["ce", "rna"] and rows[-1]["rna"] < rows[0]["rna"]
    assert math.isfinite(rec["final"]["test_acc"])


def test_simmmdg_registers_its_modules_as_trainable():
    _, _, method = build_run(_cfg("simmmdg", **SMALL))
    own = [p for o in method.objectives[1:] for p in o.parameters()]
    assert own and {id(p) for p in own} <= {id(p) for p in method.trainable_parameters()}
    objs, strat, hp = resolve("simmmdg")
    assert strat == ("sum", {}) and hp["alpha_con"] == 3.0 and hp["con_temp"] == 0.1
    assert dict(objs)["supcon_shared"]["base_temperature"] == 0.07
    assert dict(resolve("simmmdg", {"con_base_temp": 0.0})[0])["supcon_shared"]["base_temperature"] is None


@pytest.mark.parametrize("name,overrides,param", [
    ("simmmdg", {"con_temp": 0.0}, "con_temp"),
    ("simmmdg", {"alpha_con": -1.0}, "alpha_con"),
    ("simmmdg", {"beta_dist": -0.5}, "beta_dist"),
    ("simmmdg", {"alpha_trans": float("nan")}, "alpha_trans"),
    ("simmmdg", {"trans_dropout": 1.0}, "trans_dropout"),
    ("simmmdg", {"con_hidden": 0}, "con_hidden"),
    ("simmmdg", {"con_norm": "group"}, "con_norm"),
    ("simmmdg+gmp", {"con_temp": -0.1}, "con_temp"),
    ("rna", {"lambda_rna": -1.0}, "lambda_rna"),
])
def test_bad_hyperparameters_name_the_parameter(name, overrides, param):
    with pytest.raises(ValueError, match=param):
        resolve(name, overrides)


def test_bad_objective_arguments_name_the_parameter():
    ctx = Context(["a", "b"], {"a": 4, "b": 4}, 3, 2)
    for obj, kw, param in [("supcon_shared", {"temperature": 0}, "temperature"),
                           ("supcon_shared", {"base_temperature": 0.0}, "base_temperature"),
                           ("supcon_shared", {"dim": 0}, "dim"),
                           ("ss_distance", {"weight": -1}, "weight"),
                           ("translation", {"hidden": 1.5}, "hidden"),
                           ("rna", {"weight": float("inf")}, "weight")]:
        with pytest.raises(ValueError, match=param):
            build_objective(obj, ctx, **kw)
    with pytest.raises(ValueError, match="even"):
        build_objective("ss_distance", Context(["a", "b"], {"a": 3, "b": 4}, 3, 2))
    with pytest.raises(ValueError, match="2 modalities"):
        build_objective("rna", Context(["a"], {"a": 4}, 3, 2))
    with pytest.raises(TypeError, match="con_temp"):
        resolve("simmmdg", {"con_temp": "0.1"})
