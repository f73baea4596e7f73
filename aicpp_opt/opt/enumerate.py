"""The exhaustive oracle (``--method enumerate``): every shape of every allowed mode, every
replica count and every prefill shape and count, no dominance pruning, no MILP. Each
combination's best rate follows from the same role-level evaluator functions the MILP's options
come from; the winner is rebuilt as a plan and scored by the evaluator. Slow by design: it is
the test oracle for the MILP's exactness and the baseline of its speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from aicpp_opt.errors import InfeasibleError
from aicpp_opt.opt import space
from aicpp_opt.opt.build import build_plan
from aicpp_opt.opt.milp import TIE_BREAK_PER_GPU, SolverStats
from aicpp_opt.opt.options import (
    Corrections,
    DecodeChoice,
    _grid,
    agg_feasible_prefix,
    curve,
    planning_kv_domains,
    prefill_rates,
)
from aicpp_opt.opt.problem import Problem, add_gpus, fits_budget, resource_weights
from aicpp_opt.spec.plan import Plan


@dataclass
class Best:
    value: float
    gpus: int
    choice: DecodeChoice
    replicas: int
    tok_s: float
    prefill: object


def _score(tok: float, gpus: dict[str, int], weights: dict[str, float] | None) -> float:
    """The objective: tokens/s, or tokens/s per unit of resource."""
    if not weights:
        return tok - TIE_BREAK_PER_GPU * sum(gpus.values())
    return tok / sum(weights[p] * g for p, g in gpus.items())


def enumerate_once(
    prob: Problem, corr: Corrections, time_limit: float = 0.0, rel_gap: float = 0.0
) -> tuple[Plan, SolverStats]:
    """The best plan over the whole discrete space, with how many combinations were scored."""
    start = time.perf_counter()
    plan, _, combos = enumerate_plans(prob, corr)
    stats = SolverStats(
        "enumerate", "exhaustive", True, 0.0, time.perf_counter() - start, combos, 0
    )
    return plan, stats


def enumerate_plans(prob: Problem, corr: Corrections | None = None) -> tuple[Plan, float, int]:
    """The best plan over the whole discrete space, its objective value and the number of
    combinations scored."""
    corr = corr or Corrections()
    combos = 0
    ctx, inst, model = prob.pwl, prob.instance, prob.pwl.model
    grid = _grid(inst.search.max_batch_per_gpu)
    osl, weights = prob.workload.osl, resource_weights(prob)
    prefill = []
    if set(prob.modes) - set(space.SELF_PREFILL):
        roles = space.prefill_candidates(model, inst, prob.workload.new_prompt_tokens)
        prefill = list(
            prefill_rates(prob.measured, roles, corr, planning_kv_domains(ctx), prob.budget, False)
        )
    lo = np.array([p.min_rate for p in prefill])
    hi = np.array([p.max_rate for p in prefill])
    best: Best | None = None

    def offer(value, gpus, choice, n, tok, pre):
        nonlocal best, combos
        combos += 1
        g = sum(gpus.values())
        if (
            best is None
            or value > best.value * (1 + 1e-12)
            or (abs(value - best.value) <= 1e-12 * abs(value) and g < best.gpus)
        ):
            best = Best(value, g, choice, n, tok, pre)

    for mode in prob.modes:
        for cand in space.candidates(mode, model, inst):
            points = curve(ctx, cand, corr, grid)
            if not points:
                continue
            for n in range(1, prob.budget // cand.total_gpus + 1):
                gpus = add_gpus({}, cand.gpu_map, n)
                if not fits_budget(prob, gpus):
                    break
                if cand.self_prefill:
                    ok = agg_feasible_prefix(ctx, cand, points, n, corr)
                    if ok:
                        tok = n * ok[-1].tok_s
                        choice = DecodeChoice(cand, tuple(ok), (n, n))
                        offer(_score(tok, gpus, weights), gpus, choice, n, tok, None)
                    continue
                dec_rate = n * points[-1].tok_s / osl
                for i, p in enumerate(prefill):
                    total = add_gpus(gpus, p.gpus)
                    if not fits_budget(prob, total):
                        continue
                    rate = min(dec_rate, hi[i])
                    if rate < lo[i]:
                        continue
                    tok = rate * osl
                    choice = DecodeChoice(cand, tuple(points))
                    offer(_score(tok, total, weights), total, choice, n, tok, p)
    if best is None:
        raise InfeasibleError("enumeration found no feasible plan")
    plan = build_plan(
        inst,
        ctx,
        corr,
        best.choice,
        best.replicas,
        best.tok_s,
        best.prefill.payload if best.prefill is not None else None,
    )
    if plan is None:
        raise InfeasibleError("the best enumerated plan does not pack into the domains")
    return plan, best.value, combos
