"""The layer composition, once: the ops of one forward pass of a worker role for one
micro-batch's load, priced from the deployment framework's tables and the communication model.

What each measured table covers, so nothing is counted twice or missed:

- MLA / DSA attention: the ``{kind}_generation`` / ``{kind}_context`` *module* tables (q/kv
  projections, DSA indexer, attention core, o_proj). GQA: ``gemm`` qkv + ``attention_*`` core
  (sliding-window layers at their window) + ``gemm`` o_proj. Attention TP > 1: an all-reduce of
  the block output.
- norms and residual adds (two fused add + RMSNorm per layer, the final norm) and the embedding
  lookup: no table measures them; the system's memory-op model prices them (flagged as such).
- dense layers: gate/up and down ``gemm`` (TP-split like attention) + all-reduce.
- MoE layers: router ``gemm`` (bf16); the shared expert as the whole-MLP ``shared_expert`` table
  where the framework measured it, else its ``gemm``s; routed experts as the wide-EP
  ``moe_wideep`` table (DeepEP layout + DeepGEMM, EP only) where the framework measured the
  model's shape, else the fused ``moe`` table; EP dispatch / combine (DeepEP low-latency for
  decode forwards, normal when the forward carries prefill) or, in an AFD unit, the A->F and
  F->A exchanges; a MoE-TP all-reduce when MoE TP > 1.
- once per forward: embedding, final norm, LM head ``gemm`` (bf16, vocab split over attention
  TP, one row per token that samples).
- multi-token prediction: the main layers verify 1 + d tokens per sequence (the decode tables
  are read at (1 + d) x the sequences, one query token each: an approximation, flagged); then
  d draft forwards of the MTP module (its projection, one MoE transformer layer and the shared
  LM head) at one token per sequence.

Bytes moved come from the activation dtype, with quantisation scales where the kernel sends them
(DeepEP dispatches fp8 with one fp32 scale per 128 channels when the experts run fp8; bf16
otherwise and on combine). Routing (``model.routing``) sets the busiest rank's load for the
expert kernels, dispatch / combine and the AFD receivers alike.

Not in any table and not counted: sampling, the KV-cache write of new tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

from aicpp_opt.costs.comm import EpPayload, domains_spanned
from aicpp_opt.costs.curve import Latency
from aicpp_opt.errors import InputError
from aicpp_opt.model.context import Context, memoized
from aicpp_opt.model.ops import (
    Block,
    Forward,
    LayerClass,
    Op,
    Side,
    Stage,
    Transfer,
    TransferKind,
)
from aicpp_opt.model.routing import distinct_targets, rank_shares
from aicpp_opt.spec.model import BYTES_PER_PARAM
from aicpp_opt.spec.plan import Afd, Role, Shape

FP8_MOE = ("fp8", "fp8_block")
NOT_COUNTED = "sampling and the KV-cache write of new tokens are in no table: not counted"


@dataclass(frozen=True)
class Span:
    """Prefill work on one attention rank: ``requests`` requests each computing prompt tokens
    [start, end) (attention over everything before ``end``)."""

    requests: float
    start: float
    end: float

    @property
    def tokens(self) -> float:
        return self.requests * (self.end - self.start)


@dataclass(frozen=True)
class Load:
    """One micro-batch of a forward on one attention rank (a TP group): ``decode_seqs``
    sequences at KV length ``context`` computing ``query_tokens`` tokens each (1, or 1 + d when
    verifying d MTP draft tokens), and prefill ``spans``."""

    decode_seqs: float = 0.0
    context: float = 0.0
    query_tokens: int = 1
    spans: tuple[Span, ...] = field(default=())

    @property
    def decode_tokens(self) -> float:
        return self.decode_seqs * self.query_tokens

    @cached_property
    def tokens(self) -> float:
        return self.decode_tokens + sum(s.tokens for s in self.spans)

    @property
    def sampled(self) -> float:
        """Tokens whose logits are computed: every decode token, each prompt's last one."""
        return self.decode_tokens + sum(s.requests for s in self.spans)

    @property
    def prefill(self) -> bool:
        return bool(self.spans)


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a dtype name of the model file (activations are never packed)."""
    return BYTES_PER_PARAM.get(dtype, 2.0)


def group_domains(ctx: Context, pool: str, gpus: int) -> int:
    """NVLink domains a role's group of ``gpus`` consecutive GPUs spans: one when it fits a
    domain without straddling (placement aligns groups that divide the domain; a pool of one
    domain holds any group that fits it)."""
    p = ctx.pools[pool]
    if gpus <= p.domain_size and (p.num_domains == 1 or p.domain_size % gpus == 0):
        return 1
    return max(2, domains_spanned(p, gpus))


def afd_domains(ctx: Context, role: Role) -> int:
    """1 when an AFD unit's attention and FFN GPUs share one NVLink domain (as the unit says;
    else its placement puts replica 0 in one domain; without a placement, when both sides fit
    one domain of one pool), else 2: A<->F traffic crosses the scale-out network."""
    a = role.afd
    if a.colocated is not None:
        return 1 if a.colocated else 2
    if role.placement:
        first = role.placement[0]
        unit = a.attention_gpus + a.ffn_gpus
        return 1 if first.gpus >= unit and a.ffn_pool == role.pool else 2
    same = a.ffn_pool == role.pool
    return 1 if same and a.attention_gpus + a.ffn_gpus <= ctx.pools[role.pool].domain_size else 2


def _gemm(ctx: Context, pool: str, name: str, stage: Stage, side: Side, m, n, k, dtype) -> Op:
    """A GEMM; one wider than the measured n grid (a 129k-vocab LM head) is costed as equal
    column blocks that each fit the grid."""
    blocks = math.ceil(n / ctx.axis_max(pool, "gemm", "n"))
    cost = ctx.cost(pool, "gemm", m, n=math.ceil(n / blocks), k=k, dtype=dtype)
    if blocks > 1:
        cost = replace(
            cost, seconds=blocks * cost.seconds, source=f"{blocks} x {cost.source} (column blocks)"
        )
    return Op(name, stage, side, cost)


def _context_attention(ctx: Context, pool: str, op: str, span: Span, **axes) -> Latency:
    """Prefill attention of tokens [start, end) with the prefix cached: f(end) - f(start), at
    least f(end - start). Exact for the linear (projection) and causal-quadratic parts; the
    floor keeps fixed overheads when the prefix is long. Less than one request (a micro-batch's
    share of one prompt) is that share of one request's time, flagged as extrapolated."""
    if span.requests < 1:
        one = _context_attention(ctx, pool, op, replace(span, requests=1.0), **axes)
        return replace(
            one,
            seconds=one.seconds * span.requests,
            extrapolated=True,
            source=f"{span.requests:g} x {one.source} (a share of one request)",
        )
    b = span.requests
    full = ctx.cost(pool, op, span.end, batch=b, **axes)
    part = ctx.cost(pool, op, span.end - span.start, batch=b, **axes)
    if span.start <= 0:
        return full
    prefix = ctx.cost(pool, op, span.start, batch=b, **axes)
    diff = full.seconds - prefix.seconds
    if diff >= part.seconds:
        return replace(
            full,
            seconds=diff,
            source=f"{full.source} (minus cached prefix)",
            extrapolated=full.extrapolated or prefix.extrapolated,
        )
    return part


def _decode_attention(ctx: Context, pool: str, op: str, load: Load, **axes) -> Latency:
    """Decode attention at the load's mean context; a context beyond the longest measured one
    is that one's time scaled by the context ratio (decode attention reads the KV cache, so it
    grows linearly with the context), flagged as extrapolated."""
    top = ctx.axis_max(pool, op, "context", **axes)
    if load.context <= top:
        return ctx.cost(pool, op, load.decode_tokens, context=load.context, **axes)
    edge = ctx.cost(pool, op, load.decode_tokens, context=top, **axes)
    ratio = load.context / top
    return replace(
        edge,
        seconds=edge.seconds * ratio,
        extrapolated=True,
        source=f"{edge.source} x {ratio:.3f} (context {load.context:g} beyond the measured "
        f"{top:g}, scaled linearly)",
    )


def _mtp_note(load: Load) -> str:
    return " (verifying MTP drafts: read at 1 + d sequences)" if load.query_tokens > 1 else ""


@memoized
def attention_ops(
    ctx: Context, pool: str, tp: int, load: Load, side: Side, window: int
) -> tuple[Op, ...]:
    """The attention block of one layer on a TP group of ``tp``, including its collective."""
    m, a = ctx.model, ctx.model.attention
    kv, st = m.dtypes.kv_cache, Stage.ATTENTION
    ops: list[Op] = []
    if a.kind in ("mla", "dsa"):
        heads = {"num_heads": a.num_heads // tp, "kv_dtype": kv}
        if load.decode_seqs:
            cost = _decode_attention(ctx, pool, f"{a.kind}_generation", load, **heads)
            name = f"{a.kind} decode attention module{_mtp_note(load)}"
            ops += _split_prepare(ctx, pool, tp, load.tokens, name, cost, side)
        for span in load.spans:
            cost = _context_attention(ctx, pool, f"{a.kind}_context", span, **heads)
            ops.append(Op(f"{a.kind} prefill attention module", st, side, cost))
    else:
        h, d = m.hidden_size, a.head_dim
        heads = {
            "num_heads": a.num_heads // tp,
            "num_kv_heads": max(1, a.num_kv_heads // tp),
            "head_dim": d,
            "kv_dtype": kv,
            "window": window,
        }
        qkv = (a.num_heads + 2 * a.num_kv_heads) * d // tp
        w = m.dtypes.weights
        ops.append(_gemm(ctx, pool, "qkv projection", Stage.PREPARE, side, load.tokens, qkv, h, w))
        if load.decode_seqs:
            cost = _decode_attention(ctx, pool, "attention_generation", load, **heads)
            ops.append(Op(f"decode attention{_mtp_note(load)}", st, side, cost))
        for span in load.spans:
            cost = _context_attention(ctx, pool, "attention_context", span, **heads)
            ops.append(Op("prefill attention", st, side, cost))
        o_k = a.num_heads * d // tp
        ops.append(_gemm(ctx, pool, "o projection", st, side, load.tokens, h, o_k, w))
    ops += tp_all_reduce(ctx, pool, "attention TP all-reduce", st, side, load.tokens, tp)
    return tuple(ops)


def tp_all_reduce(
    ctx: Context, pool: str, name: str, stage: Stage, side: Side, tokens: float, tp: int
) -> tuple[Op, ...]:
    """The all-reduce of ``tokens`` hidden states over a TP group (nothing for TP 1), on the
    links the group spans."""
    if tp <= 1 or tokens <= 0:
        return ()
    nbytes = tokens * ctx.model.hidden_size * dtype_bytes(ctx.model.dtypes.activations)
    cost = ctx.comm[pool].collective("all_reduce", nbytes, tp, group_domains(ctx, pool, tp))
    return (Op(name, stage, side, cost, Transfer(TransferKind.ALL_REDUCE, tp, nbytes)),)


def _split_prepare(
    ctx: Context, pool: str, tp: int, tokens: float, name: str, module: Latency, side: Side
) -> tuple[Op, ...]:
    """An MLA-family decode module as two ops: its query and KV projections before the
    attention kernel (PREPARE: the fused q_a / kv_a down-projection and the q_b up-projection,
    priced from the GEMM table at the module's tokens), and the rest of the module (ATTENTION).
    The two sum to the measured module; the projections are capped at half of it, where a GEMM
    table would price them above the module that contains them."""
    a, m = ctx.model.attention, ctx.model
    heads = a.num_heads // tp * ((a.qk_nope_head_dim or 0) + (a.qk_rope_head_dim or 0))
    down = (a.q_lora_rank or 0) + (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)
    w, h = m.dtypes.weights, m.hidden_size
    gemms = [_gemm(ctx, pool, "", Stage.PREPARE, side, tokens, down, h, w)]
    if a.q_lora_rank:
        gemms.append(_gemm(ctx, pool, "", Stage.PREPARE, side, tokens, heads, a.q_lora_rank, w))
    priced = sum(g.seconds for g in gemms)
    seconds = min(priced, module.seconds / 2)
    capped = " (capped at half the module)" if seconds < priced else ""
    prepare = Latency(
        seconds,
        module.extrapolated or any(g.cost.extrapolated for g in gemms),
        " + ".join(g.cost.source for g in gemms) + capped,
    )
    rest = replace(
        module,
        seconds=module.seconds - seconds,
        source=f"{module.source} less its q/kv projections",
    )
    return (
        Op(f"{a.kind} q/kv projections (inside the module)", Stage.PREPARE, side, prepare),
        Op(f"{name} (less its projections)", Stage.ATTENTION, side, rest),
    )


@memoized
def norm_ops(ctx: Context, pool: str, tokens: float, side: Side) -> tuple[Op, ...]:
    """The two fused residual-add + RMSNorm kernels of a layer (read and write the residual
    and the block output: four hidden vectors per token each)."""
    act = dtype_bytes(ctx.model.dtypes.activations)
    nbytes = 4 * tokens * ctx.model.hidden_size * act
    cost = ctx.memory_op(pool, 2 * nbytes, kernels=2)
    return (Op("residual add + RMSNorm (x2)", Stage.PREPARE, side, cost),)


@memoized
def dense_ops(ctx: Context, pool: str, tp: int, tokens: float, side: Side) -> tuple[Op, ...]:
    """A dense layer's MLP on ``tokens`` per TP group, TP-split like attention."""
    m = ctx.model
    h, f, w = m.hidden_size, m.dense_ffn // tp, m.dtypes.weights
    st = Stage.DENSE
    return (
        _gemm(ctx, pool, "dense gate/up gemm", st, side, tokens, 2 * f, h, w),
        _gemm(ctx, pool, "dense down gemm", st, side, tokens, h, f, w),
        *tp_all_reduce(ctx, pool, "dense TP all-reduce", st, side, tokens, tp),
    )


def _measured_or_none(ctx: Context, pool: str, op: str, x: float, **axes) -> Latency | None:
    """``op`` at load ``x`` when the framework's own table measured these axes on this system,
    else None (a miss depends on the axes only, so it is remembered)."""
    if ctx.framework not in ctx.costs[pool].available(op):
        return None
    miss = ("uncovered axes", pool, op, tuple(sorted(axes.items())))
    if miss in ctx.memo:
        return None
    try:
        return ctx.cost(pool, op, x, **axes)
    except InputError:
        ctx.memo[miss] = True
        return None


def _phase(prefill: bool) -> str:
    return "context" if prefill else "generation"


@memoized
def shared_ops(
    ctx: Context, pool: str, tokens_gpu: float, prefill: bool, side: Side
) -> tuple[Op, ...]:
    """Router and shared expert of one MoE layer, on the attention side. The shared expert is
    the measured whole-MLP ``shared_expert`` table where the framework has the model's shape
    (SGLang wide-EP, full size per GPU), else its two ``gemm``s."""
    m = ctx.model
    h, s, w = m.hidden_size, m.moe.shared_ffn, m.dtypes.weights
    n = m.moe.num_experts
    router = _gemm(ctx, pool, "router gemm", Stage.ATTENTION, side, tokens_gpu, n, h, "bfloat16")
    if not s:
        return (router,)
    phase = _phase(prefill)
    mlp = _measured_or_none(
        ctx, pool, "shared_expert", tokens_gpu, hidden=h, inter=s, dtype=w, phase=phase
    )
    if mlp is not None:
        return (router, Op("shared expert mlp", Stage.SHARED, side, mlp))
    st = Stage.SHARED
    return (
        router,
        _gemm(ctx, pool, "shared expert gate/up gemm", st, side, tokens_gpu, 2 * s, h, w),
        _gemm(ctx, pool, "shared expert down gemm", st, side, tokens_gpu, h, s, w),
    )


@memoized
def expert_ops(
    ctx: Context, pool: str, tokens: float, tp: int, ep: int, prefill: bool, side: Side
) -> tuple[Op, ...]:
    """Routed experts for ``tokens`` tokens entering a MoE TP x EP group (the busiest GPU's
    time) and the MoE-TP all-reduce. Wide-EP kernels (``moe_wideep``) where the framework
    measured them for the model, routing and this EP (EP only), else the fused ``moe`` table."""
    m = ctx.model
    routing = ctx.routing
    skew = routing.skew(tokens, m.moe.num_experts, m.moe.top_k, ep)
    load_tokens = tokens if routing.kernel_embeds_skew else tokens * skew
    axes = {
        "hidden": m.hidden_size,
        "inter": m.moe.expert_ffn,
        "topk": m.moe.top_k,
        "num_experts": m.moe.num_experts,
        "ep": ep,
        "distribution": routing.kernel_distribution,
        "dtype": m.dtypes.moe,
    }
    cost = None
    if tp == 1:
        phase = _phase(prefill)
        cost = _measured_or_none(ctx, pool, "moe_wideep", load_tokens, phase=phase, **axes)
        name = "routed experts (wide-EP DeepEP+DeepGEMM)"
    if cost is None:
        cost = ctx.cost(pool, "moe", load_tokens, tp=tp, **axes)
        name = "routed experts (fused moe)"
    if skew > 1 and not routing.kernel_embeds_skew:
        cost = replace(cost, source=f"{cost.source} at the busiest rank's load (x{skew:.3f})")
    st = Stage.EXPERTS
    per_group = tokens / ep
    return (
        Op(name, st, side, cost),
        *tp_all_reduce(ctx, pool, "MoE TP all-reduce", st, side, per_group, tp),
    )


def _token_bytes(ctx: Context, phase: str) -> float:
    """Bytes per token copy on the wire: fp8 + scales to fp8 experts, else activations."""
    m = ctx.model
    if phase == "dispatch" and m.dtypes.moe in FP8_MOE:
        return m.hidden_size * (1.0 + 4.0 / 128)
    return m.hidden_size * dtype_bytes(m.dtypes.activations)


PHASES = (
    ("dispatch", Stage.DISPATCH, TransferKind.EP_DISPATCH, TransferKind.A2F, Side.ATTENTION),
    ("combine", Stage.COMBINE, TransferKind.EP_COMBINE, TransferKind.F2A, Side.FFN),
)
"""Per direction: phase, stage, EP transfer kind, AFD transfer kind, AFD sending side."""


@memoized
def ep_ops(
    ctx: Context, pool: str, shape: Shape, tokens_gpu: float, prefill: bool
) -> tuple[Op, ...]:
    """EP dispatch and combine of a plain worker's MoE layer (nothing at EP 1): DeepEP normal
    mode when the forward carries prefill, low-latency otherwise."""
    m = ctx.model
    ep = shape.moe_ep
    if ep <= 1:
        return ()
    mode = "normal" if prefill else "low_latency"
    domains = group_domains(ctx, pool, shape.moe_gpus)
    skew = ctx.routing.skew(tokens_gpu * shape.moe_gpus, m.moe.num_experts, m.moe.top_k, ep)
    shares = rank_shares(skew, ep)
    copies = m.moe.top_k if mode == "low_latency" else distinct_targets(m.moe.top_k, ep)
    ops = []
    for phase, stage, kind, _, _ in PHASES:
        tb = _token_bytes(ctx, phase)
        payload = EpPayload(tokens_gpu * skew, tb, m.hidden_size, m.moe.top_k, m.moe.num_experts)
        cost = ctx.comm[pool].ep_exchange(phase, mode, payload, ep, domains)
        transfer = Transfer(kind, ep, tokens_gpu * copies * tb * (ep - 1) / ep, shares=shares)
        ops.append(Op(f"EP {phase} (DeepEP {mode})", stage, Side.GPU, cost, transfer))
    return tuple(ops)


@memoized
def afd_exchange_ops(
    ctx: Context, pool: str, afd: Afd, shape: Shape, domains: int, tokens_gpu: float, m_set: int
) -> tuple[Op, ...]:
    """A->F and F->A of one MoE layer of an AFD unit for the busiest FFN set (fed by ``m_set``
    attention GPUs), by the unit's dispatch strategy: ``all_to_all`` and ``direct`` send each
    token once to each distinct FFN GPU holding one of its experts (direct: every attention GPU
    to every FFN GPU of its set; all_to_all: one exchange over the set, so each FFN GPU waits
    for all of it), ``allgather_reducescatter`` sends a micro-batch's tokens to the set and
    gathers them over its GPUs, then reduce-scatters the outputs back."""
    m = ctx.model
    n_set = shape.moe_gpus
    comm = ctx.cross_comm(pool, afd.ffn_pool)
    skew = ctx.routing.skew(m_set * tokens_gpu, m.moe.num_experts, m.moe.top_k, shape.moe_ep)
    shares = rank_shares(skew, n_set)
    ops = []
    for phase, stage, _, kind, side in PHASES:
        tb = _token_bytes(ctx, phase)
        if afd.dispatch == "allgather_reducescatter":
            nbytes = tokens_gpu * tb
            cost = comm.m_to_n(m_set, 1, nbytes, domains)
            coll = "all_gather" if phase == "dispatch" else "reduce_scatter"
            ffn = ctx.comm[afd.ffn_pool].collective(
                coll, m_set * nbytes, n_set, group_domains(ctx, afd.ffn_pool, n_set)
            )
            cost = replace(
                cost, seconds=cost.seconds + ffn.seconds, source=f"{cost.source} + {ffn.source}"
            )
            transfer = Transfer(kind, m_set, nbytes, receivers=n_set)
        else:
            copies = distinct_targets(m.moe.top_k, shape.moe_ep) * shape.moe_tp
            nbytes = tokens_gpu * copies * tb
            # the busiest receiver takes skew x its share of every sender's bytes
            cost = comm.m_to_n(m_set, n_set, nbytes * skew, domains)
            transfer = Transfer(kind, m_set, nbytes, receivers=n_set, shares=shares)
        label = "A->F" if phase == "dispatch" else "F->A"
        ops.append(Op(f"{label} {afd.dispatch.value}", stage, side, cost, transfer))
    return tuple(ops)


@memoized
def windows(ctx: Context, first: int, last: int) -> tuple[tuple[int, int], ...]:
    """(attention window, layer count) over layers ``first`` .. ``last - 1``: 0 = full."""
    a = ctx.model.attention
    sliding = set(a.sliding_window_layers) if a.sliding_window else set()
    counts: dict[int, int] = {}
    for i in range(first, last):
        w = a.sliding_window if i in sliding else 0
        counts[w] = counts.get(w, 0) + 1
    return tuple(sorted(counts.items()))


def moe_layer(ctx: Context, role: Role, load: Load, window: int, m_set: int) -> tuple[Op, ...]:
    """One MoE layer of ``role`` for one micro-batch of ``load``."""
    shape, tp = role.shape, role.shape.attn_tp
    afd = role.afd
    a_side, f_side = (Side.ATTENTION, Side.FFN) if afd else (Side.GPU, Side.GPU)
    ffn_pool = afd.ffn_pool if afd else role.pool
    tg = load.tokens / tp
    moe_tokens = m_set * tg if afd else tg * shape.moe_gpus
    if afd:
        domains = afd_domains(ctx, role)
        exchange = afd_exchange_ops(ctx, role.pool, afd, shape, domains, tg, m_set)
    else:
        exchange = ep_ops(ctx, role.pool, shape, tg, load.prefill)
    return (
        *norm_ops(ctx, role.pool, load.tokens, a_side),
        *attention_ops(ctx, role.pool, tp, load, a_side, window),
        *shared_ops(ctx, role.pool, tg, load.prefill, a_side),
        *expert_ops(ctx, ffn_pool, moe_tokens, shape.moe_tp, shape.moe_ep, load.prefill, f_side),
        *exchange,
    )


def forward(ctx: Context, role: Role, load: Load) -> Forward:
    """One forward of ``role`` (plain worker or AFD unit; ``role.micro_batches`` micro-batches
    of ``load`` each), as blocks of identical layers and once-per-forward ops."""
    m, shape = ctx.model, role.shape
    afd = role.afd is not None
    a_side = Side.ATTENTION if afd else Side.GPU
    pool, tp = role.pool, shape.attn_tp
    m_set = max(role.afd.ffn_sets)[0] if afd else 0
    blocks: list[Block] = []
    dense = m.num_dense_layers if m.dense_ffn else 0
    for window, count in windows(ctx, 0, dense):
        ops = (
            *norm_ops(ctx, pool, load.tokens, a_side),
            *attention_ops(ctx, pool, tp, load, a_side, window),
            *dense_ops(ctx, pool, tp, load.tokens, a_side),
        )
        blocks.append(Block(LayerClass.DENSE, count, ops, _label("dense", window)))
    for window, count in windows(ctx, m.num_dense_layers, m.num_layers):
        ops = moe_layer(ctx, role, load, window, m_set)
        blocks.append(Block(LayerClass.MOE, count, ops, _label("moe", window)))
    if load.query_tokens > 1:
        blocks.append(_mtp_block(ctx, role, load, m_set))
    notes = [NOT_COUNTED]
    if not afd and shape.moe_ep > 1:
        moe_tokens = load.tokens / tp * shape.moe_gpus
        skew = ctx.routing.skew(moe_tokens, m.moe.num_experts, m.moe.top_k, shape.moe_ep)
        notes.append(f"routing {ctx.routing.name}: busiest EP rank x{skew:.3f} the mean")
    return Forward(
        tuple(blocks),
        step_ops(ctx, pool, tp, load, a_side),
        role.micro_batches,
        afd,
        tuple(notes),
        decode=not load.prefill,
    )


def _label(kind: str, window: int) -> str:
    return f"{kind} (window {window})" if window else kind


def _mtp_block(ctx: Context, role: Role, load: Load, m_set: int) -> Block:
    """The MTP module run d = ``query_tokens - 1`` times per step at one token per sequence:
    its input projection (2 x hidden -> hidden), one MoE transformer layer and the shared LM
    head."""
    m = ctx.model
    one = replace(load, query_tokens=1)
    side = Side.ATTENTION if role.afd else Side.GPU
    h, w = m.hidden_size, m.dtypes.weights
    proj = _gemm(
        ctx, role.pool, "MTP eh projection", Stage.ATTENTION, side, one.tokens, h, 2 * h, w
    )
    ops = (
        proj,
        *moe_layer(ctx, role, one, 0, m_set),
        *step_ops(ctx, role.pool, role.shape.attn_tp, one, side),
    )
    count = (load.query_tokens - 1) * max(1, m.num_mtp_layers)
    return Block(LayerClass.MOE, count, ops, "mtp draft")


@memoized
def step_ops(ctx: Context, pool: str, tp: int, load: Load, side: Side) -> tuple[Op, ...]:
    """Once per forward per micro-batch: embedding lookup, final norm, LM head."""
    m = ctx.model
    act = dtype_bytes(m.dtypes.activations)
    st = Stage.STEP
    embed = ctx.memory_op(pool, 2 * load.tokens * m.hidden_size * act)
    norm = ctx.memory_op(pool, 2 * load.tokens * m.hidden_size * act)
    head = _gemm(
        ctx,
        pool,
        "lm head gemm",
        st,
        side,
        load.sampled,
        m.vocab_size // tp,
        m.hidden_size,
        "bfloat16",
    )
    return (Op("embedding lookup", st, side, embed), Op("final RMSNorm", st, side, norm), head)
