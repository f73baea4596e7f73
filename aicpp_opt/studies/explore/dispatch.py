"""``dispatch``: how AFD units move tokens between attention and FFN GPUs. The best AFD plan
is fixed and run with each strategy (``all_to_all``, ``direct``, ``allgather_reducescatter``)
on the evaluator and on the network replay: the analytic model prices ``all_to_all`` exactly
like ``direct`` (each token once to each FFN GPU holding one of its experts), the replay tells
them apart (all_to_all waits for the whole set's exchange). Beside it, the solver's best plan
when only one strategy is allowed (``Problem.keep``; the catalog has ``direct`` and
``allgather_reducescatter``). Per layer class: under AFD the dense layers run on the attention
GPUs, so only the MoE layers have a dispatch to choose."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from aicpp_opt.evaluate.evaluation import evaluate_context
from aicpp_opt.replay.adapter import replay_plan
from aicpp_opt.search.catalog import AFD_DISPATCH
from aicpp_opt.spec.enums import Dispatch, values
from aicpp_opt.spec.model import load_model
from aicpp_opt.studies.explore.placement import LINK_COLUMNS, link_columns
from aicpp_opt.studies.explore.points import SOLVE_COLUMNS, Keep, SolvePoint, plan_columns
from aicpp_opt.studies.explore.setup import Setup, study_instance
from aicpp_opt.studies.explore.study import Case, cite

NAME = "dispatch"
TITLE = "AFD dispatch strategies"
QUESTION = (
    "For AFD units, what do all_to_all, direct and allgather/reduce-scatter dispatch cost per "
    "decode step, on the analytic model and on the network replay, and which does the solver "
    "pick when only one is allowed?"
)
FIXED, SOLVED = "fixed plan", "solved"
REPLAY_COLUMNS = ("replay_step_ms", "replay_tpot_mean_ms", "replay_throughput_tok_s")
COLUMNS = SOLVE_COLUMNS + ("dispatch_forced", *LINK_COLUMNS, *REPLAY_COLUMNS)


@dataclass(frozen=True)
class DispatchPoint:
    """Solve ``base`` (AFD modes), then evaluate and replay its plan with each dispatch."""

    base: SolvePoint

    def labels(self) -> dict[str, Any]:
        return self.base.labels()

    def run(self) -> list[dict[str, Any]]:
        start = time.perf_counter()
        labels = self.labels()
        got = self.base.attempt(labels, start)
        if isinstance(got, list):
            return got
        prob, out = got
        rows = []
        for dispatch in values(Dispatch):
            roles = tuple(
                replace(r, afd=replace(r.afd, dispatch=Dispatch(dispatch)))
                if r.afd is not None
                else r
                for r in out.plan.roles
            )
            plan = replace(out.plan, roles=roles)
            ev = evaluate_context(prob.contexts, plan)
            rep = replay_plan(plan, prob.instance, routing=prob.routing, fold=True)
            afd_role = next(r for r in plan.roles if r.afd is not None)
            got = rep.role(afd_role.id)
            rows.append(
                labels
                | {"dispatch_forced": dispatch}
                | link_columns(ev, "A<->F")
                | plan_columns(prob.instance, plan, ev)
                | {
                    "replay_step_ms": got.step_s * 1e3,
                    "replay_tpot_mean_ms": got.tpot_s * 1e3,
                    "replay_throughput_tok_s": rep.throughput_tps,
                    "seconds": time.perf_counter() - start,
                }
            )
        return rows


def cases(setup: Setup) -> list[Case]:
    inst = study_instance(setup.instance, setup.instance.model, setup.workload)
    limit = setup.grid.time_limit_s
    base = SolvePoint(inst, setup.afd_modes, setup.budget, time_limit=limit)
    out = [Case({"kind": FIXED}, DispatchPoint(base))]
    for d in AFD_DISPATCH:
        keep = Keep(dispatch=d)
        point = SolvePoint(inst, setup.afd_modes, setup.budget, keep=keep, time_limit=limit)
        out.append(Case({"kind": SOLVED, "dispatch_forced": str(d)}, point))
    return out


def layer_classes(model: str) -> str:
    """Which layers have a dispatch to choose under AFD."""
    m = load_model(model)
    moe = m.num_layers - m.num_dense_layers
    if not m.num_dense_layers:
        return f"{model}: all {moe} layers are MoE layers; each uses the unit's dispatch"
    return (
        f"{model}: the {m.num_dense_layers} dense layers run on the attention GPUs under AFD "
        f"(no A<->F traffic, nothing to dispatch); only the {moe} MoE layers use the unit's "
        "dispatch, so the choice per layer class is one choice for the MoE layers"
    )


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = [layer_classes(setup.instance.model)]
    for _, r in table[table["kind"] == FIXED].iterrows():
        if pd.isna(r["dispatch_forced"]):
            out.append(f"no AFD plan to fix: {r['reason']} {cite([r['row']], NAME)}")
            continue
        out.append(
            f"fixed plan with {r['dispatch_forced']}: A<->F {r['link_ms']:.3f} ms of a "
            f"{r['step_ms']:.2f} ms step on the evaluator, replayed step {r['replay_step_ms']:.2f} "
            f"ms, TPOT p{r['percentile']:g} {r['tpot_ms']:.2f} ms "
            f"({'holds' if r['feasible'] else 'breaks the SLO'}) {cite([r['row']], NAME)}"
        )
    for _, r in table[table["kind"] == SOLVED].iterrows():
        if r["feasible"]:
            out.append(
                f"solver, only {r['dispatch_forced']}: {r['throughput_tok_s']:,.0f} tok/s with "
                f"M:N {r['afd_m']:.0f}:{r['afd_n']:.0f}, K={r['afd_k']:.0f} "
                f"{cite([r['row']], NAME)}"
            )
        else:
            out.append(
                f"solver, only {r['dispatch_forced']}: {r['status']}: {r['reason']} "
                f"{cite([r['row']], NAME)}"
            )
    return out
