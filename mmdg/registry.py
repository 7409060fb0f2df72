"""Named registries (benchmarks, encoders, fusions, objectives, strategies, methods) and argument checks."""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable


class Registry:
    """A name -> factory map whose errors list the valid choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        def deco(obj):
            self.add(name, obj)
            return obj
        return deco

    def add(self, name: str, obj: Any) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}; valid choices: {sorted(self._items)}")
        return self._items[name]

    def build(self, name: str, **kwargs) -> Any:
        factory = self.get(name)
        check_kwargs(factory, kwargs, f"{self.kind} {name!r}")
        return factory(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self.names())


def check_kwargs(fn: Callable, kwargs: dict, what: str) -> None:
    """Raise a TypeError naming any keyword ``fn`` does not accept."""
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(kwargs) - set(sig.parameters))
    if unknown:
        valid = sorted(k for k, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        raise TypeError(f"{what} got unknown parameter(s) {unknown}; valid parameters: {valid}")


def check_number(who: str, name: str, value, low: float = 0.0, strict: bool = False) -> float:
    """``value`` as a float if it is a finite real number >= ``low`` (> ``low`` if ``strict``), else a
    ValueError naming ``who`` and ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value > low if strict else value >= low)
    if not ok:
        raise ValueError(f"{who}: {name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def check_int(who: str, name: str, value, low: int = 1) -> int:
    """``value`` if it is an int >= ``low`` (not a bool), else a ValueError naming ``who`` and ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{who}: {name} must be an int >= {low}, got {value!r}")
    return value
