"""The hyperparameter registry: declarations, search distributions, seeded trials, run ids."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmdg.hparams import Choice, HParam, IntRange, LogUniform, Uniform, trial_rng
from mmdg.methods import HPARAMS, METHODS, PLUGINS, hparam_space, non_default, resolve, sample_hparams
from mmdg.train import RunConfig

ROOT = Path(__file__).resolve().parents[1]
ALL = METHODS.names() + [f"erm+{p}" for p in PLUGINS.names()] + ["simmmdg+gmp+mer", "cmrf+mer", "drb+gmp"]


def test_every_declaration_has_a_doc_line_and_a_valid_default():
    for name, h in HPARAMS.items():
        assert h.name == name and h.doc and "\n" not in h.doc
        assert h.check(h.default, "test") == h.default
    for m in METHODS.names():
        for k, h in METHODS.get(m).hparams.items():
            assert k == h.name and h.doc == HPARAMS[k].doc        # one declaration, reused


def test_shared_declarations_are_one_object_across_methods():
    assert METHODS.get("base").hparams["disc_hidden"] is HPARAMS["disc_hidden"]
    assert METHODS.get("agm").hparams["disc_hidden"] is METHODS.get("cggm").hparams["disc_hidden"]
    assert METHODS.get("agm").hparams["lambda_d"] is METHODS.get("pcgrad").hparams["lambda_d"]
    assert METHODS.get("agm").hparams["lambda_d"].default == 0.0 and HPARAMS["lambda_d"].default == 0.3
    assert METHODS.get("agm").hparams["lambda_d"].search is None            # a switched-off term is not searched


def test_space_of_a_composed_name_adds_its_plugins():
    space = hparam_space("simmmdg+gmp+mer")
    assert {"con_temp", "alpha_k", "lambda_mer", "lambda_d"} <= set(space)
    assert list(space)[:len(hparam_space("simmmdg"))] == list(hparam_space("simmmdg"))
    assert set(hparam_space("erm")) == set()
    with pytest.raises(KeyError, match="valid plugins"):
        hparam_space("erm+nope")


@pytest.mark.parametrize("name", ALL)
def test_trial_zero_is_the_defaults_and_later_trials_are_seeded_valid_draws(name):
    assert sample_hparams(name, 0) == resolve(name)[2]
    for trial in (1, 2, 7):
        draw = sample_hparams(name, trial)
        assert draw == sample_hparams(name, trial)                          # seeded: the same twice
        json.dumps(draw)                                                    # plain Python values
        _, _, hp = resolve(name, draw)                                      # every draw is valid
        space = hparam_space(name)
        for k, v in draw.items():
            assert type(v) is type(space[k].default)
            if space[k].search is None:
                assert v == space[k].default
            elif isinstance(space[k].search, (LogUniform, Uniform, IntRange)):
                assert space[k].search.low <= v <= space[k].search.high
    searched = [k for k, h in hparam_space(name).items() if h.search is not None]
    if searched:
        assert any(sample_hparams(name, 1)[k] != sample_hparams(name, 2)[k] for k in searched)


def test_sample_hparams_refuses_a_bad_trial():
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="trial"):
            sample_hparams("erm", bad)


def test_distributions_sample_their_law():
    rng = np.random.default_rng(0)
    logs = [math.log10(LogUniform(1e-3, 1e-1).sample(rng)) for _ in range(4000)]
    assert min(logs) >= -3 and max(logs) <= -1 and abs(np.mean(logs) + 2) < 0.05     # uniform in log10
    u = [Uniform(2.0, 4.0).sample(rng) for _ in range(4000)]
    assert 2 <= min(u) and max(u) <= 4 and abs(np.mean(u) - 3) < 0.05
    ints = [IntRange(1, 3).sample(rng) for _ in range(3000)]
    assert set(ints) == {1, 2, 3} and all(type(i) is int for i in ints)
    assert {Choice(("a", "b")).sample(rng) for _ in range(100)} == {"a", "b"}
    assert trial_rng("m", 1, "k").uniform() == trial_rng("m", 1, "k").uniform() != trial_rng("m", 2, "k").uniform()


@pytest.mark.parametrize("kwargs,match", [
    ({"search": LogUniform(0.0, 1.0)}, r"'w': search distribution LogUniform\(low=0.0, high=1.0\) needs finite 0 < low"),
    ({"search": LogUniform(2.0, 1.0)}, r"'w': search distribution LogUniform.* needs"),
    ({"search": Uniform(1.0, float("nan"))}, r"'w': search distribution Uniform.* needs finite low <= high"),
    ({"search": Uniform(-1.0, 1.0), "low": 0}, r"'w': search distribution Uniform.* reaches -1.0, outside"),
    ({"search": Choice(())}, r"'w': search distribution Choice.* needs at least one option"),
    ({"low": 1.0}, r"'w': default 0.5 is invalid"),
])
def test_a_bad_declaration_fails_with_one_line_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        HParam("w", 0.5, "a weight", **kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"'n': search distribution IntRange\(low=1, high=2.5\)"):
        HParam("n", 2, "a count", search=IntRange(1, 2.5))
    with pytest.raises(ValueError, match=r"'c': search distribution Choice.* reaches 'x'"):
        HParam("c", "a", "a choice", choices=("a", "b"), search=Choice(("a", "x")))


def test_check_names_the_method_and_the_range():
    h = HParam("t", 0.1, "a temperature", low=0, strict=True)
    assert h.check(1, "m") == 1.0 and type(h.check(1, "m")) is float
    with pytest.raises(ValueError, match=r"m: hyperparameter 't' must be a finite number in \(0, inf\], got 0"):
        h.check(0, "m")
    with pytest.raises(TypeError, match="expects float"):
        h.check(True, "m")
    n = HParam("n", 3, "a count", low=1)
    with pytest.raises(ValueError, match=r"an int in \[1, inf\]"):
        n.check(0, "m")
    f = HParam("f", 0.3, "a fraction", low=0, high=1, below=True)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        f.check(1.0, "m")


def test_committed_records_keep_their_run_ids():
    records = sorted((ROOT / "results" / "book").rglob("seed*.json"))
    assert records, "no committed records under results/book"
    for path in records:
        rec = json.loads(path.read_text())
        cfg = RunConfig(**rec["config"])
        assert cfg.run_id() == rec["run_id"], path
        _, _, hp = resolve(cfg.method, cfg.hparams)
        defaults = sample_hparams(cfg.method, 0)
        assert non_default(cfg.method, cfg.hparams) == {k: v for k, v in cfg.hparams.items() if defaults[k] != v}
    assert non_default("erm+mer", {"mer_hidden": 256, "mer_dim": 128}) == {"mer_hidden": 256}
