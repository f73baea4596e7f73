"""Role-level times: a decode step (plain worker or AFD unit, with two-batch overlap or K
micro-batches, with MTP), a prefill of a batch, and an aggregated worker's steady state with
chunked prefill as SGLang and vLLM run it. Every one is the schedule of forwards composed by
``model.forward``; the evaluator and the optimiser both call these.

Percentiles. A request's TPOT is (its last token's time - its first token's) / (its output
tokens - 1), the per-request figure serving benchmarks report; the SLO holds its percentile. A
P/D or AFD decode role runs every iteration alike, so its TPOT is the step over the accepted
tokens per step. An aggregated role's iterations differ: those carrying a prefill chunk are
longer, and a request's TPOT averages over the iterations it lives through, so its percentile
follows the binomial count of mixed iterations among them (normal approximation). The
inter-token latency (ITL) percentile, the gap between streamed chunks, is reported too."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from statistics import NormalDist

from scipy.optimize import brentq

from aicpp_opt.model.context import Context
from aicpp_opt.model.forward import Load, Span, forward
from aicpp_opt.model.ops import Forward
from aicpp_opt.model.schedule import OpCost, Step, schedule, step_seconds
from aicpp_opt.spec.plan import Role


def accepted_tokens(draft: int, acceptance: float) -> float:
    """Expected tokens a decode step emits per sequence with ``draft`` MTP draft tokens, each
    accepted with probability ``acceptance`` when every earlier one was: 1 + a + ... + a^d."""
    return sum(acceptance**i for i in range(draft + 1))


def decode_load(ctx: Context, role: Role, batch_per_gpu: float) -> Load:
    """One micro-batch of a decode step: the role's sequences per attention rank over its K
    micro-batches, at the workload's mean decode context, verifying 1 + d tokens each."""
    seqs = batch_per_gpu * role.shape.attn_tp / role.micro_batches
    return Load(seqs, ctx.workload.decode_context, 1 + role.mtp)


def decode_step(ctx: Context, role: Role, batch_per_gpu: float) -> Step:
    """A decode step of a P/D decode role (plain or AFD) at ``batch_per_gpu`` sequences per
    (attention) GPU."""
    return schedule(forward(ctx, role, decode_load(ctx, role, batch_per_gpu)), ctx.pipeline)


def decode_step_seconds(ctx: Context, role: Role, batch_per_gpu: float) -> float:
    """``decode_step(...).total`` without its breakdown."""
    load = decode_load(ctx, role, batch_per_gpu)
    return step_seconds(forward(ctx, role, load), ctx.pipeline)


def per_token(ctx: Context, role: Role, step_seconds: float) -> float:
    """TPOT of a role whose every step takes ``step_seconds``."""
    return step_seconds / accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)


def prefill_chunks(ctx: Context, chunk_tokens: int) -> list[tuple[float, float]]:
    """The [start, end) spans a request's uncached prompt is prefilled in."""
    wl = ctx.workload
    start, new = wl.isl - wl.new_prompt_tokens, wl.new_prompt_tokens
    n = max(1, math.ceil(new / chunk_tokens))
    return [(start + new * i / n, start + new * (i + 1) / n) for i in range(n)]


def merge(steps: list[Step], weights: list[float], tags: list[str] | None = None) -> Step:
    """Steps as one breakdown, each line's count scaled by its step's weight (and tagged)."""
    ops: list[OpCost] = []
    for i, (step, w) in enumerate(zip(steps, weights, strict=True)):
        tag = f" [{tags[i]}]" if tags else ""
        if w:
            ops += [
                OpCost(op.name + tag, op.layer, op.stage, op.side, op.count * w, op.cost)
                for op in step.ops
            ]
    cycles = tuple(c for s in steps for c in s.cycles)
    notes = tuple(dict.fromkeys(n for s in steps for n in s.notes))
    return Step(tuple(ops), cycles, notes)


def prefill_step(ctx: Context, role: Role) -> Step:
    """Prefill of ``role.batch`` requests per attention rank, in chunks of at most
    ``role.chunk_tokens`` uncached prompt tokens (prefix hits skip compute): every forward,
    summed; the K micro-batches split the requests."""
    k = role.micro_batches
    steps = [
        schedule(forward(ctx, role, Load(spans=(Span(role.batch / k, s, e),))), ctx.pipeline)
        for s, e in prefill_chunks(ctx, role.chunk_tokens)
    ]
    return merge(steps, [1.0] * len(steps))


def prefill_forwards(ctx: Context, role: Role, full: Step | None = None) -> tuple[float, ...]:
    """Seconds of a prefill forward (every chunk) whose busiest attention rank carries 1, 2,
    ..., ``role.batch`` requests: the ranks run in lock step, so the busiest sets the time.
    ``full``: the step at ``role.batch`` when the caller has already priced it."""
    below = tuple(prefill_step(ctx, replace(role, batch=k)).total for k in range(1, role.batch))
    return (*below, (full or prefill_step(ctx, role)).total)


@dataclass(frozen=True)
class AggIteration:
    """An aggregated worker (plain or AFD unit that prefills itself) in steady state.

    Per attention rank, requests finish and are replaced at ``prompts`` per iteration; their
    uncached prompts are prefilled out of a budget of ``chunk_tokens`` tokens per iteration,
    shared by as many waiting prompts as fit (a prompt longer than the budget takes ``chunks``
    consecutive iterations). Arrivals are Poisson, so a rank's iteration carries prefill with
    probability ``rank_share`` = max(1 - exp(-prompts), demand / budget), ``prefill_tokens`` of
    them on average when it does. The ranks of a replica run in lock step (the MoE layer joins
    them), so a replica iteration is as long as its slowest rank's: mixed with probability
    ``share`` = 1 - (1 - rank_share)^ranks when a prompt fits one iteration; a longer prompt's
    consecutive mixed iterations also carry the other ranks' prompts that arrive meanwhile, so
    then ``share`` follows ``chunked_share``. ``decode_seconds`` and ``mixed_seconds`` time the
    two kinds of iteration, ``mean_seconds`` the average one; their breakdowns (``decode_only``,
    ``mixed``, ``mean``) are scheduled from ``forwards`` when first asked for (the optimiser
    asks for the times of tens of thousands and never for a breakdown)."""

    decode_seconds: float
    mixed_seconds: float
    prompts: float
    prefill_tokens: float
    rank_share: float
    share: float
    chunks: int
    keeps_up: bool
    ranks: int
    """Attention-DP ranks of a replica, in lock step."""
    forwards: tuple[Forward, Forward] = field(repr=False, compare=False)
    """(decode-only, mixed) forwards, one micro-batch of each kind."""
    pipeline: str = "pipelined"

    @property
    def mean_seconds(self) -> float:
        return (1.0 - self.share) * self.decode_seconds + self.share * self.mixed_seconds

    @property
    def prefill_service(self) -> float:
        """Seconds of mixed iterations one prompt's prefill takes on its rank."""
        return self.chunks * self.mixed_seconds

    @cached_property
    def decode_only(self) -> Step:
        return schedule(self.forwards[0], self.pipeline)

    @cached_property
    def mixed(self) -> Step:
        return schedule(self.forwards[1], self.pipeline)

    @cached_property
    def mean(self) -> Step:
        """The average iteration's breakdown: each kind's lines weighted by its share."""
        share = self.share
        mean = merge(
            [self.decode_only, self.mixed],
            [1.0 - share, share],
            ["decode-only iterations", "with prefill"],
        )
        note = (
            f"aggregated: a rank carries prefill in {self.rank_share:.1%} of iterations "
            f"({self.prefill_tokens:.0f} tokens on average); {self.ranks} lock-step ranks: "
            f"{share:.1%} of iterations are mixed"
        )
        return replace(mean, notes=(note, *mean.notes))


@dataclass(frozen=True)
class AggLoads:
    """The two kinds of iteration of an aggregated role (one micro-batch of each) and the
    steady state that mixes them (see ``AggIteration``)."""

    decode: Load
    mixed: Load
    prompts: float
    prefill_tokens: float
    rank_share: float
    share: float
    chunks: int
    keeps_up: bool


def agg_loads(ctx: Context, role: Role, batch_per_gpu: float) -> AggLoads:
    """An aggregated role's iterations at ``batch_per_gpu`` decode sequences per attention
    GPU: who prefills how much, how often (see ``AggIteration``)."""
    wl, k = ctx.workload, role.micro_batches
    budget = float(role.chunk_tokens)
    seqs = batch_per_gpu * role.shape.attn_tp
    new = wl.new_prompt_tokens
    prompts = seqs * accepted_tokens(role.mtp, wl.mtp_acceptance) / wl.osl
    demand = prompts * new
    if new <= budget:
        rank_share = min(1.0, max(1.0 - math.exp(-prompts), demand / budget))
        tokens = demand / rank_share if rank_share else 0.0
        span = Span(tokens / new / k, wl.isl - new, wl.isl)
        chunks = 1
    else:
        rank_share = min(1.0, demand / budget)
        tokens = budget
        mid = wl.isl - new / 2
        span = Span(1.0 / k, mid - budget / 2, mid + budget / 2)
        chunks = math.ceil(new / budget)
    decode = Load(seqs / k, wl.decode_context, 1 + role.mtp)
    share = 1.0 - (1.0 - rank_share) ** role.shape.attn_dp
    return AggLoads(
        decode,
        replace(decode, spans=(span,)),
        prompts,
        tokens,
        rank_share,
        share,
        chunks,
        demand < budget,
    )


def chunked_share(rate: float, chunks: int, t_dec: float, t_mix: float) -> float:
    """Share of a replica's iterations that carry prefill when prompts arrive at ``rate`` per
    second (Poisson, over all its ranks) and each holds its rank for ``chunks`` consecutive
    mixed iterations of ``t_mix`` seconds (``t_dec``: an iteration without prefill). Prefills
    on different ranks overlap, sharing mixed iterations, so the share of time with one in
    progress is that of an M/G/inf queue being non-empty, 1 - exp(-rate x chunks x t_mix); the
    share of iterations follows from the two durations."""
    busy = 1.0 - math.exp(-rate * chunks * t_mix)
    mixed = busy / t_mix
    return mixed / (mixed + (1.0 - busy) / t_dec)


def steady_share(loads: AggLoads, ranks: int, t_dec: float, t_mix: float) -> float:
    """Share of an aggregated replica's iterations that carry prefill, given its decode-only
    and mixed iterations' durations: the loads' own share when a prompt fits one chunk, else
    ``chunked_share`` at the arrival rate the steady state gives: ``loads.prompts`` per rank
    per iteration, so ranks x prompts / mean iteration per second (a fixed point in the
    share, which the mean iteration depends on)."""
    if loads.chunks <= 1:
        return loads.share
    per_iteration = ranks * loads.prompts

    def excess(share: float) -> float:
        mean = (1.0 - share) * t_dec + share * t_mix
        return share - chunked_share(per_iteration / mean, loads.chunks, t_dec, t_mix)

    if per_iteration <= 0:
        return 0.0
    return brentq(excess, 0.0, 1.0, xtol=1e-12)


def agg_iteration(ctx: Context, role: Role, batch_per_gpu: float) -> AggIteration:
    """Steady state of an aggregated role at ``batch_per_gpu`` decode sequences per attention
    GPU (see ``AggIteration``)."""
    loads = agg_loads(ctx, role, batch_per_gpu)
    only, mixed = forward(ctx, role, loads.decode), forward(ctx, role, loads.mixed)
    t_dec, t_mix = step_seconds(only, ctx.pipeline), step_seconds(mixed, ctx.pipeline)
    return AggIteration(
        t_dec,
        t_mix,
        loads.prompts,
        loads.prefill_tokens,
        loads.rank_share,
        steady_share(loads, role.shape.attn_dp, t_dec, t_mix),
        loads.chunks,
        loads.keeps_up,
        role.shape.attn_dp,
        (only, mixed),
        ctx.pipeline,
    )


def agg_tpot_percentile(ctx: Context, role: Role, it: AggIteration) -> float:
    """The SLO percentile of per-request TPOT of an aggregated role: its output's n iterations
    hold n x share mixed ones on average, which come in runs of a prompt's ``chunks``
    consecutive iterations, so their count varies as runs do: variance n x share x (1 -
    share) x chunks (normal approximation, clipped to [0, n])."""
    wl = ctx.workload
    accepted = accepted_tokens(role.mtp, wl.mtp_acceptance)
    n = max(1.0, (wl.osl - 1) / accepted)
    z = NormalDist().inv_cdf(wl.slo.percentile / 100)
    s = it.share
    mixed = min(n, max(0.0, n * s + z * math.sqrt(n * s * (1 - s) * it.chunks)))
    t_dec, t_mix = it.decode_seconds, it.mixed_seconds
    return (t_dec * (n - mixed) + t_mix * mixed) / n / accepted


def itl_percentile(ctx: Context, it: AggIteration) -> float:
    """The SLO percentile of the gap between streamed chunks of an aggregated role."""
    if it.share > 1 - ctx.workload.slo.percentile / 100:
        return it.mixed_seconds
    return it.decode_seconds
