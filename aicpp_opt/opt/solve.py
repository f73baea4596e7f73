"""``solve``: build the options for the allowed modes, solve the MILP, turn its choice into a
plan, and re-check the plan with the evaluator on the measured grids. When the measured
numbers break an SLO the PWL model allowed, the optimiser scales the modelled time that was
optimistic by the observed ratio and solves again (a bounded loop, each round reported)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from aicpp_opt.errors import InfeasibleError, InputError
from aicpp_opt.opt import space
from aicpp_opt.opt.build import plan_from
from aicpp_opt.opt.milp import DecodeOption, MilpResult, NoPlanError, PrefillOption, solve_milp
from aicpp_opt.opt.options import (
    Corrections,
    agg_options,
    decode_point,
    pd_decode_options,
    planning_kv_link,
    prefill_options,
)
from aicpp_opt.perf.context import PerfContext, build_context
from aicpp_opt.perf.evaluate import Evaluation, evaluate_context
from aicpp_opt.perf.step import prefill_time
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan
from aicpp_opt.spec.workload import Workload

MODES = ("agg", "pd", "afd+pd")
OBJECTIVES = ("throughput", "per-gpu", "per-dollar")
MAX_ROUNDS = 4


@dataclass
class Round:
    """One pass of the closed loop: the corrections used and what the check found."""

    corrections: Corrections
    predicted_tpot: float
    checked_tpot: float
    predicted_ttft: float
    checked_ttft: float
    holds: bool
    checker: str


@dataclass
class Outcome:
    plan: Plan
    milp: MilpResult
    predicted: Evaluation
    evaluated: Evaluation
    rounds: list[Round] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """Everything fixed for one solve: instance, workload, contexts, modes, budget, objective."""

    instance: Instance
    workload: Workload
    modes: tuple[str, ...]
    budget: int
    objective: str
    pwl: PerfContext
    measured: PerfContext

    @property
    def capacity(self) -> dict[str, int]:
        return {p.name: p.gpus for p in self.instance.pools}


def make_problem(
    instance: Instance,
    workload: Workload,
    modes: tuple[str, ...] | None = None,
    budget: int | None = None,
    objective: str | None = None,
) -> Problem:
    modes = tuple(modes or instance.search.modes)
    for m in modes:
        if m not in MODES:
            raise InputError("--mode", f"unknown mode {m!r}; use auto or one of {', '.join(MODES)}")
    total = sum(p.gpus for p in instance.pools)
    if budget is not None and budget < 1:
        raise InputError("--budget", f"must be at least 1 GPU, got {budget}")
    objective = objective or instance.search.objective.replace("_", "-")
    if objective not in OBJECTIVES:
        raise InputError("--objective", f"unknown {objective!r}; use {', '.join(OBJECTIVES)}")
    if objective == "per-dollar":
        missing = [p.name for p in instance.pools if p.cost_per_gpu_hour is None]
        if missing:
            raise InputError(
                f"cluster.pools[{missing[0]}].cost_per_gpu_hour",
                "is required for --objective per-dollar",
            )
    pwl = build_context(instance, workload, surrogate="pwl")
    measured = build_context(instance, workload, model=pwl.model, costs=pwl.costs)
    return Problem(instance, workload, modes, min(budget or total, total), objective, pwl, measured)


def options(prob: Problem, corr: Corrections) -> tuple[list[DecodeOption], list[PrefillOption]]:
    """MILP options of every allowed mode (prefill options only when a P/D mode is allowed)."""
    ctx, inst, model = prob.pwl, prob.instance, prob.pwl.model
    max_b = inst.search.max_batch_per_gpu
    dec: list[DecodeOption] = []
    if "agg" in prob.modes:
        dec += agg_options(ctx, space.agg_candidates(model, inst), corr, max_b, prob.budget)
    if "pd" in prob.modes:
        dec += pd_decode_options(ctx, space.decode_candidates(model, inst), corr, max_b)
    if "afd+pd" in prob.modes:
        dec += pd_decode_options(ctx, space.afd_candidates(model, inst), corr, max_b)
    pre: list[PrefillOption] = []
    if {"pd", "afd+pd"} & set(prob.modes):
        roles = space.prefill_candidates(model, inst, prob.workload.new_prompt_tokens)
        pre = prefill_options(ctx, roles, corr, planning_kv_link(ctx), prob.budget)
    return dec, pre


def resource_weights(prob: Problem) -> dict[str, float] | None:
    if prob.objective == "per-gpu":
        return {p.name: 1.0 for p in prob.instance.pools}
    if prob.objective == "per-dollar":
        return {p.name: float(p.cost_per_gpu_hour) for p in prob.instance.pools}
    return None


def explain(prob: Problem, corr: Corrections, dec: list[DecodeOption], pre: list) -> str:
    """Why no plan exists, in the user's terms, with the closest achievable numbers."""
    wl, ctx = prob.workload, prob.pwl
    slo = wl.slo
    if not dec:
        best = _fastest_decode(prob, corr)
        if best is None:
            return (
                f"no shape of {', '.join(prob.modes)} fits in GPU memory within the budget of "
                f"{prob.budget} GPUs"
            )
        tpot, cand = best
        return (
            f"no plan reaches TPOT {slo.tpot * 1e3:g} ms; the fastest {cand.mode} shape reaches "
            f"{tpot * 1e3:.1f} ms at batch 1 with {_describe(cand.role)}"
        )
    if not pre and any(not o.self_prefill for o in dec):
        ttfts = [
            prefill_time(ctx, r.pool, r.shape, r.batch, r.chunk_tokens).total * corr.ttft
            for r in space.prefill_candidates(ctx.model, prob.instance, wl.new_prompt_tokens)
            if r.shape.attention_gpus <= prob.budget
        ]
        if ttfts:
            return (
                f"no prefill shape reaches TTFT {slo.ttft * 1e3:g} ms; the fastest prefill "
                f"takes {min(ttfts) * 1e3:.1f} ms before any queueing or KV transfer"
            )
    smallest = min(sum(o.gpus.values()) for o in dec)
    return (
        f"no combination of shapes fits the budget of {prob.budget} GPUs while meeting TTFT "
        f"{slo.ttft * 1e3:g} ms and TPOT {slo.tpot * 1e3:g} ms (smallest decode shape: "
        f"{smallest} GPUs)"
    )


def _describe(role) -> str:
    s = role.shape
    text = f"attention TP{s.attn_tp} x DP{s.attn_dp}, MoE TP{s.moe_tp} x EP{s.moe_ep}"
    if role.afd is not None:
        a = role.afd
        text = f"M={a.attention_gpus}, N={a.ffn_gpus}, K={a.micro_batches}, {a.dispatch}, " + text
    return text


def _fastest_decode(prob: Problem, corr: Corrections):
    """The lowest TPOT at batch 1 over shapes that fit in memory (ignoring the SLO)."""
    ctx, inst, model = prob.pwl, prob.instance, prob.pwl.model
    relaxed = replace(
        ctx, workload=replace(prob.workload, slo=replace(prob.workload.slo, tpot=math.inf))
    )
    best = None
    gens = {
        "agg": space.agg_candidates,
        "pd": space.decode_candidates,
        "afd+pd": space.afd_candidates,
    }
    for mode in prob.modes:
        for cand in gens[mode](model, inst):
            if cand.total_gpus > prob.budget:
                continue
            p = decode_point(relaxed, cand, 1, corr)
            if p is not None and (best is None or p.step_s < best[0]):
                best = (p.step_s, cand)
    return best


def solve_once(prob: Problem, corr: Corrections, time_limit: float) -> tuple[Plan, MilpResult]:
    dec, pre = options(prob, corr)
    if not dec:
        raise InfeasibleError(explain(prob, corr, dec, pre))
    capacity = dict(prob.capacity)
    for _ in range(8):
        try:
            result = solve_milp(
                dec,
                pre,
                capacity,
                prob.budget,
                prob.workload.osl,
                resource_weights(prob),
                time_limit=time_limit,
            )
        except NoPlanError:
            raise InfeasibleError(explain(prob, corr, dec, pre)) from None
        plan = plan_from(result, prob.instance, prob.pwl, corr)
        if plan is not None:
            return plan, result
        # the GPU counts fit but the blocks do not pack into the domains: one GPU less
        pool = max(result.gpus, key=result.gpus.get)
        capacity[pool] = result.gpus[pool] - 1
    raise InfeasibleError("no plan packs into the scale-up domains of the instance")


def tighten(corr: Corrections, predicted: Evaluation, checked: Evaluation) -> Corrections:
    """Scale every modelled quantity the check found worse than predicted by the observed
    ratio (never loosen): decode step, prefill service, and the decode side's request pull."""
    pf, cf = predicted.flow, checked.flow
    return Corrections(
        tpot=corr.tpot * max(1.0, checked.tpot / predicted.tpot),
        ttft=corr.ttft * max(1.0, checked.ttft.prefill / predicted.ttft.prefill),
        rate=corr.rate * max(1.0, cf.decode_capacity / pf.decode_capacity * 1.001),
    )


def solve(prob: Problem, time_limit: float = 60.0, corr: Corrections | None = None) -> Outcome:
    """Solve, then re-check on the measured grids; tighten and re-solve while an SLO breaks."""
    corr = corr or Corrections()
    rounds: list[Round] = []
    warnings: list[str] = []
    for _ in range(MAX_ROUNDS):
        plan, milp = solve_once(prob, corr, time_limit)
        predicted = evaluate_context(prob.pwl, plan)
        evaluated = evaluate_context(prob.measured, plan)
        holds = evaluated.feasible
        rounds.append(
            Round(
                corr,
                predicted.tpot,
                evaluated.tpot,
                predicted.ttft.total,
                evaluated.ttft.total,
                holds,
                "evaluator (measured grids)",
            )
        )
        if holds:
            break
        corr = tighten(corr, predicted, evaluated)
    else:
        warnings.append(f"the measured evaluation still breaks an SLO after {MAX_ROUNDS} rounds")
    if not milp.optimal:
        warnings.append(
            f"solver stopped at its time limit ({milp.status}); best plan found, gap {milp.gap:.2%}"
        )
    return Outcome(plan, milp, predicted, evaluated, rounds, warnings)
