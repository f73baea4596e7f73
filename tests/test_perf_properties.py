"""Hypothesis properties of the evaluator: monotonicity, conservation, AFD K=1 = serial sum."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.perf import afd_step, build_context, decode_step, evaluate
from aicpp_opt.perf.memory import expert_weights
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import Afd, PairGroup, Shape, parse_plan

INST = load_instance("h200_nvl72")
CTX = build_context(INST, INST.workloads[0])
SERIAL = build_context(INST, INST.workloads[0], pipeline="serial")
FAST = settings(max_examples=40, deadline=None)

shapes = st.builds(
    lambda tp, dp_exp: Shape(tp, 2**dp_exp, 1, tp * 2**dp_exp),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 3),
)


@FAST
@given(shapes, st.integers(1, 255), st.integers(1, 256))
def test_more_batch_never_lowers_step_time(shape, b, extra):
    assert (
        decode_step(CTX, "h200", shape, b).total <= decode_step(CTX, "h200", shape, b + extra).total
    )


@FAST
@given(st.sampled_from([1, 2, 4]), st.integers(0, 7), st.integers(1, 3))
def test_more_ep_never_raises_expert_weight_per_gpu(tp, ep_exp, factor):
    ep = 2**ep_exp
    assert expert_weights(CTX, tp, ep * 2**factor) <= expert_weights(CTX, tp, ep)


def _afd(m: int, n: int, dispatch: str) -> tuple[Shape, Afd]:
    shape = Shape(1, m, 1, n)
    return shape, Afd(m, n, "h200", dispatch, (PairGroup(tuple(range(m)), tuple(range(n))),))


@FAST
@given(
    st.sampled_from([4, 8, 16]),
    st.sampled_from([4, 8, 16]),
    st.integers(1, 128),
    st.sampled_from(["direct", "all_to_all", "allgather_reducescatter"]),
)
def test_afd_with_one_micro_batch_is_the_serial_sum(m, n, b, dispatch):
    shape, afd = _afd(m, n, dispatch)
    piped = afd_step(CTX, "h200", shape, afd, 1, b)
    serial = afd_step(SERIAL, "h200", shape, afd, 1, b)
    parts = sum(op.total for op in piped.ops if op.layer != "pipeline")
    assert piped.total == pytest.approx(serial.total, rel=1e-12)
    assert piped.total == pytest.approx(parts, rel=1e-12)


@FAST
@given(st.sampled_from([8, 16]), st.sampled_from([4, 8]), st.integers(2, 3), st.integers(2, 128))
def test_afd_overlap_lies_between_bound_and_serial(m, n, k, b):
    shape, afd = _afd(m, n, "direct")
    piped = afd_step(CTX, "h200", shape, afd, k, b).total
    serial = afd_step(SERIAL, "h200", shape, afd, k, b).total
    assert piped <= serial * (1 + 1e-12)
    side = {
        s: sum(
            op.total
            for op in afd_step(SERIAL, "h200", shape, afd, k, b).ops
            if op.side == s and op.layer == "moe"
        )
        for s in ("attention", "ffn")
    }
    assert piped >= max(side.values()) * (1 - 1e-12)


@FAST
@given(shapes, st.integers(1, 256))
def test_tokens_dispatched_equal_tokens_combined(shape, b):
    traffic = decode_step(CTX, "h200", shape, b).traffic
    assert traffic["dispatched"] == pytest.approx(traffic["combined"])
    shape_a, afd = _afd(16, 8, "direct")
    traffic = afd_step(CTX, "h200", shape_a, afd, 2, b).traffic
    assert traffic["dispatched"] == pytest.approx(traffic["combined"]) and traffic["dispatched"] > 0


@FAST
@given(st.integers(1, 3), st.sampled_from([8, 16, 32]), st.integers(1, 96))
def test_feasible_plan_balances_prefill_and_decode_rates(prefill_replicas, decode_gpus, b):
    plan = parse_plan(
        {
            "mode": "pd",
            "roles": [
                {
                    "role": "prefill",
                    "pool": "h200",
                    "replicas": prefill_replicas,
                    "placement": [{"pool": "h200", "domain": 0, "gpus": 8 * prefill_replicas}],
                    "shape": {"attn_dp": 8, "moe_ep": 8},
                    "batch": 1,
                    "chunk_tokens": 4096,
                },
                {
                    "role": "decode",
                    "pool": "h200",
                    "replicas": 1,
                    "placement": [{"pool": "h200", "domain": 0, "gpus": decode_gpus}],
                    "shape": {"attn_dp": decode_gpus, "moe_ep": decode_gpus},
                    "batch_per_gpu": b,
                },
            ],
        },
        INST,
        256,
    )
    ev = evaluate(plan, INST, ctx=CTX)
    f = ev.flow
    assert f.prefill_rate == pytest.approx(f.decode_rate)
    assert f.arrival_rate <= min(f.prefill_capacity, f.decode_capacity) * (1 + 1e-12)
    assert f.output_tps == pytest.approx(f.decode_rate * INST.workloads[0].osl)
    if ev.feasible:
        assert f.prefill_utilization < 1
