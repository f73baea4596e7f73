"""One 1-D latency curve along an op's load axis: the measured grid (linear between measured
points) and the fitted PWL surrogate, both in seconds, with the explicit extrapolation policy:
above the measured range the last segment is extended, below it the first value is held, and
every such value is flagged."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aicpp_opt.costs.pwl_fit import pwl_eval


def _at(xs: list[float], ys: list[float], x: float) -> float:
    """``pwl_eval`` at one point in plain Python (the optimiser asks millions of times): linear
    inside, the last segment extended above, the first value held below."""
    if len(xs) == 1 or x <= xs[0]:
        return ys[0]
    i = min(bisect.bisect_right(xs, x), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class Latency:
    """A latency in seconds; `extrapolated` when the load lies outside the measured range;
    `fallback` says why another framework's table priced it (empty when none did)."""

    seconds: float
    extrapolated: bool
    source: str
    fallback: str = ""


@dataclass(frozen=True)
class Curve:
    """Latency along the load axis for one operating point of the other axes."""

    op: str
    load_axis: str
    x: np.ndarray
    seconds: np.ndarray
    pwl_x: np.ndarray
    pwl_seconds: np.ndarray
    source: str
    fallback: str = ""

    @property
    def x_range(self) -> tuple[float, float]:
        """Measured (lo, hi) along the load axis."""
        return float(self.x[0]), float(self.x[-1])

    @property
    def breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """(load values, seconds) of the PWL surrogate."""
        return self.pwl_x, self.pwl_seconds

    def is_extrapolated(self, x: float) -> bool:
        return bool(x < self.x[0] or x > self.x[-1])

    @cached_property
    def _grid(self) -> tuple[list[float], list[float]]:
        return self.x.tolist(), self.seconds.tolist()

    @cached_property
    def _fit(self) -> tuple[list[float], list[float]]:
        return self.pwl_x.tolist(), self.pwl_seconds.tolist()

    def eval(self, x: float) -> Latency:
        """Measured grid at load x (linear between measured points)."""
        return Latency(_at(*self._grid, x), self.is_extrapolated(x), self.source, self.fallback)

    def pwl(self, x):
        """The fitted PWL surrogate at load x (scalar or array), seconds."""
        if np.ndim(x) == 0:
            return _at(*self._fit, float(x))
        return pwl_eval(self.pwl_x, self.pwl_seconds, x)


def blend(op: str, load_axis: str, parts: list[tuple[float, Curve]], source: str) -> Curve:
    """Weighted sum of curves on the intersection of their measured ranges (exact: a sum of
    piecewise-linear functions is piecewise linear on the union of their breakpoints)."""
    if len(parts) == 1:
        c = parts[0][1]
        return Curve(op, load_axis, c.x, c.seconds, c.pwl_x, c.pwl_seconds, source)
    lo = max(c.x[0] for _, c in parts)
    hi = min(c.x[-1] for _, c in parts)

    def grid(arrays: list[np.ndarray]) -> np.ndarray:
        u = np.unique(np.concatenate([a[(a >= lo) & (a <= hi)] for a in arrays] + [[lo, hi]]))
        return u.astype(float)

    x = grid([c.x for _, c in parts])
    px = grid([c.pwl_x for _, c in parts])
    y = sum(w * pwl_eval(c.x, c.seconds, x) for w, c in parts)
    py = sum(w * pwl_eval(c.pwl_x, c.pwl_seconds, px) for w, c in parts)
    return Curve(op, load_axis, x, np.asarray(y), px, np.asarray(py), source)
