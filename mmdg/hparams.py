"""Hyperparameter declarations: a default, a valid range, a search distribution and a doc line.

DomainBed's ``hparams_registry`` style: every hyperparameter is declared once (an :class:`HParam`);
trial 0 of a search uses the defaults, later trials draw from each declaration's distribution with
a seed of its own (:func:`trial_rng`), so adding a hyperparameter leaves the other draws unchanged.
A declaration whose default or search distribution leaves its valid range fails when it is made.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Uniform:
    """``U(low, high)``: for fractions and exponents."""
    low: float
    high: float

    def problem(self) -> str | None:
        return None if _finite(self.low) and _finite(self.high) and self.low <= self.high else \
            "needs finite low <= high"

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def bounds(self) -> tuple:
        return self.low, self.high


@dataclass(frozen=True)
class LogUniform(Uniform):
    """``exp(U(log low, log high))``: for weights and rates that matter by order of magnitude."""

    def problem(self) -> str | None:
        ok = _finite(self.low) and _finite(self.high) and 0 < self.low <= self.high
        return None if ok else "needs finite 0 < low <= high"

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class IntRange:
    """A uniform integer in ``[low, high]`` (both included)."""
    low: int
    high: int

    def problem(self) -> str | None:
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))
        return None if ints and self.low <= self.high else "needs integers low <= high"

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    def bounds(self) -> tuple:
        return self.low, self.high


@dataclass(frozen=True)
class Choice:
    """One of ``options``, each equally likely."""
    options: tuple

    def problem(self) -> str | None:
        return None if len(self.options) > 0 else "needs at least one option"

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def bounds(self) -> tuple:
        return ()


Distribution = LogUniform | Uniform | IntRange | Choice


@dataclass(frozen=True)
class HParam:
    """One hyperparameter.  ``low``/``high`` bound numbers (``strict``: ``low`` itself is excluded,
    ``below``: ``high`` itself is excluded); ``choices`` lists the valid values of a string;
    ``search`` None: not searched (every trial uses the default)."""
    name: str
    default: Any
    doc: str
    search: Distribution | None = None
    low: float | None = None
    high: float | None = None
    strict: bool = False
    below: bool = False
    choices: tuple | None = None

    def __post_init__(self):
        if self.search is not None:
            problem = self.search.problem()
            if problem is None:
                bad = [v for v in (*self.search.bounds(), *getattr(self.search, "options", ()))
                       if self._problem(v) is not None]
                problem = f"reaches {bad[0]!r}, outside the valid range ({self._problem(bad[0])})" if bad else None
            if problem:
                raise ValueError(f"hyperparameter {self.name!r}: search distribution {self.search} {problem}")
        problem = self._problem(self.default)
        if problem:
            raise ValueError(f"hyperparameter {self.name!r}: default {self.default!r} is invalid: {problem}")

    def but(self, **changes) -> HParam:
        """This declaration with some fields changed (e.g. another method's default)."""
        return dataclasses.replace(self, **changes)

    def check(self, value: Any, who: str = "") -> Any:
        """``value`` (an int made a float where the default is one) if valid; else a TypeError (wrong
        type) or ValueError (out of range) naming ``who`` and the hyperparameter."""
        kind = type(self.default)
        if (not isinstance(value, kind) and not (kind is float and isinstance(value, int))) or (
                kind is not bool and isinstance(value, bool)):
            raise TypeError(f"hyperparameter {self.name!r} of method {who!r} expects {kind.__name__}, got {value!r}")
        problem = self._problem(value)
        if problem:
            raise ValueError(f"{who}: hyperparameter {self.name!r} {problem}, got {value!r}")
        return float(value) if kind is float else value

    def sample(self, rng: np.random.Generator) -> Any:
        """A draw from the search distribution (the default where there is none)."""
        return self.default if self.search is None else self.check(self.search.sample(rng), "search")

    def _problem(self, v: Any) -> str | None:
        if self.choices is not None:
            return None if v in self.choices else f"must be one of {list(self.choices)}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.low is None and self.high is None):
            return None
        what = "an int" if isinstance(self.default, int) and not isinstance(self.default, bool) else "a finite number"
        lo = self.low is None or (v > self.low if self.strict else v >= self.low)
        hi = self.high is None or (v < self.high if self.below else v <= self.high)
        if (what == "an int" and not isinstance(v, int)) or not _finite(v) or not (lo and hi):
            return f"must be {what} in {'(' if self.strict else '['}{_edge(self.low, '-inf')}, " \
                   f"{_edge(self.high, 'inf')}{')' if self.below else ']'}"
        return None


def trial_rng(*keys) -> np.random.Generator:
    """A generator seeded from ``keys`` by SHA-256 (stable across processes and machines)."""
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _edge(v, none: str) -> str:
    return none if v is None else f"{v:g}"
