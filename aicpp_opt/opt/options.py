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

from aicpp_opt.errors import InputError
from aicpp_opt.opt.milp import DecodeOption, PrefillOption
from aicpp_opt.opt.space import Candidate
from aicpp_opt.perf.breakdown import Cost
from aicpp_opt.perf.context import PerfContext
from aicpp_opt.perf.evaluate import (
    agg_role_iteration,
    agg_role_memory,
    agg_ttft,
    decode_memory,
    decode_role_step,
    kv_over,
    prefill_memory,
    prefill_ttft,
)
from aicpp_opt.perf.step import prefill_time
from aicpp_opt.spec.instance import Dimension
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
    batch: float
    step_s: float
    seqs: float
    tok_s: float
    prefill_service_s: float = 0.0


def _fits(mem: dict) -> bool:
    return all(m.fits for m in mem.values())


def _memo(ctx: PerfContext, key: tuple, compute: Callable[[], Any]) -> Any:
    hit = ctx.memo.get(key)
    if hit is None:
        hit = ctx.memo[key] = compute()
    return hit


def uncovered(ctx: PerfContext) -> set[str]:
    """Why shapes were skipped: cost lookups outside the measured tables (one line each)."""
    return ctx.memo.setdefault(("uncovered",), set())


def _raw_step(ctx: PerfContext, cand: Candidate, batch: float) -> tuple[float, float]:
    """(step seconds, aggregated prefill service seconds) of the shape at ``batch``,
    uncorrected; memoised across closed-loop rounds. A shape the cost tables do not cover at
    this point is infinitely slow (so never chosen), and the gap is recorded."""

    def compute() -> tuple[float, float]:
        role = cand.role
        try:
            if cand.self_prefill:
                it = agg_role_iteration(ctx, replace(role, batch_per_gpu=batch))
                return it.mean.total, it.prefill_service
            return decode_role_step(ctx, replace(role, batch_per_gpu=batch)).total, 0.0
        except InputError as err:
            uncovered(ctx).add(str(err))
            return math.inf, math.inf

    return _memo(ctx, ("step", cand, batch), compute)


def _memory_fits(ctx: PerfContext, cand: Candidate, batch: float) -> bool:
    def compute() -> bool:
        role = replace(cand.role, batch_per_gpu=batch)
        return _fits(agg_role_memory(ctx, role) if cand.self_prefill else decode_memory(ctx, role))

    return _memo(ctx, ("memory", cand, batch), compute)


def decode_point(
    ctx: PerfContext, cand: Candidate, batch: float, corr: Corrections
) -> Point | None:
    """The shape at ``batch`` if TPOT, memory (and, aggregated, an unsaturated prefill) hold."""
    raw, service = _raw_step(ctx, cand, batch)
    wl, shape = ctx.workload, cand.role.shape
    step, service = raw * corr.tpot, service * corr.tpot
    seqs = batch * shape.attention_gpus
    if step > wl.slo.tpot or not _memory_fits(ctx, cand, batch):
        return None
    # aggregated: arrivals must stay below the prefill capacity of the attention-DP ranks
    if cand.self_prefill and seqs / (wl.osl * step) >= shape.attn_dp / service:
        return None
    return Point(batch, step, seqs, seqs / step, service)


def _grid(max_batch: int) -> list[int]:
    return [b for b in BATCH_GRID if b <= max_batch]


def max_feasible(
    ctx: PerfContext, cand: Candidate, corr: Corrections, grid: list[int], hint: int = 0
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


def curve(ctx: PerfContext, cand: Candidate, corr: Corrections, grid: list[int]) -> list[Point]:
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
    ctx: PerfContext, cands: list[Candidate], corr: Corrections, grid: list[int]
) -> Iterator[tuple[int, Candidate, int]]:
    """(position, shape, largest feasible breakpoint) of every shape with one; each search is
    seeded with the previous shape's answer."""
    hint = 0
    for n, cand in enumerate(cands):
        i = max_feasible(ctx, cand, corr, grid, hint)
        if i >= 0:
            hint = i
            yield n, cand, i


def _scan_decode(ctx: PerfContext, cands: list[Candidate], corr, grid, offset: int) -> Best:
    """P/D and AFD decode shapes: per (mode, GPU vector) the highest capacity at the largest
    feasible batch; payload: that breakpoint's index."""
    best: Best = {}
    for n, cand, i in _feasible_shapes(ctx, cands, corr, grid):
        cap = decode_point(ctx, cand, grid[i], corr).tok_s
        _offer(best, (cand.mode, cand.gpus), cap, n + offset, i)
    return best


def _scan_agg(ctx: PerfContext, cands: list[Candidate], corr, grid, offset: int) -> Best:
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


def _scan_all(scan, ctx: PerfContext, cands: list[Candidate], corr, grid) -> Best:
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
    ctx: PerfContext, cands: Iterable[Candidate], corr: Corrections, max_batch: int
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
    ctx: PerfContext, cand: Candidate, points: list[Point], replicas: int, corr: Corrections
) -> list[Point]:
    """The breakpoints at which ``replicas`` aggregated replicas meet TTFT: the prefill queue is
    M/D/c over all their attention-DP ranks, so more replicas allow larger batches."""
    role = replace(cand.role, replicas=replicas)
    ok = []
    for p in points:
        rate = replicas * p.seqs / (ctx.workload.osl * p.step_s) * corr.rate
        if agg_ttft(role, p.prefill_service_s, rate).total > ctx.workload.slo.ttft:
            break
        ok.append(p)
    return ok


def agg_options(
    ctx: PerfContext, cands: Iterable[Candidate], corr: Corrections, max_batch: int, budget: int
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


def feasible_interval(
    ttft: Callable[[float], float], limit: float, hi: float, monotone: bool
) -> tuple[float, float] | None:
    """The arrival rates in (0, hi) with ttft(rate) <= limit. ``monotone``: TTFT only rises
    with the rate (one request per forward); otherwise TTFT first falls while batches form
    faster, then rises with queueing, and the feasible set is an interval found from a scan."""
    top = hi * (1 - 1e-9)
    if monotone:
        if ttft(top * 1e-12) > limit:
            return None
        return 0.0, top if ttft(top) <= limit else _edge(ttft, limit, top * 1e-12, top)
    grid = [top * 2.0 ** (-k / 2) for k in range(48)][::-1]
    ok = [r for r in grid if ttft(r) <= limit]
    if not ok:
        return None
    below = [r for r in grid if r < ok[0]]
    above = [r for r in grid if r > ok[-1]]
    lo = _edge(ttft, limit, ok[0], below[-1]) if below else 0.0
    return lo, _edge(ttft, limit, ok[-1], above[0]) if above else ok[-1]


@dataclass(frozen=True)
class PrefillChoice:
    role: Role
    service_s: float


def prefill_rates(
    ctx: PerfContext,
    roles: Iterable[Role],
    corr: Corrections,
    link: Dimension,
    budget: int,
    fastest_only: bool = True,
) -> Iterator[PrefillOption]:
    """Per prefill shape and replica count, the arrival-rate interval meeting TTFT (queueing,
    compute and KV transfer over ``link``). ``fastest_only`` keeps, of shapes alike in ranks,
    batch and KV transfer, only the fastest: TTFT rises with the service time, so the others
    can never allow a rate it does not (the enumeration oracle keeps them all)."""
    slo = ctx.workload.slo.ttft
    fastest: dict[tuple, tuple[float, Role, Cost]] = {}
    for role in roles:
        if not _fits(prefill_memory(ctx, role)):
            continue
        try:
            service = prefill_time(ctx, role.pool, role.shape, role.batch, role.chunk_tokens).total
        except InputError as err:
            uncovered(ctx).add(str(err))
            continue
        kv = kv_over(ctx, link, role)
        key = (role.pool, role.shape.attention_gpus, role.shape.attn_dp, role.batch, kv.seconds)
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
            span = feasible_interval(
                lambda rate, r=r, s=service, kv=kv: prefill_ttft(r, s, rate, kv).total,
                slo,
                cap,
                monotone=role.batch == 1,
            )
            if span is not None:
                yield PrefillOption(
                    key="",
                    gpus={role.pool: n * g},
                    max_rate=span[1] / corr.rate * (1 - SOLVER_TOLERANCE),
                    min_rate=span[0] / corr.rate * (1 + SOLVER_TOLERANCE),
                    payload=PrefillChoice(r, service),
                )


def prefill_options(
    ctx: PerfContext,
    roles: Iterable[Role],
    corr: Corrections,
    link: Dimension,
    budget: int,
) -> list[PrefillOption]:
    """The prefill rates, keeping per (pool, GPUs) the option with the highest max rate and the
    one with the lowest min rate (together they cover every rate the others allow)."""
    best: dict[tuple, PrefillOption] = {}
    for opt in prefill_rates(ctx, roles, corr, link, budget):
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


def planning_kv_link(ctx: PerfContext) -> Dimension:
    """The P->D link assumed while choosing shapes: NVLink when the whole instance is one
    domain, else the slowest scale-out link (the final placement may do better, never worse)."""
    pools = list(ctx.pools.values())
    if len(pools) == 1 and pools[0].num_domains == 1:
        return pools[0].link(True)
    return min((p.link(False) for p in pools), key=lambda d: d.bw)


def batch_for_rate(
    ctx: PerfContext, choice: DecodeChoice, corr: Corrections, seqs_rate: float
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
        step = _raw_step(ctx, choice.candidate, mid)[0] * corr.tpot
        lo, hi = (mid, hi) if mid * g / step < seqs_rate else (lo, mid)
    return lo
