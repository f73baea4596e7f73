"""Role-level step times of plain (non-AFD) workers: a decode step, a prefill forward, an
aggregated iteration with chunked prefill. Each returns a StepBreakdown whose total is the sum
of its listed ops; the optimiser calls these per shape and batch."""

from __future__ import annotations

import math

from aicpp_opt.perf.breakdown import OpCost, StepBreakdown
from aicpp_opt.perf.comm import ep_exchange
from aicpp_opt.perf.context import PerfContext
from aicpp_opt.perf.layers import Items, Load, attention, dense_mlp, lm_head, moe_experts, moe_local
from aicpp_opt.perf.routing import distinct_targets, skew_factor
from aicpp_opt.spec.instance import Pool
from aicpp_opt.spec.plan import Shape

NOT_COUNTED = (
    "embedding lookup, residual adds/norms outside the attention module and sampling "
    "are in no table: not counted"
)


def costed(items: Items, layer: str, count: float, side: str = "gpu") -> list[OpCost]:
    """Items as OpCosts repeated ``count`` times; zero-cost placeholders (group of 1) dropped."""
    return [
        OpCost(n, layer, count, c, side)
        for n, c in items
        if c.seconds > 0 or not c.source.startswith("none")
    ]


def within_domain(pool: Pool, gpus: int) -> bool:
    """A group of ``gpus`` fits one NVLink domain of the pool (placement packs it there)."""
    return gpus <= pool.domain_size


def forward(
    ctx: PerfContext, pool_name: str, shape: Shape, load: Load, *, decode: bool
) -> StepBreakdown:
    """One forward pass of a plain worker (attention TP x DP, MoE TP x EP on the same GPUs)."""
    m, pool = ctx.model, ctx.pools[pool_name]
    within = within_domain(pool, shape.attention_gpus)
    tokens_rank = load.tokens
    tokens_gpu = tokens_rank / shape.attn_tp
    attn = attention(ctx, pool, shape, load, within)
    ops = costed(attn, "dense", m.num_dense_layers)
    ops += costed(dense_mlp(ctx, pool, shape, tokens_rank, within), "dense", m.num_dense_layers)
    ops += costed(attn, "moe", m.num_moe_layers)
    ops += costed(moe_local(ctx, pool, tokens_gpu), "moe", m.num_moe_layers)
    ep, mode = shape.moe_ep, "low_latency" if decode else "normal"
    skew = skew_factor(ctx.routing, m.moe.num_experts, m.moe.top_k, ep)
    moe_items = [("EP dispatch", ep_exchange(ctx, pool, "dispatch", tokens_gpu, ep, mode, skew))]
    moe_items += moe_experts(ctx, pool, tokens_gpu * shape.moe_gpus, shape.moe_tp, ep, within)
    moe_items.append(("EP combine", ep_exchange(ctx, pool, "combine", tokens_gpu, ep, mode, skew)))
    ops += costed(moe_items, "moe", m.num_moe_layers)
    head_tokens = load.decode_seqs + load.prefill_batch
    ops += costed(lm_head(ctx, pool, shape, head_tokens), "step", 1)
    copies = tokens_gpu * shape.moe_gpus * distinct_targets(m.moe.top_k, ep) * m.num_moe_layers
    return StepBreakdown(tuple(ops), {"dispatched": copies, "combined": copies}, (NOT_COUNTED,))


def decode_step(ctx: PerfContext, pool: str, shape: Shape, batch_per_gpu: float) -> StepBreakdown:
    """Decode step at ``batch_per_gpu`` sequences per GPU and the workload's mean context."""
    load = Load(decode_seqs=batch_per_gpu * shape.attn_tp, context=ctx.workload.decode_context)
    return forward(ctx, pool, shape, load, decode=True)


def prefill_chunks(ctx: PerfContext, chunk_tokens: int) -> list[tuple[float, float]]:
    """The [start, end) token spans a request's uncached prompt is prefilled in."""
    wl = ctx.workload
    start, new = wl.isl - wl.new_prompt_tokens, wl.new_prompt_tokens
    n = max(1, math.ceil(new / chunk_tokens))
    return [(start + new * i / n, start + new * (i + 1) / n) for i in range(n)]


def prefill_time(
    ctx: PerfContext, pool: str, shape: Shape, batch: int, chunk_tokens: int
) -> StepBreakdown:
    """Prefill of ``batch`` requests per attention rank, in chunks of at most ``chunk_tokens``
    uncached prompt tokens each (prefix hits skip compute): all forwards, summed."""
    ops: list[OpCost] = []
    traffic = {"dispatched": 0.0, "combined": 0.0}
    for start, end in prefill_chunks(ctx, chunk_tokens):
        step = forward(
            ctx, pool, shape, Load(prefill_batch=batch, start=start, end=end), decode=False
        )
        ops += step.ops
        traffic = {k: traffic[k] + step.traffic[k] for k in traffic}
    return StepBreakdown(tuple(ops), traffic, (NOT_COUNTED,))


def agg_iteration(
    ctx: PerfContext, pool: str, shape: Shape, batch_per_gpu: float, chunk_tokens: int
) -> StepBreakdown:
    """One aggregated iteration in steady state: the decode batch plus the prefill tokens that
    replace the sequences finishing per iteration (batch x TP / OSL requests' uncached prompt
    per attention rank), capped by the ``chunk_tokens`` budget. The prefill span sits at the
    middle of the uncached prompt (the average over a request's chunks)."""
    wl = ctx.workload
    needed = batch_per_gpu * shape.attn_tp / wl.osl * wl.new_prompt_tokens
    chunk = min(float(chunk_tokens), wl.new_prompt_tokens, needed)
    mid = wl.isl - wl.new_prompt_tokens / 2
    load = Load(
        decode_seqs=batch_per_gpu * shape.attn_tp,
        context=wl.decode_context,
        prefill_batch=1,
        start=mid - chunk / 2,
        end=mid + chunk / 2,
    )
    return forward(ctx, pool, shape, load, decode=True)
