"""Wide-EP expert kernels, the shared-expert table, multi-node DeepEP rows and the runtime
memory reserve: which table the evaluator reads where, and the calibration rules behind them."""

import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.costs import CostModel
from aicpp_opt.model.context import build_context
from aicpp_opt.model.forward import expert_ops, shared_ops
from aicpp_opt.model.memory import memory_per_gpu
from aicpp_opt.model.ops import Side
from aicpp_opt.model.routing import parse_routing
from aicpp_opt.model.steps import decode_step
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import Role, Shape
from calibrate.kernels import _filled


def _ctx(model: str = "deepseek-v3.2", routing: str = "power_law_1.01", framework="sglang"):
    inst = load_instance("h200_hgx_9x8")
    return build_context(
        inst,
        inst.workloads[0],
        model=load_model(model),
        routing=parse_routing(routing),
        framework=framework,
    )


def _experts(ctx, tokens, tp, ep, prefill=False):
    (op, *_) = expert_ops(ctx, "h200", tokens, tp, ep, prefill, Side.GPU)
    return op.name, op.cost


@pytest.mark.parametrize("ep", [8, 16, 64, 128, 256])
@pytest.mark.parametrize("routing", ["balanced", "power_law_1.01"])
def test_deepseek_experts_use_wide_ep_tables_in_both_phases(ep, routing):
    ctx = _ctx(routing=routing)
    for prefill, phase in ((False, "generation"), (True, "context")):
        name, cost = _experts(ctx, 4 * ep, 1, ep, prefill)
        assert "wide-EP" in name and "/moe_wideep [" in cost.source
        assert f"phase={phase}" in cost.source and f"distribution={routing}" in cost.source


def test_the_wide_ep_table_is_sglang_s_other_frameworks_price_their_fused_kernel():
    name, cost = _experts(_ctx(framework="vllm"), 64, 1, 8)
    assert name == "routed experts (fused moe)" and cost.source.startswith("h200_sxm/vllm/moe [")


@pytest.mark.parametrize(
    ("model", "tp", "ep"),
    [("deepseek-v3.2", 2, 8), ("deepseek-v3.2", 1, 2), ("qwen3-235b-a22b", 1, 8)],
)
def test_fused_moe_where_wide_ep_was_not_measured(model, tp, ep):
    """MoE TP > 1, an EP below the generation table's range, a shape the table lacks."""
    name, cost = _experts(_ctx(model), 64, tp, ep)
    assert name == "routed experts (fused moe)" and "/moe [" in cost.source


def test_wide_ep_decode_is_cheaper_than_the_fused_kernel_at_ep_128():
    """The reason for the table: at wide EP the fused Triton kernel's per-GPU time is far
    above the DeepEP + DeepGEMM kernels SGLang runs there (both measured)."""
    ctx = _ctx()
    axes = {"hidden": 7168, "inter": 2048, "topk": 8, "num_experts": 256, "ep": 128}
    axes |= {"distribution": "power_law_1.01", "dtype": "fp8_block"}
    wide = ctx.cost("h200", "moe_wideep", 128 * 16, phase="generation", **axes)
    fused = ctx.cost("h200", "moe", 128 * 16, tp=1, **axes)
    assert wide.seconds < fused.seconds / 2


def test_shared_expert_table_where_measured_gemms_elsewhere():
    ctx = _ctx()
    names = [op.name for op in shared_ops(ctx, "h200", 32, False, Side.GPU)]
    assert names == ["router gemm", "shared expert mlp"]
    inst = load_instance("hetero_h200_b200")
    b200 = build_context(inst, inst.workloads[0], framework="sglang")
    names = [op.name for op in shared_ops(b200, "b200", 32, False, Side.GPU)]
    assert "shared expert gate/up gemm" in names


def test_decode_step_names_the_wide_ep_kernel():
    role = Role(RoleKind.DECODE, "h200", 1, (), Shape(1, 16, 1, 16), id="d")
    step = decode_step(_ctx(), role, 32)
    assert any(op.name == "routed experts (wide-EP DeepEP+DeepGEMM)" for op in step.ops)


@given(st.integers(1, 512))
def test_nccl_buffer_by_smallest_listed_size_at_or_above(group):
    spec = CostModel.load("h200_sxm").system
    largest = max(spec.nccl_mem_bytes)
    got = spec.nccl_bytes(group)
    assert got == spec.nccl_bytes(min(group, largest)) <= spec.nccl_bytes(group + 1)
    if group in spec.nccl_mem_bytes:
        assert got == spec.nccl_mem_bytes[group]
    assert (group == 1) <= (got == 0)


def test_memory_counts_runtime_reserve_and_nccl_of_largest_group():
    ctx = _ctx()
    spec = ctx.system("h200")
    args = {"seqs_per_gpu": 8, "context": 2048, "tokens_per_gpu": 8}
    one = memory_per_gpu(ctx, "h200", Shape(1, 1, 1, 1), **args)
    eight = memory_per_gpu(ctx, "h200", Shape(attn_tp=1, attn_dp=8, moe_tp=1, moe_ep=8), **args)
    assert one.reserve == spec.runtime_reserve_bytes
    assert eight.reserve == spec.runtime_reserve_bytes + spec.nccl_mem_bytes[8]
    assert "misc.other_mem" in eight.reserve_source


def test_system_json_reserve_is_the_package_yaml():
    yaml = pytest.importorskip("yaml")
    from calibrate.aic import find_package

    pkg = find_package()
    raw = yaml.safe_load((pkg.root / "systems" / "h200_sxm.yaml").read_text())["misc"]
    spec = CostModel.load("h200_sxm").system
    assert spec.runtime_reserve_bytes == raw["other_mem"]
    assert spec.nccl_mem_bytes == {int(k): int(v) for k, v in raw["nccl_mem"].items()}


def test_older_versions_fill_only_missing_axis_values():
    new = pd.DataFrame({"ep": [8, 8], "latency_ms": [1.0, 2.0]})
    old = pd.DataFrame({"ep": [8, 16, 32], "latency_ms": [9.0, 3.0, 4.0]})
    files, frame = _filled([(["new"], new), (["old"], old)], "ep")
    assert files == ["new", "old"]
    assert frame["latency_ms"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert _filled([(["new"], new), (["old"], old)], None)[1] is new


def test_deepep_table_cites_the_release_that_measured_multi_node():
    doc = json.loads((CostModel.load("h200_sxm").table("moe_dispatch").path).read_text())
    assert "0.5.6.post2/wideep_deepep_ll_perf.parquet" in doc["provenance"]["file"]
    assert {s["key"]["ep"] for s in doc["series"]} == {8, 16, 32, 64}


def test_wide_ep_distribution_names_match_the_moe_table():
    cm = CostModel.load("h200_sxm")
    wide = {k["distribution"] for k in cm.table("moe_wideep").keys}
    assert "balanced" in wide and "uniform" not in wide
    assert "balanced" in {k["distribution"] for k in cm.table("moe").keys}
