"""An attention-FFN disaggregated decode unit: M attention GPUs, N FFN GPUs, K micro-batches.

Per MoE layer and micro-batch: attention side t_a (attention block, router, shared experts),
A->F dispatch t_d, FFN side t_f (routed experts), F->A combine t_c. Dense layers and the LM
head run on the attention side only. Two pipeline models (``ctx.pipeline``):

- ``pipelined`` (default): cycle = max(K t_a, K t_f, K t_d, K t_c, t_a + t_d + t_f + t_c).
  The K micro-batches circulate through four single-server stages (A GPUs, A->F link direction,
  F GPUs, F->A link direction) layer after layer: a closed cyclic network with K jobs and
  deterministic service, whose cycle time is exactly the larger of the busiest stage's load and
  one job's round trip. Dispatch and combine use opposite link directions, so they overlap.
- ``serial``: cycle = K (t_a + t_d + t_f + t_c), no overlap (the upper bound).

With K = 1 both equal the serial sum. The difference to the serial sum is listed as one op
("AFD ping-pong overlap", negative), so the step still equals the sum of its ops.

The pairing: each group's attention GPUs send only to that group's FFN GPUs, which hold a full
copy of the experts (EP = moe_ep, TP = moe_tp inside the group); groups may share an FFN set."""

from __future__ import annotations

import functools
from collections import defaultdict

from aicpp_opt.perf.breakdown import Cost, OpCost, StepBreakdown
from aicpp_opt.perf.comm import alpha_beta, collective, dtype_bytes
from aicpp_opt.perf.context import PerfContext
from aicpp_opt.perf.layers import Items, Load, attention, dense_mlp, lm_head, moe_experts, moe_local
from aicpp_opt.perf.routing import distinct_targets, skew_factor
from aicpp_opt.perf.step import NOT_COUNTED, AggIteration, costed, steady_state, within_domain
from aicpp_opt.spec.instance import Dimension
from aicpp_opt.spec.plan import Afd, Shape


def afd_link(ctx: PerfContext, attn_pool: str, afd: Afd) -> tuple[Dimension, bool]:
    """The link between the two sides: NVLink when both fit one domain of one pool, else the
    slower scale-out link of the pools involved."""
    a, f = ctx.pools[attn_pool], ctx.pools[afd.ffn_pool]
    if a.name == f.name and within_domain(a, afd.attention_gpus + afd.ffn_gpus):
        return a.link(True), True
    la, lf = a.link(False), f.link(False)
    return Dimension("scale-out", la.size, min(la.bw, lf.bw), max(la.latency, lf.latency)), False


@functools.cache
def ffn_sets(afd: Afd) -> list[tuple[int, int]]:
    """(attention GPUs feeding it, FFN GPUs in it) for each distinct FFN set of the pairing."""
    feeders: dict[tuple[int, ...], int] = defaultdict(int)
    for g in afd.pairing:
        feeders[tuple(sorted(g.ffn))] += len(g.attention)
    return [(m, len(ffn)) for ffn, m in feeders.items()]


def _transfer(
    ctx: PerfContext,
    afd: Afd,
    shape: Shape,
    link: Dimension,
    within: bool,
    pool: str,
    phase: str,
    m_set: int,
    tokens: float,
) -> Cost:
    """One micro-batch's A->F (dispatch) or F->A (combine) for an FFN set fed by ``m_set``
    attention GPUs with ``tokens`` tokens each."""
    m = ctx.model
    elem = dtype_bytes(m.dtypes.moe if phase == "dispatch" else m.dtypes.activations)
    group = m_set + shape.moe_gpus
    if afd.dispatch == "allgather_reducescatter":
        op = "all_gather" if phase == "dispatch" else "reduce_scatter"
        return (
            collective(
                ctx, ctx.pools[pool], op, m_set * tokens * m.hidden_size * elem, group, within
            )
            if within
            else alpha_beta(op, m_set * tokens * m.hidden_size * elem, group, link)
        )
    targets = distinct_targets(m.moe.top_k, shape.moe_ep) * shape.moe_tp
    send = tokens * targets * m.hidden_size * elem
    # an FFN GPU takes the tokens of all m_set senders routed to its experts, the hottest
    # GPU skew times its share: the busiest endpoint sets the exchange time
    skew = skew_factor(ctx.routing, m.moe.num_experts, m.moe.top_k, shape.moe_ep)
    busiest = max(send, m_set * send / shape.moe_gpus * skew)
    if afd.dispatch == "all_to_all":
        cost = (
            collective(ctx, ctx.pools[pool], "alltoall", busiest, group, within)
            if within
            else alpha_beta("alltoall", busiest, group, link)
        )
        return Cost(cost.seconds, f"{cost.source} (all-to-all, busiest endpoint's bytes)")
    cost = alpha_beta("p2p", busiest, 2, link)
    return Cost(cost.seconds, f"{cost.source} (direct M x N sends, busiest endpoint)")


def _side_total(items: Items) -> float:
    return sum(c.seconds for _, c in items)


def afd_step(
    ctx: PerfContext, pool: str, shape: Shape, afd: Afd, k: int, batch_per_gpu: float
) -> StepBreakdown:
    """Decode step of an AFD unit with ``k`` micro-batches at ``batch_per_gpu`` sequences per
    attention GPU."""
    mb = batch_per_gpu / k
    load = Load(decode_seqs=mb * shape.attn_tp, context=ctx.workload.decode_context)
    return afd_forward(ctx, pool, shape, afd, k, load)


def afd_iteration(
    ctx: PerfContext,
    pool: str,
    shape: Shape,
    afd: Afd,
    k: int,
    batch_per_gpu: float,
    chunk_tokens: int,
) -> AggIteration:
    """Steady state of an AFD unit that also prefills (mode ``afd``): chunks of new prompts
    ride the decode iterations, split over the K micro-batches, through both sides."""

    def run(load: Load) -> StepBreakdown:
        return afd_forward(ctx, pool, shape, afd, k, load)

    return steady_state(ctx, shape, batch_per_gpu, chunk_tokens, run, k)


def afd_forward(
    ctx: PerfContext, pool: str, shape: Shape, afd: Afd, k: int, load: Load
) -> StepBreakdown:
    """One iteration of an AFD unit whose K micro-batches each carry ``load`` per attention
    rank (decode sequences and, in mode ``afd``, a part of a prefill chunk)."""
    m = ctx.model
    a_pool, f_pool = ctx.pools[pool], ctx.pools[afd.ffn_pool]
    mb = load.tokens / shape.attn_tp
    a_within = within_domain(a_pool, shape.attention_gpus)
    link, within = afd_link(ctx, pool, afd)
    attn = attention(ctx, a_pool, shape, load, a_within)
    a_side = attn + moe_local(ctx, a_pool, mb)
    m_set, _ = max(ffn_sets(afd))
    f_side = moe_experts(
        ctx, f_pool, m_set * mb, shape.moe_tp, shape.moe_ep, within_domain(f_pool, shape.moe_gpus)
    )
    a2f = [("A->F dispatch", _transfer(ctx, afd, shape, link, within, pool, "dispatch", m_set, mb))]
    f2a = [("F->A combine", _transfer(ctx, afd, shape, link, within, pool, "combine", m_set, mb))]
    n_moe, n_dense = m.num_moe_layers, m.num_dense_layers
    ops = costed(attn, "dense", k * n_dense, "attention")
    ops += costed(
        dense_mlp(ctx, a_pool, shape, load.tokens, a_within), "dense", k * n_dense, "attention"
    )
    ops += costed(a_side, "moe", k * n_moe, "attention")
    ops += costed(a2f, "moe", k * n_moe, "link")
    ops += costed(f_side, "moe", k * n_moe, "ffn")
    ops += costed(f2a, "moe", k * n_moe, "link")
    head_tokens = load.decode_seqs + load.prefill_batch
    ops += costed(lm_head(ctx, a_pool, shape, head_tokens), "step", k, "attention")
    stages = {
        "attention": _side_total(a_side),
        "A->F": _side_total(a2f),
        "FFN": _side_total(f_side),
        "F->A": _side_total(f2a),
    }
    serial = k * sum(stages.values())
    if ctx.pipeline == "pipelined":
        busiest = max(stages, key=stages.get)
        cycle = max(k * stages[busiest], sum(stages.values()))
        binds = (
            f"{busiest} stage (K x {stages[busiest] * 1e6:.1f} us)"
            if k * stages[busiest] >= sum(stages.values())
            else "one micro-batch's round trip"
        )
        note = f"pipeline model: pipelined, K={k}, per-layer cycle {cycle * 1e6:.1f} us"
        note += f" bound by {binds}"
    else:
        cycle, note = serial, f"pipeline model: serial, K={k}"
    ops.append(
        OpCost(
            "AFD ping-pong overlap",
            "pipeline",
            n_moe,
            Cost(cycle - serial, f"pipeline model {ctx.pipeline} (cycle - serial sum)"),
            "pipeline",
        )
    )
    copies = (
        k
        * n_moe
        * shape.attention_gpus
        * mb
        * distinct_targets(m.moe.top_k, shape.moe_ep)
        * shape.moe_tp
    )
    return StepBreakdown(
        tuple(ops), {"dispatched": copies, "combined": copies}, (note, NOT_COUNTED)
    )
