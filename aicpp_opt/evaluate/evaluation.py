"""``evaluate(plan, instance)``: a fully specified plan in; per role its step breakdown, memory,
rate and capacity; per workload TPOT and TTFT (mean and the SLO's percentile) and its request
flow; fleet throughput and feasibility flags out. Composes the role-level functions of
``aicpp_opt.model``, which the optimiser calls too.

Rates. Roles carry the requests/s they are planned for (``solve`` writes them). A role without
one gets the balanced flow of its workload: the P/D roles run at min(prefill capacity, decode
capacity), split in proportion to each role's capacity, and aggregated roles at their own
capacity. A prefill role's requests go to the decode roles its routes name (every decode role of
its workload by default), in proportion to their rates.

TTFT. P/D: the prefill replica's lock-step batch queue and forward (the exact law of
``model.queueing.prefill_queue``), the KV transfer of the rank's batch over the link the
placement gives, then on the decode replica the step in progress (a request joins at a step
boundary, where its first token is emitted) and the wait for a free seat (Erlang C over its
sequences, a heavy-traffic mean: ``model.queueing.seat_wait``). Aggregated: the iteration in
progress, the wait for the rank's prefill budget, the wait for one of the rank's seats, then
the prompt's mixed iterations, all at the fill the rate reaches (``agg_filled_batch``: Little's
law on a grid of fills; the configured batch is the rank's seats). A workload's TTFT
percentile is read from the law of these independent parts (``model.delays``) over the paths
its requests take (rate-weighted), not added up from the parts' percentiles.

A P/D decode role's capacity is the rate at which at most ``SEAT_TAIL`` of the SLO's tail
(1% of requests for a p90) waits for a seat, below the rate with every seat busy, where the
wait grows without bound. The planner holds each prefill role's part (queue, forward, KV) to
the rest of the tail and to the TTFT target less the longest decode step a TPOT-keeping role
can have (``prefill_slo``), so that the joint percentile keeps the target (a union bound).

TPOT's percentile is per request (``model.steps``); a P/D decode role's at the batch its rate
fills (Little's law, at most the configured batch: ``operating_batch``), an aggregated role's
at its fill. A workload's TPOT percentile is that of its requests over the roles serving it
(rate-weighted; a decode role's per-request TPOT is nearly constant, so its percentile stands
for all its requests), its means rate-weighted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from aicpp_opt.costs.curve import Latency
from aicpp_opt.model.context import Context, build_context, memoized
from aicpp_opt.model.delays import Delay, Wait, percentile, share_over
from aicpp_opt.model.forward import afd_domains
from aicpp_opt.model.memory import MemoryBreakdown, kv_bytes_per_token, kv_layers, memory_per_gpu
from aicpp_opt.model.queueing import (
    prefill_queue,
    prefill_share_over,
    seat_load,
    seat_wait,
    ttft_queueing,
)
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
SEAT_TAIL = 0.1
"""Share of the SLO's tail (1 - percentile / 100) a P/D decode role's seat wait may take: its
capacity is the rate at which that share of its requests waits for a seat."""


@dataclass(frozen=True)
class Flag:
    """A feasibility check: ``ok`` and the reason with the numbers."""

    name: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class Ttft:
    """TTFT parts in seconds (means): the wait before prefill starts, prefill compute, KV
    transfer, the wait for a decode seat (with the step in progress when the KV arrives); and
    the SLO percentile of the total."""

    queueing: float
    prefill: float
    kv_transfer: float
    percentile: float
    kv_source: str = ""
    seat: float = 0.0

    @property
    def total(self) -> float:
        """The mean."""
        return self.queueing + self.prefill + self.kv_transfer + self.seat


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
    """A P/D decode or aggregated role's sequences per GPU at its rate (``operating_batch``,
    ``agg_filled_batch``), where its TPOT (and an aggregated role's TTFT) is priced; ``step``
    and ``capacity`` stay at the configured batch."""
    seat: Delay | None = None
    """A P/D decode role's part of its requests' TTFT: the step in progress when their KV
    arrives and the wait for a seat."""


@dataclass(frozen=True)
class WorkloadResult:
    """A workload's latencies and flow; ``late``: the share of its requests whose TTFT is over
    the target (by the same law as the percentile), which the TTFT check compares with the
    SLO's tail."""

    workload: Workload
    tpot: Tpot
    ttft: Ttft
    flow: Flow
    late: float = 0.0


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
        "seat_wait": value.seat * 1e3,
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
        "seat_wait_ms": None if r.seat is None else r.seat.mean * 1e3,
        "seat_wait_share": None if r.seat is None else _waiting(r.seat),
    }


def _waiting(delay: Delay) -> float:
    """The share of requests that wait at all in ``delay``'s queues."""
    return 1.0 - math.prod(1.0 - w.share for w in delay.waits)


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
    m_set = max(role.afd.ffn_sets)[0]
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


_steady_iteration = memoized(agg_iteration)


def agg_steady(ctx: Context, role: Role, filled: float) -> AggIteration:
    """``model.steps.agg_iteration`` at ``filled`` sequences per GPU, kept in the context's memo
    (keyed by the role without its rate, id and configured batch, on which it does not depend):
    a role evaluated at many rates, or searched over many fills and batches, prices each
    iteration once."""
    return _steady_iteration(ctx, replace(role, rate=None, id="", batch_per_gpu=0.0), filled)


def agg_hold(ctx: Context, role: Role, it: AggIteration) -> float:
    """Seconds a request holds an aggregated rank's seat: its prefill, then OSL / accepted
    tokens mean iterations."""
    wl = ctx.workload
    return it.prefill_service + wl.osl / accepted_tokens(role.mtp, wl.mtp_acceptance) * (
        it.mean_seconds
    )


def agg_fill_rate(ctx: Context, role: Role, it: AggIteration, filled: float) -> float:
    """Requests/s that keep ``filled`` sequences per GPU of an aggregated role running its
    iterations ``it`` (Little's law over the seat's hold)."""
    return role.replicas * role.shape.attention_gpus * filled / agg_hold(ctx, role, it)


def agg_budget_rate(ctx: Context, role: Role, it: AggIteration) -> float:
    """Requests/s an aggregated role's prefill budgets absorb with every iteration mixed: the
    rate at which the wait for budget (``agg_delays``) grows without bound."""
    share = ctx.workload.new_prompt_tokens / role.chunk_tokens
    return role.replicas * role.shape.attn_dp / (share * it.mixed_seconds)


FILL_STEP = 1 / 16
"""The grid of an aggregated role's fills (sequences per GPU): iterations are priced at its
points, so a role evaluated at many rates, or searched, reuses them."""


def agg_fill(role: Role, k: int) -> float:
    """The ``k``-th point of the fill grid (the configured batch at most)."""
    return min(role.batch_per_gpu, k * FILL_STEP)


def agg_fill_points(role: Role) -> int:
    """Points of the fill grid up to the configured batch."""
    return max(1, math.ceil(role.batch_per_gpu / FILL_STEP - 1e-9))


def agg_filled_batch(ctx: Context, role: Role, rate: float) -> float:
    """Sequences per GPU an aggregated role holds at ``rate`` requests/s: the smallest fill of
    the grid whose rate (``agg_fill_rate`` at its own iterations) reaches ``rate`` (within the
    solver's ``OVER_CAPACITY``; so at most ``FILL_STEP`` over the exact fill), the configured
    batch when none does or no rate is given."""
    top = agg_fill_points(role)
    if rate <= 0:
        return role.batch_per_gpu

    def reaches(k: int) -> bool:
        x = agg_fill(role, k)
        return agg_fill_rate(ctx, role, agg_steady(ctx, role, x), x) >= rate * (1 - OVER_CAPACITY)

    if not reaches(top):
        return role.batch_per_gpu
    lo, hi = 0, top
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return agg_fill(role, hi)


def agg_delays(
    ctx: Context, role: Role, it: AggIteration, rate: float
) -> list[tuple[float, Delay]]:
    """TTFT of an aggregated role at ``rate`` requests/s running iterations ``it``, as (share of
    requests, delay): the iteration in progress (a request lands in a mixed one with the share
    of time mixed iterations take, then uniform over it; else over a decode-only one), the wait
    for prefill budget (M/D/1 per attention-DP rank, a prompt taking its share of a mixed
    iteration's budget), the wait for one of the rank's configured seats (a request holds its
    seat through its prefill and its decode; round-robin arrivals over the ranks are that much
    more regular than Poisson: ``model.queueing.seat_wait``), then its mixed iterations."""
    wl = ctx.workload
    per_rank = rate / (role.replicas * role.shape.attn_dp)
    service = wl.new_prompt_tokens / role.chunk_tokens * it.mixed_seconds
    budget = Wait(min(per_rank * service, 1.0), ttft_queueing(per_rank, service, 1))
    seats = max(1, int(role.batch_per_gpu * role.shape.attn_tp + 1e-9))
    hold = agg_hold(ctx, role, it)
    seat = seat_wait(per_rank, hold, seats, 1 / role.shape.attn_dp, wl.osl_cv**2)
    in_mixed = it.share * it.mixed_seconds / it.mean_seconds
    return [
        (1.0 - in_mixed, Delay(it.prefill_service, (), it.decode_seconds, (budget, seat))),
        (in_mixed, Delay(it.prefill_service, (), it.mixed_seconds, (budget, seat))),
    ]


def _agg_ttft(delays: list[tuple[float, Delay]], pct: float) -> Ttft:
    """An aggregated role's TTFT parts and percentile from its ``agg_delays``."""
    budget, seat = delays[0][1].waits
    return Ttft(
        sum(w * d.spread / 2 for w, d in delays) + budget.mean,
        delays[0][1].fixed,
        0.0,
        percentile(delays, pct),
        "aggregated: KV stays",
        seat.mean,
    )


def prefill_ttft(
    ctx: Context,
    role: Role,
    forwards: tuple[float, ...],
    rate: float,
    kv: Latency,
    pct: float | None = None,
) -> Ttft:
    """A P/D prefill role's part of TTFT at ``rate`` requests/s, split evenly at random over its
    replicas: the wait for a replica's lock-step forward and the forward itself
    (``model.queueing.prefill_queue`` over the forward times ``forwards`` by requests per
    rank), then the KV transfer; the percentile at ``pct`` (default: the SLO's)."""
    q = _prefill_queue(ctx, role, forwards, rate, pct)
    return Ttft(q.wait, q.forward, kv.seconds, q.percentile + kv.seconds, kv.source)


def prefill_late_share(
    ctx: Context, role: Role, forwards: tuple[float, ...], rate: float, kv: Latency, budget: float
) -> float:
    """The share of a P/D prefill role's requests whose part of TTFT (``prefill_ttft``)
    exceeds ``budget`` seconds: at most the SLO's tail exactly when ``prefill_ttft``'s
    percentile is within ``budget`` (up to rounding), and continuous in the rate."""
    t = budget - kv.seconds
    return prefill_share_over(rate / role.replicas, forwards, role.shape.attn_dp, t)


def _prefill_queue(ctx: Context, role: Role, forwards, rate: float, pct: float | None = None):
    pct = ctx.workload.slo.percentile if pct is None else pct
    return prefill_queue(rate / role.replicas, forwards, role.shape.attn_dp, pct)


def prefill_slo(ctx: Context, drafts: int) -> tuple[float, float]:
    """(percentile, seconds): what the planner holds a P/D prefill role's part of TTFT to. The
    SLO's tail less the share ``SEAT_TAIL`` left to the decode seat wait; the TTFT target less
    the longest step of a decode role that keeps the TPOT target with at most ``drafts`` MTP
    drafts (the step in progress when the KV arrives). With the decode roles' capacities
    (``decode_role_capacity``) this keeps the joint percentile within the target."""
    slo = ctx.workload.slo
    pct = 100 - (1 - SEAT_TAIL) * (100 - slo.percentile)
    return pct, slo.ttft - slo.tpot * accepted_tokens(drafts, ctx.workload.mtp_acceptance)


def prefill_capacity(role: Role, service: float) -> float:
    """Requests/s a prefill role completes when busy: its replicas' full batches."""
    return role.replicas * role.batch * role.shape.attn_dp / service


def seat_hold(ctx: Context, role: Role, step: float) -> float:
    """Seconds a sequence holds its decode seat: OSL / accepted tokens steps of ``step``."""
    return ctx.workload.osl / accepted_tokens(role.mtp, ctx.workload.mtp_acceptance) * step


def decode_seats(role: Role) -> int:
    """Sequences one replica of a decode role runs at once (at least one)."""
    return max(1, int(role.batch_per_gpu * role.shape.attention_gpus + 1e-9))


def finish_capacity(ctx: Context, role: Role, step: float) -> float:
    """Requests/s a decode-like role finishes with every seat busy: sequences x accepted tokens
    per step / (OSL x step)."""
    return (
        role.replicas * role.batch_per_gpu * role.shape.attention_gpus / seat_hold(ctx, role, step)
    )


def decode_role_capacity(ctx: Context, role: Role, step: float) -> float:
    """Requests/s a P/D decode role serves with at most ``SEAT_TAIL`` of the SLO's tail of its
    requests waiting for a seat (Erlang C per replica: the router splits requests at random):
    below ``finish_capacity``, where the wait grows without bound."""
    share = SEAT_TAIL * (1 - ctx.workload.slo.percentile / 100)
    load = seat_load(decode_seats(role), share)
    return role.replicas * load / seat_hold(ctx, role, step)


FILL_TOL = 1e-3
"""Relative precision of the filled batch."""


def operating_batch(ctx: Context, role: Role, rate: float, step: float | None = None) -> float:
    """Sequences per GPU a P/D decode role holds at ``rate`` requests/s: by Little's law b =
    rate per GPU x OSL / accepted tokens x step(b), at most the configured batch (the fixed
    point, by iteration from the configured batch, the step growing slower than the batch,
    with Steffensen's acceleration: a step near linear in the batch, as communication-bound
    ones are, converges slowly by plain iteration). ``step``: the step at the configured
    batch (``decode_step_seconds``), where the caller has already priced it."""
    cfg = role.batch_per_gpu
    if rate <= 0:
        return cfg
    wl = ctx.workload
    per_gpu = rate / (role.replicas * role.shape.attention_gpus)
    hold = wl.osl / accepted_tokens(role.mtp, wl.mtp_acceptance)

    def little(b: float) -> float:
        t = step if b == cfg and step is not None else decode_step_seconds(ctx, role, b)
        return min(cfg, per_gpu * hold * t)

    b = cfg
    for _ in range(25):
        b1 = little(b)
        if abs(b1 - b) <= FILL_TOL * b:
            return b1
        b2 = little(b1)
        if abs(b2 - b1) <= FILL_TOL * b1:
            return b2
        bend = b2 - 2 * b1 + b
        guess = b - (b1 - b) ** 2 / bend if bend else b2
        b = guess if 0 < guess <= cfg else b2
    return b


def decode_seat(ctx: Context, role: Role, rate: float, step: float) -> Delay:
    """A P/D decode role's part of TTFT at ``rate`` requests/s (even split over replicas) and
    steps of ``step``: the step in progress when a request's KV arrives, then the wait for a
    seat."""
    hold = seat_hold(ctx, role, step)
    wait = seat_wait(rate / role.replicas, hold, decode_seats(role), 1.0, ctx.workload.osl_cv**2)
    return Delay(0.0, (), step, (wait,))


@dataclass
class _Roles:
    """The roles of one workload being evaluated: steps, capacities, rates."""

    results: dict[str, RoleResult] = field(default_factory=dict)
    iterations: dict[str, AggIteration] = field(default_factory=dict)


def _decode_like(ctx: Context, role: Role, acc: _Roles) -> RoleResult:
    """A decode or aggregated role's step, memory, capacity and TPOT (rate filled in later)."""
    gpus = role.gpus
    if role.role == RoleKind.AGG:
        it = agg_steady(ctx, role, role.batch_per_gpu)
        acc.iterations[role.id] = it
        return RoleResult(
            role.id,
            role.role,
            role.workload,
            it.mean,
            decode_memory(ctx, role),
            0.0,
            agg_fill_rate(ctx, role, it, role.batch_per_gpu),
            gpus,
            _agg_tpot(ctx, role, it),
        )
    step = decode_step(ctx, role, role.batch_per_gpu)
    t = step.total / accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
    cap = decode_role_capacity(ctx, role, step.total)
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


def _agg_tpot(ctx: Context, role: Role, it: AggIteration) -> Tpot:
    accepted = accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
    return Tpot(
        it.mean_seconds / accepted, agg_tpot_percentile(ctx, role, it), itl_percentile(ctx, it)
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


Path = tuple[float, Delay, Ttft]
"""A way requests take into a workload: requests/s, the law of their TTFT, its mean parts."""


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
    results: dict[str, RoleResult] = {}
    paths: list[Path] = []
    for role in sorted(roles, key=lambda r: r.role == RoleKind.PREFILL):
        res = replace(acc.results[role.id], rate=rates[role.id])
        if role.role == RoleKind.AGG:
            filled = agg_filled_batch(ctx, role, res.rate)
            it = acc.iterations[role.id] = agg_steady(ctx, role, filled)
            delays = agg_delays(ctx, role, it, res.rate)
            ttft = _agg_ttft(delays, wl.slo.percentile)
            res = replace(res, tpot=_agg_tpot(ctx, role, it), ttft=ttft, filled_batch=filled)
            paths += [(res.rate * w, d, ttft) for w, d in delays]
        elif role.role == RoleKind.PREFILL:
            forwards = prefill_forwards(prefill_ctx, role, res.step)
            ttft, more = _prefill_paths(ctx, plan, role, forwards, res.rate, rates, results)
            res = replace(res, ttft=ttft)
            paths += more
        else:
            filled = operating_batch(ctx, role, res.rate)
            step = res.step.total
            if filled < role.batch_per_gpu:
                step = decode_step_seconds(ctx, role, filled)
                t = per_token(ctx, role, step)
                res = replace(res, tpot=Tpot(t, t, step))
            res = replace(res, filled_batch=filled, seat=decode_seat(ctx, role, res.rate, step))
        results[role.id] = res
    ordered = [results[r.id] for r in roles]
    flags = [_keeps_up(ctx, role, res, acc) for role, res in zip(roles, ordered, strict=True)]
    result = _workload_result(wl, ordered, paths)
    return ordered, result, flags + _latency_flags(result, name)


def _keeps_up(ctx: Context, role: Role, res: RoleResult, acc: _Roles) -> Flag:
    keeps = res.rate <= res.capacity * (1 + OVER_CAPACITY)
    if role.role == RoleKind.AGG:
        keeps = keeps and acc.iterations[role.id].keeps_up
    if res.ttft is not None:
        keeps = keeps and math.isfinite(res.ttft.total)
    reason = f"{res.rate:.2f} req/s of a capacity of {res.capacity:.2f} req/s"
    if role.role == RoleKind.DECODE:
        share = SEAT_TAIL * (1 - ctx.workload.slo.percentile / 100)
        reason += (
            f" (where {share:.1%} of its requests wait for a seat; "
            f"{finish_capacity(ctx, role, res.step.total):.2f} with every seat busy)"
        )
    return Flag(f"{role.id} keeps up", bool(keeps), reason)


def _prefill_paths(ctx, plan, role, forwards, rate, rates, results) -> tuple[Ttft, list[Path]]:
    """The prefill role's part of its requests' TTFT (its queue and forwards, the KV transfer
    to the decode roles it feeds: rate-weighted mean, the slowest link for the percentile), and
    its requests' paths through each decode role it feeds."""
    q = _prefill_queue(ctx, role, forwards, rate)
    routes = _routes(plan, role, rates)
    kvs = [kv_transfer(ctx, role, d.pool, kv_link_domains(role, d)) for d, _ in routes]
    worst = max(kvs, key=lambda kv: kv.seconds)
    mean_kv = sum(kv.seconds * share for kv, (_, share) in zip(kvs, routes, strict=True))
    paths = []
    for kv, (d, share) in zip(kvs, routes, strict=True):
        seat = results[d.id].seat or Delay()
        delay = Delay(kv.seconds, q.quantiles, seat.spread, seat.waits)
        parts = Ttft(q.wait, q.forward, kv.seconds, math.nan, kv.source, seat.mean)
        paths.append((rate * share, delay, parts))
    own = replace(prefill_ttft(ctx, role, forwards, rate, worst), kv_transfer=mean_kv)
    return own, paths


def mixture_percentile(values: list[float], weights: list[float], pct: float) -> float:
    """The ``pct`` percentile of requests split over roles in proportion to ``weights``, each
    role's requests all at its ``values`` entry (the worst value when no weight is given)."""
    total = sum(weights)
    if total <= 0:
        return max(values)
    share = 0.0
    for value, weight in sorted(zip(values, weights, strict=True)):
        share += weight / total
        if share >= pct / 100 - 1e-12:
            return value
    return max(values)


def _mean(values, weights) -> float:
    total = sum(weights)
    if total <= 0:
        return sum(values) / len(values) if values else 0.0
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total


def _joint_percentile(paths: list[Path], pct: float) -> float:
    """The TTFT percentile over ``paths`` (one role's own when they are all its; infinite when
    no role takes the workload's new requests)."""
    if not paths:
        return math.inf
    own = {id(parts) for _, _, parts in paths}
    if len(own) == 1 and not math.isnan(paths[0][2].percentile):
        return paths[0][2].percentile
    return percentile([(w, d) for w, d, _ in paths], pct)


def _late(paths: list[Path], target: float) -> float:
    """The share of requests over ``paths`` whose TTFT exceeds ``target`` (all when no role
    takes the workload's new requests)."""
    return share_over([(w, d) for w, d, _ in paths], target) if paths else 1.0


def _workload_result(wl: Workload, results: list[RoleResult], paths: list[Path]) -> WorkloadResult:
    serving = [r for r in results if r.kind != RoleKind.PREFILL]
    arrival = sum(r.rate for r in serving)
    rates = [r.rate for r in serving]
    p = wl.slo.percentile
    tpot = Tpot(
        _mean([r.tpot.mean for r in serving], rates),
        mixture_percentile([r.tpot.percentile for r in serving], rates, p),
        mixture_percentile([r.tpot.itl_percentile for r in serving], rates, p),
    )
    weights = [w for w, _, _ in paths]
    parts = [t for _, _, t in paths]
    ttft = Ttft(
        _mean([t.queueing for t in parts], weights),
        _mean([t.prefill for t in parts], weights),
        _mean([t.kv_transfer for t in parts], weights),
        _joint_percentile(paths, p),
        "; ".join(dict.fromkeys(t.kv_source for t in parts)),
        _mean([t.seat for t in parts], weights),
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
    return WorkloadResult(wl, tpot, ttft, flow, _late(paths, wl.slo.ttft))


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
            bool(w.late <= (1 - slo.percentile / 100) * (1 + OVER_CAPACITY)),
            f"TTFT {p} {ttft.percentile * 1e3:.1f} ms (mean {ttft.total * 1e3:.1f}: wait "
            f"{ttft.queueing * 1e3:.1f} + prefill {ttft.prefill * 1e3:.1f} + KV "
            f"{ttft.kv_transfer * 1e3:.2f} + seat {ttft.seat * 1e3:.1f}; {w.late:.1%} of "
            f"requests over the target) vs SLO {slo.ttft * 1e3:g} ms at {p}",
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
        "the SLO percentile (per-request TPOT; TTFT from the law of its parts: a prefill "
        "replica's batch queue exact, the waits for prefill budget and for seats on "
        "exponential tails)"
    ]
    notes += [n for r in results for n in r.step.notes]
    notes += [
        f"{r.role}: at {r.rate:.2f} req/s its batch fills {r.filled_batch:.1f} of "
        f"{plan.role(r.role).batch_per_gpu:g} sequences per GPU (Little's law); TPOT is priced "
        "there, capacity and the step breakdown at the configured batch"
        for r in results
        if r.filled_batch is not None and r.filled_batch < plan.role(r.role).batch_per_gpu
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
