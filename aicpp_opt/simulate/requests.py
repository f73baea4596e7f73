"""Requests, the entities that flow through the roles, and the sources they come from: Poisson
arrivals at a workload's rate with lengths drawn from its distribution, or the rows of a trace.

A request's prompt has ``cached`` tokens served from a prefix cache (their KV exists, they need
no compute) and ``isl - cached`` tokens to prefill; at least its last token is computed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from aicpp_opt.simulate.trace import TraceRow
from aicpp_opt.spec.workload import Workload


@dataclass(slots=True, eq=False)
class Request:
    """One request and the times it reaches each stage (NaN until it does). ``prefilled``
    counts prompt tokens whose KV exists (the cached prefix from the start)."""

    id: int
    workload: str
    arrival: float
    isl: int
    osl: int
    cached: int
    measured: bool
    prefilled: int = 0
    prefill_role: str = ""
    decode_role: str = ""
    prefill_start: float = math.nan
    kv_done: float = math.nan
    first_token: float = math.nan
    finish: float = math.nan

    def __post_init__(self) -> None:
        self.prefilled = self.cached


@dataclass(frozen=True)
class Arrival:
    """What a source yields: arrival time, prompt and output tokens, cached prompt tokens."""

    time: float
    isl: int
    osl: int
    cached: int


BLOCK = 4096
"""Arrivals drawn per numpy call."""


def lognormal_lengths(rng: np.random.Generator, mean: float, cv: float, n: int) -> np.ndarray:
    """``n`` integer lengths >= 1 with the given mean and coefficient of variation (lognormal:
    sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2 / 2); all the mean when cv is 0."""
    if cv <= 0:
        return np.full(n, max(1, round(mean)), dtype=np.int64)
    sigma = math.sqrt(math.log1p(cv * cv))
    mu = math.log(mean) - sigma * sigma / 2
    return np.maximum(1, np.rint(rng.lognormal(mu, sigma, n))).astype(np.int64)


def cached_tokens(isl: int, share: float) -> int:
    """The cached prefix of a prompt of ``isl`` tokens at a reuse ``share``: at least the last
    prompt token is computed (it samples the first output token)."""
    return min(isl - 1, round(isl * share))


def poisson_arrivals(
    workload: Workload, rate: float, rng: np.random.Generator
) -> Iterator[Arrival]:
    """Endless Poisson arrivals at ``rate`` requests/s; lengths lognormal around the workload's
    means with its CVs, the workload's prefix-reuse share of each prompt cached."""
    t = 0.0
    while True:
        times = t + np.cumsum(rng.exponential(1.0 / rate, BLOCK))
        isl = lognormal_lengths(rng, workload.isl, workload.isl_cv, BLOCK)
        osl = lognormal_lengths(rng, workload.osl, workload.osl_cv, BLOCK)
        for at, n, out in zip(times.tolist(), isl.tolist(), osl.tolist(), strict=True):
            yield Arrival(at, n, out, cached_tokens(n, workload.prefix_reuse))
        t = float(times[-1])


def trace_arrivals(rows: tuple[TraceRow, ...], prefix_share: float) -> Iterator[Arrival]:
    """The trace's rows as arrivals. Without prefix ids every prompt has the workload's reuse
    share cached; with them, a request whose id appeared before finds the longest earlier
    prompt of that id cached (up to its own last token), a first occurrence finds nothing."""
    with_ids = any(r.prefix_id is not None for r in rows)
    seen: dict[str, int] = {}
    for r in rows:
        if not with_ids:
            cached = cached_tokens(r.input_tokens, prefix_share)
        elif r.prefix_id is None:
            cached = 0
        else:
            cached = min(r.input_tokens - 1, seen.get(r.prefix_id, 0))
            seen[r.prefix_id] = max(seen.get(r.prefix_id, 0), r.input_tokens)
        yield Arrival(r.timestamp, r.input_tokens, r.output_tokens, cached)
