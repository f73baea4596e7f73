"""``evaluate(plan, instance, workload)``: a fully specified plan in; per-role step breakdowns,
TPOT and TTFT (mean and the SLO's percentile), the balanced request flow and throughput, memory
per GPU and feasibility flags out. Composes the role-level functions of ``aicpp_opt.model``,
which the optimiser calls too.

The flow: the fleet runs at lambda = min(decode capacity, prefill capacity) requests/s: decode
replicas full at their batch, unless prefill cannot feed them. TTFT = wait (lock-step prefill
replicas; for aggregated roles the iteration in progress and the rank's prefill budget) +
prefill compute + the KV transfer of the rank's batch over the link the placement gives. The
percentile adds the wait's percentile (exponential tail) to the fixed parts; the TPOT
percentile is per request (``model.steps``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aicpp_opt.costs.curve import Latency
from aicpp_opt.model.context import Context, build_context
from aicpp_opt.model.fleet import Flow, balance, decode_capacity
from aicpp_opt.model.forward import afd_domains, ffn_sets
from aicpp_opt.model.memory import MemoryBreakdown, kv_bytes_per_token, kv_layers, memory_per_gpu
from aicpp_opt.model.queueing import lockstep_wait, ttft_queueing, wait_quantile
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
from aicpp_opt.model.schedule import Step
from aicpp_opt.model.steps import (
    AggIteration,
    accepted_tokens,
    agg_iteration,
    agg_tpot_percentile,
    decode_step,
    itl_percentile,
    prefill_step,
)
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan, Role
from aicpp_opt.spec.workload import Workload


@dataclass(frozen=True)
class Flag:
    """A feasibility check: ``ok`` and the reason with the numbers."""

    name: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class Ttft:
    """TTFT parts in seconds: mean wait before prefill starts, prefill compute, KV transfer,
    and the SLO percentile of the total."""

    queueing: float
    prefill: float
    kv_transfer: float
    percentile: float
    kv_source: str = ""

    @property
    def total(self) -> float:
        """The mean."""
        return self.queueing + self.prefill + self.kv_transfer


@dataclass(frozen=True)
class Tpot:
    """Time per output token: the mean, the SLO percentile of per-request TPOT, and the
    percentile of the inter-token (streamed chunk) latency."""

    mean: float
    percentile: float
    itl_percentile: float


@dataclass(frozen=True)
class RoleResult:
    role: str
    kind: RoleKind
    step: Step
    memory: dict[str, MemoryBreakdown]


@dataclass(frozen=True)
class Evaluation:
    mode: str
    workload: Workload
    framework: str
    roles: tuple[RoleResult, ...]
    tpot: Tpot
    ttft: Ttft
    flow: Flow
    gpus: int
    flags: tuple[Flag, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        return all(f.ok for f in self.flags)

    def to_dict(self) -> dict:
        slo = self.workload.slo
        return {
            "mode": self.mode,
            "workload": self.workload.name,
            "framework": self.framework,
            "gpus": self.gpus,
            "feasible": self.feasible,
            "slo": {
                "ttft_ms": slo.ttft * 1e3,
                "tpot_ms": slo.tpot * 1e3,
                "percentile": slo.percentile,
            },
            "tpot_ms": {
                "mean": self.tpot.mean * 1e3,
                f"p{slo.percentile:g}": self.tpot.percentile * 1e3,
                f"itl_p{slo.percentile:g}": self.tpot.itl_percentile * 1e3,
            },
            "ttft_ms": {
                "mean": self.ttft.total * 1e3,
                f"p{slo.percentile:g}": self.ttft.percentile * 1e3,
                "queueing": self.ttft.queueing * 1e3,
                "prefill": self.ttft.prefill * 1e3,
                "kv_transfer": self.ttft.kv_transfer * 1e3,
                "kv_source": self.ttft.kv_source,
            },
            "throughput": self.flow.to_dict(),
            "roles": [
                {
                    "role": r.role,
                    "kind": r.kind.value,
                    "step": r.step.to_dict(),
                    "memory": {k: v.to_dict() for k, v in r.memory.items()},
                }
                for r in self.roles
            ],
            "flags": [{"name": f.name, "ok": f.ok, "reason": f.reason} for f in self.flags],
            "notes": list(self.notes),
        }


def decode_memory(ctx: Context, role: Role) -> dict[str, MemoryBreakdown]:
    """A decode (or self-prefilling AFD) role's GPUs at its batch: one kind of GPU, or the two
    sides of an AFD unit."""
    ctx_len, b, k = ctx.workload.decode_context, role.batch_per_gpu, role.micro_batches
    sampled = b * (1 + role.mtp)
    tokens = b * (1 + role.mtp) + role.chunk_tokens / role.shape.attn_tp
    if role.afd is None:
        mem = memory_per_gpu(
            ctx,
            role.pool,
            role.shape,
            seqs_per_gpu=b,
            context=ctx_len,
            tokens_per_gpu=tokens,
            sampled_per_gpu=sampled,
            mtp=role.mtp,
        )
        return {"gpu": mem}
    m_set = max(ffn_sets(role))[0]
    ffn_tokens = m_set * tokens / k * ctx.model.moe.top_k / role.shape.moe_gpus
    return {
        "attention": memory_per_gpu(
            ctx,
            role.pool,
            role.shape,
            seqs_per_gpu=b,
            context=ctx_len,
            tokens_per_gpu=tokens / k,
            sampled_per_gpu=sampled / k,
            side="attention",
            mtp=role.mtp,
        ),
        "ffn": memory_per_gpu(
            ctx,
            role.afd.ffn_pool,
            role.shape,
            seqs_per_gpu=0,
            context=0,
            tokens_per_gpu=ffn_tokens,
            side="ffn",
            mtp=role.mtp,
        ),
    }


def prefill_memory(ctx: Context, role: Role) -> dict[str, MemoryBreakdown]:
    """A prefill rank holds ``batch`` requests' KV at the full ISL (spread over its TP GPUs as
    ``kv_bytes`` accounts) and the activations of one chunk of each."""
    tp = role.shape.attn_tp
    chunk = min(role.chunk_tokens, ctx.workload.new_prompt_tokens)
    mem = memory_per_gpu(
        ctx,
        role.pool,
        role.shape,
        seqs_per_gpu=role.batch / tp,
        context=ctx.workload.isl,
        tokens_per_gpu=role.batch * chunk / tp,
        sampled_per_gpu=role.batch / tp,
    )
    return {"gpu": mem}


def kv_link_domains(prefill: Role, decode: Role) -> int:
    """1 when prefill and decode replicas share an NVLink domain, else 2."""
    shared = {(p.pool, p.domain) for p in prefill.placement} & {
        (p.pool, p.domain) for p in decode.placement
    }
    return 1 if shared else 2


def kv_transfer(ctx: Context, prefill: Role, decode_pool: str, domains: int) -> Latency:
    """The KV of one prefill forward's batch on one attention rank (full ISL, every layer, the
    model's KV dtype) leaving that rank's GPU for the decode side over the placement's link.
    GQA KV is sharded over the TP GPUs, each sending its shard in parallel; MLA/DSA latent KV
    is replicated, so one GPU sends it."""
    m = ctx.model
    per_request = ctx.workload.isl * kv_layers(m, 0) * kv_bytes_per_token(m)
    streams = 1 if m.attention.kind in ("mla", "dsa") else prefill.shape.attn_tp
    nbytes = prefill.batch * per_request / streams
    return ctx.cross_comm(prefill.pool, decode_pool).p2p(nbytes, domains)


def _memory_flags(roles: tuple[RoleResult, ...]) -> list[Flag]:
    flags = []
    gb = 1e9
    for r in roles:
        for side, mem in r.memory.items():
            flags.append(
                Flag(
                    f"memory {r.role}/{side}",
                    mem.fits,
                    f"{mem.total / gb:.1f} GB of {mem.capacity / gb:.1f} GB: "
                    f"weights {mem.weights / gb:.1f} + KV {mem.kv_cache / gb:.1f} + "
                    f"activations {mem.activations / gb:.2f} + reserve {mem.reserve / gb:.1f}",
                )
            )
    return flags


def _latency_flags(ctx: Context, tpot: Tpot, ttft: Ttft, flow: Flow, keeps_up: bool) -> list:
    slo = ctx.workload.slo
    p = f"p{slo.percentile:g}"
    return [
        Flag(
            "tpot",
            bool(tpot.percentile <= slo.tpot),
            f"TPOT {p} {tpot.percentile * 1e3:.2f} ms (mean {tpot.mean * 1e3:.2f}, ITL {p} "
            f"{tpot.itl_percentile * 1e3:.2f}) vs SLO {slo.tpot * 1e3:g} ms at {p}",
        ),
        Flag(
            "ttft",
            bool(ttft.percentile <= slo.ttft),
            f"TTFT {p} {ttft.percentile * 1e3:.1f} ms (mean {ttft.total * 1e3:.1f}: wait "
            f"{ttft.queueing * 1e3:.1f} + prefill {ttft.prefill * 1e3:.1f} + KV "
            f"{ttft.kv_transfer * 1e3:.2f}) vs SLO {slo.ttft * 1e3:g} ms at {p}",
        ),
        Flag(
            "prefill keeps up",
            bool(keeps_up and math.isfinite(ttft.queueing)),
            f"prefill utilisation {flow.prefill_utilization:.2f} at {flow.arrival_rate:.2f} req/s "
            f"(prefill capacity {flow.prefill_capacity:.2f}, decode capacity "
            f"{flow.decode_capacity:.2f} req/s)",
        ),
    ]


def agg_prefill_capacity(role: Role, workload: Workload, it: AggIteration) -> float:
    """Requests/s an aggregated role's prefill budgets absorb when every iteration is mixed."""
    budget_share = workload.new_prompt_tokens / role.chunk_tokens
    return role.replicas * role.shape.attn_dp / (budget_share * it.mixed.total)


def agg_ttft(ctx: Context, role: Role, it: AggIteration, rate: float) -> Ttft:
    """TTFT of an aggregated role at ``rate`` requests/s: the iteration in progress (half a
    mean iteration), the wait for prefill budget (M/D/1 per attention-DP rank, a prompt taking
    its share of a mixed iteration's budget), then its mixed iterations."""
    wl = ctx.workload
    ranks = role.replicas * role.shape.attn_dp
    per_rank = rate / ranks
    service = wl.new_prompt_tokens / role.chunk_tokens * it.mixed.total
    queue = ttft_queueing(per_rank, service, 1)
    t_iter = it.mean.total
    p = wl.slo.percentile
    pct = t_iter * p / 100 + wait_quantile(queue, per_rank * service, p) + it.prefill_service
    return Ttft(t_iter / 2 + queue, it.prefill_service, 0.0, pct, "aggregated: KV stays")


def prefill_ttft(ctx: Context, role: Role, service: float, rate: float, kv: Latency) -> Ttft:
    """TTFT of a P/D prefill role at ``rate`` requests/s: the wait for its lock-step replicas
    (``model.queueing.lockstep_wait``), the prefill (``service``) and the batch's KV transfer."""
    q = lockstep_wait(rate, service, role.replicas, role.batch * role.shape.attn_dp)
    pct = wait_quantile(q.wait, q.busy, ctx.workload.slo.percentile) + service + kv.seconds
    return Ttft(q.wait, service, kv.seconds, pct, kv.source)


def _agg(ctx: Context, role: Role) -> tuple[RoleResult, Tpot, Ttft, Flow, bool]:
    wl, shape = ctx.workload, role.shape
    it: AggIteration = agg_iteration(ctx, role, role.batch_per_gpu)
    accepted = accepted_tokens(role.mtp, wl.mtp_acceptance)
    t_iter = it.mean.total
    tpot = Tpot(t_iter / accepted, agg_tpot_percentile(ctx, role, it), itl_percentile(ctx, it))
    seqs = role.batch_per_gpu * shape.attention_gpus
    dec_cap = decode_capacity(role.replicas, seqs * accepted, wl.osl, t_iter)
    flow = balance(agg_prefill_capacity(role, wl, it), dec_cap, wl.osl, tpot.mean, role.gpus)
    ttft = agg_ttft(ctx, role, it, flow.arrival_rate)
    result = RoleResult(role.id, role.role, it.mean, decode_memory(ctx, role))
    return result, tpot, ttft, flow, it.keeps_up


def _pd(
    ctx: Context, plan: Plan, prefill_ctx: Context
) -> tuple[tuple[RoleResult, ...], Tpot, Ttft, Flow, bool]:
    pre = next(r for r in plan.roles if r.role == RoleKind.PREFILL)
    dec = next(r for r in plan.roles if r.role == RoleKind.DECODE)
    wl = ctx.workload
    step = decode_step(ctx, dec, dec.batch_per_gpu)
    accepted = accepted_tokens(dec.mtp, wl.mtp_acceptance)
    t = step.total / accepted
    tpot = Tpot(t, t, step.total)
    p_step = prefill_step(prefill_ctx, pre)
    service = p_step.total
    seqs = dec.batch_per_gpu * dec.shape.attention_gpus
    flow = balance(
        pre.replicas * pre.batch * pre.shape.attn_dp / service,
        decode_capacity(dec.replicas, seqs * accepted, wl.osl, step.total),
        wl.osl,
        t,
        pre.gpus + dec.gpus,
    )
    kv = kv_transfer(ctx, pre, dec.pool, kv_link_domains(pre, dec))
    ttft = prefill_ttft(ctx, pre, service, flow.arrival_rate, kv)
    roles = (
        RoleResult(pre.id, pre.role, p_step, prefill_memory(ctx, pre)),
        RoleResult(dec.id, dec.role, step, decode_memory(ctx, dec)),
    )
    return roles, tpot, ttft, flow, True


def _extrapolation_notes(roles: tuple[RoleResult, ...]) -> list[str]:
    notes = []
    for r in roles:
        ext = sorted({op.name for op in r.step.ops if op.cost.extrapolated})
        if ext:
            notes.append(f"{r.role}: extrapolated beyond the measured grid: {', '.join(ext)}")
        fb = sorted({op.cost.fallback for op in r.step.ops if op.cost.fallback})
        notes += [f"{r.role}: fallback: {f}" for f in fb]
        sim = sorted({op.name for op in r.step.ops if op.cost.source.startswith("simulated")})
        if sim:
            notes.append(f"{r.role}: calibrated link model, no measurement: {', '.join(sim)}")
    return notes


def evaluate_context(ctx: Context, plan: Plan, prefill_ctx: Context | None = None) -> Evaluation:
    """Evaluate ``plan`` in a built context (the optimiser reuses one context for many plans).
    ``prefill_ctx`` prices the P/D prefill role in another context (the optimiser takes prefill
    service times, per-shape constants it never linearises, from the measured grids)."""
    agg = next((r for r in plan.roles if r.role == RoleKind.AGG), None)
    if agg is not None:
        result, tpot, ttft, flow, keeps_up = _agg(ctx, agg)
        roles: tuple[RoleResult, ...] = (result,)
    else:
        roles, tpot, ttft, flow, keeps_up = _pd(ctx, plan, prefill_ctx or ctx)
    flags = _latency_flags(ctx, tpot, ttft, flow, keeps_up) + _memory_flags(roles)
    notes = [
        f"framework {ctx.framework}; routing {ctx.routing.name}; TPOT and TTFT judged at "
        f"p{ctx.workload.slo.percentile:g} (per-request TPOT; TTFT wait on an exponential tail)"
    ]
    notes += [n for r in roles for n in r.step.notes]
    notes += _extrapolation_notes(roles)
    if any(r.afd is not None for r in plan.roles):
        role = next(r for r in plan.roles if r.afd is not None)
        link = "one NVLink domain" if afd_domains(ctx, role) == 1 else "the scale-out network"
        notes.append(f"AFD unit: attention and FFN sides talk over {link}")
    if not math.isfinite(ttft.total):
        notes.append("TTFT is infinite: the prefill queue is saturated")
    return Evaluation(
        plan.mode,
        ctx.workload,
        ctx.framework,
        roles,
        tpot,
        ttft,
        flow,
        sum(r.gpus for r in plan.roles),
        tuple(flags),
        tuple(dict.fromkeys(notes)),
    )


def evaluate_plan(
    plan: Plan,
    instance: Instance,
    workload: Workload | None = None,
    *,
    surrogate: str = "measured",
    pipeline: str = "pipelined",
    routing: Routing = DEFAULT_ROUTING,
    ctx: Context | None = None,
) -> Evaluation:
    """Evaluate a plan on an instance for a workload (default: the instance's first), priced
    with the plan's framework (default: the model's best-covered one)."""
    if ctx is None:
        ctx = build_context(
            instance,
            workload or instance.workloads[0],
            framework=plan.framework,
            routing=routing,
            surrogate=surrogate,
            pipeline=pipeline,
        )
    return evaluate_context(ctx, plan)
