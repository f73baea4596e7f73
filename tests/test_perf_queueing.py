"""M/D/c queueing: exact at c = 1, close to a discrete-event simulation at c > 1."""

import heapq
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.perf.queueing import erlang_c, ttft_queueing


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
