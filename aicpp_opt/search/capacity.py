"""Per family, the requests/s one replica sustains within the workload's SLO terms, and the
batch it runs at: the coefficients of the MILP, computed once per family from the same role
functions the evaluator composes (``aicpp_opt.model``, ``aicpp_opt.evaluate``).

- **decode** (plain or AFD): capacity grows with the batch (more sequences per step, the step
  growing slower than the batch), TPOT and memory grow with it too; so the best batch is the
  largest that keeps the TPOT percentile (at the batch its capacity fills, as the evaluator
  prices it) and memory (searched over integer sequences per GPU, no grid: first the last
  batch whose own step keeps TPOT, then above it by the step at the batch its capacity
  fills, each by ``first_over``), and the replica's rate is its capacity there: the rate at
  which a tenth of the SLO's tail waits for a seat
  (``evaluate.evaluation.decode_role_capacity``).
- **agg** (plain or AFD units that prefill): priced at the batch its rate fills
  (``evaluate.evaluation.agg_filled_batch``), so its configured batch is only its seats: more
  of them shorten the wait for one at the same fill, and the memory-limited batch is best. The
  rate is at most the one that fills the largest point of the fill grid keeping TPOT and the
  prefill budget, and within it the largest keeping TTFT (bisections over the grid and the
  rate).
- **prefill**: the forward's time at 1..batch requests per rank; the rate is the largest at
  which the lock-step batch queue's part of TTFT (with the KV transfer to the pool it feeds)
  keeps ``evaluate.evaluation.prefill_slo`` (the rest of the tail, the target less the longest
  TPOT-keeping decode step), at most the replica's capacity: found where the share of
  requests over that budget, continuous in the rate, reaches the tail (``crossing_rate``),
  and confirmed on the percentile itself.

Replicas share arrivals evenly (each an independent Poisson share), so n replicas sustain n
times one replica's rate: the MILP's flow bounds are linear in the counts.

Families that take the same GPU blocks for the same role kind (and feed the same pool) are
interchangeable to the solver, so only the fastest of each such group is kept. The groups are
settled by bound: a family's rate at its memory-limited batch bounds its rate from above; bounds
are computed for every family, then best first: an aggregated family on top has its bound
tightened a step (``agg_tpot_bounds``: first by the prefill budgets' rate at one sequence
per GPU, then by its mean iteration against TPOT), any other its exact rate computed, until
no remaining bound beats the best exact rate (``exact`` counts them)."""

from __future__ import annotations

import heapq
import math
import multiprocessing as mp
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from scipy.optimize import brentq

from aicpp_opt import deadline
from aicpp_opt.errors import InputError
from aicpp_opt.evaluate.evaluation import (
    agg_budget_rate,
    agg_delays,
    agg_fill,
    agg_fill_points,
    agg_fill_rate,
    agg_filled_batch,
    agg_steady,
    decode_memory,
    decode_role_capacity,
    kv_transfer,
    operating_batch,
    prefill_capacity,
    prefill_late_share,
    prefill_memory,
    prefill_slo,
    prefill_ttft,
)
from aicpp_opt.model.context import Context
from aicpp_opt.model.delays import share_over
from aicpp_opt.model.steps import (
    accepted_tokens,
    agg_tpot_percentile,
    decode_step_seconds,
    prefill_forwards,
)
from aicpp_opt.search.catalog import Family
from aicpp_opt.spec.enums import RoleKind

RATE_TOL = 1e-5
"""Relative precision of the bisections on arrival rate."""


@dataclass(frozen=True)
class Capacity:
    """One replica of a family: requests/s within the SLO terms (0: none), the batch per GPU it
    runs at (decode-like roles), the step (decode step, mean aggregated iteration or prefill
    forward, seconds), and what bounds it."""

    rate: float
    batch_per_gpu: float
    step_s: float
    limit: str

    def to_list(self) -> list:
        return [self.rate, self.batch_per_gpu, self.step_s, self.limit]


NONE = Capacity(0.0, 0.0, 0.0, "infeasible")


def _role(fam: Family, batch: float):
    return replace(fam.role, batch_per_gpu=batch)


def _fits(ctx: Context, fam: Family, batch: int) -> bool:
    return all(m.fits for m in decode_memory(ctx, _role(fam, batch)).values())


def _largest(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest integer in [lo, hi] where ``ok`` holds (``ok`` monotone: true then false),
    lo - 1 when none does."""
    if hi < lo or not ok(lo):
        return lo - 1
    if ok(hi):
        return hi
    good, bad = lo, hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def first_over(value: Callable[[int], float], target: float, lo: int, hi: int) -> Iterator[int]:
    """The smallest integer in [lo, hi] where ``value`` (non-decreasing; ``inf`` allowed)
    exceeds ``target``, hi + 1 when none does, searched one evaluation at a time: each step
    yields the smallest integer known so far to exceed it (hi + 1 while none is), the last
    step the answer. Interpolation between the bracket's ends, where the op model's times are
    near linear in the batch, with a bisection step whenever an interpolated step left more
    than half the bracket."""
    v_bad = value(hi) if hi >= lo else -math.inf
    if v_bad <= target:
        yield hi + 1
        return
    yield hi
    v_good = value(lo)
    if v_good > target:
        yield lo
        return
    good, bad = lo, hi
    interpolate = True
    while bad - good > 1:
        width = bad - good
        if interpolate and math.isfinite(v_bad):
            guess = good + (target - v_good) / (v_bad - v_good) * width
            mid = min(bad - 1, max(good + 1, round(guess)))
        else:
            mid = (good + bad) // 2
        v = value(mid)
        if v <= target:
            good, v_good = mid, v
        else:
            bad, v_bad = mid, v
        interpolate = not interpolate or 2 * (bad - good) <= width
        yield bad


def memory_batch(ctx: Context, fam: Family, limit: int) -> int:
    """The largest batch per GPU whose memory fits (0: not even one sequence)."""
    return _largest(lambda b: _fits(ctx, fam, b), 1, limit)


Samples = dict[str, dict]
"""Per family key: ``{"mem": memory-limited batch, "b": {batch: sample}}``, what the op model
gave at each batch, independent of the SLO targets (decode: [step, capacity, the step at the
batch that capacity fills, added when first needed]; aggregated: [mean iteration, the rate
that fills every seat, the prefill budgets' rate]; None where the tables do not cover the
shape); prefill families: ``{"service": forward seconds at 1..batch requests per rank}``. Kept
across solves, so another TPOT or TTFT target re-settles from them."""


class _Family:
    """One decode-like family evaluated at integer batches: samples from the op model (shared
    with the cache), and from them a decode family's capacity and the step where the evaluator
    prices its TPOT, an aggregated family's bound."""

    def __init__(self, ctx: Context, fam: Family, samples: dict):
        self.ctx, self.fam = ctx, fam
        self.agg = fam.kind == RoleKind.AGG
        self.samples = samples
        self.at = samples.setdefault("b", {})

    def sample(self, batch: int) -> list | None:
        key = str(batch)
        if key not in self.at:
            self.at[key] = self._sample(batch)
        return self.at[key]

    def _sample(self, batch: int) -> list | None:
        ctx, role = self.ctx, _role(self.fam, batch)
        try:
            if self.agg:
                it = agg_steady(ctx, role, batch)
                fill = agg_fill_rate(ctx, role, it, batch)
                return [it.mean_seconds, fill, agg_budget_rate(ctx, role, it)]
            step = decode_step_seconds(ctx, role, batch)
            return [step, decode_role_capacity(ctx, role, step)]
        except InputError:  # a shape the cost tables do not cover: never chosen
            return None

    def memory_batch(self, limit: int) -> int:
        if self.samples.get("limit") != limit:
            self.samples["mem"] = memory_batch(self.ctx, self.fam, limit)
            self.samples["limit"] = limit
        return self.samples["mem"]

    def operating_step(self, batch: int) -> float:
        """The decode step at the batch the family's capacity at ``batch`` fills
        (``operating_batch``), where the evaluator prices its TPOT."""
        s = self.sample(batch)
        if s is None:
            return math.inf
        if len(s) == 2:
            role = _role(self.fam, batch)
            filled = operating_batch(self.ctx, role, s[1], s[0])
            s.append(s[0] if filled >= batch else decode_step_seconds(self.ctx, role, filled))
        return s[2]

    def mean_tpot(self, batch: int) -> float:
        """An aggregated family's mean iteration at ``batch`` per accepted token: at an SLO
        percentile of 50 or more its TPOT percentile is at least this
        (``model.steps.agg_tpot_percentile``)."""
        s = self.sample(batch)
        accepted = accepted_tokens(self.fam.role.mtp, self.ctx.workload.mtp_acceptance)
        return math.inf if s is None else s[0] / accepted

    def step(self, batch: int) -> float:
        s = self.sample(batch)
        return math.inf if s is None else s[0]

    def rate(self, batch: int) -> float:
        """Requests/s at ``batch``: a decode family's capacity, an aggregated family's rate
        that fills all its seats (an upper bound on its rate within the SLO terms)."""
        s = self.sample(batch)
        return 0.0 if s is None else s[1]


def largest_rate(holds: Callable[[float], bool], cap: float) -> float:
    """The largest rate in [0, cap] where ``holds`` (true up to some rate, then false), to a
    relative ``RATE_TOL``."""
    if cap <= 0 or not holds(cap * RATE_TOL):
        return 0.0
    if holds(cap):
        return cap
    lo, hi = cap * RATE_TOL, cap
    while hi - lo > RATE_TOL * hi:
        mid = (lo + hi) / 2
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo


def crossing_rate(
    excess: Callable[[float], float], holds: Callable[[float], bool], cap: float
) -> float:
    """``largest_rate`` for a ``holds`` that is ``excess`` <= 0 with ``excess`` continuous and
    rising in the rate towards ``cap``, where the queue saturates: Brent's method finds where
    ``excess`` crosses 0 over the log of the spare capacity, x = -log(1 - rate / cap) (a
    queue's delays stay flat over most of the rates and rise within the last percent or so
    below saturation; x spreads that rise out), and ``holds`` confirms the rate just below the
    crossing (else, or where the two disagree at the ends, bisection on ``holds``)."""
    lo, top = cap * RATE_TOL, cap * (1 - RATE_TOL)
    if cap <= 0 or not holds(lo):
        return 0.0
    if holds(top):
        return cap if holds(cap) else top
    ends = {-math.log1p(-RATE_TOL): excess(lo), -math.log(RATE_TOL): excess(top)}
    (x_lo, e_lo), (x_hi, e_hi) = ends.items()
    if not e_lo <= 0 < e_hi:
        return largest_rate(holds, cap)

    def rate(x: float) -> float:
        return -cap * math.expm1(-x)

    def at(x: float) -> float:
        return ends[x] if x in ends else excess(rate(x))

    x = brentq(at, x_lo, x_hi, rtol=RATE_TOL / 8)
    below = rate(x) * (1 - RATE_TOL / 2)
    return below if holds(below) else largest_rate(holds, below)


def agg_capacity(f: _Family, top: int) -> Capacity:
    """An aggregated family at ``top`` sequences per GPU (more seats only shorten the wait for
    one at the same fill, so the memory-limited batch is best): the largest point of the fill
    grid whose TPOT percentile and prefill budget hold (bisection over the grid), then the
    largest rate up to the one that fills it whose TTFT percentile holds at the fill that rate
    reaches (``evaluate.evaluation.agg_filled_batch``)."""
    ctx, role = f.ctx, _role(f.fam, top)
    slo = ctx.workload.slo
    tail = 1 - slo.percentile / 100

    def keeps(k: int) -> bool:
        it = agg_steady(ctx, role, agg_fill(role, k))
        return bool(it.keeps_up) and agg_tpot_percentile(ctx, role, it) <= slo.tpot

    def within_ttft(rate: float) -> bool:
        it = agg_steady(ctx, role, agg_filled_batch(ctx, role, rate))
        return share_over(agg_delays(ctx, role, it, rate), slo.ttft) <= tail

    try:
        k = _largest(keeps, 1, agg_fill_points(role))
        if k < 1:
            return replace(NONE, limit="tpot")
        filled = agg_fill(role, k)
        it = agg_steady(ctx, role, filled)
        cap = agg_fill_rate(ctx, role, it, filled)
        rate = largest_rate(within_ttft, cap)
        if rate <= 0:
            return replace(NONE, limit="ttft")
        why = "ttft" if rate < cap else "tpot" if filled < top else "seats"
        return Capacity(rate, top, it.mean_seconds, why)
    except InputError:  # a shape the cost tables do not cover: never chosen
        return NONE


def decode_bound(f: _Family, limit: int) -> float:
    """An upper bound on the family's rate: its rate at the memory-limited batch (capacity
    rises with the batch; TPOT and TTFT only lower the rate; aggregated: the rate that fills
    every seat). Aggregated, also: below one sequence per GPU the rate that fills it, above it
    the prefill budgets' rate at one (which falls as the fill grows), the larger of the two."""
    b_mem = f.memory_batch(limit)
    if b_mem < 1:
        return 0.0
    if not f.agg:
        return f.rate(b_mem)
    one = f.sample(1)
    return 0.0 if one is None else min(f.rate(b_mem), max(one[1], one[2]))


def agg_first_bound(f: _Family, limit: int) -> float:
    """An aggregated family's first bound: the rate that fills every seat at its
    memory-limited batch (one op-model evaluation; ``decode_bound``'s first term).
    ``agg_tpot_bounds`` tightens it, first to ``decode_bound``; most families of a group never
    get that far."""
    b_mem = f.memory_batch(limit)
    return f.rate(b_mem) if b_mem >= 1 else 0.0


def agg_tpot_bounds(f: _Family, limit: int) -> Iterator[float]:
    """Ever tighter bounds on an aggregated family's rate, one op-model evaluation each, for a
    family that ``decode_bound`` ranks high: no fill at or above the first integer batch whose
    mean iteration breaks TPOT keeps TPOT (``_Family.mean_tpot``; the mean iteration grows
    with the fill), so the rate is at most the one that fills the smallest batch known to
    break it (``first_over``); the last bound is the rate at the first that does."""
    bound = decode_bound(f, limit)
    slo = f.ctx.workload.slo
    if bound <= 0 or slo.percentile < 50:
        yield bound
        return
    b_mem = f.memory_batch(limit)
    for over in first_over(f.mean_tpot, slo.tpot, 1, b_mem):
        yield min(bound, f.rate(min(b_mem, over)))


def decode_capacity(f: _Family, limit: int) -> Capacity:
    """A decode-like family's best batch and rate (see the module doc)."""
    b_mem = f.memory_batch(limit)
    if b_mem < 1:
        return replace(NONE, limit="memory")
    if f.agg:
        return agg_capacity(f, b_mem)
    wl = f.ctx.workload
    accepted = accepted_tokens(f.fam.role.mtp, wl.mtp_acceptance)
    # a batch whose own step keeps TPOT fills at most itself, so keeps it; above the last such
    # batch, the step at the batch its capacity fills decides
    *_, over = first_over(lambda b: f.step(b) / accepted, wl.slo.tpot, 1, b_mem)
    if over <= b_mem:
        at_fill = first_over(lambda b: f.operating_step(b) / accepted, wl.slo.tpot, over, b_mem)
        *_, over = at_fill
    hi = over - 1
    if hi < 1:
        return replace(NONE, limit="tpot at batch 1")
    why = "max batch" if hi == limit else "memory" if hi == b_mem else "tpot"
    return Capacity(f.rate(hi), hi, f.step(hi), why)


def kv_domains(ctx: Context, fam: Family) -> int:
    """The link a prefill family's KV takes: NVLink (1) when it feeds its own pool and that
    pool is one domain, else the scale-out network (2)."""
    same = fam.feeds == fam.role.pool
    return 1 if same and ctx.pools[fam.role.pool].num_domains == 1 else 2


def prefill_service(ctx: Context, fam: Family) -> tuple[float, ...]:
    """Seconds of a prefill family's forward at 1..batch requests per rank (``inf`` when
    memory or the tables rule the family out)."""
    role = fam.role
    if not all(m.fits for m in prefill_memory(ctx, role).values()):
        return (math.inf,)
    try:
        return prefill_forwards(ctx, role)
    except InputError:
        return (math.inf,)


def prefill_capacity_of(
    ctx: Context, fam: Family, forwards: tuple[float, ...], drafts: int
) -> Capacity:
    """A prefill family's rate within its part of TTFT (see the module doc)."""
    service = forwards[-1]
    if not math.isfinite(service):
        return NONE
    role = fam.role
    kv = kv_transfer(ctx, role, fam.feeds, kv_domains(ctx, fam))
    cap = prefill_capacity(role, service)
    pct, budget = prefill_slo(ctx, drafts)
    tail = 1 - pct / 100
    rate = crossing_rate(
        lambda r: prefill_late_share(ctx, role, forwards, r, kv, budget) - tail,
        lambda r: prefill_ttft(ctx, role, forwards, r, kv, pct).percentile <= budget,
        cap,
    )
    return Capacity(rate, 0.0, service, "ttft" if rate < cap else "capacity")


def group_key(fam: Family) -> tuple:
    """What the solver sees of a family besides its rate."""
    return (fam.workload, fam.kind, tuple(sorted((b.pool, b.gpus) for b in fam.blocks)), fam.feeds)


@dataclass
class Settled:
    """The fastest family of each group with its capacity; how many families and exact
    capacities; what was learnt per family (``Known``), for the cache, and how many of its
    entries this settling added or tightened."""

    best: dict[str, tuple[Family, Capacity]]
    families: int
    exact: int
    known: dict[str, list]
    updated: int


Known = dict[str, list]
"""Per family key: [bound, exact capacity as a list or None, whether the bound is the
tightest computed before the exact capacity]; reused across solves, so a subset of the
catalog (one mode, another budget) is settled from what an earlier solve computed."""


def _settle_group(
    ctx: Context, members: list[Family], limit: int, known: Known, samples: Samples, drafts: int
) -> tuple[int, Capacity, int, Known, Samples]:
    """(index of the fastest member, its capacity, exact capacities computed, new knowledge,
    the members' samples); ``drafts``: the most MTP drafts of the decode roles prefill feeds.
    Best first: the member with the highest bound has its bound tightened a step (aggregated
    families) or its exact capacity computed, until no bound beats the best exact rate. The
    command's deadline is checked before each bound and exact capacity computed."""
    learnt: Known = {}
    mine: Samples = {f.key: samples.get(f.key, {}) for f in members}

    def entry(f: Family) -> list | None:
        return learnt.get(f.key) or known.get(f.key)

    def service(f: Family) -> tuple[float, ...]:
        s = mine[f.key]
        if "service" not in s:
            s["service"] = prefill_service(ctx, f)
        return tuple(s["service"])

    def bound_of(f: Family) -> tuple[float, bool]:
        """(bound, whether it is the tightest before the exact capacity)."""
        hit = entry(f)
        if hit is not None:
            return hit[0], bool(hit[2])
        deadline.check()
        if f.kind == RoleKind.PREFILL:
            t = service(f)[-1]
            value, tight = (prefill_capacity(f.role, t) if math.isfinite(t) else 0.0), True
        else:
            mf = _Family(ctx, f, mine[f.key])
            agg = f.kind == RoleKind.AGG
            value, tight = (agg_first_bound if agg else decode_bound)(mf, limit), not agg
        learnt[f.key] = [value, None, tight]
        return value, tight

    steps: dict[int, Iterator[float]] = {}

    def tighten(i: int) -> tuple[float, bool]:
        """One step of an aggregated member's ``agg_tpot_bounds``: (bound, whether it is the
        last)."""
        f, (bound, capacity, _) = members[i], entry(members[i])
        deadline.check()
        if i not in steps:
            steps[i] = agg_tpot_bounds(_Family(ctx, f, mine[f.key]), limit)
        value = next(steps[i], None)
        tight = value is None
        learnt[f.key] = [bound if tight else min(bound, value), capacity, tight]
        return learnt[f.key][0], tight

    def exact_of(f: Family) -> tuple[Capacity, int]:
        """The capacity, and 1 when it had to be computed."""
        hit = entry(f)
        if hit is not None and hit[1] is not None:
            return Capacity(*hit[1]), 0
        deadline.check()
        if f.kind == RoleKind.PREFILL:
            cap = prefill_capacity_of(ctx, f, service(f), drafts)
        else:
            cap = decode_capacity(_Family(ctx, f, mine[f.key]), limit)
        learnt[f.key] = [entry(f)[0], cap.to_list(), True]
        return cap, 1

    heap = [(-b, not tight, i) for i, (b, tight) in enumerate(map(bound_of, members))]
    heapq.heapify(heap)
    top, best, exact = 0, NONE, 0
    while heap:
        bound, loose, i = heapq.heappop(heap)
        if -bound <= best.rate or -bound <= 0:
            break
        if loose:
            value, tight = tighten(i)
            heapq.heappush(heap, (-value, not tight, i))
            continue
        cap, computed = exact_of(members[i])
        exact += computed
        if cap.rate > best.rate:
            top, best = i, cap
    return top, best, exact, learnt, mine


PARALLEL_FROM = 400
"""Families to settle (without known capacities) from which ``settle`` spreads its groups
over worker processes."""

_WORK: tuple = ()
"""(context, groups, limit, known, samples, drafts) handed to forked workers (inherited, never
pickled)."""


def _settle_chunk(indices: list[int]) -> list[tuple]:
    ctx, groups, limit, known, samples, drafts = _WORK
    return [(g, *_settle_group(ctx, groups[g], limit, known, samples, drafts)) for g in indices]


def workers() -> int:
    """Worker processes for settling: ``AICPP_OPT_WORKERS``, else the CPUs this process may
    use."""
    env = os.environ.get("AICPP_OPT_WORKERS")
    if env:
        return max(1, int(env)) if env.isdigit() else 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


Progress = Callable[[int, int], None]
"""Called with (groups settled, groups) as settling proceeds."""


def settle(
    ctx: Context,
    fams: Iterable[Family],
    limit: int,
    known: Known | None = None,
    progress: Progress | None = None,
    samples: Samples | None = None,
    drafts: int = 0,
) -> Settled:
    """The fastest family per group (see the module doc), reusing ``known`` capacities and the
    op model's ``samples`` (updated in place); prefill families are held to ``prefill_slo``
    for decode roles with at most ``drafts`` MTP drafts. Large catalogs are settled by forked worker
    processes, groups spread over them largest first."""
    global _WORK
    known = known or {}
    samples = {} if samples is None else samples
    by_key: dict[tuple, list[Family]] = defaultdict(list)
    for f in fams:
        by_key[group_key(f)].append(f)
    groups = list(by_key.values())
    count = sum(len(g) for g in groups)
    fresh = sum(1 for g in groups for f in g if f.key not in known)
    n = workers()
    if n > 1 and fresh >= PARALLEL_FROM and "fork" in mp.get_all_start_methods():
        order = sorted(range(len(groups)), key=lambda g: -len(groups[g]))
        chunks = [order[i :: 4 * n] for i in range(4 * n)]
        _WORK = (ctx, groups, limit, known, samples, drafts)
        try:
            results = []
            with mp.get_context("fork").Pool(n) as pool:
                for part in pool.imap_unordered(_settle_chunk, chunks):
                    results += part
                    if progress:
                        progress(len(results), len(groups))
        finally:
            _WORK = ()
    else:
        results = []
        for g, members in enumerate(groups):
            results.append((g, *_settle_group(ctx, members, limit, known, samples, drafts)))
            if progress:
                progress(len(results), len(groups))
    best: dict[str, tuple[Family, Capacity]] = {}
    learnt: Known = dict(known)
    for g, i, cap, _, new, seen in sorted(results, key=lambda r: r[0]):
        learnt.update(new)
        samples.update(seen)
        if cap.rate > 0:
            best[groups[g][i].key] = (groups[g][i], cap)
    updated = sum(len(r[4]) for r in results)
    return Settled(best, count, sum(r[3] for r in results), learnt, updated)
