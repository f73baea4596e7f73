"""From candidate shapes to MILP options: each decode-capable shape's PWL curve over batch
breakpoints, and each prefill shape's sustainable request rate per replica count.

Every number comes from the evaluator's own role-level functions run on the PWL surrogates
(``surrogate="pwl"``), so the MILP optimises exactly the model the evaluator computes with the
measured grids replaced by their fits. Dominated shapes (same GPUs per pool, lower capacity)
are dropped before the MILP: the objective only sees a shape's capacity, so this is exact."""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from aicpp_opt.costs.curve import Latency
from aicpp_opt.errors import InputError
from aicpp_opt.evaluate.evaluation import (
    agg_prefill_capacity,
    agg_ttft,
    decode_memory,
    kv_transfer,
    prefill_memory,
    prefill_ttft,
)
from aicpp_opt.model.context import Context
from aicpp_opt.model.steps import (
    AggIteration,
    accepted_tokens,
    agg_iteration,
    agg_tpot_percentile,
    decode_step_seconds,
    prefill_step,
)
from aicpp_opt.opt.milp import DecodeOption, PrefillOption
from aicpp_opt.opt.space import Candidate
from aicpp_opt.spec.plan import Role

BATCH_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512)
"""Decode batch breakpoints (sequences per attention GPU) of every shape's PWL curve."""


SOLVER_TOLERANCE = 1e-6
"""Relative margin kept inside rate bounds so the solver's feasibility tolerance (1e-7) can
never push a binding TTFT over its SLO."""


@dataclass(frozen=True)
class Corrections:
    """Multipliers on modelled times, raised by the closed loop when the replay (or the
    measured evaluator) finds the PWL model optimistic."""

    tpot: float = 1.0
    ttft: float = 1.0
    rate: float = 1.0
    """``rate``: how much faster the decode side really pulls requests than modelled, so
    prefill (or the aggregated queue) must absorb that much more."""


@dataclass(frozen=True)
class Point:
    """A shape at one batch: TPOT at the SLO percentile (corrected), concurrent sequences per
    replica, its output tokens/s per replica, and for self-prefilling shapes the steady state
    (for their TTFT)."""

    batch: float
    tpot_s: float
    seqs: float
    tok_s: float
    iteration: AggIteration | None = None


def _fits(mem: dict) -> bool:
    return all(m.fits for m in mem.values())


def _memo(ctx: Context, key: tuple, compute: Callable[[], Any]) -> Any:
    hit = ctx.memo.get(key)
    if hit is None:
        hit = ctx.memo[key] = compute()
    return hit


def uncovered(ctx: Context) -> set[str]:
    """Why shapes were skipped: cost lookups outside the measured tables (one line each)."""
    return ctx.memo.setdefault(("uncovered",), set())


def _raw(ctx: Context, cand: Candidate, batch: float) -> tuple[float, float, Any]:
    """(TPOT at the SLO percentile, mean TPOT, aggregated steady state or None) of the shape at
    ``batch``, uncorrected; memoised across closed-loop rounds. A shape the cost tables do not
    cover at this point is infinitely slow (so never chosen), and the gap is recorded."""

    def compute() -> tuple[float, float, Any]:
        role = replace(cand.role, batch_per_gpu=batch)
        accepted = accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
        try:
            if cand.self_prefill:
                it = agg_iteration(ctx, role, batch)
                return agg_tpot_percentile(ctx, role, it), it.mean.total / accepted, it
            t = decode_step_seconds(ctx, role, batch) / accepted
            return t, t, None
        except InputError as err:
            uncovered(ctx).add(str(err))
            return math.inf, math.inf, None

    return _memo(ctx, ("step", cand, batch), compute)


def _memory_fits(ctx: Context, cand: Candidate, batch: float) -> bool:
    def compute() -> bool:
        return _fits(decode_memory(ctx, replace(cand.role, batch_per_gpu=batch)))

    return _memo(ctx, ("memory", cand, batch), compute)


def decode_point(ctx: Context, cand: Candidate, batch: float, corr: Corrections) -> Point | None:
    """The shape at ``batch`` if TPOT, memory (and, aggregated, a prefill budget that keeps
    up) hold."""
    tpot_p, tpot_mean, it = _raw(ctx, cand, batch)
    wl, shape = ctx.workload, cand.role.shape
    tpot_p, tpot_mean = tpot_p * corr.tpot, tpot_mean * corr.tpot
    seqs = batch * shape.attention_gpus
    if tpot_p > wl.slo.tpot or not _memory_fits(ctx, cand, batch):
        return None
    if it is not None:
        role = replace(cand.role, batch_per_gpu=batch)
        if not it.keeps_up or seqs / (wl.osl * tpot_mean) >= agg_prefill_capacity(role, wl, it):
            return None
    return Point(batch, tpot_p, seqs, seqs / tpot_mean, it)


def _grid(max_batch: int) -> list[int]:
    return [b for b in BATCH_GRID if b <= max_batch]


def max_feasible(
    ctx: Context, cand: Candidate, corr: Corrections, grid: list[int], hint: int = 0
) -> int:
    """Index of the largest feasible breakpoint (-1 if none); the constraints are monotone in
    batch. ``hint`` (the answer for a similar shape) is tried first: neighbouring candidates
    differ in one choice, so it is usually right and costs two evaluations."""

    def ok(i: int) -> bool:
        return decode_point(ctx, cand, grid[i], corr) is not None

    hint = min(max(hint, 0), len(grid) - 1)
    if ok(hint):
        if hint == len(grid) - 1 or not ok(hint + 1):
            return hint
        lo, hi = hint + 1, len(grid) - 1
    else:
        if hint == 0:
            return -1
        lo, hi = -1, hint - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def curve(ctx: Context, cand: Candidate, corr: Corrections, grid: list[int]) -> list[Point]:
    """All feasible breakpoints, smallest batch first (stops at the first infeasible one)."""
    points = []
    for b in grid:
        p = decode_point(ctx, cand, b, corr)
        if p is None:
            break
        points.append(p)
    return points


@dataclass(frozen=True)
class DecodeChoice:
    """What a DecodeOption stands for: the candidate and its breakpoints."""

    candidate: Candidate
    points: tuple[Point, ...]
    replicas: tuple[int, int] | None = None


def _option(key: str, choice: DecodeChoice, self_prefill: bool) -> DecodeOption:
    return DecodeOption(
        key=key,
        gpus=choice.candidate.gpu_map,
        seqs=tuple(p.seqs for p in choice.points),
        tok_s=tuple(p.tok_s for p in choice.points),
        self_prefill=self_prefill,
        replicas=choice.replicas,
        payload=choice,
    )


Best = dict[tuple, tuple[float, int, Any]]
"""Per key: (value, candidate index, payload): the best candidate found for that key."""


def _offer(best: Best, key: tuple, value: float, index: int, payload: Any) -> None:
    """Keep the higher value; on a tie the earlier candidate (so the result does not depend on
    how the scan was split)."""
    old = best.get(key)
    if old is None or value > old[0] or (value == old[0] and index < old[1]):
        best[key] = (value, index, payload)


def _feasible_shapes(
    ctx: Context, cands: list[Candidate], corr: Corrections, grid: list[int]
) -> Iterator[tuple[int, Candidate, int]]:
    """(position, shape, largest feasible breakpoint) of every shape with one; each search is
    seeded with the previous shape's answer."""
    hint = 0
    for n, cand in enumerate(cands):
        i = max_feasible(ctx, cand, corr, grid, hint)
        if i >= 0:
            hint = i
            yield n, cand, i


def _scan_decode(ctx: Context, cands: list[Candidate], corr, grid, offset: int) -> Best:
    """P/D and AFD decode shapes: per (mode, GPU vector) the highest capacity at the largest
    feasible batch; payload: that breakpoint's index."""
    best: Best = {}
    for n, cand, i in _feasible_shapes(ctx, cands, corr, grid):
        cap = decode_point(ctx, cand, grid[i], corr).tok_s
        _offer(best, (cand.mode, cand.gpus), cap, n + offset, i)
    return best


def _scan_agg(ctx: Context, cands: list[Candidate], corr, grid, offset: int) -> Best:
    """Self-prefilling shapes: per (GPU vector, replica count) the highest capacity; payload:
    the breakpoints feasible at that count (TTFT queues over all replicas' ranks)."""
    best: Best = {}
    budget = ctx.memo[("budget",)]
    for n, cand, i in _feasible_shapes(ctx, cands, corr, grid):
        points = curve(ctx, cand, corr, grid[: i + 1])
        for count in range(1, budget // cand.total_gpus + 1):
            ok = agg_feasible_prefix(ctx, cand, points, count, corr)
            if ok:
                _offer(best, (cand.gpus, count), ok[-1].tok_s, n + offset, tuple(ok))
    return best


PARALLEL_MIN = 200
"""Candidate counts above which a scan is split over the machine's cores."""

SCAN_PROCESSES_ENV = "AICPP_OPT_SCAN_PROCESSES"
"""Caps the processes of one scan (default 8). Sweep workers set it to 1: they already fill the
cores, and a Ray worker (which runs threads) must not fork."""

_SCAN: tuple = ()
"""(scan, ctx, candidates, corrections, grid) of the running parallel scan: forked workers
inherit it instead of receiving a pickled copy of the cost tables."""


def _scan_part(span: tuple[int, int]) -> Best:
    scan, ctx, cands, corr, grid = _SCAN
    return scan(ctx, cands[span[0] : span[1]], corr, grid, span[0])


def _scan_all(scan, ctx: Context, cands: list[Candidate], corr, grid) -> Best:
    """``scan`` over all candidates, split over the cores (forked workers share the loaded
    tables) when there are many; the merge is the serial scan's."""
    global _SCAN
    workers = min(os.cpu_count() or 1, int(os.environ.get(SCAN_PROCESSES_ENV, "8")))
    if workers < 2 or len(cands) < PARALLEL_MIN:
        return scan(ctx, cands, corr, grid, 0)
    size = -(-len(cands) // workers)
    _SCAN = (scan, ctx, cands, corr, grid)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_scan_part, [(i, i + size) for i in range(0, len(cands), size)])
    finally:
        _SCAN = ()
    best: Best = {}
    for part in parts:
        for key, (value, index, payload) in part.items():
            _offer(best, key, value, index, payload)
    return best


def pd_decode_options(
    ctx: Context, cands: Iterable[Candidate], corr: Corrections, max_batch: int
) -> list[DecodeOption]:
    """Best decode shape per GPU vector (by capacity at its largest feasible batch)."""
    grid = _grid(max_batch)
    cands = list(cands)
    out = []
    for n, (_, c, i) in enumerate(_scan_all(_scan_decode, ctx, cands, corr, grid).values()):
        points = tuple(curve(ctx, cands[c], corr, grid[: i + 1]))
        out.append(_option(f"{cands[c].mode}:{n}", DecodeChoice(cands[c], points), False))
    return out


def agg_feasible_prefix(
    ctx: Context, cand: Candidate, points: list[Point], replicas: int, corr: Corrections
) -> list[Point]:
    """The breakpoints at which ``replicas`` aggregated replicas meet TTFT at the rate they
    decode (prefill queues per attention-DP rank, so the count sets the rate per rank)."""
    ok = []
    for p in points:
        role = replace(cand.role, replicas=replicas, batch_per_gpu=p.batch)
        rate = replicas * p.tok_s / ctx.workload.osl * corr.rate
        ttft = agg_ttft(ctx, role, p.iteration, rate).percentile * corr.ttft
        if ttft > ctx.workload.slo.ttft:
            break
        ok.append(p)
    return ok


def agg_options(
    ctx: Context, cands: Iterable[Candidate], corr: Corrections, max_batch: int, budget: int
) -> list[DecodeOption]:
    """Aggregated shapes: their TTFT depends on the replica count, so the best shape is found
    per (GPU vector, count), and runs of counts sharing the same shape and curve become one
    option with a replica range."""
    cands = list(cands)
    ctx.memo[("budget",)] = budget
    best = _scan_all(_scan_agg, ctx, cands, corr, _grid(max_batch))
    runs: list[tuple[Candidate, tuple[Point, ...], int, int]] = []
    for (_, n), (_, c, pts) in sorted(best.items()):
        last = runs[-1] if runs else None
        if last and last[0] == cands[c] and last[1] == pts and last[3] == n - 1:
            runs[-1] = (cands[c], pts, last[2], n)
        else:
            runs.append((cands[c], pts, n, n))
    return [
        _option(f"{cand.mode}:{i}", DecodeChoice(cand, pts, (lo, hi)), True)
        for i, (cand, pts, lo, hi) in enumerate(runs)
    ]


def _edge(ttft: Callable[[float], float], limit: float, good: float, bad: float) -> float:
    """The boundary between a rate meeting ``limit`` and one breaking it (relative 1e-12)."""
    for _ in range(42):
        mid = 0.5 * (good + bad)
        good, bad = (mid, bad) if ttft(mid) <= limit else (good, mid)
    return good


def max_feasible_rate(ttft: Callable[[float], float], limit: float, hi: float) -> float | None:
    """The largest arrival rate in (0, hi) with ttft(rate) <= limit (TTFT rises with the rate);
    None when even no load misses it."""
    top = hi * (1 - 1e-9)
    if ttft(top * 1e-12) > limit:
        return None
    return top if ttft(top) <= limit else _edge(ttft, limit, top * 1e-12, top)


@dataclass(frozen=True)
class PrefillChoice:
    role: Role
    service_s: float


def prefill_rates(
    ctx: Context,
    roles: Iterable[Role],
    corr: Corrections,
    kv_domains: int,
    budget: int,
    fastest_only: bool = True,
) -> Iterator[PrefillOption]:
    """Per prefill shape and replica count, the arrival rates meeting TTFT at its percentile
    (lock-step queueing, compute and the KV transfer over ``kv_domains`` domains).
    ``fastest_only`` keeps, of shapes alike in GPUs, ranks, batch and KV transfer, only the
    fastest: TTFT rises with the service time, so the others can never allow a rate it does not
    (the enumeration oracle keeps them all)."""
    slo = ctx.workload.slo.ttft
    fastest: dict[tuple, tuple[float, Role, Latency]] = {}
    for role in roles:
        if not _fits(prefill_memory(ctx, role)):
            continue
        try:
            service = prefill_step(ctx, role).total
        except InputError as err:
            uncovered(ctx).add(str(err))
            continue
        kv = kv_transfer(ctx, role, role.pool, kv_domains)
        shape = role.shape
        key = (role.pool, shape.attention_gpus, shape.attn_dp, role.batch, kv.seconds)
        if not fastest_only:
            key = (*key, role)
        if key not in fastest or service < fastest[key][0]:
            fastest[key] = (service, role, kv)
    for service, role, kv in fastest.values():
        service *= corr.ttft
        if service + kv.seconds > slo:
            continue
        g = role.shape.attention_gpus
        for n in range(1, budget // g + 1):
            r = replace(role, replicas=n)
            cap = n * role.shape.attn_dp * role.batch / service
            top = max_feasible_rate(
                lambda rate, r=r, s=service, kv=kv: prefill_ttft(ctx, r, s, rate, kv).percentile,
                slo,
                cap,
            )
            if top is not None:
                yield PrefillOption(
                    key="",
                    gpus={role.pool: n * g},
                    max_rate=top / corr.rate * (1 - SOLVER_TOLERANCE),
                    min_rate=0.0,
                    payload=PrefillChoice(r, service),
                )


def prefill_options(
    ctx: Context,
    roles: Iterable[Role],
    corr: Corrections,
    kv_domains: int,
    budget: int,
) -> list[PrefillOption]:
    """The prefill rates, keeping per (pool, GPUs) the option with the highest max rate and the
    one with the lowest min rate (together they cover every rate the others allow)."""
    best: dict[tuple, PrefillOption] = {}
    for opt in prefill_rates(ctx, roles, corr, kv_domains, budget):
        g = sum(opt.gpus.values())
        for tag, better in (
            ("max", lambda a, b: a.max_rate > b.max_rate),
            ("min", lambda a, b: (a.min_rate, -a.max_rate) < (b.min_rate, -b.max_rate)),
        ):
            key = (tag, *opt.gpus, g)
            if key not in best or better(opt, best[key]):
                best[key] = opt
    unique = {id(o): o for o in best.values()}.values()
    return [replace(o, key=f"prefill:{i}") for i, o in enumerate(unique)]


def planning_kv_domains(ctx: Context) -> int:
    """The P->D link assumed while choosing shapes: NVLink (1) when the whole instance is one
    domain, else the scale-out network (2): the final placement may do better, never worse."""
    pools = list(ctx.pools.values())
    return 1 if len(pools) == 1 and pools[0].num_domains == 1 else 2


def batch_for_rate(
    ctx: Context, choice: DecodeChoice, corr: Corrections, seqs_rate: float
) -> float:
    """The batch per attention GPU at which one replica's modelled output (sequences / step)
    equals ``seqs_rate`` tokens/s: the MILP interpolates throughput linearly between
    breakpoints, the evaluator computes it at the batch, so the plan takes the batch that
    delivers the MILP's rate (inside the same segment, where every constraint holds), rounding
    toward the lower rate so that a binding TTFT stays met."""
    pts = choice.points
    if seqs_rate >= pts[-1].tok_s:
        return pts[-1].batch
    hi_i = next(i for i, p in enumerate(pts) if p.tok_s >= seqs_rate)
    if hi_i == 0:
        lo, hi = 0.0, pts[0].batch
    else:
        lo, hi = pts[hi_i - 1].batch, pts[hi_i].batch
    g = choice.candidate.role.shape.attention_gpus
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        tpot = _raw(ctx, choice.candidate, mid)[1] * corr.tpot
        lo, hi = (mid, hi) if mid * g / tpot < seqs_rate else (lo, mid)
    return lo
