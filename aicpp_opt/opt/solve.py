"""``solve``: build the options for the allowed modes, solve the MILP, turn its choice into a
plan, and re-check the plan with the evaluator on the measured grids and, when given, the
network replay. When a check breaks an SLO the PWL model allowed, the optimiser raises its
corrections to what the check observed and solves again (a bounded loop, each round
reported). Infeasible problems are explained with the closest achievable numbers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from aicpp_opt.errors import InfeasibleError, InputError
from aicpp_opt.evaluate.evaluation import Evaluation, evaluate_context, prefill_memory
from aicpp_opt.model.steps import prefill_step
from aicpp_opt.opt import space
from aicpp_opt.opt.build import plan_from
from aicpp_opt.opt.milp import (
    DecodeOption,
    NoPlanError,
    PrefillOption,
    SolverStats,
    TimeLimitError,
    solve_milp,
)
from aicpp_opt.opt.options import (
    Corrections,
    agg_feasible_prefix,
    agg_options,
    decode_point,
    pd_decode_options,
    planning_kv_domains,
    prefill_options,
    uncovered,
)
from aicpp_opt.opt.problem import Problem, add_gpus, fits_budget, resource_weights
from aicpp_opt.opt.space import Candidate
from aicpp_opt.spec.plan import Plan

MAX_ROUNDS = 6


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
    solver: SolverStats
    predicted: Evaluation
    evaluated: Evaluation
    rounds: list[Round] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replay: object = None


def options(prob: Problem, corr: Corrections) -> tuple[list[DecodeOption], list[PrefillOption]]:
    """MILP options of every allowed mode (prefill options only when a P/D mode is allowed)."""
    ctx, inst, model = prob.pwl, prob.instance, prob.pwl.model
    max_b = inst.search.max_batch_per_gpu
    dec: list[DecodeOption] = []
    for mode in prob.modes:
        cands = space.candidates(mode, model, inst)
        if mode in space.SELF_PREFILL:
            dec += agg_options(ctx, cands, corr, max_b, prob.budget)
        else:
            dec += pd_decode_options(ctx, cands, corr, max_b)
    pre: list[PrefillOption] = []
    if set(prob.modes) - set(space.SELF_PREFILL):
        roles = space.prefill_candidates(model, inst, prob.workload.new_prompt_tokens)
        pre = prefill_options(prob.measured, roles, corr, planning_kv_domains(ctx), prob.budget)
    return dec, pre


def explain(prob: Problem, corr: Corrections, dec: list[DecodeOption], pre: list) -> str:
    """Why no plan exists, in the user's terms, with the closest achievable numbers (and the
    cost-table gaps that excluded shapes, if any)."""
    reason = _explain(prob, corr, dec, pre)
    gaps = sorted(uncovered(prob.pwl))
    if gaps:
        more = f" (+{len(gaps) - 1} more)" if len(gaps) > 1 else ""
        reason += f"; some shapes are outside the measured cost tables: {gaps[0]}{more}"
    return reason


def _explain(prob: Problem, corr: Corrections, dec: list[DecodeOption], pre: list) -> str:
    wl, ctx = prob.workload, prob.pwl
    slo = wl.slo
    if not dec:
        best = fastest_decode(prob, corr)
        if best is None:
            return (
                f"no plan of {', '.join(prob.modes)} fits the budget of {prob.budget} GPUs "
                "(GPU memory, TTFT and a prefill role that can feed the decode side)"
            )
        tpot, cand = best
        return (
            f"no plan reaches TPOT {slo.tpot * 1e3:g} ms; the fastest {cand.mode} plan reaches "
            f"{tpot * 1e3:.1f} ms at batch 1 with {_describe(cand.role)}"
        )
    fitting = [o for o in dec if fits_budget(prob, o.gpus)]
    if not fitting:
        smallest = min(sum(o.gpus.values()) for o in dec)
        return (
            f"no shape that holds the model and meets TPOT {slo.tpot * 1e3:g} ms fits the "
            f"budget of {prob.budget} GPUs; the smallest needs {smallest} GPUs"
        )
    smallest = min(sum(o.gpus.values()) for o in fitting)
    if not pre and not any(o.self_prefill for o in fitting):
        roles = space.prefill_candidates(ctx.model, prob.instance, wl.new_prompt_tokens)
        held = [r for r in roles if all(m.fits for m in prefill_memory(prob.measured, r).values())]
        room = prob.budget - smallest
        if not any(r.shape.attention_gpus <= room for r in held):
            need = min((r.shape.attention_gpus for r in held), default=None)
            return (
                f"no prefill shape fits beside the smallest decode shape ({smallest} GPUs) in "
                f"the budget of {prob.budget} GPUs"
                + (f"; the smallest prefill that holds the model needs {need} GPUs" if need else "")
            )
        fastest = min(
            prefill_step(prob.measured, r).total for r in held if r.shape.attention_gpus <= room
        )
        return (
            f"no prefill shape reaches TTFT {slo.ttft * 1e3:g} ms; the fastest prefill takes "
            f"{fastest * corr.ttft * 1e3:.1f} ms before any queueing or KV transfer"
        )
    parts = f"smallest decode shape: {smallest} GPUs"
    if pre:
        parts += f", smallest prefill role meeting TTFT: {min(sum(p.gpus.values()) for p in pre)}"
        parts += " GPUs"
    return (
        f"no combination of shapes fits the budget of {prob.budget} GPUs while meeting TTFT "
        f"{slo.ttft * 1e3:g} ms and TPOT {slo.tpot * 1e3:g} ms ({parts})"
    )


def _describe(role) -> str:
    s = role.shape
    text = f"attention TP{s.attn_tp} x DP{s.attn_dp}, MoE TP{s.moe_tp} x EP{s.moe_ep}"
    if role.afd is not None:
        a = role.afd
        k = role.micro_batches
        text = f"M={a.attention_gpus}, N={a.ffn_gpus}, K={k}, {a.dispatch}, " + text
    return text


def fastest_decode(prob: Problem, corr: Corrections) -> tuple[float, Candidate] | None:
    """The lowest TPOT any plan of the problem's modes can reach with TTFT, memory and the
    budget held, and its decode shape: every shape at batch 1, aggregated ones with as many
    replicas as fit (their TTFT queue pools over replicas), P/D ones with one replica and a
    prefill role that fits the rest of the budget and can feed it. None if no shape can."""
    ctx, inst, model, wl = prob.pwl, prob.instance, prob.pwl.model, prob.workload
    relaxed = replace(ctx, workload=replace(wl, slo=replace(wl.slo, tpot=math.inf)))
    prefill: list[PrefillOption] = []
    if set(prob.modes) - set(space.SELF_PREFILL):
        roles = space.prefill_candidates(model, inst, wl.new_prompt_tokens)
        prefill = prefill_options(prob.measured, roles, corr, planning_kv_domains(ctx), prob.budget)

    def fed(cand: Candidate, point) -> bool:
        if cand.self_prefill:
            n = prob.budget // cand.total_gpus
            return n >= 1 and bool(agg_feasible_prefix(ctx, cand, [point], n, corr))
        rate = point.tok_s / wl.osl
        return any(
            p.min_rate <= rate <= p.max_rate and fits_budget(prob, add_gpus(cand.gpu_map, p.gpus))
            for p in prefill
        )

    best = None
    for mode in prob.modes:
        for cand in space.candidates(mode, model, inst):
            if not fits_budget(prob, cand.gpu_map):
                continue
            p = decode_point(relaxed, cand, 1, corr)
            if p is not None and (best is None or p.tpot_s < best[0]) and fed(cand, p):
                best = (p.tpot_s, cand)
    return best


def solve_once(
    prob: Problem, corr: Corrections, time_limit: float, rel_gap: float = 1e-6
) -> tuple[Plan, SolverStats]:
    start = time.perf_counter()
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
                rel_gap=rel_gap,
            )
        except TimeLimitError as err:
            raise InputError("--time-limit", f"{err}; raise it") from None
        except NoPlanError:
            raise InfeasibleError(explain(prob, corr, dec, pre)) from None
        plan = plan_from(result, prob.instance, prob.pwl, corr)
        if plan is not None:
            return plan, replace(result.stats, seconds=time.perf_counter() - start)
        # the GPU counts fit but the blocks do not pack into the domains: one GPU less
        pool = max(result.gpus, key=result.gpus.get)
        capacity[pool] = result.gpus[pool] - 1
    raise InfeasibleError("no plan packs into the scale-up domains of the instance")


def tighten(corr: Corrections, predicted: Checked, checked: Checked) -> Corrections:
    """Raise each correction to what the check observed against the uncorrected PWL model
    (never lower one): decode step time, prefill service time, and the decode side's request
    pull at the plan's batch (so prefill is sized for the faster of the two views)."""
    return Corrections(
        tpot=max(corr.tpot, checked.tpot / predicted.tpot),
        ttft=max(corr.ttft, checked.prefill / predicted.prefill),
        rate=max(corr.rate, 1.001 * checked.decode_rps * corr.tpot / predicted.decode_rps),
    )


@dataclass(frozen=True)
class Checked:
    """What a check (the measured evaluator or a replay) found for a plan."""

    checker: str
    tpot: float
    ttft: float
    prefill: float
    decode_rps: float
    feasible: bool
    report: object = None


def evaluator_check(ev: Evaluation, checker: str) -> Checked:
    return Checked(
        checker,
        ev.tpot.percentile,
        ev.ttft.percentile,
        ev.ttft.prefill,
        ev.flow.decode_capacity,
        ev.feasible,
        ev,
    )


Replayer = Callable[[Plan, Evaluation], Checked]


def solve(
    prob: Problem,
    time_limit: float = 60.0,
    method: str = "milp",
    replay: Replayer | None = None,
    rel_gap: float = 1e-6,
) -> Outcome:
    """Find the best plan (MILP, or the enumeration oracle), then check it on the measured
    grids and, when ``replay`` is given, on the network replay; while a check breaks an SLO,
    tighten the model by what it found and solve again (at most ``MAX_ROUNDS`` rounds)."""
    if method == "enumerate":
        from aicpp_opt.opt.enumerate import enumerate_once as find
    else:
        find = solve_once
    corr = Corrections()
    rounds: list[Round] = []
    warnings: list[str] = []
    for _ in range(MAX_ROUNDS):
        plan, stats = find(prob, corr, time_limit, rel_gap)
        predicted = evaluate_context(prob.pwl, plan, prefill_ctx=prob.measured)
        evaluated = evaluate_context(prob.measured, plan)
        pred = evaluator_check(predicted, "MILP (PWL)")
        checks = [evaluator_check(evaluated, "evaluator (measured grids)")]
        if replay is not None and checks[0].feasible:
            checks.append(replay(plan, evaluated))
        for c in checks:
            rounds.append(Round(corr, pred.tpot, c.tpot, pred.ttft, c.ttft, c.feasible, c.checker))
        broken = next((c for c in checks if not c.feasible), None)
        if broken is None:
            break
        corr = tighten(corr, pred, broken)
    else:
        warnings.append(f"a check still breaks an SLO after {MAX_ROUNDS} rounds")
    if not stats.optimal:
        warnings.append(
            f"solver stopped at its time limit ({stats.status}); best plan found, "
            f"gap {stats.gap:.2%}"
        )
    replayed = checks[-1].report if replay is not None and len(checks) > 1 else None
    return Outcome(plan, stats, predicted, evaluated, rounds, warnings, replayed)
