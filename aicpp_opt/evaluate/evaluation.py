"""``evaluate(plan, instance)``: a fully specified plan in; per role its step breakdown, memory,
rate and capacity; per workload TPOT and TTFT (mean and the SLO's percentile) and its request
flow; fleet throughput and feasibility flags out. Composes the role-level functions of
``aicpp_opt.model``, which the optimiser calls too.

Rates. Roles carry the requests/s they are planned for (``solve`` writes them). A role without
one gets the balanced flow of its workload: the P/D roles run at min(prefill capacity, decode
capacity), split in proportion to each role's capacity, and aggregated roles at their own
capacity. A prefill role's requests go to the decode roles its routes name (every decode role of
its workload by default), in proportion to their rates.

TTFT = the wait (lock-step prefill replicas; for aggregated roles the iteration in progress and
the rank's prefill budget) + prefill compute + the KV transfer of the rank's batch over the link
the placement gives. A P/D prefill role's percentile is read from the exact law of wait + own
forward of its replicas' batch queue (``model.queueing.prefill_queue``); an aggregated role's
adds the wait's percentile on an exponential tail to the fixed parts. TPOT's is per request
(``model.steps``); a P/D decode role's at the batch its rate fills (Little's law, at most the
configured batch: ``operating_batch``). A workload's TPOT percentile is that of its requests
over the roles serving it (rate-weighted; a decode role's per-request TPOT is nearly constant,
so its percentile stands for all its requests), its TTFT percentile the worst feeding role's,
its means rate-weighted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aicpp_opt.costs.curve import Latency
from aicpp_opt.model.context import Context, build_context
from aicpp_opt.model.forward import afd_domains, ffn_sets
from aicpp_opt.model.memory import MemoryBreakdown, kv_bytes_per_token, kv_layers, memory_per_gpu
from aicpp_opt.model.queueing import prefill_queue, ttft_queueing, wait_quantile
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
from aicpp_opt.model.schedule import OpCost, Step
from aicpp_opt.model.steps import (
    AggIteration,
    accepted_tokens,
    agg_iteration,
    agg_tpot_percentile,
    decode_step,
    decode_step_seconds,
    itl_percentile,
    per_token,
    prefill_forwards,
    prefill_step,
)
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan, Role
from aicpp_opt.spec.workload import Workload

OVER_CAPACITY = 1e-6
"""Relative excess of a role's planned rate over its capacity that still counts as within it
(the solver's tolerance)."""


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
class Flow:
    """A workload's request flow (requests/s) and its output tokens/s."""

    arrival_rate: float
    prefill_capacity: float
    decode_capacity: float
    output_tps: float
    output_tps_per_user: float

    @property
    def prefill_utilization(self) -> float:
        cap = self.prefill_capacity
        return self.arrival_rate / cap if cap else math.inf

    def to_dict(self) -> dict:
        return {
            "arrival_rps": self.arrival_rate,
            "prefill_capacity_rps": self.prefill_capacity,
            "decode_capacity_rps": self.decode_capacity,
            "prefill_utilization": self.prefill_utilization,
            "output_tps": self.output_tps,
            "output_tps_per_user": self.output_tps_per_user,
        }


@dataclass(frozen=True)
class RoleResult:
    """One role: its step (decode step, aggregated mean iteration or prefill), memory, planned
    rate and capacity (requests/s), and its latencies (TPOT for decode and aggregated roles,
    TTFT for prefill and aggregated ones)."""

    role: str
    kind: RoleKind
    workload: str
    step: Step
    memory: dict[str, MemoryBreakdown]
    rate: float
    capacity: float
    gpus: int
    tpot: Tpot | None = None
    ttft: Ttft | None = None
    filled_batch: float | None = None
    """A P/D decode role's sequences per GPU at its rate (``operating_batch``), where its TPOT is
    priced; ``step`` and ``capacity`` stay at the configured batch."""


@dataclass(frozen=True)
class WorkloadResult:
    workload: Workload
    tpot: Tpot
    ttft: Ttft
    flow: Flow


@dataclass(frozen=True)
class Evaluation:
    mode: str
    framework: str
    roles: tuple[RoleResult, ...]
    workloads: tuple[WorkloadResult, ...]
    gpus: int
    flags: tuple[Flag, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        return all(f.ok for f in self.flags)

    @property
    def workload(self) -> Workload:
        return self.workloads[0].workload

    @property
    def tpot(self) -> Tpot:
        """The first workload's TPOT (the only one of a single-workload plan)."""
        return self.workloads[0].tpot

    @property
    def ttft(self) -> Ttft:
        return self.workloads[0].ttft

    @property
    def flow(self) -> Flow:
        return self.workloads[0].flow

    @property
    def output_tps(self) -> float:
        """Output tokens/s of the whole fleet."""
        return sum(w.flow.output_tps for w in self.workloads)

    def unmeasured_ops(self) -> list[str]:
        """Names of the ops priced by the calibrated link model instead of a measured table."""
        return sorted({op.name for r in self.roles for op in r.step.ops if _unmeasured(op)})

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "framework": self.framework,
            "gpus": self.gpus,
            "feasible": self.feasible,
            "output_tps": self.output_tps,
            "output_tps_per_gpu": self.output_tps / self.gpus if self.gpus else 0.0,
            "workloads": [_workload_dict(w) for w in self.workloads],
            "roles": [_role_dict(r) for r in self.roles],
            "flags": [{"name": f.name, "ok": f.ok, "reason": f.reason} for f in self.flags],
            "notes": list(self.notes),
        }


def _latency_dict(value, p: str) -> dict | None:
    if value is None:
        return None
    if isinstance(value, Tpot):
        return {
            "mean": value.mean * 1e3,
            p: value.percentile * 1e3,
            f"itl_{p}": value.itl_percentile * 1e3,
        }
    return {
        "mean": value.total * 1e3,
        p: value.percentile * 1e3,
        "queueing": value.queueing * 1e3,
        "prefill": value.prefill * 1e3,
        "kv_transfer": value.kv_transfer * 1e3,
        "kv_source": value.kv_source,
    }


def _workload_dict(w: WorkloadResult) -> dict:
    slo = w.workload.slo
    p = f"p{slo.percentile:g}"
    return {
        "workload": w.workload.name,
        "slo": {"ttft_ms": slo.ttft * 1e3, "tpot_ms": slo.tpot * 1e3, "percentile": slo.percentile},
        "tpot_ms": _latency_dict(w.tpot, p),
        "ttft_ms": _latency_dict(w.ttft, p),
        "throughput": w.flow.to_dict(),
    }


def _role_dict(r: RoleResult) -> dict:
    return {
        "role": r.role,
        "kind": r.kind.value,
        "workload": r.workload,
        "rate_rps": r.rate,
        "capacity_rps": r.capacity,
        "gpus": r.gpus,
        "step": r.step.to_dict(),
        "memory": {k: v.to_dict() for k, v in r.memory.items()},
        "tpot_ms": _latency_dict(r.tpot, "percentile"),
        "ttft_ms": _latency_dict(r.ttft, "percentile"),
        "filled_batch_per_gpu": r.filled_batch,
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
    """1 when every GPU of the prefill and decode roles sits in one NVLink domain (every KV
    transfer stays on NVLink), else 2 (some cross the scale-out network; the TTFT percentile
    takes that link)."""
    domains = {(p.pool, p.domain) for p in (*prefill.placement, *decode.placement)}
    return 1 if len(domains) == 1 else 2


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


def agg_prefill_capacity(role: Role, workload: Workload, it: AggIteration) -> float:
    """Requests/s an aggregated role's prefill budgets absorb when every iteration is mixed."""
    budget_share = workload.new_prompt_tokens / role.chunk_tokens
    return role.replicas * role.shape.attn_dp / (budget_share * it.mixed.total)


def agg_ttft(
    ctx: Context, role: Role, mean_s: float, mixed_s: float, prefill_s: float, rate: float
) -> Ttft:
    """TTFT of an aggregated role at ``rate`` requests/s whose mean iteration takes ``mean_s``,
    a mixed one ``mixed_s`` and a prompt's prefill ``prefill_s``: the iteration in progress
    (half a mean iteration), the wait for prefill budget (M/D/1 per attention-DP rank, a prompt
    taking its share of a mixed iteration's budget), then its mixed iterations."""
    wl = ctx.workload
    ranks = role.replicas * role.shape.attn_dp
    per_rank = rate / ranks
    service = wl.new_prompt_tokens / role.chunk_tokens * mixed_s
    queue = ttft_queueing(per_rank, service, 1)
    p = wl.slo.percentile
    pct = mean_s * p / 100 + wait_quantile(queue, per_rank * service, p) + prefill_s
    return Ttft(mean_s / 2 + queue, prefill_s, 0.0, pct, "aggregated: KV stays")


def prefill_ttft(
    ctx: Context, role: Role, forwards: tuple[float, ...], rate: float, kv: Latency
) -> Ttft:
    """TTFT of a P/D prefill role at ``rate`` requests/s, split evenly at random over its
    replicas: the wait for a replica's lock-step forward and the forward itself
    (``model.queueing.prefill_queue`` over the forward times ``forwards`` by requests per
    rank), then the KV transfer."""
    q = prefill_queue(
        rate / role.replicas, forwards, role.shape.attn_dp, ctx.workload.slo.percentile
    )
    return Ttft(q.wait, q.forward, kv.seconds, q.percentile + kv.seconds, kv.source)


def prefill_capacity(role: Role, service: float) -> float:
    """Requests/s a prefill role completes when busy: its replicas' full batches."""
    return role.replicas * role.batch * role.shape.attn_dp / service


def decode_rate_capacity(ctx: Context, role: Role, step: float) -> float:
    """Requests/s a decode role finishes when full: sequences x accepted tokens per step /
    (OSL x step)."""
    seqs = role.replicas * role.batch_per_gpu * role.shape.attention_gpus
    accepted = accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
    return seqs * accepted / (ctx.workload.osl * step)


FILL_TOL = 1e-3
"""Relative precision of the filled batch."""
FULL_SEATS = 0.98
"""Share of a decode role's capacity from which its seat queue is noted: at 98% of 1024 seats
(small_h200_16's decode replica) Erlang C puts the mean wait for a seat at 2% of a sequence's
hold (0.35 s of its 17.6 s), at 99% at 6.4%, and it diverges at 100%."""


def operating_batch(ctx: Context, role: Role, rate: float) -> float:
    """Sequences per GPU a P/D decode role holds at ``rate`` requests/s: by Little's law b =
    rate per GPU x OSL / accepted tokens x step(b), at most the configured batch (the fixed
    point, by iteration from the configured batch: the step grows slower than the batch)."""
    cfg = role.batch_per_gpu
    if rate <= 0:
        return cfg
    wl = ctx.workload
    per_gpu = rate / (role.replicas * role.shape.attention_gpus)
    hold = wl.osl / accepted_tokens(role.mtp, wl.mtp_acceptance)
    b = cfg
    for _ in range(50):
        nxt = min(cfg, per_gpu * hold * decode_step_seconds(ctx, role, b))
        if abs(nxt - b) <= FILL_TOL * b:
            return nxt
        b = nxt
    return b


@dataclass
class _Roles:
    """The roles of one workload being evaluated: steps, capacities, rates."""

    results: dict[str, RoleResult] = field(default_factory=dict)
    iterations: dict[str, AggIteration] = field(default_factory=dict)


def _decode_like(ctx: Context, role: Role, acc: _Roles) -> RoleResult:
    """A decode or aggregated role's step, memory, capacity and TPOT (rate filled in later)."""
    gpus = role.gpus
    if role.role == RoleKind.AGG:
        it = agg_iteration(ctx, role, role.batch_per_gpu)
        acc.iterations[role.id] = it
        accepted = accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
        mean = it.mean.total
        tpot = Tpot(mean / accepted, agg_tpot_percentile(ctx, role, it), itl_percentile(ctx, it))
        cap = min(
            decode_rate_capacity(ctx, role, mean), agg_prefill_capacity(role, ctx.workload, it)
        )
        return RoleResult(
            role.id,
            role.role,
            role.workload,
            it.mean,
            decode_memory(ctx, role),
            0.0,
            cap,
            gpus,
            tpot,
        )
    step = decode_step(ctx, role, role.batch_per_gpu)
    t = step.total / accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
    cap = decode_rate_capacity(ctx, role, step.total)
    return RoleResult(
        role.id,
        role.role,
        role.workload,
        step,
        decode_memory(ctx, role),
        0.0,
        cap,
        gpus,
        Tpot(t, t, step.total),
    )


def _rates(roles: list[Role], results: dict[str, RoleResult]) -> dict[str, float]:
    """Each role's requests/s: as planned, else the balanced flow of its workload."""
    rates = {r.id: r.rate for r in roles if r.rate is not None}
    pre = [r for r in roles if r.role == RoleKind.PREFILL and r.rate is None]
    dec = [r for r in roles if r.role == RoleKind.DECODE and r.rate is None]
    for r in roles:
        if r.role == RoleKind.AGG and r.rate is None:
            rates[r.id] = results[r.id].capacity
    if pre or dec:
        planned_pre = sum(rates.get(r.id, 0.0) for r in roles if r.role == RoleKind.PREFILL)
        planned_dec = sum(rates.get(r.id, 0.0) for r in roles if r.role == RoleKind.DECODE)
        cap_pre = sum(results[r.id].capacity for r in pre)
        cap_dec = sum(results[r.id].capacity for r in dec)
        flow = min(planned_pre + cap_pre, planned_dec + cap_dec)
        for group, planned, cap in ((pre, planned_pre, cap_pre), (dec, planned_dec, cap_dec)):
            free = max(flow - planned, 0.0)
            for r in group:
                rates[r.id] = free * results[r.id].capacity / cap if cap else 0.0
    return rates


def _routes(plan: Plan, pre: Role, rates: dict[str, float]) -> list[tuple[Role, float]]:
    """(decode role, share of ``pre``'s requests) for the decode roles it feeds."""
    named = [r for r in plan.routes if r.prefill == pre.id]
    if named and all(r.rate is not None for r in named):
        total = sum(r.rate for r in named)
        return [(plan.role(r.decode), r.rate / total if total else 0.0) for r in named]
    targets = (
        [plan.role(r.decode) for r in named]
        if named
        else plan.serving(pre.workload, RoleKind.DECODE)
    )
    total = sum(rates[d.id] for d in targets)
    return [(d, rates[d.id] / total if total else 1.0 / len(targets)) for d in targets]


def _evaluate_workload(
    ctx: Context, prefill_ctx: Context, plan: Plan, name: str
) -> tuple[list[RoleResult], WorkloadResult, list[Flag]]:
    wl = ctx.workload
    roles = [r for r in plan.roles if r.workload == name]
    acc = _Roles()
    for role in roles:
        if role.role != RoleKind.PREFILL:
            acc.results[role.id] = _decode_like(ctx, role, acc)
        else:
            step = prefill_step(prefill_ctx, role)
            acc.results[role.id] = RoleResult(
                role.id,
                role.role,
                role.workload,
                step,
                prefill_memory(ctx, role),
                0.0,
                prefill_capacity(role, step.total),
                role.gpus,
            )
    rates = _rates(roles, acc.results)
    flags: list[Flag] = []
    results = []
    for role in roles:
        res = acc.results[role.id]
        rate = rates[role.id]
        ttft = res.ttft
        if role.role == RoleKind.AGG:
            it = acc.iterations[role.id]
            ttft = agg_ttft(ctx, role, it.mean.total, it.mixed.total, it.prefill_service, rate)
        elif role.role == RoleKind.PREFILL:
            forwards = prefill_forwards(prefill_ctx, role, res.step)
            ttft = _prefill_ttft(ctx, plan, role, forwards, rate, rates)
        tpot, filled = res.tpot, None
        if role.role == RoleKind.DECODE:
            filled = operating_batch(ctx, role, rate)
            if filled < role.batch_per_gpu:
                t = per_token(ctx, role, decode_step_seconds(ctx, role, filled))
                tpot = Tpot(t, t, t * accepted_tokens(role.mtp, wl.mtp_acceptance))
        res = RoleResult(
            res.role,
            res.kind,
            res.workload,
            res.step,
            res.memory,
            rate,
            res.capacity,
            res.gpus,
            tpot,
            ttft,
            filled,
        )
        results.append(res)
        keeps = rate <= res.capacity * (1 + OVER_CAPACITY)
        if role.role == RoleKind.AGG:
            keeps = keeps and acc.iterations[role.id].keeps_up
        if ttft is not None:
            keeps = keeps and math.isfinite(ttft.queueing)
        flags.append(
            Flag(
                f"{role.id} keeps up",
                bool(keeps),
                f"{rate:.2f} req/s of a capacity of {res.capacity:.2f} req/s",
            )
        )
    result = _workload_result(wl, results)
    return results, result, flags + _latency_flags(result, name)


def _prefill_ttft(ctx, plan, role, forwards, rate, rates) -> Ttft:
    """The TTFT of ``role``'s requests: its queue and forwards, and the KV transfer to the
    decode roles it feeds (rate-weighted mean; the slowest link for the percentile)."""
    routes = _routes(plan, role, rates)
    kvs = [(kv_transfer(ctx, role, d.pool, kv_link_domains(role, d)), share) for d, share in routes]
    worst = max(kvs, key=lambda pair: pair[0].seconds)[0]
    mean_kv = sum(kv.seconds * share for kv, share in kvs)
    t = prefill_ttft(ctx, role, forwards, rate, worst)
    return Ttft(t.queueing, t.prefill, mean_kv, t.percentile, worst.source)


def mixture_percentile(values: list[float], weights: list[float], percentile: float) -> float:
    """The ``percentile`` of requests split over roles in proportion to ``weights``, each
    role's requests all at its ``values`` entry (the worst value when no weight is given)."""
    total = sum(weights)
    if total <= 0:
        return max(values)
    share = 0.0
    for value, weight in sorted(zip(values, weights, strict=True)):
        share += weight / total
        if share >= percentile / 100 - 1e-12:
            return value
    return max(values)


def _workload_result(wl: Workload, results: list[RoleResult]) -> WorkloadResult:
    serving = [r for r in results if r.kind != RoleKind.PREFILL]
    feeding = [r for r in results if r.ttft is not None]
    arrival = sum(r.rate for r in serving)

    def mean(values, weights):
        total = sum(weights)
        return sum(v * w for v, w in zip(values, weights, strict=True)) / total if total else 0.0

    rates = [r.rate for r in serving]
    p = wl.slo.percentile
    tpot = Tpot(
        mean([r.tpot.mean for r in serving], rates),
        mixture_percentile([r.tpot.percentile for r in serving], rates, p),
        mixture_percentile([r.tpot.itl_percentile for r in serving], rates, p),
    )
    frates = [r.rate for r in feeding]
    ttft = Ttft(
        mean([r.ttft.queueing for r in feeding], frates),
        mean([r.ttft.prefill for r in feeding], frates),
        mean([r.ttft.kv_transfer for r in feeding], frates),
        max(r.ttft.percentile for r in feeding),
        "; ".join(dict.fromkeys(r.ttft.kv_source for r in feeding)),
    )
    agg_cap = sum(r.capacity for r in serving if r.kind == RoleKind.AGG)
    pre_cap = sum(r.capacity for r in results if r.kind == RoleKind.PREFILL)
    dec_cap = sum(r.capacity for r in serving if r.kind == RoleKind.DECODE)
    flow = Flow(
        arrival,
        pre_cap + agg_cap,
        dec_cap + agg_cap,
        arrival * wl.osl,
        1.0 / tpot.mean if tpot.mean else 0.0,
    )
    return WorkloadResult(wl, tpot, ttft, flow)


def _latency_flags(w: WorkloadResult, name: str) -> list[Flag]:
    slo = w.workload.slo
    p = f"p{slo.percentile:g}"
    tpot, ttft = w.tpot, w.ttft
    return [
        Flag(
            f"tpot {name}",
            bool(tpot.percentile <= slo.tpot),
            f"TPOT {p} {tpot.percentile * 1e3:.2f} ms (mean {tpot.mean * 1e3:.2f}, ITL {p} "
            f"{tpot.itl_percentile * 1e3:.2f}) vs SLO {slo.tpot * 1e3:g} ms at {p}",
        ),
        Flag(
            f"ttft {name}",
            bool(ttft.percentile <= slo.ttft),
            f"TTFT {p} {ttft.percentile * 1e3:.1f} ms (mean {ttft.total * 1e3:.1f}: wait "
            f"{ttft.queueing * 1e3:.1f} + prefill {ttft.prefill * 1e3:.1f} + KV "
            f"{ttft.kv_transfer * 1e3:.2f}) vs SLO {slo.ttft * 1e3:g} ms at {p}",
        ),
    ]


def _unmeasured(op: OpCost) -> bool:
    return op.cost.source.startswith("simulated")


def _extrapolation_notes(roles: list[RoleResult]) -> list[str]:
    notes = []
    for r in roles:
        ext = sorted({op.name for op in r.step.ops if op.cost.extrapolated})
        if ext:
            notes.append(f"{r.role}: extrapolated beyond the measured grid: {', '.join(ext)}")
        fb = sorted({op.cost.fallback for op in r.step.ops if op.cost.fallback})
        notes += [f"{r.role}: fallback: {f}" for f in fb]
        sim = sorted({op.name for op in r.step.ops if _unmeasured(op)})
        if sim:
            notes.append(f"{r.role}: calibrated link model, no measurement: {', '.join(sim)}")
    return notes


Contexts = dict[str, Context]


def evaluate_context(
    ctx: Context | Contexts, plan: Plan, prefill_ctx: Context | Contexts | None = None
) -> Evaluation:
    """Evaluate ``plan`` in built contexts, one per workload it serves (a single context serves
    every role when the plan has one workload). ``prefill_ctx`` prices the P/D prefill roles
    in other contexts (the optimiser takes prefill service times, per-shape constants it never
    linearises, from the measured grids)."""
    ctxs = ctx if isinstance(ctx, dict) else {name: ctx for name in plan.workloads}
    pre = prefill_ctx or ctxs
    pres = pre if isinstance(pre, dict) else {name: pre for name in plan.workloads}
    results: list[RoleResult] = []
    workloads: list[WorkloadResult] = []
    flags: list[Flag] = []
    for name in plan.workloads:
        roles, result, wflags = _evaluate_workload(ctxs[name], pres[name], plan, name)
        results += roles
        workloads.append(result)
        flags += wflags
    order = {r.id: i for i, r in enumerate(plan.roles)}
    results.sort(key=lambda r: order[r.role])
    flags += _memory_flags(tuple(results))
    first = ctxs[plan.workloads[0]]
    notes = [
        f"framework {first.framework}; routing {first.routing.name}; TPOT and TTFT judged at "
        f"the SLO percentile (per-request TPOT; a prefill replica's TTFT from its batch queue's "
        "exact law, an aggregated rank's wait on an exponential tail)"
    ]
    notes += [n for r in results for n in r.step.notes]
    notes += [
        f"{r.role}: at {r.rate:.2f} req/s its batch fills {r.filled_batch:.1f} of "
        f"{plan.role(r.role).batch_per_gpu:g} sequences per GPU (Little's law); TPOT is priced "
        "there, capacity and the step breakdown at the configured batch"
        for r in results
        if r.filled_batch is not None and r.filled_batch < plan.role(r.role).batch_per_gpu
    ]
    notes += [
        f"{r.role}: planned at {r.rate / r.capacity:.1%} of its seats: requests queue for a "
        "free decode seat, a wait the TTFT above does not include and that grows with time "
        "when the seats are fully loaded (docs/simulate.md; `aicpp-opt simulate` measures it)"
        for r in results
        if r.kind == RoleKind.DECODE and r.capacity > 0 and r.rate >= FULL_SEATS * r.capacity
    ]
    notes += _extrapolation_notes(results)
    for role in plan.roles:
        if role.afd is not None:
            link = afd_domains(first, role) == 1
            where = "one NVLink domain" if link else "the scale-out network"
            notes.append(f"{role.id}: AFD attention and FFN sides talk over {where}")
    if any(not math.isfinite(w.ttft.total) for w in workloads):
        notes.append("a TTFT is infinite: a prefill queue is saturated")
    return Evaluation(
        plan.mode,
        first.framework,
        tuple(results),
        tuple(workloads),
        sum(r.gpus for r in plan.roles),
        tuple(flags),
        tuple(dict.fromkeys(notes)),
    )


def contexts(
    instance: Instance,
    plan: Plan,
    *,
    surrogate: str = "measured",
    pipeline: str = "pipelined",
    routing: Routing = DEFAULT_ROUTING,
) -> Contexts:
    """One context per workload the plan serves, all for the plan's framework and sharing one
    set of cost models."""
    out: Contexts = {}
    tables = None
    for name in plan.workloads:
        ctx = build_context(
            instance,
            instance.workload(name),
            framework=plan.framework,
            routing=routing,
            surrogate=surrogate,
            pipeline=pipeline,
            tables=tables,
        )
        tables = ctx.costs
        out[name] = ctx
    return out


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
    """Evaluate a plan on an instance, priced with the plan's framework (default: the model's
    best-covered one). ``workload`` overrides the workload a single-workload plan serves."""
    if ctx is not None:
        return evaluate_context(ctx, plan)
    if workload is not None:
        ctx = build_context(
            instance,
            workload,
            framework=plan.framework,
            routing=routing,
            surrogate=surrogate,
            pipeline=pipeline,
        )
        return evaluate_context(ctx, plan)
    ctxs = contexts(instance, plan, surrogate=surrogate, pipeline=pipeline, routing=routing)
    return evaluate_context(ctxs, plan)
