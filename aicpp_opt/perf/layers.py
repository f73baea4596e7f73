"""Per-layer pieces of a forward pass, each a list of (name, Cost) for one layer on one GPU.

Decomposition (what each measured table covers, so nothing is counted twice or missed):
- MLA/DSA attention: the ``{kind}_generation`` / ``{kind}_context`` *module* tables, which
  cover the whole attention block (norm, q/kv down- and up-projections, DSA indexer, attention
  core, o_proj). GQA: ``gemm`` qkv + ``attention_*`` core + ``gemm`` o_proj.
- attention TP > 1: an all-reduce of the block output.
- dense layers: gate/up and down ``gemm`` (TP-split like attention) + all-reduce.
- MoE layers: router ``gemm`` (bf16); shared experts as the whole-MLP ``shared_expert`` table
  where measured, else ``gemm`` gate/up + down; routed experts as the wide-EP ``moe_wideep``
  table (DeepEP + DeepGEMM, EP only) where it measured the model's shape, routing and EP, else
  the fused ``moe`` table (grouped GEMMs incl. activation, on the per-GPU expert shard at the
  given global token count); EP dispatch/combine and a MoE-TP all-reduce when TP > 1.
- once per step: the LM head ``gemm`` (bf16, vocab split over attention TP).
Not in any table and not counted: embedding lookup, residual adds and norms outside the
attention module, sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aicpp_opt.errors import InputError
from aicpp_opt.perf.breakdown import Cost
from aicpp_opt.perf.comm import collective, dtype_bytes
from aicpp_opt.perf.context import PerfContext
from aicpp_opt.spec.instance import Pool
from aicpp_opt.spec.plan import Shape

Items = list[tuple[str, Cost]]


@dataclass(frozen=True)
class Load:
    """What one forward pass carries per attention rank (a TP group): ``decode_seqs`` decode
    sequences of KV length ``context`` (one token each), and ``prefill_batch`` requests each
    prefilling tokens ``[start, end)`` of its prompt (attention over everything before ``end``)."""

    decode_seqs: float = 0.0
    context: float = 0.0
    prefill_batch: int = 0
    start: float = 0.0
    end: float = 0.0

    @property
    def tokens(self) -> float:
        return self.decode_seqs + self.prefill_batch * (self.end - self.start)


def _gemm(
    ctx: PerfContext, pool: str, name: str, m: float, n: int, k: int, dtype: str
) -> tuple[str, Cost]:
    """A GEMM; one wider than the measured n grid (e.g. a 129k-vocab LM head) is costed as
    equal column blocks that each fit the grid."""
    blocks = math.ceil(n / ctx.axis_max(pool, "gemm", "n"))
    cost = ctx.cost(pool, "gemm", m, n=math.ceil(n / blocks), k=k, dtype=dtype)
    if blocks == 1:
        return name, cost
    return name, Cost(
        blocks * cost.seconds, f"{blocks} x {cost.source} (column blocks)", cost.extrapolated
    )


def _context_attention(ctx: PerfContext, pool: str, op: str, load: Load, **axes) -> Cost:
    """Prefill attention of tokens [start, end) with the prefix cached: f(end) - f(start), at
    least f(end - start). Exact for the linear (projection) and causal-quadratic parts; the
    floor keeps fixed overheads when the prefix is long."""
    b = load.prefill_batch
    full = ctx.cost(pool, op, load.end, batch=b, **axes)
    span = ctx.cost(pool, op, load.end - load.start, batch=b, **axes)
    if load.start <= 0:
        return full
    prefix = ctx.cost(pool, op, load.start, batch=b, **axes)
    diff = full.seconds - prefix.seconds
    if diff >= span.seconds:
        return Cost(
            diff, f"{full.source} (minus cached prefix)", full.extrapolated or prefix.extrapolated
        )
    return span


def attention(ctx: PerfContext, pool: Pool, shape: Shape, load: Load, within: bool) -> Items:
    """The attention block of one layer for ``load`` on a TP group of ``shape.attn_tp``."""
    m, a, tp = ctx.model, ctx.model.attention, shape.attn_tp
    kv = m.dtypes.kv_cache
    items: Items = []
    if a.kind in ("mla", "dsa"):
        heads = {"num_heads": a.num_heads // tp, "kv_dtype": kv}
        if load.decode_seqs:
            cost = ctx.cost(
                pool.name, f"{a.kind}_generation", load.decode_seqs, context=load.context, **heads
            )
            items.append((f"{a.kind} decode attention module", cost))
        if load.prefill_batch:
            cost = _context_attention(ctx, pool.name, f"{a.kind}_context", load, **heads)
            items.append((f"{a.kind} prefill attention module", cost))
    else:
        h, d = m.hidden_size, a.head_dim
        heads = {
            "num_heads": a.num_heads // tp,
            "num_kv_heads": max(1, a.num_kv_heads // tp),
            "head_dim": d,
            "kv_dtype": kv,
        }
        qkv_n = (a.num_heads + 2 * a.num_kv_heads) * d // tp
        items.append(
            _gemm(ctx, pool.name, "qkv projection", load.tokens, qkv_n, h, m.dtypes.weights)
        )
        if load.decode_seqs:
            cost = ctx.cost(
                pool.name, "attention_generation", load.decode_seqs, context=load.context, **heads
            )
            items.append(("decode attention", cost))
        if load.prefill_batch:
            items.append(
                (
                    "prefill attention",
                    _context_attention(ctx, pool.name, "attention_context", load, **heads),
                )
            )
        items.append(
            _gemm(
                ctx,
                pool.name,
                "o projection",
                load.tokens,
                h,
                a.num_heads * d // tp,
                m.dtypes.weights,
            )
        )
    nbytes = load.tokens * m.hidden_size * dtype_bytes(m.dtypes.activations)
    items.append(
        ("attention TP all-reduce", collective(ctx, pool, "all_reduce", nbytes, tp, within))
    )
    return items


def dense_mlp(ctx: PerfContext, pool: Pool, shape: Shape, tokens: float, within: bool) -> Items:
    """A dense layer's MLP on ``tokens`` per TP group, TP-split like attention (nothing for a
    model without dense layers)."""
    m, tp = ctx.model, shape.attn_tp
    if not m.num_dense_layers or not m.dense_ffn:
        return []
    h, f, w = m.hidden_size, m.dense_ffn // tp, m.dtypes.weights
    nbytes = tokens * h * dtype_bytes(m.dtypes.activations)
    return [
        _gemm(ctx, pool.name, "dense gate/up gemm", tokens, 2 * f, h, w),
        _gemm(ctx, pool.name, "dense down gemm", tokens, h, f, w),
        ("dense TP all-reduce", collective(ctx, pool, "all_reduce", nbytes, tp, within)),
    ]


def _phase(decode: bool) -> str:
    return "generation" if decode else "context"


def _measured_or_none(ctx: PerfContext, pool: str, op: str, x: float, **axes) -> Cost | None:
    """``op`` at load ``x`` when its table measured these axes on this system, else None. A
    miss depends on the axes only (the load axis extrapolates), so it is remembered: models
    the table does not cover do not pay for a failed lookup on every step."""
    miss = ("uncovered axes", pool, op, tuple(sorted(axes.items())))
    if miss in ctx.memo:
        return None
    try:
        return ctx.cost(pool, op, x, **axes)
    except InputError:
        ctx.memo[miss] = True
        return None


def moe_local(ctx: PerfContext, pool: Pool, tokens_per_gpu: float, decode: bool = True) -> Items:
    """Per-token MoE pieces that stay with the attention GPU: router and shared experts. The
    shared expert is the measured whole-MLP ``shared_expert`` table where it has the model's
    shape (SGLang wide-EP, full size per GPU), else its two ``gemm``s."""
    m = ctx.model
    h, s = m.hidden_size, m.moe.shared_ffn
    items = [_gemm(ctx, pool.name, "router gemm", tokens_per_gpu, m.moe.num_experts, h, "bfloat16")]
    if not s:
        return items
    mlp = _measured_or_none(
        ctx,
        pool.name,
        "shared_expert",
        tokens_per_gpu,
        hidden=h,
        inter=s,
        dtype=m.dtypes.weights,
        phase=_phase(decode),
    )
    if mlp is not None:
        return [*items, ("shared expert mlp", mlp)]
    w = m.dtypes.weights
    return [
        *items,
        _gemm(ctx, pool.name, "shared expert gate/up gemm", tokens_per_gpu, 2 * s, h, w),
        _gemm(ctx, pool.name, "shared expert down gemm", tokens_per_gpu, h, s, w),
    ]


def routed_experts(
    ctx: PerfContext, pool: str, tokens: float, tp: int, ep: int, decode: bool
) -> tuple[str, Cost]:
    """Routed-expert compute on one GPU of a TP x EP group fed ``tokens`` tokens in all: the
    wide-EP kernels (``moe_wideep``: DeepEP layout + DeepGEMM grouped GEMMs, what large-EP
    SGLang runs) where measured for the model's shape, dtype, routing and this EP (EP only,
    TP 1), else the fused-kernel ``moe`` table. The op name says which kernel was used."""
    m = ctx.model
    axes = {
        "hidden": m.hidden_size,
        "inter": m.moe.expert_ffn,
        "topk": m.moe.top_k,
        "num_experts": m.moe.num_experts,
        "ep": ep,
        "distribution": ctx.routing,
        "dtype": m.dtypes.moe,
    }
    if tp == 1:
        wide = _measured_or_none(ctx, pool, "moe_wideep", tokens, phase=_phase(decode), **axes)
        if wide is not None:
            return "routed experts (wide-EP DeepEP+DeepGEMM)", wide
    return "routed experts (fused moe)", ctx.cost(pool, "moe", tokens, tp=tp, **axes)


def moe_experts(
    ctx: PerfContext,
    pool: Pool,
    tokens: float,
    tp: int,
    ep: int,
    within: bool,
    decode: bool = True,
) -> Items:
    """Routed experts for ``tokens`` tokens entering a TP x EP expert group (per-GPU time),
    plus the MoE-TP all-reduce. ``decode`` picks the wide-EP table's generation phase."""
    m = ctx.model
    nbytes = tokens / ep * m.hidden_size * dtype_bytes(m.dtypes.activations)
    return [
        routed_experts(ctx, pool.name, tokens, tp, ep, decode),
        ("MoE TP all-reduce", collective(ctx, pool, "all_reduce", nbytes, tp, within)),
    ]


def lm_head(ctx: PerfContext, pool: Pool, shape: Shape, tokens: float) -> Items:
    m = ctx.model
    return [
        _gemm(
            ctx,
            pool.name,
            "lm head gemm",
            tokens,
            m.vocab_size // shape.attn_tp,
            m.hidden_size,
            "bfloat16",
        )
    ]
