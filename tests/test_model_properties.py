"""Hypothesis properties of the op model and the evaluator that hold whatever the tables say:
step time and memory never fall as the batch grows, percentiles never undercut means, the
balanced flow never exceeds either side's capacity."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.evaluate import evaluate
from aicpp_opt.evaluate.evaluation import decode_memory
from aicpp_opt.model.context import build_context
from aicpp_opt.model.steps import decode_step
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import Role, Shape, parse_plan

INST = load_instance("h200_nvl72")
CTX = build_context(INST, INST.workloads[0])
FAST = settings(max_examples=30, deadline=None)

roles = st.builds(
    lambda tp, dp_exp, k, mtp: Role(
        RoleKind.DECODE,
        "h200",
        1,
        (),
        Shape(tp, 2**dp_exp, 1, tp * 2**dp_exp),
        micro_batches=k,
        mtp=mtp,
        id="decode",
    ),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 3),
    st.sampled_from([1, 2]),
    st.sampled_from([0, 1]),
)


@FAST
@given(roles, st.integers(1, 255), st.integers(1, 128))
def test_more_batch_never_lowers_step_time_or_memory(role, b, extra):
    assert decode_step(CTX, role, b).total <= decode_step(CTX, role, b + extra).total
    small = decode_memory(CTX, Role(**{**role.__dict__, "batch_per_gpu": b}))
    big = decode_memory(CTX, Role(**{**role.__dict__, "batch_per_gpu": b + extra}))
    assert all(small[s].total <= big[s].total for s in small)


def _pd(prefill_replicas: int, decode_gpus: int, batch: float, k: int) -> dict:
    return {
        "mode": "pd",
        "roles": [
            {
                "role": "prefill",
                "pool": "h200",
                "replicas": prefill_replicas,
                "placement": [{"pool": "h200", "domain": 0, "gpus": 8 * prefill_replicas}],
                "shape": {"attn_dp": 8, "moe_ep": 8},
                "batch": 2,
                "chunk_tokens": 4096,
            },
            {
                "role": "decode",
                "pool": "h200",
                "placement": [{"pool": "h200", "domain": 0, "gpus": decode_gpus}],
                "shape": {"attn_dp": decode_gpus, "moe_ep": decode_gpus},
                "batch_per_gpu": batch,
                "micro_batches": k,
            },
        ],
    }


@FAST
@given(st.integers(1, 3), st.sampled_from([8, 16, 32]), st.floats(1, 200), st.sampled_from([1, 2]))
def test_flow_within_capacities_and_percentiles_above_means(pre, dec, batch, k):
    ev = evaluate(parse_plan(_pd(pre, dec, batch, k), INST, 256), INST, ctx=CTX)
    f = ev.flow
    assert f.arrival_rate <= min(f.prefill_capacity, f.decode_capacity) * (1 + 1e-12)
    assert f.output_tps == pytest.approx(f.arrival_rate * INST.workloads[0].osl)
    assert ev.tpot.percentile >= ev.tpot.mean * (1 - 1e-12)
    assert ev.ttft.percentile >= ev.ttft.prefill + ev.ttft.kv_transfer - 1e-12
