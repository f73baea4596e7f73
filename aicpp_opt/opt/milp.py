"""The MILP: pick the decode shape, its replica count and batch (a PWL λ-formulation), the
prefill shape and count (the P/D ratio), under per-pool GPU budgets, maximising output tokens/s.

Formulation (one decode role, at most one prefill role; see docs/optimizer.md):

* ``y[d]``  binary, decode option d is used; exactly one is.
* ``n[d]``  integer replicas of d, ``y[d] <= n[d] <= U[d] * y[d]``.
* ``lam[d, i]`` continuous, replica-weighted convex weights on d's batch breakpoints,
  ``sum_i lam[d, i] = n[d]``; ``z[d, j]`` binary picks the active segment (SOS2 by binaries), so
  every replica runs the same batch ``sum_i lam[d, i] * seqs[d, i] / n[d]`` and the fleet's
  output rate is ``n[d]`` times the PWL throughput at that batch: exact, linear.
* ``w[p]``  binary, prefill option p (a shape *and* a replica count) is used; exactly one when
  the decode option needs separate prefill. Its request-rate capacity already folds in the
  TTFT bound with queueing (computed per count), so the flow balance is linear:
  ``decode requests/s <= sum_p w[p] * max_rate[p]``.
* GPUs per pool and in total stay within budget.

The objective is ``tokens/s - q * resource - eps * gpus``: q = 0 maximises tokens/s; the
per-GPU and per-dollar objectives are ratios, solved exactly by Dinkelbach's iteration on q
(each step an exact MILP). ``eps`` breaks ties toward fewer GPUs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pyomo.environ as pyo
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

TIE_BREAK_PER_GPU = 1e-5
"""tokens/s given up per GPU saved when two plans otherwise tie."""


class NoPlanError(Exception):
    """The MILP has no feasible point (the caller explains why in the user's terms)."""


class TimeLimitError(Exception):
    """The solver ran out of time before finding any plan (the problem may be feasible)."""


@dataclass(frozen=True)
class DecodeOption:
    """One decode-capable worker shape with its per-replica PWL curve over batch breakpoints.

    ``seqs`` are concurrent sequences per replica at each breakpoint and ``tok_s`` the replica's
    output tokens/s there (from the PWL surrogates); only breakpoints where every per-replica
    constraint (TPOT, memory, and TTFT for self-prefilling shapes) holds are listed, and those
    constraints are monotone in batch, so every point between two of them holds too."""

    key: str
    gpus: dict[str, int]
    seqs: tuple[float, ...]
    tok_s: tuple[float, ...]
    self_prefill: bool
    replicas: tuple[int, int] | None = None
    """Allowed replica counts (inclusive) when the curve holds only for some counts."""
    payload: object = None


@dataclass(frozen=True)
class PrefillOption:
    """A prefill shape at a fixed replica count, with the arrival rates (requests/s) at which
    it meets TTFT: at most ``max_rate`` (queueing), at least ``min_rate`` (batch formation)."""

    key: str
    gpus: dict[str, int]
    max_rate: float
    min_rate: float = 0.0
    payload: object = None


@dataclass(frozen=True)
class SolverStats:
    """How a plan was found: MILP (status, proven gap, size) or enumeration (combinations)."""

    method: str
    status: str
    optimal: bool
    gap: float
    seconds: float
    n_vars: int
    n_constraints: int
    iterations: int = 1


@dataclass
class MilpResult:
    stats: SolverStats
    decode: DecodeOption
    replicas: int
    seqs_per_replica: float
    tok_s: float
    prefill: PrefillOption | None
    gpus: dict[str, int]


def _replica_cap(gpus: dict[str, int], capacity: dict[str, int], budget: int) -> int:
    total = sum(gpus.values())
    caps = [capacity[pool] // g for pool, g in gpus.items() if g > 0]
    return min([budget // total, *caps]) if total else 0


def _replicas_allowed(o: DecodeOption, capacity: dict[str, int], budget: int) -> tuple[int, int]:
    """(fewest, most) replicas of the option that fit; fewest > most when none can."""
    free = _replica_cap(o.gpus, capacity, budget)
    lo, hi = o.replicas or (1, free)
    return max(lo, 1), min(hi, free)


def _build(
    decode: list[DecodeOption],
    prefill: list[PrefillOption],
    capacity: dict[str, int],
    budget: int,
    osl: float,
    resource_weight: dict[str, float],
    q: float,
) -> pyo.ConcreteModel:
    m = pyo.ConcreteModel()
    pools = sorted(capacity)
    ranges = {o.key: _replicas_allowed(o, capacity, budget) for o in decode}
    caps = {k: hi for k, (_, hi) in ranges.items()}
    pre = [p for p in prefill if sum(p.gpus.values()) <= budget]
    dec = [
        o
        for o in decode
        if ranges[o.key][0] <= ranges[o.key][1] and o.seqs and (o.self_prefill or pre)
    ]
    if not dec:
        raise NoPlanError("no decode option fits the budget")
    m.D = pyo.Set(initialize=[o.key for o in dec], ordered=True)
    m.P = pyo.Set(initialize=[p.key for p in pre], ordered=True)
    by_key = {o.key: o for o in dec}
    pts = [(o.key, i) for o in dec for i in range(len(o.seqs))]
    segs = [(o.key, j) for o in dec for j in range(len(o.seqs) - 1)]
    m.y = pyo.Var(m.D, within=pyo.Binary)
    m.n = pyo.Var(m.D, within=pyo.NonNegativeIntegers, bounds=lambda _m, d: (0, caps[d]))
    m.lam = pyo.Var(pts, within=pyo.NonNegativeReals)
    m.z = pyo.Var(segs, within=pyo.Binary)
    m.w = pyo.Var(m.P, within=pyo.Binary)

    m.one_decode = pyo.Constraint(expr=sum(m.y[d] for d in m.D) == 1)
    m.n_on = pyo.Constraint(m.D, rule=lambda _m, d: m.n[d] >= ranges[d][0] * m.y[d])
    m.n_off = pyo.Constraint(m.D, rule=lambda _m, d: m.n[d] <= caps[d] * m.y[d])
    m.lam_sum = pyo.Constraint(
        m.D, rule=lambda _m, d: sum(m.lam[d, i] for i in range(len(by_key[d].seqs))) == m.n[d]
    )
    seg_rows = [o.key for o in dec if len(o.seqs) > 1]
    m.one_segment = pyo.Constraint(
        seg_rows,
        rule=lambda _m, d: sum(m.z[d, j] for j in range(len(by_key[d].seqs) - 1)) == m.y[d],
    )

    def adjacency(_m, d, i):
        o = by_key[d]
        if len(o.seqs) == 1:
            return pyo.Constraint.Skip
        near = [m.z[d, j] for j in (i - 1, i) if 0 <= j < len(o.seqs) - 1]
        return m.lam[d, i] <= caps[d] * sum(near)

    m.sos2 = pyo.Constraint(pts, rule=adjacency)

    tok = {o.key: sum(m.lam[o.key, i] * o.tok_s[i] for i in range(len(o.seqs))) for o in dec}
    m.tok_s = pyo.Expression(expr=sum(tok.values()))
    needs_prefill = [o.key for o in dec if not o.self_prefill]
    pre_by_key = {p.key: p for p in pre}
    if needs_prefill:
        m.one_prefill = pyo.Constraint(
            expr=sum(m.w[p] for p in m.P) == sum(m.y[d] for d in needs_prefill)
        )
        decode_rate = sum(tok[d] for d in needs_prefill) / osl
        m.flow_balance = pyo.Constraint(
            expr=decode_rate <= sum(m.w[p] * pre_by_key[p].max_rate for p in m.P)
        )
        m.batch_formation = pyo.Constraint(
            expr=decode_rate >= sum(m.w[p] * pre_by_key[p].min_rate for p in m.P)
        )
    else:
        pre, pre_by_key = [], {}
        m.w.fix(0)

    def gpus_on(pool: str):
        return sum(m.n[o.key] * o.gpus.get(pool, 0) for o in dec) + sum(
            m.w[p.key] * p.gpus.get(pool, 0) for p in pre
        )

    m.pool_budget = pyo.Constraint(pools, rule=lambda _m, pool: gpus_on(pool) <= capacity[pool])
    m.gpus = pyo.Expression(expr=sum(gpus_on(pool) for pool in pools))
    m.total_budget = pyo.Constraint(expr=m.gpus <= budget)
    resource = sum(resource_weight.get(pool, 0.0) * gpus_on(pool) for pool in pools)
    m.obj = pyo.Objective(
        expr=m.tok_s - q * resource - TIE_BREAK_PER_GPU * m.gpus, sense=pyo.maximize
    )
    m._decode = by_key
    m._prefill = pre_by_key
    return m


def _count(m: pyo.ConcreteModel) -> tuple[int, int]:
    n_vars = sum(1 for _ in m.component_data_objects(pyo.Var, active=True))
    n_cons = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
    return n_vars, n_cons


def _solve_once(m: pyo.ConcreteModel, time_limit: float, rel_gap: float):
    solver = SolverFactory("highs")
    res = solver.solve(
        m,
        time_limit=time_limit,
        rel_gap=rel_gap,
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
    )
    if res.solution_status not in (SolutionStatus.optimal, SolutionStatus.feasible):
        if res.termination_condition == TerminationCondition.maxTimeLimit:
            raise TimeLimitError(f"no plan found within the time limit of {time_limit:g} s")
        raise NoPlanError(str(res.termination_condition.name))
    res.solution_loader.load_vars()
    optimal = res.termination_condition == TerminationCondition.convergenceCriteriaSatisfied
    inc, bound = res.incumbent_objective, res.objective_bound
    if inc is None or bound is None:
        gap = math.inf
    elif math.isclose(inc, bound, rel_tol=1e-9, abs_tol=1e-9):
        gap = 0.0
    else:
        gap = abs(bound - inc) / max(abs(inc), 1e-9)
    return res.termination_condition.name, optimal, gap


def solve_milp(
    decode: list[DecodeOption],
    prefill: list[PrefillOption],
    capacity: dict[str, int],
    budget: int,
    osl: float,
    resource_weight: dict[str, float] | None = None,
    time_limit: float = 60.0,
    rel_gap: float = 1e-6,
    max_iterations: int = 30,
) -> MilpResult:
    """Solve to proven optimality (or the time limit). ``resource_weight`` (per pool, per GPU)
    turns the objective into tokens/s per unit of resource: per GPU (all 1) or per dollar."""
    start = time.perf_counter()
    q = 0.0
    it = 0
    while it < max_iterations:
        it += 1
        m = _build(decode, prefill, capacity, budget, osl, resource_weight or {}, q)
        remaining = max(time_limit - (time.perf_counter() - start), 0.01)
        status, optimal, gap = _solve_once(m, remaining, rel_gap)
        tok = pyo.value(m.tok_s)
        resource = sum((resource_weight or {}).get(pool, 0.0) * g for pool, g in _gpus(m).items())
        if not resource_weight or resource <= 0:
            break
        ratio = tok / resource
        if ratio <= q * (1 + 1e-9):
            break
        q = ratio
    return _result(m, status, optimal, gap, time.perf_counter() - start, it)


def _gpus(m: pyo.ConcreteModel) -> dict[str, int]:
    out: dict[str, int] = {}
    for d, o in m._decode.items():
        for pool, g in o.gpus.items():
            out[pool] = out.get(pool, 0) + round(pyo.value(m.n[d])) * g
    for p, o in m._prefill.items():
        if pyo.value(m.w[p]) > 0.5:
            for pool, g in o.gpus.items():
                out[pool] = out.get(pool, 0) + g
    return out


def _result(m, status, optimal, gap, seconds, iterations) -> MilpResult:
    chosen = next(d for d in m._decode if pyo.value(m.y[d]) > 0.5)
    o = m._decode[chosen]
    n = round(pyo.value(m.n[chosen]))
    seqs = sum(pyo.value(m.lam[chosen, i]) * o.seqs[i] for i in range(len(o.seqs))) / n
    pre = next((m._prefill[p] for p in m._prefill if pyo.value(m.w[p]) > 0.5), None)
    n_vars, n_cons = _count(m)
    return MilpResult(
        stats=SolverStats("milp", status, optimal, gap, seconds, n_vars, n_cons, iterations),
        decode=o,
        replicas=n,
        seqs_per_replica=seqs,
        tok_s=pyo.value(m.tok_s),
        prefill=pre,
        gpus=_gpus(m),
    )
