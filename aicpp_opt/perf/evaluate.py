"""``evaluate(plan, instance, workload)``: a fully specified plan in; per-role step breakdowns,
TPOT, TTFT (queueing + prefill + KV transfer), balanced throughput, memory per GPU and
feasibility flags out. Composes the role-level functions the optimiser also calls."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aicpp_opt.perf.afd import afd_iteration, afd_step
from aicpp_opt.perf.breakdown import Cost, StepBreakdown
from aicpp_opt.perf.comm import p2p
from aicpp_opt.perf.context import PerfContext, build_context
from aicpp_opt.perf.fleet import Flow, balance, decode_capacity
from aicpp_opt.perf.memory import MemoryBreakdown, memory_per_gpu
from aicpp_opt.perf.queueing import ttft_queueing
from aicpp_opt.perf.step import AggIteration, agg_iteration, decode_step, prefill_time
from aicpp_opt.spec.instance import Dimension, Instance
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
    """Mean TTFT parts in seconds: batch formation + queue wait, prefill compute, KV transfer."""

    queueing: float
    prefill: float
    kv_transfer: float
    kv_source: str = ""

    @property
    def total(self) -> float:
        return self.queueing + self.prefill + self.kv_transfer


@dataclass(frozen=True)
class RoleResult:
    role: str
    step: StepBreakdown
    memory: dict[str, MemoryBreakdown]


@dataclass(frozen=True)
class Evaluation:
    mode: str
    workload: Workload
    roles: tuple[RoleResult, ...]
    tpot: float
    ttft: Ttft
    flow: Flow
    gpus: int
    flags: tuple[Flag, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        return all(f.ok for f in self.flags)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "workload": self.workload.name,
            "gpus": self.gpus,
            "feasible": self.feasible,
            "tpot_ms": self.tpot * 1e3,
            "ttft_ms": {
                "total": self.ttft.total * 1e3,
                "queueing": self.ttft.queueing * 1e3,
                "prefill": self.ttft.prefill * 1e3,
                "kv_transfer": self.ttft.kv_transfer * 1e3,
                "kv_source": self.ttft.kv_source,
            },
            "throughput": self.flow.to_dict(),
            "roles": [
                {
                    "role": r.role,
                    "step": r.step.to_dict(),
                    "memory": {k: v.to_dict() for k, v in r.memory.items()},
                }
                for r in self.roles
            ],
            "flags": [{"name": f.name, "ok": f.ok, "reason": f.reason} for f in self.flags],
            "notes": list(self.notes),
        }


def decode_memory(ctx: PerfContext, role: Role) -> dict[str, MemoryBreakdown]:
    ctx_len, b = ctx.workload.decode_context, role.batch_per_gpu
    if role.afd is None:
        return {
            "gpu": memory_per_gpu(
                ctx, role.pool, role.shape, seqs_per_gpu=b, context=ctx_len, tokens_per_gpu=b
            )
        }
    ffn_tokens = b * role.afd.attention_gpus / role.micro_batches / role.shape.moe_gpus
    return {
        "attention": memory_per_gpu(
            ctx,
            role.pool,
            role.shape,
            seqs_per_gpu=b,
            context=ctx_len,
            tokens_per_gpu=b / role.micro_batches,
            side="attention",
        ),
        "ffn": memory_per_gpu(
            ctx,
            role.afd.ffn_pool,
            role.shape,
            seqs_per_gpu=0,
            context=0,
            tokens_per_gpu=ffn_tokens * ctx.model.moe.top_k,
            side="ffn",
        ),
    }


def prefill_memory(ctx: PerfContext, role: Role) -> dict[str, MemoryBreakdown]:
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
    )
    return {"gpu": mem}


def kv_over(ctx: PerfContext, link: Dimension, prefill: Role) -> Cost:
    """One request's KV (full ISL, all layers) from its prefill rank to its decode rank over
    ``link``; GQA KV moves as one stream per prefill TP rank, MLA/DSA latent KV as one."""
    m = ctx.model
    nbytes = ctx.workload.isl * m.num_layers * m.kv_cache_bytes_per_token_per_layer
    streams = 1 if m.attention.kind in ("mla", "dsa") else prefill.shape.attn_tp
    return p2p(link, nbytes, streams)


def kv_link(ctx: PerfContext, prefill: Role, decode: Role) -> Dimension:
    """NVLink when the two roles share a domain of one pool, else the slower scale-out link."""
    shared = {(p.pool, p.domain) for p in prefill.placement} & {
        (p.pool, p.domain) for p in decode.placement
    }
    pools = [ctx.pools[prefill.pool], ctx.pools[decode.pool]]
    if shared:
        return pools[0].link(True)
    return min((p.link(False) for p in pools), key=lambda d: d.bw)


def kv_transfer(ctx: PerfContext, prefill: Role, decode: Role) -> Cost:
    """One request's KV transfer over the link the placement gives."""
    return kv_over(ctx, kv_link(ctx, prefill, decode), prefill)


def _memory_flags(roles: tuple[RoleResult, ...]) -> list[Flag]:
    flags = []
    for r in roles:
        for side, mem in r.memory.items():
            gb = 1e9
            flags.append(
                Flag(
                    f"memory {r.role}/{side}",
                    mem.fits,
                    f"{mem.total / gb:.1f} GB of {mem.capacity / gb:.1f} GB: "
                    f"weights {mem.weights / gb:.1f}"
                    f" + KV {mem.kv_cache / gb:.1f} + activations {mem.activations / gb:.2f}"
                    f" + reserve {mem.reserve / gb:.1f}",
                )
            )
    return flags


def _latency_flags(ctx: PerfContext, tpot: float, ttft: Ttft, flow: Flow) -> list[Flag]:
    slo = ctx.workload.slo
    return [
        Flag(
            "tpot",
            tpot <= slo.tpot,
            f"TPOT {tpot * 1e3:.2f} ms vs SLO {slo.tpot * 1e3:g} ms "
            f"(mean, SLO p{slo.percentile:g})",
        ),
        Flag(
            "ttft",
            ttft.total <= slo.ttft,
            f"TTFT {ttft.total * 1e3:.1f} ms vs SLO {slo.ttft * 1e3:g} ms "
            f"(mean: queue {ttft.queueing * 1e3:.1f} + prefill {ttft.prefill * 1e3:.1f}"
            f" + KV {ttft.kv_transfer * 1e3:.2f})",
        ),
        Flag(
            "prefill not saturated",
            math.isfinite(ttft.queueing),
            f"prefill utilisation {flow.prefill_utilization:.2f} at {flow.arrival_rate:.2f} req/s "
            f"(prefill capacity {flow.prefill_capacity:.2f}, "
            f"decode capacity {flow.decode_capacity:.2f} req/s)",
        ),
    ]


def _extrapolation_notes(roles: tuple[RoleResult, ...]) -> list[str]:
    notes = []
    for r in roles:
        ext = sorted({op.name for op in r.step.ops if op.cost.extrapolated})
        if ext:
            notes.append(f"{r.role}: extrapolated beyond the measured grid: {', '.join(ext)}")
        ab = sorted({op.name for op in r.step.ops if op.cost.source.startswith("alpha-beta")})
        if ab:
            notes.append(
                f"{r.role}: alpha-beta link model (no matching measurement): {', '.join(ab)}"
            )
    return notes


def agg_memory(ctx: PerfContext, role: Role) -> dict[str, MemoryBreakdown]:
    """An aggregated GPU holds its decode batch's KV and one iteration's activations."""
    wl, shape, b = ctx.workload, role.shape, role.batch_per_gpu
    mem = memory_per_gpu(
        ctx,
        role.pool,
        shape,
        seqs_per_gpu=b,
        context=wl.decode_context,
        tokens_per_gpu=b + role.chunk_tokens / shape.attn_tp,
    )
    return {"gpu": mem}


def agg_ttft(role: Role, service: float, rate: float) -> Ttft:
    """TTFT of an aggregated fleet at arrival ``rate``: M/D/c over its attention-DP ranks, each
    prefilling one request at a time in ``service`` seconds."""
    wait = ttft_queueing(rate, service, role.replicas * role.shape.attn_dp)
    return Ttft(wait, service, 0.0, "aggregated: KV stays on the GPU")


def agg_role_iteration(ctx: PerfContext, role: Role) -> AggIteration:
    """The steady state of an aggregated role: a plain worker, or an AFD unit (mode afd)."""
    b, chunk = role.batch_per_gpu, role.chunk_tokens
    if role.afd is None:
        return agg_iteration(ctx, role.pool, role.shape, b, chunk)
    return afd_iteration(ctx, role.pool, role.shape, role.afd, role.micro_batches, b, chunk)


def agg_role_memory(ctx: PerfContext, role: Role) -> dict[str, MemoryBreakdown]:
    return agg_memory(ctx, role) if role.afd is None else decode_memory(ctx, role)


def _evaluate_agg(ctx: PerfContext, plan: Plan) -> tuple[tuple[RoleResult, ...], float, Ttft, Flow]:
    role = plan.role("agg")
    wl, shape = ctx.workload, role.shape
    it = agg_role_iteration(ctx, role)
    t_it = it.mean.total
    prefill_cap = role.replicas * shape.attn_dp / it.prefill_service
    dec_cap = decode_capacity(
        role.replicas, role.batch_per_gpu * shape.attention_gpus, wl.osl, t_it
    )
    flow = balance(prefill_cap, dec_cap, wl.osl, t_it, role.gpus)
    ttft = agg_ttft(role, it.prefill_service, flow.arrival_rate)
    return (RoleResult("agg", it.mean, agg_role_memory(ctx, role)),), t_it, ttft, flow


def decode_role_step(ctx: PerfContext, role: Role) -> StepBreakdown:
    """A decode step of a P/D decode role: plain instance or AFD unit."""
    if role.afd is None:
        return decode_step(ctx, role.pool, role.shape, role.batch_per_gpu)
    return afd_step(ctx, role.pool, role.shape, role.afd, role.micro_batches, role.batch_per_gpu)


def prefill_capacity(role: Role, service: float) -> float:
    """Requests/s a prefill role completes when busy: its ranks x batch / service time."""
    return role.replicas * role.shape.attn_dp * role.batch / service


def prefill_ttft(role: Role, service: float, rate: float, kv: Cost) -> Ttft:
    """TTFT at arrival ``rate``: batch formation + M/D/c wait over the prefill ranks (batches
    of ``role.batch`` requests arrive at rate / batch) + prefill compute + KV transfer."""
    formation = (role.batch - 1) / (2 * rate) if rate > 0 else 0.0
    servers = role.replicas * role.shape.attn_dp
    wait = formation + ttft_queueing(rate / role.batch, service, servers)
    return Ttft(wait, service, kv.seconds, kv.source)


def _evaluate_pd(
    ctx: PerfContext, plan: Plan, prefill_ctx: PerfContext
) -> tuple[tuple[RoleResult, ...], float, Ttft, Flow]:
    pre, dec = plan.role("prefill"), plan.role("decode")
    wl = ctx.workload
    d_step = decode_role_step(ctx, dec)
    tpot = d_step.total
    p_step = prefill_time(prefill_ctx, pre.pool, pre.shape, pre.batch, pre.chunk_tokens)
    service = p_step.total
    seqs = dec.batch_per_gpu * dec.shape.attention_gpus
    flow = balance(
        prefill_capacity(pre, service),
        decode_capacity(dec.replicas, seqs, wl.osl, tpot),
        wl.osl,
        tpot,
        pre.gpus + dec.gpus,
    )
    ttft = prefill_ttft(pre, service, flow.arrival_rate, kv_transfer(ctx, pre, dec))
    roles = (
        RoleResult("prefill", p_step, prefill_memory(ctx, pre)),
        RoleResult("decode", d_step, decode_memory(ctx, dec)),
    )
    return roles, tpot, ttft, flow


def evaluate_context(
    ctx: PerfContext, plan: Plan, prefill_ctx: PerfContext | None = None
) -> Evaluation:
    """Evaluate ``plan`` in a built context (the optimiser reuses one context for many plans).
    ``prefill_ctx`` costs the P/D prefill role in another context: the optimiser's model takes
    prefill service times, which are per-shape constants it never linearises, from the
    measured grids while its decode curves use the PWL surrogates."""
    if plan.role("agg") is not None:
        roles, tpot, ttft, flow = _evaluate_agg(ctx, plan)
    else:
        roles, tpot, ttft, flow = _evaluate_pd(ctx, plan, prefill_ctx or ctx)
    flags = _latency_flags(ctx, tpot, ttft, flow) + _memory_flags(roles)
    notes = [n for r in roles for n in r.step.notes]
    notes += _extrapolation_notes(roles)
    if not math.isfinite(ttft.total):
        notes.append("TTFT is infinite: the prefill queue is saturated")
    return Evaluation(
        plan.mode,
        ctx.workload,
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
    ctx: PerfContext | None = None,
) -> Evaluation:
    """Evaluate a plan on an instance for a workload (default: the instance's first)."""
    if ctx is None:
        ctx = build_context(
            instance, workload or instance.workloads[0], surrogate=surrogate, pipeline=pipeline
        )
    return evaluate_context(ctx, plan)


evaluate = evaluate_plan
"""The contract name: ``aicpp_opt.perf.evaluate(plan, instance, workload)``."""
