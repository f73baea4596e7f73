"""Hand-worked runs of the simulator's schedulers with known forward times: P/D (prefill queue,
the rank's KV link, continuous batching joining at step boundaries), lock-step attention-DP
ranks, and an aggregated role mixing chunked prefill into decode iterations."""

import math

import pytest
from simulate_helpers import StubPricer, constant, instance, plan, role, slowest_tokens

from aicpp_opt.simulate import simulate_plan


def _run(tmp_path, p, inst, rows: str, pricer):
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp_s,input_tokens,output_tokens\n" + rows)
    return simulate_plan(p, inst, trace=trace, pricer=pricer)


def test_pd_two_requests(tmp_path):
    """Prefill 0.3 s per forward, KV 0.1 s, decode step 0.1 + 0.1 x sequences.

    A (t=0, 4 tokens): prefill 0-0.3, KV 0.3-0.4, joins the idle decode at 0.4 (first token),
    steps 0.4-0.6 and 0.6-0.8 alone, 0.8-1.1 with B: done at 1.1.
    B (t=0.1, 3 tokens): waits for A's forward, prefill 0.3-0.6, KV 0.6-0.7, waits for the
    step in progress, joins at 0.8 (first token), steps 0.8-1.1 with A, 1.1-1.3 alone."""
    inst = instance()
    p = plan(
        inst,
        role("prefill", 1, batch=1, chunk_tokens=4096),
        role("decode", 1, batch_per_gpu=8, domain=1),
    )
    pricer = StubPricer(constant(0.3), decode_fn=lambda n: 0.1 + 0.1 * n, kv_s=0.1)
    res = _run(tmp_path, p, inst, "0,100,4\n0.1,100,3\n", pricer)
    w = res.workload()
    assert w.ttft_samples == pytest.approx([0.4, 0.7])
    assert w.tpot_samples == pytest.approx([0.7 / 3, 0.5 / 2])
    assert res.roles["prefill"].wait.mean == pytest.approx((0.0 + 0.2) / 2)
    assert res.roles["decode"].seat_wait.mean == pytest.approx((0.0 + 0.1) / 2)
    assert w.itl.mean == pytest.approx((0.2 + 0.2 + 0.3 + 0.3 + 0.2) / 5)
    assert res.ended_at == pytest.approx(1.3)


def test_lock_step_ranks_wait_for_the_slowest(tmp_path):
    """Two DP ranks in turn, 1 ms per token of the busiest rank. A (100 tokens, rank 0) runs
    alone 0-0.1; B (300 tokens, rank 1) and C (200 tokens, rank 0) arrive meanwhile and share
    the next forward, 0.1-0.4, as long as B's."""
    inst = instance({"name": "w", "isl": 100, "osl": 1})
    p = plan(
        inst,
        role("prefill", 2, dp=2, batch=1, chunk_tokens=4096),
        role("decode", 1, domain=1),
    )
    res = _run(
        tmp_path, p, inst, "0,100,1\n0.01,300,1\n0.02,200,1\n", StubPricer(slowest_tokens(1e-3))
    )
    assert res.workload().ttft_samples == pytest.approx([0.1, 0.39, 0.38])


def test_chunked_prefill_shares_an_iteration_with_decode(tmp_path):
    """One rank, 2 seats, 150-token budget; 0.1 s + 1 ms per token of the iteration.

    A (t=0, 200 tokens in, 3 out): [0, 150) in 0-0.25. B (t=0.05, 100 in, 2 out) queues.
    0.25-0.5: A's last 50 and B's 100: both first tokens at 0.5. 0.5-0.602: two decode
    sequences (B done). 0.602-0.703: A alone, done."""
    inst = instance({"name": "w", "isl": 100, "osl": 2})
    p = plan(inst, role("agg", 1, batch_per_gpu=2, chunk_tokens=150))
    res = _run(tmp_path, p, inst, "0,200,3\n0.05,100,2\n", StubPricer(slowest_tokens(1e-3, 0.1)))
    w = res.workload()
    assert w.ttft_samples == pytest.approx([0.5, 0.45])
    assert w.tpot_samples == pytest.approx([0.203 / 2, 0.102])
    assert res.roles["agg"].wait.mean == pytest.approx((0.0 + 0.2) / 2)


def test_a_full_rank_admits_no_prefill_until_a_seat_frees(tmp_path):
    """One seat: B (t=0.01) waits until A (prefill 0-0.2, decode 0.2-0.4) has left."""
    inst = instance({"name": "w", "isl": 100, "osl": 2})
    p = plan(inst, role("agg", 1, batch_per_gpu=1, chunk_tokens=1000))
    res = _run(tmp_path, p, inst, "0,100,2\n0.01,100,2\n", StubPricer(constant(0.2)))
    assert res.workload().ttft_samples == pytest.approx([0.2, 0.59])


def test_an_overloaded_role_shows_infinite_percentiles_not_flattering_ones():
    """Prefill at three times its capacity: by the end of the drain (200 s) one forward a
    second has served about 200 of some 300 arrivals, so a third of the measured ones never
    finish; they count as infinitely late and the JSON says null."""
    inst = instance({"name": "w", "isl": 100, "osl": 1})
    p = plan(inst, role("prefill", 1, batch=1, chunk_tokens=4096), role("decode", 1, domain=1))
    res = simulate_plan(
        p, inst, duration_s=100.0, rates={"w": 3.0}, pricer=StubPricer(constant(1.0))
    )
    w = res.workload()
    assert w.unfinished > w.requests / 4
    assert math.isinf(w.ttft.p90) and w.to_dict()["ttft_ms"]["p90"] is None
    assert w.slo_attainment < 0.5
    assert any("unfinished" in n for n in res.notes)
