"""One 1-D latency curve along an op's load axis: the measured grid (linear between measured
points) and the fitted PWL surrogate, both in seconds, with the explicit extrapolation policy:
above the measured range the last segment is extended, below it the first value is held, and
every such value is flagged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aicpp_opt.costs.pwl_fit import pwl_eval


@dataclass(frozen=True)
class Latency:
    """A latency in seconds; `extrapolated` when the load lies outside the measured range."""

    seconds: float
    extrapolated: bool
    source: str


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

    def eval(self, x: float) -> Latency:
        """Measured grid at load x (linear between measured points)."""
        return Latency(
            float(pwl_eval(self.x, self.seconds, x)), self.is_extrapolated(x), self.source
        )

    def pwl(self, x):
        """The fitted PWL surrogate at load x (scalar or array), seconds."""
        y = pwl_eval(self.pwl_x, self.pwl_seconds, x)
        return float(y) if np.ndim(y) == 0 else y


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
