"""Queueing: M/D/c exact at c = 1 and close to a discrete-event simulation at c > 1; the
lock-step prefill wait and the wait percentile against simulations of their own."""

import heapq
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.model.queueing import erlang_c, lockstep_wait, ttft_queueing, wait_quantile


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


def _simulate_lockstep(lam: float, s: float, replicas: int, batch: int, n: int, seed: int):
    """Replicas that start a forward of up to ``batch`` waiting requests whenever they are free
    (requests in arrival order), each fed an equal random share of the arrivals; returns every
    request's wait."""
    rng = random.Random(seed)
    arrivals: list[list[float]] = [[] for _ in range(replicas)]
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(lam)
        arrivals[rng.randrange(replicas)].append(t)
    waits = []
    for mine in arrivals:
        free, i = 0.0, 0
        while i < len(mine):
            start = max(free, mine[i])
            taken = [a for a in mine[i : i + batch] if a <= start]
            waits += [start - a for a in taken]
            i += len(taken)
            free = start + s
    return waits


@pytest.mark.parametrize(
    ("replicas", "batch", "util"), [(1, 1, 0.5), (1, 8, 0.3), (2, 8, 0.5), (4, 4, 0.7), (3, 2, 0.2)]
)
def test_lockstep_wait_is_close_to_a_simulation(replicas, batch, util):
    s = 0.2
    lam = util * replicas * batch / s
    waits = _simulate_lockstep(lam, s, replicas, batch, 100_000, seed=batch)
    mean = sum(waits) / len(waits)
    got = lockstep_wait(lam, s, replicas, batch)
    assert got.wait == pytest.approx(mean, rel=0.03, abs=1e-3 * s)
    assert got.busy == pytest.approx(sum(w > 0 for w in waits) / len(waits), abs=0.01)


def test_wait_percentile_of_an_exponential_tail():
    """M/M/1 (rho 0.5, mean service 1): P(W > t) = rho exp(-(1 - rho) t), mean wait 1: the p90
    is ln(5) / 0.5."""
    assert wait_quantile(1.0, 0.5, 90) == pytest.approx(math.log(5) / 0.5)
    assert wait_quantile(1.0, 0.05, 90) == 0.0
