"""The layer composition on one shape worked by hand from the cost-table API, and the fixes the
physics issue listed, each checked against a figure computed another way."""

import math
from dataclasses import replace

import pytest

from aicpp_opt.costs import CostModel
from aicpp_opt.model.context import build_context
from aicpp_opt.model.forward import forward
from aicpp_opt.model.memory import kv_bytes_per_token, memory_per_gpu
from aicpp_opt.model.ops import LayerClass, Stage, TransferKind
from aicpp_opt.model.routing import parse_routing
from aicpp_opt.model.steps import accepted_tokens, agg_loads, decode_load, decode_step
from aicpp_opt.spec.enums import Dispatch, RoleKind
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import Afd, PairGroup, Role, Shape

HGX = load_instance("h200_hgx_9x8")
CHAT = HGX.workload("chat-relaxed")


def decode(shape: Shape, **kw) -> Role:
    return Role(RoleKind.DECODE, "h200", 1, (), shape, id="decode", **kw)


@pytest.fixture(scope="module")
def ctx():
    return build_context(HGX, CHAT, framework="sglang")


def test_one_moe_layer_by_hand(ctx):
    """DeepSeek-V3.2, attention DP8 / EP8 in one HGX node, 32 sequences per GPU at context
    1024 + 512/2: every op of a MoE layer read straight from the tables."""
    cm = CostModel.load("h200_sxm", framework="sglang")
    role = decode(Shape(1, 8, 1, 8))
    fwd = forward(ctx, role, decode_load(ctx, role, 32))
    (moe,) = [b for b in fwd.blocks if b.layer == LayerClass.MOE]
    assert moe.count == 58 and sum(b.count for b in fwd.blocks) == 61
    ops = {op.name: op for op in moe.ops}
    skew = parse_routing("eplb").skew(32 * 8, 256, 8, 8)
    want = {
        "router gemm": (cm.curve("gemm", n=256, k=7168, dtype="bfloat16"), 32.0),
        "shared expert mlp": (
            cm.curve(
                "shared_expert", hidden=7168, inter=2048, dtype="fp8_block", phase="generation"
            ),
            32.0,
        ),
        "routed experts (wide-EP DeepEP+DeepGEMM)": (
            cm.curve(
                "moe_wideep",
                hidden=7168,
                inter=2048,
                topk=8,
                num_experts=256,
                ep=8,
                distribution="balanced",
                dtype="fp8_block",
                phase="generation",
            ),
            256 * skew,
        ),
    }

    def read(curve, x):
        # the measured grid read through its padding envelope: a batch may always run as the
        # cheapest measured batch at or above it
        return min(curve.eval(x).seconds, curve.seconds[curve.x >= x].min())

    for name, (curve, x) in want.items():
        assert ops[name].seconds == pytest.approx(read(curve, x), rel=1e-9), name
    # the attention module, split at SGLang's two-batch-overlap yield: its q/kv projections
    # (q_a + kv_a down to 1536 + 512 + 64, q_b up to 128 heads x 192) and the rest
    module = read(
        cm.curve("dsa_generation", num_heads=128, kv_dtype="bfloat16", context=1280.0), 32
    )
    fp8 = {"dtype": "fp8_block"}
    projections = read(cm.curve("gemm", n=2112, k=7168, **fp8), 32) + read(
        cm.curve("gemm", n=128 * 192, k=1536, **fp8), 32
    )
    prepare = ops["dsa q/kv projections (inside the module)"]
    rest = ops["dsa decode attention module (less its projections)"]
    assert prepare.stage == Stage.PREPARE and rest.stage == Stage.ATTENTION
    assert prepare.seconds == pytest.approx(min(projections, module / 2), rel=1e-9)
    assert prepare.seconds + rest.seconds == pytest.approx(module, rel=1e-9)
    deepep = {"hidden": 7168, "topk": 8, "num_experts": 256, "ep": 8, "mode": "low_latency"}
    for phase in ("dispatch", "combine"):
        op = ops[f"EP {phase} (DeepEP low_latency)"]
        lat = cm.curve(f"moe_{phase}", **deepep).eval(32 * skew)
        assert op.seconds == pytest.approx(lat.seconds, rel=1e-9)
        # bytes each GPU sends: 32 tokens x 8 expert copies x (fp8 + scales | bf16) x 7/8 remote
        elem = 7168 * (1 + 4 / 128) if phase == "dispatch" else 2 * 7168
        assert op.transfer.nbytes == pytest.approx(32 * 8 * elem * 7 / 8)
    norm = ops["residual add + RMSNorm (x2)"]
    nbytes = 2 * 4 * 32 * 7168 * 2
    assert norm.seconds == pytest.approx(nbytes / (4.8e12 * 0.8) + 2 * 3e-6)
    assert {op.stage for op in moe.ops} == {
        Stage.PREPARE,
        Stage.ATTENTION,
        Stage.SHARED,
        Stage.EXPERTS,
        Stage.DISPATCH,
        Stage.COMBINE,
    }


def test_tp_all_reduce_is_priced_on_the_links_its_group_spans(ctx):
    """Attention TP 8 x DP 2 over two HGX nodes: each TP group sits in one node, so its
    all-reduce is measured NVLink, not the scale-out network the 16-GPU role spans."""
    role = decode(Shape(8, 2, 1, 16))
    fwd = forward(ctx, role, decode_load(ctx, role, 16))
    ar = next(op for b in fwd.blocks for op in b.ops if op.name == "attention TP all-reduce")
    assert ar.transfer.kind == TransferKind.ALL_REDUCE and ar.transfer.group == 8
    assert ar.cost.source.startswith(("h200_sxm/nccl/all_reduce", "h200_sxm/sglang/custom"))
    ep = next(op for b in fwd.blocks for op in b.ops if op.name.startswith("EP dispatch"))
    assert "ep=16" in ep.cost.source  # measured two-node DeepEP


def test_kv_cache_bytes_follow_the_kv_dtype():
    """DeepSeek-V3.2 caches 512 + 64 latent and rope values per token and layer, plus the fp8
    indexer key (128 + a 4-byte scale) whatever the KV dtype."""
    m = load_model("deepseek-v3.2")
    assert kv_bytes_per_token(m) == (512 + 64) * 2 + 132
    fp8 = replace(m, dtypes=replace(m.dtypes, kv_cache="fp8"))
    assert kv_bytes_per_token(fp8) == (512 + 64) * 1 + 132


def test_dispatch_bytes_use_the_activation_dtype_without_fp8_experts():
    inst = load_instance("small_h200_16")
    ctx = build_context(inst, CHAT, model=load_model("gpt-oss-120b"), framework="sglang")
    role = Role(RoleKind.DECODE, "h200", 1, (), Shape(1, 8, 1, 8), id="d")
    fwd = forward(ctx, role, decode_load(ctx, role, 8))
    dispatch = next(op for b in fwd.blocks for op in b.ops if op.name.startswith("EP dispatch"))
    hidden, topk = 2880, 4
    assert dispatch.transfer.nbytes == pytest.approx(8 * topk * 2 * hidden * 7 / 8)


def test_logits_memory_does_not_shrink_with_tp(ctx):
    """Each GPU of a TP group holds its vocabulary slice of the logits of every token its rank
    samples: tokens per GPU x TP x vocab / TP x 4 bytes, whatever TP."""
    args = {"seqs_per_gpu": 16.0, "context": 0.0, "tokens_per_gpu": 0.0, "sampled_per_gpu": 16.0}
    one = memory_per_gpu(ctx, "h200", Shape(1, 8, 1, 8), **args).activations
    eight = memory_per_gpu(ctx, "h200", Shape(8, 1, 1, 8), **args).activations
    assert one == eight == pytest.approx(16 * 129280 * 4)


def _afd(sets: int) -> Role:
    m, n = 16, 8 * sets
    per_a, per_f = m // sets, n // sets
    pairing = tuple(
        PairGroup(
            tuple(range(i * per_a, (i + 1) * per_a)), tuple(range(i * per_f, (i + 1) * per_f))
        )
        for i in range(sets)
    )
    afd = Afd(m, n, "h200", Dispatch.DIRECT, pairing)
    return Role(RoleKind.DECODE, "h200", 1, (), Shape(1, m, 1, 8), afd=afd, micro_batches=2, id="d")


def test_afd_ffn_load_comes_from_the_attention_gpus_feeding_one_set():
    """Two FFN sets fed by 8 attention GPUs each: an FFN GPU takes half the tokens it takes with
    one set fed by all 16."""
    from aicpp_opt.evaluate.evaluation import decode_memory

    inst = load_instance("h200_nvl72")
    ctx = build_context(inst, inst.workloads[0], framework="sglang")
    one = decode_memory(ctx, replace(_afd(1), batch_per_gpu=32))["ffn"].activations
    two = decode_memory(ctx, replace(_afd(2), batch_per_gpu=32))["ffn"].activations
    assert two == pytest.approx(one / 2)


def test_mtp_drafts_run_the_mtp_module_and_count_accepted_tokens(ctx):
    role = decode(Shape(1, 8, 1, 8))
    plain = decode_step(ctx, role, 32)
    drafting = decode_step(ctx, replace(role, mtp=1), 32)
    blocks = {name: c for name, c in drafting.cycles}
    assert "mtp draft" in blocks and "mtp draft" not in dict(plain.cycles)
    assert drafting.total > plain.total
    assert accepted_tokens(1, 0.85) == pytest.approx(1.85)
    assert accepted_tokens(3, 0.5) == pytest.approx(1 + 0.5 + 0.25 + 0.125)


def test_short_prompts_share_one_prefill_budget():
    """Chat prompts (1024 new tokens) at 256 sequences per GPU: with an 8192-token budget a
    mixed iteration carries several prompts and fewer iterations are mixed than with a
    1024-token budget, which takes one prompt at a time."""
    inst = load_instance("small_h200_16")
    ctx = build_context(inst, inst.workload("chat-relaxed"), framework="sglang")
    base = Role(RoleKind.AGG, "h200", 1, (), Shape(1, 8, 1, 8), chunk_tokens=1024, id="a")
    small = agg_loads(ctx, base, 256)
    big = agg_loads(ctx, replace(base, chunk_tokens=8192), 256)
    assert small.prefill_tokens == 1024 and big.prefill_tokens > 1024
    assert big.rank_share < small.rank_share
    # Poisson arrivals: P(an iteration has a prompt to prefill) = 1 - exp(-prompts)
    assert big.rank_share == pytest.approx(1 - math.exp(-big.prompts))


def test_traffic_between_two_pools_is_priced_the_same_whichever_direction_was_asked_first():
    """An A->F exchange from B200 attention GPUs to H200 FFN GPUs costs the same in a fresh
    context as in one that first priced H200 -> B200 traffic (the link model was keyed by the
    unordered pair: the first direction asked answered for both, so a solve's capacities
    depended on the order its families were settled in)."""
    inst = load_instance("hetero_h200_b200")
    wl = inst.workloads[0]

    def price(ctx, a, b):
        return ctx.cross_comm(a, b).m_to_n(1, 8, 2e6, 2).seconds

    fresh = price(build_context(inst, wl), "b200", "h200")
    primed = build_context(inst, wl)
    other_way = price(primed, "h200", "b200")
    assert price(primed, "b200", "h200") == fresh
    assert price(primed, "h200", "b200") == other_way
