"""Memory per GPU of a role: its share of the weights (with the MTP module when the role
drafts), the KV cache at its batch and context in the model's KV dtype, activations of its
largest forward, and the runtime reserve of the system spec (runtime / framework memory plus
NCCL buffers sized by the role's largest communicator).

MLA/DSA latent KV is replicated over attention TP; GQA KV is split over min(TP, KV heads); the
DSA indexer keys stay fp8 with their scale whatever the KV dtype. Activations: tokens per GPU x
activation bytes x (2 hidden + 2 x the widest local MLP input), plus fp32 logits for the tokens
the GPU samples (the LM head splits the vocabulary over attention TP)."""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.model.context import Context
from aicpp_opt.model.forward import dtype_bytes
from aicpp_opt.spec.model import INDEXER_KEY_SCALE_BYTES, ModelSpec
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
        return bool(self.total <= self.capacity)

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


def kv_bytes_per_token(model: ModelSpec) -> float:
    """KV-cache bytes of one token in one layer in the model's KV dtype (the model file gives
    it at 2-byte elements; a DSA indexer key is fp8 plus a 4-byte scale in any case)."""
    a = model.attention
    indexer = (a.index_head_dim or 0) + INDEXER_KEY_SCALE_BYTES if a.kind == "dsa" else 0
    main = model.kv_cache_bytes_per_token_per_layer - indexer
    return main / 2.0 * dtype_bytes(model.dtypes.kv_cache) + indexer


def kv_layers(model: ModelSpec, mtp: int) -> int:
    """Layers holding KV: the model's, plus its MTP module's when the role drafts."""
    return model.num_layers + (model.num_mtp_layers if mtp else 0)


def attention_weights(model: ModelSpec, attn_tp: int, mtp: int = 0) -> float:
    """Bytes per GPU of everything but the routed experts (attention, dense MLPs and shared
    experts TP-split, router, norms, embedding and LM head split over TP; the MTP module's
    layer and input projection when the role drafts)."""
    m, p = model, model.params
    wb, bf = m.bytes_per_param[m.dtypes.weights], dtype_bytes("bfloat16")
    mtp_layers = m.num_mtp_layers if mtp else 0
    moe_layers = m.num_moe_layers + mtp_layers
    split = (
        (m.num_layers + mtp_layers) * p.attention_per_layer
        + m.num_dense_layers * p.dense_mlp_per_layer
        + moe_layers * p.shared_expert_per_layer
        + mtp_layers * 2 * m.hidden_size * m.hidden_size
    ) * wb
    small = moe_layers * p.router_per_layer + (m.num_layers + mtp_layers) * p.other_per_layer
    return split / attn_tp + (small + p.final_norm) * bf + (p.embedding + p.lm_head) * bf / attn_tp


def expert_weights(model: ModelSpec, moe_tp: int, moe_ep: int, mtp: int = 0) -> float:
    """Bytes per GPU of the routed experts (the MTP module's too when the role drafts) spread
    over EP x TP."""
    m = model
    layers = m.num_moe_layers + (m.num_mtp_layers if mtp else 0)
    total = layers * m.moe.num_experts * m.params.expert * m.bytes_per_param[m.dtypes.moe]
    return total / (moe_ep * moe_tp)


def kv_bytes(
    model: ModelSpec, attn_tp: int, seqs_per_gpu: float, context: float, mtp: int = 0
) -> float:
    """KV cache bytes per GPU for ``seqs_per_gpu`` sequences of ``context`` tokens."""
    a = model.attention
    per_token = kv_bytes_per_token(model) * kv_layers(model, mtp)
    share = attn_tp if a.kind in ("mla", "dsa") else attn_tp / min(attn_tp, a.num_kv_heads)
    return seqs_per_gpu * share * context * per_token


def largest_communicator(shape: Shape, side: str) -> int:
    """GPUs in the largest NCCL/DeepEP group a GPU of this role joins: attention TP on the
    attention side, the MoE TP x EP group on the FFN side, the larger of both otherwise."""
    groups = {"attention": shape.attn_tp, "ffn": shape.moe_gpus}
    return groups[side] if side in groups else max(groups.values())


def _reserve(ctx: Context, pool: str, group: int) -> tuple[float, str]:
    spec = ctx.system(pool)
    if spec.runtime_reserve_bytes is None:
        return 0.0, f"system spec of {pool} gives no runtime reserve: 0 counted"
    nccl = spec.nccl_bytes(group)
    return float(spec.runtime_reserve_bytes + nccl), (
        f"{spec.runtime_reserve_bytes / 1e9:.2f} GB runtime + {nccl / 1e9:.2f} GB NCCL buffers "
        f"(communicator of {group} GPUs) from {spec.reserve_source}"
    )


def memory_per_gpu(
    ctx: Context,
    pool: str,
    shape: Shape,
    *,
    seqs_per_gpu: float,
    context: float,
    tokens_per_gpu: float,
    sampled_per_gpu: float = 0.0,
    side: str = "all",
    mtp: int = 0,
) -> MemoryBreakdown:
    """Memory of one GPU of a role. ``side`` picks an AFD side: "attention" holds no routed
    experts, "ffn" holds only them (and no KV cache). ``tokens_per_gpu``: tokens in its largest
    forward; ``sampled_per_gpu``: tokens whose logits it computes per attention-rank GPU."""
    m = ctx.model
    weights, kv = 0.0, 0.0
    if side in ("all", "attention"):
        weights += attention_weights(m, shape.attn_tp, mtp)
        kv = kv_bytes(m, shape.attn_tp, seqs_per_gpu, context, mtp)
    if side in ("all", "ffn"):
        weights += expert_weights(m, shape.moe_tp, shape.moe_ep, mtp)
    ab = dtype_bytes(m.dtypes.activations)
    widest = max(m.dense_ffn // shape.attn_tp, m.moe.expert_ffn * m.moe.top_k, m.moe.shared_ffn)
    acts = tokens_per_gpu * ab * (2 * m.hidden_size + 2 * widest)
    if side != "ffn":
        acts += sampled_per_gpu * m.vocab_size * 4
    reserve, source = _reserve(ctx, pool, largest_communicator(shape, side))
    return MemoryBreakdown(weights, kv, acts, reserve, float(ctx.system(pool).memory_bytes), source)
