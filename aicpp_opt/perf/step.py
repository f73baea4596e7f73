"""Role-level step times of plain (non-AFD) workers: a decode step, a prefill forward, an
aggregated iteration with chunked prefill. Each returns a StepBreakdown whose total is the sum
of its listed ops; the optimiser calls these per shape and batch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

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
    ops += costed(moe_local(ctx, pool, tokens_gpu, decode), "moe", m.num_moe_layers)
    ep, mode = shape.moe_ep, "low_latency" if decode else "normal"
    skew = skew_factor(ctx.routing, m.moe.num_experts, m.moe.top_k, ep)
    moe_items = [("EP dispatch", ep_exchange(ctx, pool, "dispatch", tokens_gpu, ep, mode, skew))]
    moe_items += moe_experts(
        ctx, pool, tokens_gpu * shape.moe_gpus, shape.moe_tp, ep, within, decode
    )
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


@dataclass(frozen=True)
class AggIteration:
    """Aggregated serving in steady state. A request's uncached prompt is prefilled in
    ``chunks`` chunks of ``chunk_tokens``, each riding one *mixed* iteration (decode batch plus
    the chunk); a ``share`` of iterations carries a chunk, the others decode only. ``mean`` is
    the average iteration (what TPOT sees), ``mixed`` one chunk-carrying iteration."""

    mean: StepBreakdown
    mixed: StepBreakdown
    chunks: int
    share: float

    @property
    def prefill_service(self) -> float:
        """Seconds a request's prefill occupies its attention-DP rank."""
        return self.chunks * self.mixed.total


def _scaled(step: StepBreakdown, factor: float, tag: str) -> list[OpCost]:
    return [replace(op, name=f"{op.name} [{tag}]", count=op.count * factor) for op in step.ops]


def steady_state(
    ctx: PerfContext,
    shape: Shape,
    batch_per_gpu: float,
    chunk_tokens: int,
    run: Callable[[Load], StepBreakdown],
    splits: int = 1,
) -> AggIteration:
    """Steady state of a worker that prefills in chunks between decode steps, at
    ``batch_per_gpu`` decode sequences per (attention) GPU: the sequences finishing per
    iteration (batch x TP / OSL per attention rank) are replaced by new requests whose
    uncached prompts need that many times the uncached prompt in prefill tokens per iteration;
    they come in chunks of ``chunk_tokens``, so a share needed / chunk of iterations carries one
    (capped at 1: beyond it the prefill budget cannot keep up, which the capacity check
    reports). A chunk's attention span sits at the middle of the uncached prompt (the average
    over its chunks). ``run`` costs one forward of the load it is given; ``splits`` is how many
    micro-batches share an iteration's load (AFD), each taking an equal part of it."""
    wl = ctx.workload
    seqs = batch_per_gpu * shape.attn_tp
    chunk = min(float(chunk_tokens), wl.new_prompt_tokens)
    share = min(1.0, seqs / wl.osl * wl.new_prompt_tokens / chunk)
    part, span = seqs / splits, chunk / splits
    decode_only = run(Load(decode_seqs=part, context=wl.decode_context))
    mid = wl.isl - wl.new_prompt_tokens / 2
    mixed = run(Load(part, wl.decode_context, 1, mid - span / 2, mid + span / 2))
    ops = _scaled(decode_only, 1.0 - share, "decode-only iterations")
    ops += _scaled(mixed, share, "iterations with a prefill chunk")
    note = f"aggregated: {share:.1%} of iterations carry a {chunk:.0f}-token prefill chunk"
    notes = (note, *(n for n in decode_only.notes if n != note))
    mean = StepBreakdown(tuple(ops), decode_only.traffic, notes)
    return AggIteration(mean, mixed, len(prefill_chunks(ctx, chunk_tokens)), share)


def agg_iteration(
    ctx: PerfContext, pool: str, shape: Shape, batch_per_gpu: float, chunk_tokens: int
) -> AggIteration:
    """Steady state of an aggregated worker (attention and experts on the same GPUs)."""

    def run(load: Load) -> StepBreakdown:
        return forward(ctx, pool, shape, load, decode=True)

    return steady_state(ctx, shape, batch_per_gpu, chunk_tokens, run)
