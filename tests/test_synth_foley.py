"""SynthFoley: shapes, determinism, argument checks, and that every knob does what its docstring says.

The knob tests measure the rendered tensors with small, independent probes (closed-form ridge
classifiers on pooled features, distances between domain means, band and hue read-outs), all
on the ``tiny`` preset with fixed seeds.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdg.data import build_benchmark, make_split
from mmdg.data.base import benchmark_for_target
from mmdg.data.synth_foley import SynthFoley

DOMAINS = ("studio", "kitchen", "street")
TINY_SHAPES = {"video": (3, 8, 16, 16), "flow": (2, 8, 16, 16), "audio": (1, 32, 51)}  # 0.5 s at 8 kHz, 10 ms hop


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors are tiny: a second intra-op thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kwargs) -> SynthFoley:
    return SynthFoley(size="tiny", **kwargs)


def hum_band(freq: float, sample_rate: int, n_mels: int) -> int:
    """The HTK mel band whose centre is nearest to ``freq`` (bands span 0 Hz to Nyquist)."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    centers = torch.linspace(0.0, mel(sample_rate / 2), n_mels + 2)[1:-1]
    return int((centers - mel(freq)).abs().argmin())


# ---------------------------------------------------------------------------- probes
def ridge_accuracy(x_train, y_train, x_test, y_test, num_classes: int, lam: float) -> float:
    """Test accuracy of a one-vs-all ridge classifier (standardised features plus a bias)."""
    mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    prep = lambda x: F.pad(((x - mu) / sd).double(), (0, 1), value=1.0)
    a, b = prep(x_train), prep(x_test)
    eye = torch.eye(a.shape[1], dtype=a.dtype)
    w = torch.linalg.solve(a.T @ a + lam * len(a) * eye, a.T @ F.one_hot(y_train, num_classes).double())
    return float(((b @ w).argmax(1) == y_test).double().mean())


def class_features(modality: str, x: torch.Tensor) -> torch.Tensor:
    """Coarse pooled inputs: a 16 x 10 log-mel image, or a 4 x 4 grid per frame (+ frame differences)."""
    if modality == "audio":
        return F.adaptive_avg_pool2d(x, (16, 10)).flatten(1)
    p = F.adaptive_avg_pool3d(x, (x.shape[2], 4, 4))
    if modality == "video":
        return torch.cat([p.flatten(1), (p[:, :, 1:] - p[:, :, :-1]).flatten(1)], 1)
    return p.flatten(1)


def class_accuracies(bench: SynthFoley, domain: str = "studio") -> dict[str, float]:
    """Per modality: ridge classifier of the label, fitted on ``domain``'s train split, scored on its test split."""
    train, test = bench.dataset(domain, "train"), bench.dataset(domain, "test")
    return {m: ridge_accuracy(class_features(m, train.inputs[m]), train.label, class_features(m, test.inputs[m]),
                              test.label, bench.num_classes, lam=1.0)
            for m in bench.modalities}


def condition_features(modality: str, x: torch.Tensor) -> torch.Tensor:
    """Recording-condition statistics: spectrum mean/spread per mel band, or colour/contrast/edge energy."""
    if modality == "audio":
        return torch.cat([x[:, 0].mean(-1), x[:, 0].std(-1)], 1)
    dims = (2, 3, 4)
    return torch.cat([x.mean(dims), x.std(dims), (x[..., 1:] - x[..., :-1]).abs().mean(dims)], 1)


def domain_probe(bench: SynthFoley, modality: str) -> tuple[float, float]:
    """(test accuracy of a ridge domain classifier, mean pairwise distance of the domain means).

    The distance is between train-split feature means, in units of the pooled feature std.
    """
    feats = {s: [condition_features(modality, bench.dataset(d, s).inputs[modality]) for d in DOMAINS]
             for s in ("train", "test")}
    ids = {s: torch.cat([torch.full((len(f),), i) for i, f in enumerate(feats[s])]) for s in feats}
    acc = ridge_accuracy(torch.cat(feats["train"]), ids["train"], torch.cat(feats["test"]), ids["test"],
                         len(DOMAINS), lam=0.1)
    sd = torch.cat(feats["train"]).std(0).clamp_min(1e-6)
    means = [f.mean(0) / sd for f in feats["train"]]
    dist = sum(float((means[i] - means[j]).norm()) for i in range(3) for j in range(i + 1, 3)) / 3
    return acc, dist


# ---------------------------------------------------------------------------- shapes and determinism
def test_tiny_preset_shapes_labels_and_domains():
    bench = tiny()
    assert bench.modalities == ("video", "flow", "audio")
    assert bench.num_classes == 6
    assert bench.input_shapes() == TINY_SHAPES
    for i, domain in enumerate(DOMAINS):
        for split, n in (("train", 32), ("test", 16)):
            ds = bench.dataset(domain, split)
            assert len(ds) == n
            for m, shape in TINY_SHAPES.items():
                x = ds.inputs[m]
                assert x.shape == (n, *shape) and x.dtype == torch.float32, m
                assert torch.isfinite(x).all(), m
            assert ds.label.min() >= 0 and ds.label.max() < 6
            counts = torch.bincount(ds.label, minlength=6)
            assert counts.max() - counts.min() <= 1  # balanced classes
            assert torch.equal(ds.domain, torch.full((n,), i))
            assert torch.equal(ds.label, bench.factors(domain, split)["label"])
    assert bench.describe()["input_shapes"] == TINY_SHAPES


@pytest.mark.parametrize("overrides,expected", [
    (dict(frames=4, height=12, width=10, audio_seconds=0.3, sample_rate=16000, n_mels=20,
          train_per_domain=5, test_per_domain=3),
     {"video": (3, 4, 12, 10), "flow": (2, 4, 12, 10), "audio": (1, 20, 31)}),   # 4800 samples, hop 160
    (dict(frames=2, height=8, width=9, audio_seconds=0.4, sample_rate=11025, n_mels=8,
          train_per_domain=4, test_per_domain=2, num_classes=3),
     {"video": (3, 2, 8, 9), "flow": (2, 2, 8, 9), "audio": (1, 8, 41)}),        # 4410 samples, hop 110
])
def test_overridden_sizes(overrides, expected):
    bench = tiny(**overrides)
    assert bench.input_shapes() == expected
    for split in ("train", "test"):
        ds = bench.dataset("kitchen", split)
        n = overrides[f"{split}_per_domain"]
        assert {m: tuple(x.shape) for m, x in ds.inputs.items()} == {m: (n, *s) for m, s in expected.items()}
        assert all(x.dtype == torch.float32 and torch.isfinite(x).all() for x in ds.inputs.values())
        assert ds.label.max() < overrides.get("num_classes", 6)
    assert len(bench.classes) == overrides.get("num_classes", 6)


def test_modalities_subset_keeps_canonical_order_and_shapes():
    bench = tiny(modalities=["audio", "video"])
    assert bench.modalities == ("video", "audio")
    assert bench.input_shapes() == {m: TINY_SHAPES[m] for m in ("video", "audio")}
    assert set(bench.dataset("studio", "test").inputs) == {"video", "audio"}


def test_same_seed_same_tensors_other_seed_other_tensors():
    a, b, c = tiny(seed=3), tiny(seed=3), tiny(seed=4)
    da, db, dc = (x.dataset("kitchen", "test") for x in (a, b, c))
    for m in TINY_SHAPES:
        assert torch.equal(da.inputs[m], db.inputs[m]), m
        assert not torch.allclose(da.inputs[m], dc.inputs[m]), m
    assert torch.equal(da.label, db.label) and not torch.equal(da.label, dc.label)
    fa, fb = a.factors("kitchen", "test"), b.factors("kitchen", "test")
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def test_tensors_do_not_depend_on_access_order_or_modality_subset():
    full = tiny(seed=1)
    street, studio = full.dataset("street", "test"), full.dataset("studio", "train")
    for m in TINY_SHAPES:
        single = tiny(seed=1, modalities=[m])
        assert torch.equal(single.dataset("studio", "train").inputs[m], studio.inputs[m]), m
        assert torch.equal(single.dataset("street", "test").inputs[m], street.inputs[m]), m


def test_audio_is_z_normalised_per_sample():
    x = tiny(modalities=["audio"]).dataset("street", "train").inputs["audio"].flatten(1)
    torch.testing.assert_close(x.mean(1), torch.zeros(len(x)), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(1), torch.ones(len(x)), atol=1e-3, rtol=0)


@pytest.mark.parametrize("domain", DOMAINS)
def test_flow_is_the_object_velocity(domain):
    """Linear motions move the object the named way (y points down), "expand" diverges, and the
    flow is exactly zero away from the object."""
    bench = tiny(modalities=["flow"], imbalance=0.0, train_per_domain=48)  # full-strength visual cue
    flow, label = bench.dataset(domain, "train").inputs["flow"], bench.factors(domain, "train")["label"]
    total = flow.sum((2, 3, 4))  # (N, 2): summed (vx, vy)
    for c, (axis, sign) in enumerate([(0, 1), (0, -1), (1, -1), (1, 1)]):  # right, left, up, down
        main, cross = sign * total[label == c, axis], total[label == c, 1 - axis].abs()
        assert (main > 2 * cross).all() and (main > 0).all(), bench.classes[c]
    # Divergence about the flow's centre of mass: positive for "expand" (class 4) only.
    weight = flow.abs().sum(1)
    pos = torch.arange(16) - 7.5
    cx = (weight * pos).sum((2, 3)) / weight.sum((2, 3))
    cy = (weight * pos[:, None]).sum((2, 3)) / weight.sum((2, 3))
    div = (flow[:, 0] * (pos - cx[..., None, None]) + flow[:, 1] * (pos[:, None] - cy[..., None, None])).sum((1, 2, 3))
    assert div[label == 4].min() > 1.5 * div[label != 4].max()
    assert ((flow == 0).double().mean((1, 2, 3, 4)) > 0.3).all()


@pytest.mark.parametrize("domain", ["studio", "street"])
def test_chirps_rise_and_fall(domain):
    """Class 0's sound sweeps up, class 1's down: the loudest mel band moves with time accordingly.
    (mismatch 0: the mean recording conditions, whose low-pass spares the chirps' upper octave.)"""
    bench = tiny(modalities=["audio"], mismatch=0.0, train_per_domain=48)
    audio, f = bench.dataset(domain, "train").inputs["audio"][:, 0], bench.factors(domain, "train")
    frames = audio.shape[-1]
    centroid = (audio.softmax(1) * torch.arange(audio.shape[1]).float()[:, None]).sum(1)  # (N, frames)
    for c, sign in ((0, 1), (1, -1)):
        for i in torch.nonzero(f["label"] == c).flatten().tolist():
            lo = int(frames * f["onset"][i]) + 3
            hi = int(frames * (f["onset"][i] + f["duration"][i])) - 3  # inside the event, past the fades
            r = torch.corrcoef(torch.stack([torch.arange(lo, hi).float(), centroid[i, lo:hi]]))[0, 1]
            assert sign * r > 0.3, (c, i, float(r))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,name", [
    (dict(num_classes=1), "num_classes"), (dict(num_classes=9), "num_classes"),
    (dict(num_classes=True), "num_classes"), (dict(num_classes=2.0), "num_classes"),
    (dict(dominant="flow"), "dominant"),
    (dict(imbalance=1.5), "imbalance"), (dict(imbalance=-0.1), "imbalance"),
    (dict(mismatch=2.0), "mismatch"), (dict(other_mismatch=-1), "other_mismatch"),
    (dict(cooccur=1.01), "cooccur"), (dict(cooccur=float("nan")), "cooccur"),
    (dict(cooccur_mapping="random"), "cooccur_mapping"),
    (dict(cooccur_domains=["studio", "mars"]), "cooccur_domains"),
    (dict(target_domain="mars"), "target_domain"),
    (dict(nuisance_strength=-0.5), "nuisance_strength"),
    (dict(seed=1.5), "seed"),
    (dict(size="huge"), "size"),
    (dict(modalities=["video", "depth"]), "modalities"), (dict(modalities=[]), "modalities"),
    (dict(modalities=["audio", "audio"]), "modalities"),
    (dict(frames=1), "frames"), (dict(height=4), "height"), (dict(width=0), "width"),
    (dict(audio_seconds=0.05), "audio_seconds"), (dict(sample_rate=4000), "sample_rate"),
    (dict(n_mels=4), "n_mels"), (dict(n_mels=87), "n_mels"),  # 87 bands at 8 kHz leave some empty
    (dict(train_per_domain=0), "train_per_domain"), (dict(test_per_domain=-3), "test_per_domain"),
])
def test_bad_arguments_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SynthFoley(**{"size": "tiny", **kwargs})


def test_bad_domain_or_split_raise():
    bench = tiny(modalities=["audio"])
    for call in (lambda: bench.dataset("mars", "train"), lambda: bench.factors("mars", "test"),
                 lambda: bench.nuisance_map("mars")):
        with pytest.raises(ValueError, match="domain"):
            call()
    with pytest.raises(ValueError, match="split"):
        bench.dataset("studio", "val")


def test_largest_valid_mel_count_has_no_constant_band():
    x = tiny(n_mels=86, modalities=["audio"], train_per_domain=4).dataset("studio", "train").inputs["audio"]
    assert (x[:, 0].std(-1) > 0).all()  # every band varies over time


# ---------------------------------------------------------------------------- imbalance
def test_imbalance_weakens_the_non_dominant_side():
    size = dict(train_per_domain=96, test_per_domain=48, seed=0)
    acc = {(dom, imb): class_accuracies(tiny(dominant=dom, imbalance=imb, **size))
           for dom in ("audio", "video") for imb in (0.0, 1.0)}
    visual = lambda a: max(a["video"], a["flow"])
    # imbalance 0: every modality is learnable from 96 clips (chance is 1/6).
    for dom in ("audio", "video"):
        assert min(acc[dom, 0.0].values()) >= 0.7, acc[dom, 0.0]
    # dominant audio, imbalance 1: the visual side collapses, audio is as good as before.
    a0, a1 = acc["audio", 0.0], acc["audio", 1.0]
    assert a1["video"] <= a0["video"] - 0.3 and a1["flow"] <= a0["flow"] - 0.2, (a0, a1)
    assert a1["audio"] - visual(a1) >= 0.25, a1
    assert (a1["audio"] - visual(a1)) - (a0["audio"] - visual(a0)) >= 0.3, (a0, a1)
    # dominant video flips it.
    v0, v1 = acc["video", 0.0], acc["video", 1.0]
    assert v1["audio"] <= v0["audio"] - 0.3, (v0, v1)
    assert visual(v1) - v1["audio"] >= 0.4, v1
    assert (visual(v1) - v1["audio"]) - (visual(v0) - v0["audio"]) >= 0.3, (v0, v1)


@pytest.mark.parametrize("dominant,knob,changed,unchanged", [
    ("audio", "imbalance", ("video", "flow"), ("audio",)),
    ("video", "imbalance", ("audio",), ("video", "flow")),
    ("audio", "mismatch", ("audio",), ("video", "flow")),
    ("audio", "other_mismatch", ("video", "flow"), ("audio",)),
    ("video", "mismatch", ("video", "flow"), ("audio",)),
    ("video", "other_mismatch", ("audio",), ("video", "flow")),
])
def test_knobs_touch_only_their_side(dominant, knob, changed, unchanged):
    lo = tiny(dominant=dominant, **{knob: 0.0}).dataset("street", "test").inputs
    hi = tiny(dominant=dominant, **{knob: 1.0}).dataset("street", "test").inputs
    for m in changed:
        assert (lo[m] - hi[m]).norm() > 0.1 * lo[m].norm(), m
    for m in unchanged:
        assert torch.equal(lo[m], hi[m]), m


# ---------------------------------------------------------------------------- mismatch
@pytest.mark.parametrize("dominant,mismatch,other_mismatch,shifted", [
    ("audio", 1.0, 0.0, {"audio"}),
    ("audio", 0.0, 0.0, set()),
    ("audio", 0.0, 1.0, {"video"}),
    ("video", 1.0, 0.0, {"video"}),
    ("video", 0.0, 0.0, set()),
])
def test_mismatch_shifts_the_chosen_side_between_domains(dominant, mismatch, other_mismatch, shifted):
    """A domain classifier on a modality's condition statistics: near 1 where conditions differ
    between domains, near chance (1/3, 72 test clips) where they are identical."""
    bench = tiny(dominant=dominant, mismatch=mismatch, other_mismatch=other_mismatch,
                 modalities=["video", "audio"], train_per_domain=48, test_per_domain=24)
    for m in ("video", "audio"):
        acc, _ = domain_probe(bench, m)
        if m in shifted:
            assert acc >= 0.85, (m, acc)
        else:
            assert acc <= 0.55, (m, acc)


@pytest.mark.parametrize("dominant", ["audio", "video"])
def test_mismatch_interpolates_between_identical_and_full_conditions(dominant):
    dist = {mm: domain_probe(tiny(dominant=dominant, mismatch=mm, modalities=[dominant], train_per_domain=48,
                                  test_per_domain=8), dominant)[1]
            for mm in (0.0, 0.5, 1.0)}
    assert dist[0.0] < dist[0.5] < dist[1.0], dist
    assert dist[1.0] > 2.5 * dist[0.0], dist


# ---------------------------------------------------------------------------- co-occurrence
def agreement(bench: SynthFoley, domain: str, split: str) -> float:
    f = bench.factors(domain, split)
    return float((f["nuisance"] == bench.nuisance_map(domain)[f["label"]]).double().mean())


@pytest.mark.parametrize("cooccur", [0.0, 0.3, 1.0])
def test_cooccur_sets_the_agreement_rate(cooccur):
    k = 6
    bench = tiny(cooccur=cooccur, train_per_domain=6000, test_per_domain=3000)
    for domain in DOMAINS:
        for split in ("train", "test"):
            f = bench.factors(domain, split)
            assert f["nuisance"].min() >= 0 and f["nuisance"].max() < k
            assert abs(agreement(bench, domain, split) - (cooccur + (1 - cooccur) / k)) < 0.025
            assert abs(float(f["nuisance_from_label"].double().mean()) - cooccur) < 0.025
    if cooccur == 1.0:
        f = bench.factors("kitchen", "train")
        assert torch.equal(f["nuisance"], bench.nuisance_map("kitchen")[f["label"]])


def test_no_cooccur_means_independent_nuisance():
    k, n = 6, 6000
    f = tiny(cooccur=0.0, train_per_domain=n).factors("street", "train")
    table = torch.zeros(k, k).index_put_((f["label"], f["nuisance"]), torch.ones(n), accumulate=True)
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    assert chi2 < 60.0  # 25 degrees of freedom: P(chi2 > 52.6) = 0.001 under independence
    assert (table.sum(0) - n / k).abs().max() < 0.1 * n / k  # nuisance roughly uniform


def test_cooccur_spares_the_target_and_unlisted_domains():
    k = 6
    bench = tiny(cooccur=1.0, cooccur_domains=["studio", "kitchen"], target_domain="kitchen",
                 train_per_domain=3000, test_per_domain=3000)
    assert bench.correlated_domains == ("studio",)
    for split in ("train", "test"):
        assert agreement(bench, "studio", split) == 1.0
        for domain in ("kitchen", "street"):
            assert abs(agreement(bench, domain, split) - 1 / k) < 0.025, (domain, split)
            assert not bench.factors(domain, split)["nuisance_from_label"].any()
    # benchmark_for_target passes the held-out domain on.
    lodo = benchmark_for_target("synth_foley", "street", size="tiny", cooccur=1.0, train_per_domain=3000,
                                test_per_domain=10)
    assert lodo.config["target_domain"] == "street"
    assert agreement(lodo, "studio", "train") == 1.0 and agreement(lodo, "kitchen", "train") == 1.0
    assert abs(agreement(lodo, "street", "train") - 1 / k) < 0.025


@pytest.mark.parametrize("k", range(2, 9))
def test_nuisance_maps(k):
    per_domain = [tiny(num_classes=k).nuisance_map(d) for d in DOMAINS]
    shared = [tiny(num_classes=k, cooccur_mapping="shared").nuisance_map(d) for d in DOMAINS]
    for perm in per_domain + shared:
        assert torch.equal(perm.sort().values, torch.arange(k))  # a permutation of the nuisance values
    assert all(torch.equal(shared[0], p) for p in shared)
    if k >= 3:  # per_domain: no two domains map a class to the same nuisance
        for i in range(3):
            for j in range(i + 1, 3):
                assert (per_domain[i] != per_domain[j]).all(), (i, j)
    # Deterministic in the seed, and the seed matters.
    assert all(torch.equal(p, tiny(num_classes=k).nuisance_map(d)) for p, d in zip(per_domain, DOMAINS))
    if k >= 4:
        assert len({tuple(tiny(num_classes=k, seed=s).nuisance_map("studio").tolist()) for s in range(6)}) > 1


@pytest.mark.parametrize("mapping", ["per_domain", "shared"])
def test_factors_follow_each_domains_own_mapping(mapping):
    bench = tiny(cooccur=1.0, cooccur_mapping=mapping, train_per_domain=60)
    seen = {}
    for d in DOMAINS:
        f = bench.factors(d, "train")
        seen[d] = torch.stack([f["nuisance"][f["label"] == c].unique() for c in range(6)]).flatten()
    for c in range(6):
        values = {int(seen[d][c]) for d in DOMAINS}
        assert len(values) == (3 if mapping == "per_domain" else 1), (c, values)


def nuisance_features(modality: str, x: torch.Tensor) -> torch.Tensor:
    """Mean colour of the clip, or the time-averaged log-mel spectrum."""
    return x[:, 0].mean(-1) if modality == "audio" else x.mean((2, 3, 4))


@pytest.mark.parametrize("strength,lo,hi", [(1.0, 0.8, 1.0), (0.0, 0.0, 0.4)])
def test_nuisance_is_visible_in_video_and_audio(strength, lo, hi):
    """With cooccur 0 the nuisance carries no label information, so reading it off the rendered
    clips (ridge on 3 colour means / 32 band means) works only through the tint and the hum."""
    bench = tiny(nuisance_strength=strength, modalities=["video", "audio"], train_per_domain=96,
                 test_per_domain=48)
    for domain in ("studio", "street"):
        train, test = bench.dataset(domain, "train"), bench.dataset(domain, "test")
        n_train, n_test = bench.factors(domain, "train")["nuisance"], bench.factors(domain, "test")["nuisance"]
        for m in ("video", "audio"):
            acc = ridge_accuracy(nuisance_features(m, train.inputs[m]), n_train, nuisance_features(m, test.inputs[m]),
                                 n_test, 6, lam=0.01)
            assert lo <= acc <= hi, (domain, m, acc)


def test_tint_hues_and_hum_frequencies():
    """The nuisance's own contribution (strength 1 minus strength 0, same seed): a pure colour
    (no grey) whose hue turns by 2 pi / K per nuisance step, and a hum at 120 + 50 n Hz."""
    k = 8
    on, off = (tiny(num_classes=k, nuisance_strength=s, modalities=["video", "audio"], train_per_domain=64)
               for s in (1.0, 0.0))
    n = on.factors("kitchen", "train")["nuisance"]
    x_on, x_off = on.dataset("kitchen", "train").inputs, off.dataset("kitchen", "train").inputs
    tint = (x_on["video"] - x_off["video"]).mean((2, 3, 4))  # (N, 3)
    assert tint.norm(dim=1).min() > 0.1
    assert tint.sum(1).abs().max() < 1e-4 * tint.norm(dim=1).min() + 1e-5  # on the chroma plane
    unit = F.normalize(tint, dim=1)
    cos = unit @ unit.T
    step = (n[:, None] - n[None, :]).remainder(k).double()
    torch.testing.assert_close(cos.double(), torch.cos(2 * math.pi * step / k), atol=1e-4, rtol=0)
    hum = (x_on["audio"] - x_off["audio"])[:, 0].mean(-1).argmax(1)  # (N,) band gaining most energy
    expected = torch.tensor([hum_band(120.0 + 50.0 * v, 8000, 32) for v in n.tolist()])
    assert (hum - expected).abs().max() <= 1, list(zip(n.tolist(), hum.tolist(), expected.tolist()))
    assert len(set(expected.tolist())) >= 6  # the check can tell the hum frequencies apart


# ---------------------------------------------------------------------------- cache
def cached_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_cache_reloads_identical_tensors(tmp_path):
    kwargs = dict(modalities=["video", "audio"], seed=5)
    first = tiny(cache_dir=str(tmp_path), **kwargs).dataset("studio", "train")
    files = cached_files(tmp_path)
    assert len(files) == 2 and all(f.endswith(".pt") for f in files)  # one per modality, no leftovers
    second = tiny(cache_dir=tmp_path, **kwargs).dataset("studio", "train")
    uncached = tiny(**kwargs).dataset("studio", "train")
    for m in ("video", "audio"):
        assert torch.equal(second.inputs[m], first.inputs[m]) and torch.equal(uncached.inputs[m], first.inputs[m])
    assert cached_files(tmp_path) == files
    # The second construction reads the files: overwrite them and it sees the new content.
    for name in files:
        torch.save(torch.full_like(torch.load(tmp_path / name), 7.0), tmp_path / name)
    third = tiny(cache_dir=tmp_path, **kwargs).dataset("studio", "train")
    assert all((x == 7.0).all() for x in third.inputs.values())


def test_cache_file_names_follow_the_configuration(tmp_path):
    base = dict(cache_dir=tmp_path, modalities=["audio"])
    x = tiny(**base).dataset("studio", "train").inputs["audio"]
    assert len(cached_files(tmp_path)) == 1
    # Another modality subset of the same configuration shares the file.
    shared = tiny(cache_dir=tmp_path, modalities=["audio", "flow"]).dataset("studio", "train").inputs["audio"]
    assert torch.equal(shared, x) and len(cached_files(tmp_path)) == 2  # + the flow file
    seen = set(cached_files(tmp_path))
    for change in (dict(seed=1), dict(imbalance=1.0, dominant="video"), dict(train_per_domain=8),
                   dict(cooccur=1.0), dict(nuisance_strength=0.0), dict(split="test"), dict(domain="kitchen")):
        domain, split = change.pop("domain", "studio"), change.pop("split", "train")
        y = tiny(**base, **change).dataset(domain, split).inputs["audio"]
        new = set(cached_files(tmp_path)) - seen
        assert len(new) == 1, change
        assert y.shape != x.shape or not torch.equal(y, x), change
        seen |= new


def test_concurrent_cache_writers_do_not_clash(tmp_path, monkeypatch):
    """A second writer that saves and renames between the first writer's save and rename."""
    first, second = (tiny(cache_dir=tmp_path, modalities=["audio"], test_per_domain=4) for _ in range(2))
    real_save, interleaved = torch.save, []

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if not interleaved:
            interleaved.append(f)
            second.dataset("street", "test")

    monkeypatch.setattr(torch, "save", save)
    x = first.dataset("street", "test").inputs["audio"]
    assert interleaved
    assert torch.equal(second.dataset("street", "test").inputs["audio"], x)
    files = cached_files(tmp_path)
    assert len(files) == 1 and torch.equal(torch.load(tmp_path / files[0]), x)


# ---------------------------------------------------------------------------- registry and protocol
def test_registry_and_leave_one_domain_out_split():
    bench = build_benchmark("synth_foley", size="tiny", modalities=["audio"])
    assert isinstance(bench, SynthFoley) and bench.domains == DOMAINS
    split = make_split(bench, "kitchen")
    assert split.sources == ("studio", "street")
    # the held-out domain is evaluated on all its clips: its test split, then its train split
    assert len(split.train) == 64 and len(split.val) == 32 and len(split.test) == 16 + 32
    whole = torch.cat([bench.dataset("kitchen", s).inputs["audio"] for s in ("test", "train")])
    assert torch.equal(split.test.inputs["audio"], whole)
    assert torch.equal(split.train.domain, torch.arange(2).repeat_interleave(32))
    assert (split.test.domain == -1).all()
