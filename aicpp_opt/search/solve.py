"""``solve``: settle each workload's family capacities (cached), solve the count-and-flow
MILP, turn its solution into a plan, and check the plan with the evaluator and, when given, the
network replay and the request-level simulation. A role the replay finds breaking its SLO has
its family withdrawn (its step is slower than the evaluator's); a role the simulation blames
for a missed percentile has its family's capacity derated (its queues are longer at that load
than the analytic ones); then the problem is solved again (a bounded loop, each round
reported). Infeasible problems are explained with the closest achievable numbers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from aicpp_opt import deadline, diskcache
from aicpp_opt.errors import InfeasibleError, InputError, OutOfTimeError
from aicpp_opt.evaluate.evaluation import Evaluation, evaluate_context
from aicpp_opt.model.steps import accepted_tokens, decode_step_seconds
from aicpp_opt.search import cache
from aicpp_opt.search.build import chosen_order, plan_from
from aicpp_opt.search.capacity import memory_batch, settle
from aicpp_opt.search.catalog import Family, families, mtp_drafts
from aicpp_opt.search.formulation import (
    NoPlanError,
    Option,
    Solution,
    Solver,
    TimeLimitError,
    build,
)
from aicpp_opt.search.problem import Problem
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import Plan

MAX_ROUNDS = 4
DERATE = 0.85
"""What one simulation round multiplies a blamed family's capacity by."""


@dataclass
class Timing:
    """Seconds per phase of a solve (wall clock)."""

    capacities: float = 0.0
    milp: float = 0.0
    evaluate: float = 0.0
    replay: float = 0.0
    simulate: float = 0.0
    families: int = 0
    exact: int = 0
    cached: int = 0
    """Families in the catalog, exact capacities computed, workloads read from the cache."""

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class Round:
    """One check of the closed loop: what the replay or the simulation found, and the families
    it withdrew (replay) or derated (simulation)."""

    checker: str
    holds: bool
    withdrawn: list[str]
    detail: list[str]
    remedy: str = "withdrawn"


@dataclass
class Outcome:
    plan: Plan
    solution: Solution
    evaluated: Evaluation
    timing: Timing
    rounds: list[Round] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replay: object = None
    simulated: object = None


Replayer = Callable[[Plan, Evaluation], tuple[bool, list[str], list[str], object]]
"""(plan, evaluation) -> (holds, ids of the roles that break an SLO, lines, report)."""


CACHE_DAMAGE = (TypeError, KeyError, IndexError, ValueError, AttributeError)
"""What settling from a cache file of another shape (edited, damaged) raises."""


def _capacities(prob: Problem, wl_name: str, banned: frozenset[str], timing: Timing):
    """The settled options of one workload, from and into the capacity cache."""
    ctx = prob.contexts[wl_name]
    inst = prob.instance
    fams = [
        f
        for f in families(ctx.model, inst, ctx.workload, prob.modes, prob.afd_placement)
        if f.key not in banned and (prob.keep is None or prob.keep(f))
    ]
    timing.families += len(fams)
    drafts = max(mtp_drafts(ctx.model, inst), default=0)
    extra = {"max_batch_per_gpu": inst.search.max_batch_per_gpu, "drafts": drafts}
    name = cache.key(ctx, extra)
    known = diskcache.load(name) or {}
    samples_name = cache.key(ctx, extra, slo_targets=False)
    complete = all(f.key in known for f in fams)  # then the op model's samples are not needed
    samples = {} if complete else diskcache.load(samples_name) or {}
    report = None
    if prob.progress is not None:

        def report(done: int, total: int) -> None:
            prob.progress(wl_name, done, total)

    try:
        settled = settle(ctx, fams, inst.search.max_batch_per_gpu, known, report, samples, drafts)
    except CACHE_DAMAGE:
        if not known and not samples:
            raise
        known, samples, complete = {}, {}, False  # cache files of another shape: recompute
        settled = settle(ctx, fams, inst.search.max_batch_per_gpu, known, report, samples, drafts)
    if settled.updated:
        diskcache.store(name, settled.known)
        if not complete:
            diskcache.store(samples_name, samples)
    else:
        timing.cached += 1
    timing.exact += settled.exact
    return list(settled.best.values())


def options(
    prob: Problem,
    banned: frozenset[str],
    timing: Timing,
    derate: dict[str, float] | None = None,
) -> list[Option]:
    """The fastest family of each group, per workload, with its capacity (times its factor in
    ``derate``, by family key)."""
    deadline.phase("capacities")
    start = time.perf_counter()
    out = []
    factor = derate or {}
    for wl in prob.workloads:
        out += [
            Option(f, replace(c, rate=c.rate * factor.get(f.key, 1.0)))
            for f, c in _capacities(prob, wl.name, banned, timing)
        ]
    timing.capacities += time.perf_counter() - start
    return out


def fastest_decode(prob: Problem, wl_name: str) -> tuple[float, Family] | None:
    """The lowest TPOT any decode-capable family reaches at batch 1 (memory held)."""
    ctx = prob.contexts[wl_name]
    best = None
    for f in families(ctx.model, prob.instance, ctx.workload, prob.modes):
        deadline.check()
        if f.kind == RoleKind.PREFILL or memory_batch(ctx, f, 1) < 1:
            continue
        role = replace(f.role, batch_per_gpu=1)
        try:
            t = decode_step_seconds(ctx, role, 1) / accepted_tokens(
                role.mtp, ctx.workload.mtp_acceptance
            )
        except InputError:
            continue
        if best is None or t < best[0]:
            best = (t, f)
    return best


def explain(prob: Problem, opts: list[Option]) -> str:
    """Why no plan exists, in the user's terms, with the closest achievable numbers."""
    for wl in prob.workloads:
        mine = [o for o in opts if o.family.workload == wl.name]
        serving = [o for o in mine if o.family.kind != RoleKind.PREFILL]
        slo = wl.slo
        if not serving:
            best = fastest_decode(prob, wl.name)
            if best is None:
                return (
                    f"{wl.name}: no shape of {', '.join(prob.modes)} holds the model in GPU "
                    "memory with one sequence per GPU"
                )
            t, f = best
            return (
                f"{wl.name}: no plan meets TPOT {slo.tpot * 1e3:g} ms at p{slo.percentile:g} "
                f"with TTFT {slo.ttft * 1e3:g} ms; the fastest shape reaches "
                f"{t * 1e3:.1f} ms at batch 1 with {describe(f)}"
            )
        needs_prefill = all(o.family.kind == RoleKind.DECODE for o in serving)
        if needs_prefill and not any(o.family.kind == RoleKind.PREFILL for o in mine):
            return (
                f"{wl.name}: no prefill shape meets TTFT {slo.ttft * 1e3:g} ms at "
                f"p{slo.percentile:g} (and no aggregated shape serves it)"
            )
    smallest = min(_smallest_plan(prob, opts, wl.name) for wl in prob.workloads)
    if prob.objective == "cost":
        return (
            f"the demand {_demand(prob)} does not fit the instance's "
            f"{sum(p.gpus for p in prob.instance.pools)} GPUs under the SLOs"
        )
    return (
        f"no plan fits the budget of {prob.budget} GPUs (and the pools' NVLink domains); the "
        f"smallest plan that serves every workload needs {smallest} GPUs"
    )


def _demand(prob: Problem) -> str:
    return ", ".join(f"{w}={r:g} req/s" for w, r in prob.traffic.demand.items())


def _smallest_plan(prob: Problem, opts: list[Option], wl_name: str) -> int:
    mine = [o for o in opts if o.family.workload == wl_name]
    agg = [o.family.gpus for o in mine if o.family.kind == RoleKind.AGG]
    dec = [o.family.gpus for o in mine if o.family.kind == RoleKind.DECODE]
    pre = [o.family.gpus for o in mine if o.family.kind == RoleKind.PREFILL]
    pd = min(dec) + min(pre) if dec and pre else math.inf
    return int(min([*agg, pd]))


def describe(f: Family) -> str:
    r, s = f.role, f.role.shape
    text = f"attention TP{s.attn_tp} x DP{s.attn_dp}, MoE TP{s.moe_tp} x EP{s.moe_ep}"
    if r.afd is not None:
        a = r.afd
        text = (
            f"AFD M={a.attention_gpus}, N={a.ffn_gpus}, K={r.micro_batches}, {a.dispatch}: " + text
        )
    return text + (f", MTP {r.mtp}" if r.mtp else "")


def solve_once(
    prob: Problem,
    banned: frozenset[str],
    timing: Timing,
    time_limit: float,
    rel_gap: float,
    derate: dict[str, float] | None = None,
):
    opts = options(prob, banned, timing, derate)
    if not opts:
        raise InfeasibleError(explain(prob, opts))
    start = time.perf_counter()
    model = build(
        opts,
        prob.instance,
        prob.traffic,
        prob.resource(),
        minimise_resource=prob.objective == "cost",
    )
    try:
        solution = _milp(Solver(model, rel_gap), prob.budget, prob.ratio, time_limit)
    except NoPlanError:
        raise InfeasibleError(explain(prob, opts)) from None
    finally:
        timing.milp += time.perf_counter() - start
    if not solution.replicas or (prob.objective != "cost" and solution.tokens_per_s <= 0):
        raise InfeasibleError(explain(prob, opts))
    return solution


def _milp(solver: Solver, budget: int, ratio: bool, time_limit: float) -> Solution:
    """The solver's answer within ``time_limit`` and what is left of the command's time."""
    deadline.phase("MILP")
    try:
        return solver.solve(budget, ratio, min(time_limit, deadline.remaining()))
    except TimeLimitError as err:
        if deadline.remaining() <= 0:
            raise deadline.expired() from None
        raise OutOfTimeError(f"{err}; raise --time-limit") from None


def solve(
    prob: Problem,
    time_limit: float = 60.0,
    rel_gap: float = 1e-6,
    replay: Replayer | None = None,
    simulate: Replayer | None = None,
) -> Outcome:
    """The best plan, checked by the evaluator and (when given) the replay, then the simulation;
    roles the replay finds breaking an SLO have their families withdrawn, roles the simulation
    blames have their families' capacities derated by ``DERATE``, and the MILP runs again (at
    most ``MAX_ROUNDS`` rounds)."""
    timing = Timing()
    banned: frozenset[str] = frozenset()
    derate: dict[str, float] = {}
    rounds: list[Round] = []
    warnings: list[str] = []
    reports: dict[str, object] = {}
    checks = [
        (name, check, remedy)
        for name, check, remedy in (
            ("replay", replay, "withdrawn"),
            ("simulation", simulate, "derated"),
        )
        if check is not None
    ]
    for _ in range(MAX_ROUNDS):
        try:
            solution = solve_once(prob, banned, timing, time_limit, rel_gap, derate)
        except OutOfTimeError:
            if not rounds:
                raise
            warnings.append(
                f"the time limit ran out before the MILP could run again: this is the previous "
                f"round's plan, which the {rounds[-1].checker} found breaking an SLO"
            )
            break
        plan = plan_from(solution, prob.instance, prob.framework)
        deadline.phase("evaluator check")
        start = time.perf_counter()
        evaluated = evaluate_context(prob.contexts, plan)
        timing.evaluate += time.perf_counter() - start
        if not evaluated.feasible:
            broken = "; ".join(f.reason for f in evaluated.flags if not f.ok)
            warnings.append(f"the evaluator rejects the plan the MILP chose: {broken}")
        again = False
        for name, check, remedy in checks:
            deadline.phase(f"{name} check")
            start = time.perf_counter()
            try:
                holds, failing, lines, reports[name] = check(plan, evaluated)
            except OutOfTimeError:
                warnings.append(
                    f"the {name} did not finish within --time-limit: the plan is not checked by it"
                )
                break
            finally:
                seconds = time.perf_counter() - start
                if name == "replay":
                    timing.replay += seconds
                else:
                    timing.simulate += seconds
            keys = _family_keys(plan, solution, failing)
            rounds.append(Round(name, holds, keys, lines, remedy))
            if not holds and keys:
                if remedy == "withdrawn":
                    banned = banned | frozenset(keys)
                else:
                    derate = {**derate, **{k: derate.get(k, 1.0) * DERATE for k in keys}}
                again = True
                break
        if not again:
            break
    else:
        last = rounds[-1].checker
        warnings.append(f"the {last} still finds an SLO broken after {MAX_ROUNDS} rounds")
    st = solution.stats
    if not st.optimal:
        warnings.append(f"solver stopped at its time limit ({st.status}); gap {st.gap:.2%}")
    if evaluated.unmeasured_ops():
        warnings.append(
            "priced without measurements (calibrated link model on the instance's links, no "
            f"matching NCCL/DeepEP table): {', '.join(evaluated.unmeasured_ops())}"
        )
    return Outcome(
        plan,
        solution,
        evaluated,
        timing,
        rounds,
        warnings,
        reports.get("replay"),
        reports.get("simulation"),
    )


def _family_keys(plan: Plan, solution: Solution, role_ids: list[str]) -> list[str]:
    """The families behind the plan's roles with these ids (roles keep the solution's order)."""
    keys = [o.key for o in chosen_order(solution)]
    ids = [r.id for r in plan.roles]
    return [keys[ids.index(i)] for i in role_ids if i in ids]


def solve_budgets(
    prob: Problem, budgets: list[int], time_limit: float = 60.0, rel_gap: float = 1e-6
) -> list[Outcome | InfeasibleError | OutOfTimeError]:
    """The best plan per GPU budget from one model (capacities settled once, the budget a
    mutable parameter of the same HiGHS instance), each checked by the evaluator; a budget the
    time limit did not reach gets the OutOfTimeError."""
    timing = Timing()
    opts = options(prob, frozenset(), timing)
    if not opts:
        return [InfeasibleError(explain(prob, opts)) for _ in budgets]
    cost = prob.objective == "cost"
    model = build(opts, prob.instance, prob.traffic, prob.resource(), minimise_resource=cost)
    solver = Solver(model, rel_gap)
    out: list[Outcome | InfeasibleError | OutOfTimeError] = []
    for budget in budgets:
        sized = replace(prob, budget=budget)
        start = time.perf_counter()
        try:
            solution = _milp(solver, budget, prob.ratio, time_limit)
        except NoPlanError:
            out.append(InfeasibleError(explain(sized, opts)))
            continue
        except OutOfTimeError as err:
            out.append(err)
            continue
        finally:
            timing.milp += time.perf_counter() - start
        if not solution.replicas:
            out.append(InfeasibleError(explain(sized, opts)))
            continue
        plan = plan_from(solution, prob.instance, prob.framework)
        evaluated = evaluate_context(prob.contexts, plan)
        warnings = [] if evaluated.feasible else ["the evaluator rejects the plan"]
        out.append(Outcome(plan, solution, evaluated, replace(timing), warnings=warnings))
    return out
