"""Queueing delay before prefill starts: M/D/c (Poisson arrivals, deterministic service, c
servers), by the Cosmetatos approximation

    Wq(M/D/c) = 1/2 Wq(M/M/c) [1 + (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c)],

with Wq(M/M/c) from the Erlang-C formula. For c = 1 the bracket is 1 and the formula is the
exact Pollaczek-Khinchine M/D/1 wait. At rho >= 1 the queue is unstable: the wait is infinite."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.linalg import solve_banded
from scipy.special import gammaincc, gammaln

SATURATED = 1e-9
"""Utilisation within this of 1 is saturation (a fleet balanced on its prefill capacity sits at
rho = 1 up to rounding)."""


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``offered`` = lambda * S.

    Closed form through the Erlang-B formula B = Poisson pmf(c; a) / Poisson cdf(c; a) (the cdf
    is the regularised upper incomplete gamma Q(c + 1, a)), so the cost does not grow with the
    number of servers: fleets reach thousands of prefill ranks."""
    rho = offered / servers
    if rho >= 1.0:
        return 1.0
    if offered <= 0.0:
        return 0.0
    log_pmf = -offered + servers * math.log(offered) - math.lgamma(servers + 1)
    erlang_b = math.exp(log_pmf) / gammaincc(servers + 1, offered)
    return erlang_b / (1.0 - rho * (1.0 - erlang_b))


def ttft_queueing(arrival_rate: float, service_time: float, servers: int) -> float:
    """Mean wait (seconds) before service in M/D/c; 0 at no load, inf when saturated."""
    if arrival_rate <= 0 or service_time <= 0:
        return 0.0
    offered = arrival_rate * service_time
    rho = offered / servers
    if rho >= 1.0 - SATURATED:
        return math.inf
    wq_mmc = erlang_c(servers, offered) * service_time / (servers * (1.0 - rho))
    c = servers
    correction = 1.0 + (1.0 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)
    return 0.5 * wq_mmc * correction


@dataclass(frozen=True)
class BatchQueue:
    """A replica that serves waiting requests in forwards of up to ``batch``: the mean wait
    before a request's forward starts and the share of time the replica is busy (the share of
    arrivals that wait at all)."""

    wait: float
    busy: float


def batch_queue(arrival_rate: float, service_time: float, batch: int) -> BatchQueue:
    """One prefill replica whose attention-DP ranks run a forward in lock step (they join in
    every MoE layer): when it frees up it starts a forward of ``service_time`` with up to
    ``batch`` waiting requests (at once with a request that finds it idle); Poisson arrivals.

    Solved through the Markov chain embedded at forward ends (n waiting requests, next
    n = max(n - batch, 0) + Poisson(rate x service)); the mean wait is the time-average queue
    over a cycle (Little's law). With ``batch`` 1 it is M/D/1. Time scales with the service
    time, so the chain is solved once per (load, batch) and cached."""
    if arrival_rate <= 0 or service_time <= 0:
        return BatchQueue(0.0, 0.0)
    wait, busy = _batch_queue(arrival_rate * service_time, batch)
    return BatchQueue(wait * service_time, busy)


MAX_STATES = 50_000
"""A carry-over needing more states than this belongs to a replica within a hair of
saturation, where the wait is many service times: reported as saturated (infinite)."""
TAIL_MASS = 1e-10
"""Stationary mass allowed in the last states of a truncated chain before it is grown."""


@lru_cache(maxsize=65536)
def _batch_queue(a: float, batch: int) -> tuple[float, float]:
    """(mean wait in service times, busy share) at ``a`` arrivals per service time.

    With n the requests waiting when a forward ends, the carry-over beyond the next batch
    O = max(n - batch, 0) follows the Lindley recursion O' = max(O + A - batch, 0), A ~
    Poisson(a): a chain on a few states, solved exactly. Then n = O + A, a forward finds the
    replica idle after it with probability pi0 = P(O = 0) e^-a, a request waits on average the
    O carried over plus half the forward's arrivals, and by Little's law
    wait = (E[O] + a / 2) / (a + pi0) service times, busy share = a / (a + pi0)."""
    if a >= batch * (1.0 - SATURATED):
        return math.inf, 1.0
    size = int(30 + 6 * math.sqrt(a) + 12 * a / (batch - a))
    while size <= MAX_STATES:
        carry = _carry_over(a, batch, size)
        if carry[-max(10, size // 20) :].sum() <= TAIL_MASS:
            pi0 = carry[0] * math.exp(-a)
            mean = float(np.arange(size) @ carry)
            return float((mean + a / 2) / (a + pi0)), float(a / (a + pi0))
        size *= 2
    return math.inf, 1.0


def _poisson_pmf(k: np.ndarray, a: float) -> np.ndarray:
    """P(A = k) for A ~ Poisson(a), 0 for negative k (log-space, so large k and a are safe)."""
    kk = np.maximum(k, 0)
    out = np.exp(kk * math.log(a) - a - gammaln(kk + 1)) if a > 0 else (kk == 0) * 1.0
    return np.where(k >= 0, out, 0.0)


def _carry_over(a: float, batch: int, size: int) -> np.ndarray:
    """Stationary law of O' = max(O + A - batch, 0), A ~ Poisson(a), on 0..size-1.

    For k >= 1, pi_k = sum_o pi_o P(A = k + batch - o): with pi_0 fixed at 1 these equations
    are a banded linear system in pi_1.. (A lies within a +- 12 sqrt(a) but for a negligible
    mass), solved in O(size x band^2); then normalised."""
    spread = int(12 * math.sqrt(a) + 10)
    lo_a, hi_a = max(0, int(a) - spread), int(a) + spread
    # row k (1..size-1), column o (1..size-1): delta - P(A = k + batch - o), nonzero for
    # o - k in [batch - hi_a, batch - lo_a]
    upper = max(0, batch - lo_a)
    lower = max(0, hi_a - batch)
    n = size - 1
    k = np.arange(1, size)
    d = np.arange(-lower, upper + 1)[:, None]  # o = k + d
    o = k[None, :] + d
    # band[upper - d, o - 1] holds row k's coefficient of pi_o
    coef = np.where((o >= 1) & (o <= n), _poisson_pmf(k[None, :] + batch - o, a), 0.0)
    band = np.zeros((upper + lower + 1, n))
    rows = np.broadcast_to(upper - d, o.shape)
    ok = (o >= 1) & (o <= n)
    band[rows[ok], o[ok] - 1] = -coef[ok]
    band[upper] += 1.0
    rhs = _poisson_pmf(k + batch, a)  # the pi_0 = 1 term
    pi = np.concatenate([[1.0], np.clip(solve_banded((lower, upper), band, rhs), 0.0, None)])
    return pi / pi.sum()


def lockstep_wait(
    arrival_rate: float, service_time: float, replicas: int, batch: int
) -> BatchQueue:
    """``batch_queue`` of one of ``replicas`` prefill replicas, each taking an equal Poisson
    share of the arrivals (a router that ignores load: conservative against one that picks the
    idle replica)."""
    return batch_queue(arrival_rate / replicas, service_time, batch)


def wait_quantile(mean_wait: float, p_wait: float, percentile: float) -> float:
    """The ``percentile`` of a waiting time with mean ``mean_wait`` of which a share ``p_wait``
    of requests wait at all, on an exponential tail (the M/M/c form): P(W > t) = p_wait x
    exp(-t p_wait / mean_wait)."""
    tail = 1.0 - percentile / 100
    if mean_wait <= 0 or p_wait <= tail:
        return 0.0
    if not math.isfinite(mean_wait):
        return math.inf
    return mean_wait / p_wait * math.log(p_wait / tail)
