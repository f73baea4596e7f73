"""The simulator against closed forms: a prefill role with one rank and batch 1 is M/D/1 (its
mean wait is Pollaczek-Khinchine's), c replicas under the even random split are c independent
M/D/1 queues, a rank serving up to b requests per forward matches the exact embedded Markov
chain of that batch queue (also with lock-step ranks and forwards that grow with the load),
joining the shortest queue waits less, and MTP emits
1 + a + ... + a^d tokens per step on average."""

import pytest
from simulate_helpers import StubPricer, constant, instance, plan, role, slowest_tokens

from aicpp_opt.model.queueing import prefill_queue
from aicpp_opt.simulate import simulate_plan

SERVICE = 1.0


def pk_wait(rho: float, service: float) -> float:
    """Pollaczek-Khinchine: the mean wait in M/D/1."""
    return rho * service / (2 * (1 - rho))


def _pd(replicas: int, batch: int = 1, dp: int = 1):
    inst = instance({"name": "w", "isl": 100, "osl": 1})
    p = plan(
        inst,
        role("prefill", dp, dp=dp, replicas=replicas, batch=batch, chunk_tokens=4096),
        role("decode", 1, replicas=1, batch_per_gpu=64, domain=1),
    )
    return inst, p


def _run(replicas: int, rate: float, pricer, router="random", n=80_000, batch=1, dp=1):
    """``n`` requests at ``rate`` (one output token each, so only the prefill queue is
    exercised)."""
    inst, p = _pd(replicas, batch, dp)
    return simulate_plan(
        p,
        inst,
        duration_s=n / rate,
        warmup_s=200 * SERVICE,
        seed=7,
        rates={"w": rate},
        router=router,
        pricer=pricer,
    )


def _wait(
    replicas: int, rho: float, router: str = "random", n: int = 80_000, batch: int = 1
) -> float:
    """Mean wait before prefill at utilisation ``rho`` of forwards of ``SERVICE`` seconds."""
    rate = rho * replicas * batch / SERVICE
    res = _run(replicas, rate, StubPricer(constant(SERVICE)), router, n, batch)
    return res.roles["prefill"].wait.mean


def test_one_rank_batch_one_is_md1():
    assert _wait(1, 0.5) == pytest.approx(pk_wait(0.5, SERVICE), rel=0.03)


def test_even_random_split_is_independent_md1_queues():
    assert _wait(4, 0.5) == pytest.approx(pk_wait(0.5, SERVICE), rel=0.03)


def test_batched_forwards_match_the_batch_queue_chain():
    """Up to 4 requests per forward, Poisson arrivals at 70% of capacity: the embedded Markov
    chain at forward ends (``model.queueing.prefill_queue``) is exact for this queue."""
    exact = prefill_queue(0.7 * 4 / SERVICE, (SERVICE,) * 4, 1, 90).wait
    assert _wait(1, 0.7, batch=4) == pytest.approx(exact, rel=0.03)


def test_load_dependent_lock_step_forwards_match_the_chain():
    """Two DP ranks of up to 4 requests each, dealt round-robin; a forward lasts 50 ms + 1 ms
    per prompt token of its busiest rank (100-token prompts): the chain over the forward's size
    gives the simulator's mean wait and p90 TTFT within 5% (the chain pools the ranks' queues,
    the simulator keeps one per rank; seeds scatter the simulated mean by about 2%)."""
    per_token, base = 1e-3, 0.05
    forwards = tuple(base + per_token * 100 * k for k in range(1, 5))
    rate = 0.8 * 8 / forwards[-1]
    res = _run(1, rate, StubPricer(slowest_tokens(per_token, base)), batch=4, dp=2)
    exact = prefill_queue(rate, forwards, 2, 90)
    assert res.roles["prefill"].wait.mean == pytest.approx(exact.wait, rel=0.05)
    assert res.workloads["w"].slo_ttft == pytest.approx(exact.percentile, rel=0.05)


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
