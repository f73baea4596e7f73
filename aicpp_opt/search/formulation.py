"""The count-and-flow MILP (pyomo, solved by HiGHS): how many replicas of which families, at
what request rates, serve which workloads on which pools.

Variables and constraints (see docs/optimizer.md):

* ``n[f]`` integer replicas of family f (any number of families side by side), ``r[f]``
  requests/s it serves: ``r[f] <= rate[f] * n[f]`` (a replica's rate within the SLO terms, from
  ``search.capacity``; replicas share arrivals evenly, so the bound is linear in the count).
* Per workload w: ``lam[w]`` = the requests/s its decode and aggregated families serve; P/D
  flow balance per workload and decode pool t: the prefill families of w that feed t carry
  exactly the requests the decode families of w on t serve.
* The traffic: ``lam[w] = share[w] * total`` (a mix), or ``lam[w] >= demand[w]`` (sizing).
* GPUs per pool within the pool, in total within the budget (a mutable parameter, so a
  frontier re-solves the same model). Packing into NVLink domains: in a pool of D-GPU domains,
  a block of whole domains takes them; smaller blocks are powers of two, a divisibility chain,
  for which the blocks fit the remaining domains exactly when for every block size s the blocks
  of size >= s hold at most s * floor(D / s) GPUs per domain. So "optimal" includes placement.
* Objective: output tokens/s (sum of OSL x lam) - q x resource - a tie-break per GPU; q = 0
  for throughput, and per-GPU or per-dollar ratios by Dinkelbach's iteration on q (a mutable
  parameter: the model is built once). Sizing minimises the resource (GPUs or dollars).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

import pyomo.environ as pyo
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

from aicpp_opt.search.capacity import Capacity
from aicpp_opt.search.catalog import Family, is_power_of_two
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance, Pool

TIE_BREAK_PER_GPU = 1e-5
"""Tokens/s given up per GPU saved when two plans otherwise tie."""
MAX_DINKELBACH = 30


class NoPlanError(Exception):
    """The MILP has no feasible point (the caller explains why in the user's terms)."""


class TimeLimitError(Exception):
    """The solver ran out of time before finding any plan."""


@dataclass(frozen=True)
class Option:
    """A family as the solver sees it: its blocks and one replica's rate."""

    family: Family
    capacity: Capacity

    @property
    def key(self) -> str:
        return self.family.key


@dataclass(frozen=True)
class Traffic:
    """What the fleet serves: workload shares of the total (maximised), or request rates per
    workload (met at least cost). ``osl`` converts requests to output tokens."""

    osl: dict[str, float]
    shares: dict[str, float] = field(default_factory=dict)
    demand: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SolverStats:
    status: str
    optimal: bool
    gap: float
    seconds: float
    n_vars: int
    n_integer: int
    n_constraints: int
    iterations: int = 1


@dataclass(frozen=True)
class Solution:
    """Replicas and requests/s per chosen family; GPUs per pool."""

    replicas: dict[str, int]
    rates: dict[str, float]
    options: dict[str, Option]
    gpus: dict[str, int]
    tokens_per_s: float
    stats: SolverStats


def packing_rows(pool: Pool, sizes: set[int]) -> list[tuple[dict[int, int], int]]:
    """The packing constraints of a pool of several D-GPU domains over block sizes: rows
    (coefficient per block size, right-hand side) meaning sum(coef x count) <= rhs. A block of
    D or more takes size / D whole domains; for every size s < D in use, the blocks of size
    >= s (below D) hold at most s x floor(D / s) GPUs in each domain the whole blocks left."""
    d, domains = pool.domain_size, pool.gpus // pool.domain_size
    whole = {s: s // d for s in sizes if s >= d}
    small = sorted(s for s in sizes if s < d)
    rows = []
    for s in small:
        per_domain = s * (d // s)
        coef = {t: t for t in small if t >= s} | {t: per_domain * k for t, k in whole.items()}
        rows.append((coef, per_domain * domains))
    if whole and not small:
        rows.append((dict(whole), domains))
    return rows


def build(
    options: list[Option],
    instance: Instance,
    traffic: Traffic,
    resource: dict[str, float],
    minimise_resource: bool = False,
) -> pyo.ConcreteModel:
    """The model over ``options``; ``resource`` weighs each pool's GPUs (per GPU: 1; per
    dollar: the price) for ratio objectives and sizing."""
    m = pyo.ConcreteModel()
    by_key = {o.key: o for o in options}
    keys = list(by_key)
    pools = {p.name: p for p in instance.pools}

    def most(o: Option) -> int:
        return min(pools[b.pool].gpus // o.family.gpus_in(b.pool) for b in o.family.blocks)

    m.F = pyo.Set(initialize=keys, ordered=True)
    m.n = pyo.Var(m.F, within=pyo.NonNegativeIntegers, bounds=lambda _m, k: (0, most(by_key[k])))
    m.r = pyo.Var(m.F, within=pyo.NonNegativeReals)
    m.rate_bound = pyo.Constraint(
        m.F, rule=lambda _m, k: m.r[k] <= by_key[k].capacity.rate * m.n[k]
    )
    workloads = list(traffic.osl)
    m.W = pyo.Set(initialize=workloads, ordered=True)
    m.lam = pyo.Var(m.W, within=pyo.NonNegativeReals)

    def served(_m, w):
        fams = [
            k
            for k in keys
            if by_key[k].family.workload == w and by_key[k].family.kind != RoleKind.PREFILL
        ]
        return m.lam[w] == sum(m.r[k] for k in fams)

    m.served = pyo.Constraint(m.W, rule=served)
    m.balance = pyo.ConstraintList()
    for w in workloads:
        for t in pools:
            pre = [
                k
                for k in keys
                if _is(by_key[k], w, RoleKind.PREFILL) and by_key[k].family.feeds == t
            ]
            dec = [
                k
                for k in keys
                if _is(by_key[k], w, RoleKind.DECODE) and by_key[k].family.role.pool == t
            ]
            if pre or dec:
                m.balance.add(sum(m.r[k] for k in pre) == sum(m.r[k] for k in dec))
    if traffic.shares:
        m.total = pyo.Var(within=pyo.NonNegativeReals)
        m.mix = pyo.Constraint(m.W, rule=lambda _m, w: m.lam[w] == traffic.shares[w] * m.total)
    if traffic.demand:
        m.demand = pyo.Constraint(m.W, rule=lambda _m, w: m.lam[w] >= traffic.demand[w])

    gpus = {name: sum(by_key[k].family.gpus_in(name) * m.n[k] for k in keys) for name in pools}
    m.pool_gpus = pyo.Constraint(list(pools), rule=lambda _m, p: gpus[p] <= pools[p].gpus)
    m.gpus = pyo.Expression(expr=sum(gpus.values()))
    m.budget = pyo.Param(mutable=True, initialize=sum(p.gpus for p in instance.pools))
    m.total_budget = pyo.Constraint(expr=m.gpus <= m.budget)
    m.packing = pyo.ConstraintList()
    for name, pool in pools.items():
        if pool.num_domains == 1:
            continue
        counts: dict[int, object] = defaultdict(int)
        for k in keys:
            for b in by_key[k].family.blocks:
                if b.pool == name:
                    counts[b.gpus] = counts[b.gpus] + m.n[k]
        _check_chain(pool, counts)
        for coef, rhs in packing_rows(pool, set(counts)):
            m.packing.add(sum(c * counts[size] for size, c in coef.items()) <= rhs)
    m.tokens = pyo.Expression(expr=sum(traffic.osl[w] * m.lam[w] for w in workloads))
    m.resource = pyo.Expression(expr=sum(resource.get(p, 0.0) * g for p, g in gpus.items()))
    m.q = pyo.Param(mutable=True, initialize=0.0)
    if minimise_resource:
        m.obj = pyo.Objective(expr=m.resource + TIE_BREAK_PER_GPU * m.gpus, sense=pyo.minimize)
    else:
        m.obj = pyo.Objective(
            expr=m.tokens - m.q * m.resource - TIE_BREAK_PER_GPU * m.gpus, sense=pyo.maximize
        )
    m._options = by_key
    return m


def _serves(o: Option, workload: str) -> bool:
    return o.family.workload == workload and o.family.kind != RoleKind.PREFILL


def _is(o: Option, workload: str, kind: RoleKind) -> bool:
    return o.family.workload == workload and o.family.kind == kind


def _check_chain(pool: Pool, counts: dict[int, object]) -> None:
    bad = [s for s in counts if s < pool.domain_size and not is_power_of_two(s)]
    bad += [s for s in counts if s >= pool.domain_size and s % pool.domain_size]
    if bad:
        raise ValueError(f"block sizes {bad} cannot be packed exactly in pool {pool.name}")


def _count(m: pyo.ConcreteModel) -> tuple[int, int, int]:
    vars_ = list(m.component_data_objects(pyo.Var, active=True))
    n_int = sum(1 for v in vars_ if v.is_integer())
    n_cons = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
    return len(vars_), n_int, n_cons


class Solver:
    """One model, solved for as many budgets and Dinkelbach steps as asked, by a persistent
    HiGHS instance (mutable parameters change; the model is not rebuilt)."""

    def __init__(self, model: pyo.ConcreteModel, rel_gap: float = 1e-6):
        self.model = model
        self.rel_gap = rel_gap
        self.highs = SolverFactory("highs")

    def _solve(self, time_limit: float) -> tuple[str, bool, float]:
        res = self.highs.solve(
            self.model,
            time_limit=max(time_limit, 0.01),
            rel_gap=self.rel_gap,
            load_solutions=False,
            raise_exception_on_nonoptimal_result=False,
        )
        if res.solution_status not in (SolutionStatus.optimal, SolutionStatus.feasible):
            if res.termination_condition == TerminationCondition.maxTimeLimit:
                raise TimeLimitError(f"no plan found within the time limit of {time_limit:g} s")
            raise NoPlanError(res.termination_condition.name)
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

    def solve(self, budget: int, ratio: bool, time_limit: float) -> Solution:
        """The optimum within ``budget`` GPUs; ``ratio``: tokens/s per unit of resource, by
        Dinkelbach's iteration (q = the best ratio so far; stop when no plan beats it; the plan
        kept is the one that set q, since at the optimum the empty plan ties with it)."""
        m = self.model
        m.budget.set_value(budget)
        m.q.set_value(0.0)
        start = time.perf_counter()
        iterations, best = 0, None
        while True:
            iterations += 1
            left = time_limit - (time.perf_counter() - start)
            status, optimal, gap = self._solve(left)
            n_vars, n_int, n_cons = _count(m)
            stats = SolverStats(
                status,
                optimal,
                gap,
                time.perf_counter() - start,
                n_vars,
                n_int,
                n_cons,
                iterations,
            )
            current = self._solution(stats)
            if not ratio:
                return current
            resource = pyo.value(m.resource)
            q = pyo.value(m.tokens) / resource if resource > 0 else 0.0
            if q <= pyo.value(m.q) * (1 + 1e-9) or iterations >= MAX_DINKELBACH:
                break
            best = current
            m.q.set_value(q)
        return replace(best or current, stats=stats)

    def _solution(self, stats: SolverStats) -> Solution:
        m = self.model
        replicas, rates = {}, {}
        for k in m.F:
            n = round(pyo.value(m.n[k]))
            if n > 0:
                replicas[k] = n
                rates[k] = max(0.0, pyo.value(m.r[k]))
        gpus: dict[str, int] = defaultdict(int)
        for k, n in replicas.items():
            for b in m._options[k].family.blocks:
                gpus[b.pool] += n * b.gpus
        return Solution(
            replicas,
            rates,
            {k: m._options[k] for k in replicas},
            dict(gpus),
            pyo.value(m.tokens),
            stats,
        )
