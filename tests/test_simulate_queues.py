"""The simulator against closed forms: a prefill role with one rank and batch 1 is M/D/1 (its
mean wait is Pollaczek-Khinchine's), c replicas under the even random split are c independent
M/D/1 queues, a rank serving up to b requests per forward matches the exact embedded Markov
chain of that batch queue, joining the shortest queue waits less, and MTP emits
1 + a + ... + a^d tokens per step on average."""

import pytest
from simulate_helpers import StubPricer, constant, instance, plan, role

from aicpp_opt.model.queueing import batch_queue
from aicpp_opt.simulate import simulate_plan

SERVICE = 1.0


def pk_wait(rho: float, service: float) -> float:
    """Pollaczek-Khinchine: the mean wait in M/D/1."""
    return rho * service / (2 * (1 - rho))


def _pd(replicas: int, batch: int = 1):
    inst = instance({"name": "w", "isl": 100, "osl": 1})
    p = plan(
        inst,
        role("prefill", 1, replicas=replicas, batch=batch, chunk_tokens=4096),
        role("decode", 1, replicas=1, batch_per_gpu=64, domain=1),
    )
    return inst, p


def _wait(
    replicas: int, rho: float, router: str = "random", n: int = 80_000, batch: int = 1
) -> float:
    """Mean wait before prefill of ``n`` requests at utilisation ``rho`` (one output token
    each, so only the prefill queue is exercised)."""
    inst, p = _pd(replicas, batch)
    rate = rho * replicas * batch / SERVICE
    res = simulate_plan(
        p,
        inst,
        duration_s=n / rate,
        warmup_s=200 * SERVICE,
        seed=7,
        rates={"w": rate},
        router=router,
        pricer=StubPricer(constant(SERVICE)),
    )
    return res.roles["prefill"].wait.mean


def test_one_rank_batch_one_is_md1():
    assert _wait(1, 0.5) == pytest.approx(pk_wait(0.5, SERVICE), rel=0.03)


def test_even_random_split_is_independent_md1_queues():
    assert _wait(4, 0.5) == pytest.approx(pk_wait(0.5, SERVICE), rel=0.03)


def test_batched_forwards_match_the_batch_queue_chain():
    """Up to 4 requests per forward, Poisson arrivals at 70% of capacity: the embedded Markov
    chain at forward ends (``model.queueing.batch_queue``) is exact for this queue."""
    exact = batch_queue(0.7 * 4 / SERVICE, SERVICE, 4).wait
    assert _wait(1, 0.7, batch=4) == pytest.approx(exact, rel=0.03)


def test_join_shortest_queue_waits_less_than_the_random_split():
    assert _wait(4, 0.7, "jsq", n=20_000) < 0.5 * pk_wait(0.7, SERVICE)


def test_mtp_emits_the_expected_accepted_tokens_per_step():
    a, step, osl = 0.85, 0.1, 2001
    inst = instance({"name": "w", "isl": 100, "osl": osl, "mtp_acceptance": a})
    p = plan(
        inst,
        role("prefill", 1, batch=8, chunk_tokens=4096),
        role("decode", 1, batch_per_gpu=64, mtp=2, domain=1),
    )
    res = simulate_plan(
        p,
        inst,
        duration_s=10.0,
        warmup_s=0.0,
        drain_s=1000.0,
        seed=3,
        rates={"w": 2.0},
        pricer=StubPricer(constant(0.01), decode_fn=lambda n: step),
    )
    tokens_per_step = 1 + a + a * a
    assert res.workload().tpot.mean == pytest.approx(step / tokens_per_step, rel=0.01)
