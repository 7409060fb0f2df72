"""Shared fixtures: a tiny two-modality, three-domain benchmark registered as ``toy``; script loading."""
import importlib.util
from pathlib import Path

import pytest
import torch

from mmdg.data.base import BENCHMARKS, Benchmark, TensorDataset


@BENCHMARKS.register("toy")
class Toy(Benchmark):
    """Modality ``a`` carries the class strongly and shifts with the domain; ``b`` weakly, no shift."""

    name = "toy"
    domains = ("d0", "d1", "d2")
    modalities = ("a", "b")
    classes = ("x", "y", "z")

    def __init__(self, n: int = 48, dim: int = 8):
        self.n, self.dim = n, dim

    def input_shapes(self):
        return {"a": (self.dim,), "b": (self.dim,)}

    def dataset(self, domain, split):
        i = self.domains.index(self.check_domain(domain))
        g = torch.Generator().manual_seed(10 * i + (split == "test"))
        y = torch.randint(0, 3, (self.n,), generator=g)
        onehot = torch.nn.functional.one_hot(y, self.dim).float()
        a = torch.randn(self.n, self.dim, generator=g) + 2.0 * onehot + 0.7 * i
        b = torch.randn(self.n, self.dim, generator=g) + 0.8 * onehot
        return TensorDataset({"a": a, "b": b}, y, torch.full((self.n,), i))


@pytest.fixture
def toy():
    return Toy()


MLP_ENCODERS = {"a": {"name": "mlp", "hidden": 16, "out_dim": 16},
                "b": {"name": "mlp", "hidden": 16, "out_dim": 16}}


def load_script(relative: str):
    """Import a script of the repository (e.g. ``"benchmarks/gmp_overhead.py"``) as a module."""
    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOLDEN_RECORDS = Path(__file__).resolve().parent / "golden" / "records"
_RECORDS_KEY = pytest.StashKey[set]()


def _golden_records():
    return set(GOLDEN_RECORDS.rglob("*.json")) if GOLDEN_RECORDS.is_dir() else set()


def pytest_sessionstart(session):
    session.config.stash[_RECORDS_KEY] = _golden_records()


def pytest_sessionfinish(session, exitstatus):
    """A golden that trains under nbval lacks a committed record: its numbers would be this CPU's own."""
    new = sorted(_golden_records() - session.config.stash.get(_RECORDS_KEY, set()))
    if new:
        session.config.get_terminal_writer().line(
            f"error: the goldens trained {len(new)} run(s) that tests/golden/records/ lacks (e.g. "
            f"{new[0].relative_to(GOLDEN_RECORDS)}): regenerate with `make goldens`", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

