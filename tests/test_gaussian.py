"""GaussianFeatures: determinism, shapes, and that separation, shift and cooccur do what they say."""
import pytest
import torch

from mmdg.data import build_benchmark


def centroid_accuracy(train, test, modality):
    """Nearest-class-centroid accuracy of one modality: an independent, closed-form probe."""
    x, y = train.inputs[modality], train.label
    cents = torch.stack([x[y == c].mean(0) for c in range(int(y.max()) + 1)])
    pred = torch.cdist(test.inputs[modality], cents).argmin(1)
    return (pred == test.label).float().mean().item()


def test_deterministic_and_shapes():
    a, b = build_benchmark("gaussian_features", seed=3), build_benchmark("gaussian_features", seed=3)
    da, db = a.dataset("d1", "train"), b.dataset("d1", "train")
    assert torch.equal(da.inputs["m0"], db.inputs["m0"]) and torch.equal(da.label, db.label)
    other = build_benchmark("gaussian_features", seed=4).dataset("d1", "train")
    assert not torch.equal(da.inputs["m0"], other.inputs["m0"])
    assert {m: tuple(t.shape[1:]) for m, t in da.inputs.items()} == a.input_shapes() == {"m0": (8,), "m1": (8,)}
    assert (da.domain == 1).all() and len(da) == 200 and len(a.dataset("d1", "test")) == 100
    three = build_benchmark("gaussian_features", num_modalities=3, cooccur=0.5, num_classes=5)
    assert three.input_shapes() == {"m0": (13,), "m1": (13,), "m2": (13,)}


def test_separation_sets_modality_strength():
    bench = build_benchmark("gaussian_features", separation=(3.0, 0.5), shift=0.0, train_per_domain=400)
    train, test = bench.dataset("d0", "train"), bench.dataset("d0", "test")
    strong, weak = centroid_accuracy(train, test, "m0"), centroid_accuracy(train, test, "m1")
    assert strong > 0.85 and weak < 0.6 and strong - weak > 0.3


def test_shift_moves_only_the_shifted_modality():
    bench = build_benchmark("gaussian_features", shift=(3.0, 0.0), train_per_domain=400)
    d0, d2 = bench.dataset("d0", "train"), bench.dataset("d2", "train")
    gap = {m: (d0.inputs[m].mean(0) - d2.inputs[m].mean(0)).norm().item() for m in ("m0", "m1")}
    # offsets are unit vectors: the expected mean gap is 3 * |delta0 - delta2| for m0 and 0 for m1
    expected = 3.0 * (bench.offsets["m0"][0] - bench.offsets["m0"][2]).norm().item()
    assert gap["m0"] == pytest.approx(expected, abs=0.5) and gap["m1"] < 0.5
    drop = centroid_accuracy(d0, bench.dataset("d0", "test"), "m0") - centroid_accuracy(d0, bench.dataset("d2", "test"), "m0")
    still = build_benchmark("gaussian_features", shift=0.0, train_per_domain=400, test_per_domain=400)
    s0 = still.dataset("d0", "train")
    no_drop = centroid_accuracy(s0, still.dataset("d0", "test"), "m0") - centroid_accuracy(s0, still.dataset("d2", "test"), "m0")
    assert drop > 0.2 and abs(no_drop) < 0.08


def test_cooccur_links_nuisance_to_label_only_on_sources():
    bench = build_benchmark("gaussian_features", cooccur=1.0, train_per_domain=300)
    k = len(bench.classes)
    for d, name in enumerate(bench.domains):
        ds, code = bench.dataset(name, "train"), bench.nuisance(name, "train")
        agree = (code == (ds.label + d) % k).float().mean().item()
        if name == bench.target_domain:
            assert abs(agree - 1 / k) < 0.1
        else:
            assert agree == 1.0
        # the code is visible in both modalities: the argmax of the nuisance block recovers it mostly
        for m in bench.modalities:
            assert (ds.inputs[m][:, -k:].argmax(1) == code).float().mean() > 0.9
    half = build_benchmark("gaussian_features", cooccur=0.5, train_per_domain=2000)
    agree = (half.nuisance("d0", "train") == half.dataset("d0", "train").label % k).float().mean().item()
    assert agree == pytest.approx(0.5 + 0.5 / k, abs=0.04)


@pytest.mark.parametrize("kwargs, word", [({"dim": 1}, "dim"), ({"cooccur": 1.5}, "cooccur"),
                                          ({"separation": (1.0, 2.0, 3.0)}, "separation"),
                                          ({"shift": -1.0}, "shift"), ({"target_domain": "x"}, "domain")])
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        build_benchmark("gaussian_features", **kwargs)
