"""A request's TTFT as a sum of independent delays, and its percentile over the paths requests
take through a plan.

A path's delay is a fixed part, plus a draw from an empirical sample (a prefill queue's law,
as equally likely quantiles), plus a uniform residual on [0, spread] (the step or iteration in
progress when the request arrives), plus up to two queue waits. A wait is zero for a share
``1 - share`` of arrivals and exponential for the rest (the M/M/c form: mean ``mean`` over all
arrivals, so ``mean / share`` for those that wait). The tail P(delay > t) is closed-form
given the sample: the exponentials of the waits that occur (one, or the two in series, a
hypoexponential) averaged over the uniform residual. Percentiles invert the tail by
bisection; over several paths, of the rate-weighted mixture."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import brentq


@dataclass(frozen=True)
class Wait:
    """A queue wait: ``share`` of arrivals wait at all; ``mean`` seconds over all arrivals."""

    share: float
    mean: float

    @property
    def rate(self) -> float:
        """The exponential rate of the wait of those that wait."""
        return self.share / self.mean


NO_WAIT = Wait(0.0, 0.0)


@dataclass(frozen=True)
class Delay:
    """A sum of independent parts (seconds): ``fixed``, a draw from ``sample`` (equally likely
    values; none: 0), a uniform on [0, ``spread``] and ``waits``."""

    fixed: float = 0.0
    sample: tuple[float, ...] = ()
    spread: float = 0.0
    waits: tuple[Wait, ...] = ()

    @property
    def mean(self) -> float:
        drawn = sum(self.sample) / len(self.sample) if self.sample else 0.0
        return self.fixed + drawn + self.spread / 2 + sum(w.mean for w in self.waits)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.mean)

    def tail(self, t: float) -> float:
        """P(delay > t)."""
        if not self.finite:
            return 1.0
        if not self.sample:
            x = t - self.fixed
            return sum(p * _tail_at(x, self.spread, terms) for p, terms in self._series)
        values, weights = self._atoms
        x = t - self.fixed - values
        return float(weights @ sum(p * _tail(x, self.spread, terms) for p, terms in self._series))

    @cached_property
    def _atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """The sample's distinct values and their shares."""
        values, counts = np.unique(np.asarray(self.sample), return_counts=True)
        return values, counts / counts.sum()

    @cached_property
    def _series(self) -> list[tuple[float, list[tuple[float, float]]]]:
        """(probability, [(coefficient, rate)]) per subset of the waits that occur: the tail of
        the sum of their exponentials as sum(coefficient x exp(-rate y))."""
        waits = [w for w in self.waits if w.share > 0 and w.mean > 0]
        out = [(math.prod(1 - w.share for w in waits), [])]
        for i, w in enumerate(waits):
            others = math.prod(1 - v.share for j, v in enumerate(waits) if j != i)
            out.append((w.share * others, [(1.0, w.rate)]))
        if len(waits) == 2:
            a, b = waits[0].rate, waits[1].rate
            if abs(a - b) <= 1e-9 * max(a, b):
                b = a * (1 + 1e-6)
            out.append((waits[0].share * waits[1].share, [(b / (b - a), a), (-a / (b - a), b)]))
        return [(p, terms) for p, terms in out if p > 0]


def _tail_at(x: float, spread: float, terms: list[tuple[float, float]]) -> float:
    """P(U + E > x) for U uniform on [0, spread] and E with tail sum(c exp(-r y)) (none:
    E = 0)."""
    if x <= 0:
        return 1.0
    if spread <= 0:
        return sum(c * math.exp(-r * x) for c, r in terms)
    above = max(x - spread, 0.0)
    area = max(spread - x, 0.0)
    area += sum(c * (math.exp(-r * above) - math.exp(-r * x)) / r for c, r in terms)
    return area / spread


def _tail(x: np.ndarray, spread: float, terms: list[tuple[float, float]]) -> np.ndarray:
    """``_tail_at`` elementwise."""
    pos = np.maximum(x, 0.0)
    if spread <= 0:
        if not terms:
            return (x < 0).astype(float)
        return np.where(x <= 0, 1.0, sum(c * np.exp(-r * pos) for c, r in terms))
    above = np.maximum(x - spread, 0.0)
    inside = np.clip(spread - x, 0.0, spread)
    area = inside + sum(c * (np.exp(-r * above) - np.exp(-r * pos)) / r for c, r in terms)
    return np.where(x <= 0, 1.0, area / spread)


Paths = list[tuple[float, Delay]]
"""(weight, delay) pairs: the requests/s taking each path (all equal when none is positive)."""


def _shares(paths: Paths) -> Paths:
    """``paths`` with their weights as shares of the requests."""
    total = sum(w for w, _ in paths)
    return [(w / total if total > 0 else 1 / len(paths), d) for w, d in paths]


def share_over(paths: Paths, t: float) -> float:
    """The share of requests over ``paths`` whose delay exceeds ``t``."""
    return sum(w * d.tail(t) for w, d in _shares(paths))


def percentile(paths: Paths, pct: float, tol: float = 1e-7) -> float:
    """The ``pct`` percentile of a delay over ``paths``; infinite when the paths whose delay is
    infinite carry the tail."""
    pairs = _shares(paths)
    target = 1.0 - pct / 100
    if sum(w for w, d in pairs if not d.finite) >= target:
        return math.inf
    pairs = [(w, d) for w, d in pairs if w > 0]

    def excess(t: float) -> float:
        return share_over(pairs, t) - target

    lo, hi = 0.0, max(d.mean for _, d in pairs if d.finite) + 1e-9
    while excess(hi) > 0:
        lo, hi = hi, 2 * hi
    if excess(lo) <= 0:
        return lo
    return brentq(excess, lo, hi, xtol=1e-12, rtol=tol)
