"""DeepSeek-V3.2 on h200_sxm: the step equals the sum of its listed ops, every op names its
source; memory overflow is flagged with the numbers; PWL and measured agree."""

import math

import pytest

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.perf import build_context, evaluate
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan, parse_plan

PLANS = PROJECT_ROOT / "instances" / "plans"


@pytest.fixture(scope="module")
def nvl72():
    return load_instance("h200_nvl72")


@pytest.mark.parametrize("name", ["nvl72_pd", "nvl72_afd", "nvl72_agg"])
def test_tpot_is_sum_of_listed_ops_each_with_a_source(nvl72, name):
    plan = load_plan(PLANS / f"{name}.json", nvl72, 256)
    result = evaluate(plan, nvl72).to_dict()
    decode = next(r for r in result["roles"] if r["role"] in ("decode", "agg"))
    listed = math.fsum(op["ms_total"] for op in decode["step"]["ops"])
    assert result["tpot_ms"] == pytest.approx(listed, rel=1e-12)
    for op in decode["step"]["ops"]:
        assert (
            op["source"].startswith(("h200_sxm/", "alpha-beta", "pipeline model"))
            or " x h200_sxm/" in op["source"]
        ), op
    layers = {op["layer"] for op in decode["step"]["ops"]}
    assert {"dense", "moe", "step"} <= layers


def test_alpha_beta_is_flagged_when_no_measurement_matches(nvl72):
    plan = load_plan(PLANS / "nvl72_pd.json", nvl72, 256)
    ev = evaluate(plan, nvl72)
    assert any("alpha-beta" in n and "EP dispatch" in n for n in ev.notes)


def _decode_plan(batch_per_gpu: int) -> dict:
    return {
        "mode": "pd",
        "roles": [
            {
                "role": "prefill",
                "pool": "h200",
                "replicas": 1,
                "placement": [{"pool": "h200", "domain": 0, "gpus": 8}],
                "shape": {"attn_tp": 1, "attn_dp": 8, "moe_tp": 1, "moe_ep": 8},
                "batch": 1,
                "chunk_tokens": 8192,
            },
            {
                "role": "decode",
                "pool": "h200",
                "replicas": 1,
                "placement": [{"pool": "h200", "domain": 1, "gpus": 8}],
                "shape": {"attn_tp": 1, "attn_dp": 8, "moe_tp": 1, "moe_ep": 8},
                "batch_per_gpu": batch_per_gpu,
            },
        ],
    }


def test_memory_overflow_is_infeasible_with_numbers():
    inst = load_instance("small_h200_16")
    coding = inst.workload("coding-interactive")
    ok = evaluate(parse_plan(_decode_plan(8), inst, 256), inst, coding)
    big = evaluate(parse_plan(_decode_plan(512), inst, 256), inst, coding)
    flag = lambda ev: next(f for f in ev.flags if f.name == "memory decode/gpu")  # noqa: E731
    assert flag(ok).ok
    assert not flag(big).ok and not big.feasible
    mem = big.roles[1].memory["gpu"]
    assert mem.weights + mem.kv_cache > 141e9
    assert f"{mem.total / 1e9:.1f} GB of {mem.capacity / 1e9:.1f} GB" in flag(big).reason


def test_pwl_surrogate_agrees_with_measured_grid(nvl72):
    plan = load_plan(PLANS / "nvl72_pd.json", nvl72, 256)
    wl = nvl72.workloads[0]
    measured = evaluate(plan, nvl72, wl, ctx=build_context(nvl72, wl))
    pwl = evaluate(plan, nvl72, wl, ctx=build_context(nvl72, wl, surrogate="pwl"))
    assert pwl.tpot == pytest.approx(measured.tpot, rel=0.05)
    assert pwl.ttft.prefill == pytest.approx(measured.ttft.prefill, rel=0.05)
