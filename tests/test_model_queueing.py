"""Queueing: M/D/c exact at c = 1 and close to a discrete-event simulation at c > 1; the
lock-step prefill batch queue (wait, and the percentile of wait + own forward) against a
simulation of its own; the load at which a share of arrivals waits for a seat."""

import heapq
import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.model.queueing import (
    _forward_end_law,
    erlang_c,
    prefill_queue,
    prefill_share_over,
    seat_load,
    ttft_queueing,
)


@given(st.floats(0.01, 0.98), st.floats(1e-3, 1.0))
def test_single_server_is_pollaczek_khinchine(rho, service):
    lam = rho / service
    assert ttft_queueing(lam, service, 1) == pytest.approx(
        rho * service / (2 * (1 - rho)), rel=1e-9
    )


@given(st.integers(1, 64), st.floats(0.05, 0.95), st.floats(1e-9, 0.04))
def test_wait_grows_with_load(c, rho, more):
    s = 0.1
    assert ttft_queueing(rho * c / s, s, c) <= ttft_queueing((rho + more) * c / s, s, c)


def test_saturated_queue_is_infinite_and_idle_is_zero():
    assert math.isinf(ttft_queueing(10.0, 1.0, 8))
    assert ttft_queueing(0.0, 1.0, 8) == 0.0


def test_erlang_c_single_server_is_rho():
    assert erlang_c(1, 0.7) == pytest.approx(0.7)


def _simulate_mdc(lam: float, s: float, c: int, n: int, seed: int) -> float:
    rng = random.Random(seed)
    free = [0.0] * c
    t, waits = 0.0, 0.0
    for _ in range(n):
        t += rng.expovariate(lam)
        start = max(t, heapq.heappop(free))
        waits += start - t
        heapq.heappush(free, start + s)
    return waits / n


@pytest.mark.parametrize("c,rho", [(2, 0.7), (4, 0.85), (16, 0.9)])
def test_multi_server_matches_simulation(c, rho):
    s = 1.0
    lam = rho * c / s
    sim = _simulate_mdc(lam, s, c, 200_000, seed=c)
    assert ttft_queueing(lam, s, c) == pytest.approx(sim, rel=0.08)


@pytest.mark.parametrize(("servers", "offered"), [(1, 0.3), (2, 1.5), (8, 6.0), (30, 27.5)])
def test_erlang_c_matches_the_textbook_sum(servers, offered):
    """Erlang C = (a^c / c!) / (1 - rho) over sum_{k<c} a^k / k! + (a^c / c!) / (1 - rho)."""
    rho = offered / servers
    tail = offered**servers / math.factorial(servers) / (1 - rho)
    head = sum(offered**k / math.factorial(k) for k in range(servers))
    assert erlang_c(servers, offered) == pytest.approx(tail / (head + tail), rel=1e-9)


def _simulate_prefill(lam: float, forwards: tuple[float, ...], ranks: int, n: int, seed: int):
    """One replica: a forward takes up to ranks x len(forwards) waiting requests in arrival
    order (at once for a request that finds it idle) and lasts forwards[k - 1], k the busiest
    rank's share when they are dealt out evenly; returns every request's (wait, TTFT)."""
    rng = random.Random(seed)
    full = ranks * len(forwards)
    arrivals, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(lam)
        arrivals.append(t)
    out, free, i = [], 0.0, 0
    while i < len(arrivals):
        start = max(free, arrivals[i])
        taken = [a for a in arrivals[i : i + full] if a <= start]
        free = start + forwards[math.ceil(len(taken) / ranks) - 1]
        out += [(start - a, free - a) for a in taken]
        i += len(taken)
    return out


@pytest.mark.parametrize(
    ("forwards", "ranks", "util"),
    [((0.2,), 1, 0.5), ((0.2,) * 8, 1, 0.3), ((0.1, 0.15, 0.2, 0.25), 4, 0.7),
     ((0.05, 0.09), 8, 0.9), ((0.2,) * 2, 1, 0.2)],
)  # fmt: skip
def test_prefill_queue_matches_a_simulation_of_its_own(forwards, ranks, util):
    """Mean wait, the share that waits and the p90 of wait + own forward, for constant and
    load-dependent forwards, against a direct simulation (the chain is exact, so only the
    simulation's noise and the midpoint rule over the arrival's position separate them)."""
    full = ranks * len(forwards)
    lam = util * full / forwards[-1]
    runs = _simulate_prefill(lam, forwards, ranks, 200_000, seed=full)
    waits = [w for w, _ in runs]
    ttfts = sorted(t for _, t in runs)
    got = prefill_queue(lam, forwards, ranks, 90)
    assert got.wait == pytest.approx(sum(waits) / len(waits), rel=0.03, abs=1e-3)
    assert got.busy == pytest.approx(sum(w > 0 for w in waits) / len(waits), abs=0.01)
    p90 = ttfts[int(0.9 * len(ttfts))]
    assert got.percentile == pytest.approx(p90, rel=0.03)
    assert prefill_share_over(lam, forwards, ranks, p90) == pytest.approx(0.1, abs=0.02)


@given(
    forwards=st.lists(st.floats(0.01, 0.5), min_size=1, max_size=4).map(lambda f: tuple(sorted(f))),
    ranks=st.integers(1, 4),
    util=st.floats(0.05, 0.97),
    pct=st.sampled_from([50.0, 90.0, 99.0]),
    level=st.floats(0.0, 1.0),
)
def test_share_over_a_time_is_within_the_tail_exactly_when_the_percentile_is(
    forwards, ranks, util, pct, level
):
    """The percentile is at most t exactly when the share of requests over t is at most the
    tail, for t at the law's own quantiles (its atoms, where the two readings could part) and
    between them."""
    rate = util * ranks * len(forwards) / forwards[-1]
    q = prefill_queue(rate, forwards, ranks, pct)
    grid = q.quantiles
    t = grid[min(int(level * len(grid)), len(grid) - 1)] * (1 + (level - 0.5) * 1e-3)
    for at in (t, q.percentile):
        within = prefill_share_over(rate, forwards, ranks, at) <= 1 - pct / 100 + 1e-12
        assert within == (q.percentile <= at)


@pytest.mark.parametrize(
    ("forwards", "ranks", "util"),
    [
        ((1.0,), 4, 0.9),
        ((0.5, 0.8, 1.0), 2, 0.97),
        (tuple(0.034 + 0.0009 * m for m in range(1, 129)), 2, 0.3),
    ],
)
def test_forward_end_law_is_the_dense_chains_stationary_vector(forwards, ranks, util):
    """The banded solve (folded tail, a likely state fixed) against the eigenvector of the
    dense transition matrix written out state by state. The third case is a wide batch at
    light load, where the chain settles near 22 waiting and the old anchor (rate x S(B) = 76
    waiting, a weight near 1e-14) left the solve all on the anchor."""
    seconds = np.array([forwards[(m - 1) // ranks] for m in range(1, ranks * len(forwards) + 1)])
    full, rate = len(seconds), util * len(seconds) / seconds[-1]
    law = _forward_end_law(rate, seconds)
    size = len(law)
    step = np.zeros((size, size))
    for n in range(size):
        taken = min(max(n, 1), full)
        for arrivals in range(size):
            a = rate * seconds[taken - 1]
            mass = math.exp(arrivals * math.log(a) - a - math.lgamma(arrivals + 1))
            step[n, min(max(n - full, 0) + arrivals, size - 1)] += mass
    values, vectors = np.linalg.eig(step.T)
    dense = np.real(vectors[:, np.argmin(abs(values - 1))])
    assert law == pytest.approx(dense / dense.sum(), abs=1e-9)


def test_prefill_queue_saturates_and_idles():
    assert math.isinf(prefill_queue(21.0, (0.1, 0.2), 2, 90).percentile)
    idle = prefill_queue(0.0, (0.1, 0.2), 2, 90)
    assert (idle.wait, idle.percentile) == (0.0, 0.1)


def test_seat_load_inverts_erlang_c():
    """One seat: Erlang C is the utilisation, so a 30% share waiting is a load of 0.3; many
    seats run fuller at the same share (the Halfin-Whitt regime: 1024 seats at 1% near 93%)."""
    assert seat_load(1, 0.3) == pytest.approx(0.3, rel=1e-8)
    assert erlang_c(64, seat_load(64, 0.05)) == pytest.approx(0.05, rel=1e-6)
    assert 0.92 < seat_load(1024, 0.01) / 1024 < 0.935
