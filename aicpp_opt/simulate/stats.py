"""What a run measured: per-request TTFT and TPOT, inter-token latencies, tokens streamed, and
their summaries per workload and per role.

Definitions. TTFT: arrival to first token. TPOT of a request: (finish - first token) / (output
tokens - 1), for requests with at least two output tokens. ITL: the gap between consecutive
streamed chunks of a request, one sample per sequence per decode step (a step's duration).
Throughput: output tokens streamed inside the measurement window / its length. SLO attainment:
the share of measured requests with TTFT and TPOT both within the workload's targets. A measured
request still unfinished when the run stops counts as infinitely late (a failed SLO), so a
saturated role shows as an infinite percentile rather than a flattering one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class RoleLog:
    """Appended to by a role's schedulers as they run."""

    step_end: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)
    step_measured: list[int] = field(default_factory=list)
    step_seqs: list[int] = field(default_factory=list)
    forward_seconds: list[float] = field(default_factory=list)
    forward_requests: list[int] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)

    def step(self, end: float, seconds: float, tokens: int, measured: int, seqs: int) -> None:
        """A decode step (or a rank's share of an iteration) ended at ``end``."""
        self.step_end.append(end)
        self.step_seconds.append(seconds)
        self.step_tokens.append(tokens)
        self.step_measured.append(measured)
        self.step_seqs.append(seqs)

    def forward(self, seconds: float, requests: int) -> None:
        """A forward carrying ``requests`` prompt pieces started."""
        self.forward_seconds.append(seconds)
        self.forward_requests.append(requests)

    def tokens_in(self, start: float, end: float) -> int:
        """Output tokens streamed in [start, end): decode steps' and first tokens."""
        t = np.asarray(self.step_end)
        inside = (t >= start) & (t < end)
        first = np.asarray(self.first_tokens)
        return int(np.asarray(self.step_tokens)[inside].sum()) + int(
            ((first >= start) & (first < end)).sum()
        )

    def itl(self) -> tuple[np.ndarray, np.ndarray]:
        """(gap seconds, measured sequences that saw it) per step."""
        return np.asarray(self.step_seconds), np.asarray(self.step_measured)


def ms_text(seconds: float) -> str:
    """A latency in ms for text output; ``inf`` for a request that never got there."""
    return f"{seconds * 1e3:.1f}" if math.isfinite(seconds) else "inf"


def percentile(values: np.ndarray, p: float) -> float:
    """The ``p``-th percentile, interpolated linearly between order statistics (numpy's
    default); infinite when it reaches an infinite value, NaN without values."""
    v = np.sort(np.asarray(values, dtype=float))
    if not len(v):
        return math.nan
    pos = (len(v) - 1) * p / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if not math.isfinite(v[hi]):
        return math.inf
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def weighted_percentile(values: np.ndarray, weights: np.ndarray, p: float) -> float:
    """The smallest value with at least ``p`` % of the weight at or below it."""
    keep = weights > 0
    if not keep.any():
        return math.nan
    order = np.argsort(values[keep])
    v, w = values[keep][order], weights[keep][order]
    cum = np.cumsum(w)
    return float(v[min(np.searchsorted(cum, p / 100 * cum[-1]), len(v) - 1)])


@dataclass(frozen=True)
class Dist:
    """Mean and percentiles of a latency, in seconds (NaN: no sample)."""

    mean: float
    p50: float
    p90: float
    p99: float
    count: int

    @classmethod
    def of(cls, values: np.ndarray) -> Dist:
        values = np.asarray(values, dtype=float)
        if not len(values):
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        p50, p90, p99 = (percentile(values, p) for p in PERCENTILES)
        return cls(float(values.mean()), p50, p90, p99, len(values))

    @classmethod
    def weighted(cls, values: np.ndarray, weights: np.ndarray) -> Dist:
        total = weights.sum()
        if not total:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        p50, p90, p99 = (weighted_percentile(values, weights, p) for p in PERCENTILES)
        return cls(float(values @ weights / total), p50, p90, p99, int(total))

    def to_ms(self) -> dict:
        def ms(x: float) -> float | None:
            return x * 1e3 if math.isfinite(x) else None

        return {
            "mean": ms(self.mean),
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
        }
