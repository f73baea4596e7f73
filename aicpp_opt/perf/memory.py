"""Memory per GPU of a role: its share of the weights, the KV cache at its batch and context,
activations of its largest forward, and the runtime reserve of the system spec (runtime /
framework memory plus NCCL buffers sized by the role's largest communicator).

KV context: decode roles hold ``batch`` sequences at the workload's mean KV length over a
sequence's decode lifetime, ISL + OSL/2; prefill roles hold their batch at the full ISL.
MLA/DSA latent KV is replicated over attention TP; GQA KV is split over min(TP, KV heads).
Activations: tokens per GPU x activation bytes x (2 hidden + widest local MLP input), plus fp32
logits for the sampled tokens."""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.perf.comm import dtype_bytes
from aicpp_opt.perf.context import PerfContext
from aicpp_opt.spec.plan import Shape

SIDES = ("all", "attention", "ffn")


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU; ``reserve_source`` says where the runtime reserve came from."""

    weights: float
    kv_cache: float
    activations: float
    reserve: float
    capacity: float
    reserve_source: str

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.reserve

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def to_dict(self) -> dict:
        gb = 1e9
        return {
            "weights_GB": self.weights / gb,
            "kv_cache_GB": self.kv_cache / gb,
            "activations_GB": self.activations / gb,
            "reserve_GB": self.reserve / gb,
            "total_GB": self.total / gb,
            "capacity_GB": self.capacity / gb,
            "fits": self.fits,
            "reserve_source": self.reserve_source,
        }


def attention_weights(ctx: PerfContext, attn_tp: int) -> float:
    """Bytes per GPU of everything but the routed experts (attention, dense MLPs and shared
    experts TP-split, router, norms, embedding and LM head split over TP)."""
    m, p = ctx.model, ctx.model.params
    wb, bf = m.bytes_per_param[m.dtypes.weights], dtype_bytes("bfloat16")
    split = (
        m.num_layers * p.attention_per_layer
        + m.num_dense_layers * p.dense_mlp_per_layer
        + m.num_moe_layers * p.shared_expert_per_layer
    ) * wb
    small = m.num_moe_layers * p.router_per_layer + m.num_layers * p.other_per_layer + p.final_norm
    return split / attn_tp + small * bf + (p.embedding + p.lm_head) * bf / attn_tp


def expert_weights(ctx: PerfContext, moe_tp: int, moe_ep: int) -> float:
    """Bytes per GPU of the routed experts spread over EP x TP."""
    m = ctx.model
    total = m.num_moe_layers * m.moe.num_experts * m.params.expert * m.bytes_per_param[m.dtypes.moe]
    return total / (moe_ep * moe_tp)


def kv_bytes(ctx: PerfContext, attn_tp: int, seqs_per_gpu: float, context: float) -> float:
    """KV cache bytes per GPU for ``seqs_per_gpu`` sequences of ``context`` tokens."""
    m, a = ctx.model, ctx.model.attention
    per_token = m.kv_cache_bytes_per_token_per_layer * m.num_layers
    share = attn_tp if a.kind in ("mla", "dsa") else attn_tp / min(attn_tp, a.num_kv_heads)
    return seqs_per_gpu * share * context * per_token


def largest_communicator(shape: Shape, side: str) -> int:
    """GPUs in the largest NCCL/DeepEP group a GPU of this role joins: attention TP on the
    attention side, the MoE TP x EP group on the FFN side, the larger of both otherwise."""
    groups = {"attention": shape.attn_tp, "ffn": shape.moe_gpus}
    return groups[side] if side in groups else max(groups.values())


def _reserve(ctx: PerfContext, pool: str, group: int) -> tuple[float, str]:
    spec = ctx.system(pool)
    if spec.runtime_reserve_bytes is None:
        return 0.0, f"system spec of {pool} gives no runtime reserve: 0 counted"
    nccl = spec.nccl_bytes(group)
    return float(spec.runtime_reserve_bytes + nccl), (
        f"{spec.runtime_reserve_bytes / 1e9:.2f} GB runtime + {nccl / 1e9:.2f} GB NCCL buffers "
        f"(communicator of {group} GPUs) from {spec.reserve_source}"
    )


def memory_per_gpu(
    ctx: PerfContext,
    pool: str,
    shape: Shape,
    *,
    seqs_per_gpu: float,
    context: float,
    tokens_per_gpu: float,
    side: str = "all",
) -> MemoryBreakdown:
    """Memory of one GPU of a role. ``side`` picks an AFD side: "attention" holds no routed
    experts, "ffn" holds only them (and no KV cache)."""
    m = ctx.model
    weights, kv = 0.0, 0.0
    if side in ("all", "attention"):
        weights += attention_weights(ctx, shape.attn_tp)
        kv = kv_bytes(ctx, shape.attn_tp, seqs_per_gpu, context)
    if side in ("all", "ffn"):
        weights += expert_weights(ctx, shape.moe_tp, shape.moe_ep)
    ab = dtype_bytes(m.dtypes.activations)
    widest = max(m.dense_ffn // shape.attn_tp, m.moe.expert_ffn * m.moe.top_k, m.moe.shared_ffn)
    acts = tokens_per_gpu * ab * (2 * m.hidden_size + 2 * widest)
    if side != "ffn":
        acts += seqs_per_gpu * m.vocab_size / shape.attn_tp * 4
    reserve, source = _reserve(ctx, pool, largest_communicator(shape, side))
    return MemoryBreakdown(weights, kv, acts, reserve, float(ctx.system(pool).memory_bytes), source)
