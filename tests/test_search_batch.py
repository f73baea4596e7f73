"""No batch-grid loss: in the plans ``solve`` returns on the small shipped instance (each
workload, and a mix), one more sequence per GPU on any decode role breaks a constraint in the
evaluator at the rate its seats then serve (TPOT, memory, the search space's batch limit),
and on an aggregated role it breaks one or does not raise the rate the role sustains within
TTFT. And the closed loop withdraws a
family the replay rejects and solves again."""

from __future__ import annotations

from dataclasses import replace

import pytest
from oracle import _largest_rate

from aicpp_opt.evaluate.evaluation import evaluate_context
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import solve
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import load_instance

SMALL = load_instance("small_h200_16")


def _agg_rate(prob, plan, role) -> float:
    """The largest rate at which the evaluator passes every flag of ``role`` (alone in the
    plan), by bisection on the evaluator."""
    ctx = prob.contexts[role.workload]

    def ok(rate):
        ev = evaluate_context(ctx, replace(plan, roles=(replace(role, rate=rate),), routes=()))
        return ev.feasible

    cap = evaluate_context(ctx, replace(plan, roles=(replace(role, rate=0.0),), routes=()))
    return _largest_rate(ok, cap.roles[0].capacity)


@pytest.mark.parametrize(
    "shares",
    [
        {"chat-relaxed": 1.0},
        {"coding-interactive": 1.0},
        {"chat-relaxed": 1, "coding-interactive": 1},
    ],
)
def test_one_more_sequence_per_gpu_breaks_a_constraint_or_gains_nothing(shares):
    wls = tuple(SMALL.workload(n) for n in shares)
    prob = make_problem(SMALL, wls, shares=shares, modes=("agg", "pd"))
    out = solve(prob)
    plan = out.plan
    limit = SMALL.search.max_batch_per_gpu
    for role in plan.roles:
        if role.role == RoleKind.PREFILL:
            continue
        bigger = replace(role, batch_per_gpu=role.batch_per_gpu + 1)
        if role.role == RoleKind.DECODE:  # at the capacity its seats give, as the MILP plans
            alone = replace(plan, roles=(replace(bigger, rate=0.0),), routes=())
            cap = evaluate_context(prob.contexts, alone).roles[0].capacity
            bigger = replace(bigger, rate=cap)
        roles = tuple(bigger if r.id == role.id else r for r in plan.roles)
        ev = evaluate_context(prob.contexts, replace(plan, roles=roles))
        broken = {f.name for f in ev.flags if not f.ok}
        breaks = bool(broken & {f"tpot {role.workload}", f"memory {role.id}/gpu"})
        if role.role == RoleKind.DECODE:
            assert breaks or role.batch_per_gpu == limit, (role.id, broken)
        elif not breaks and role.batch_per_gpu < limit:
            assert _agg_rate(prob, plan, bigger) <= _agg_rate(prob, plan, role) * (1 + 1e-4)


def test_the_closed_loop_withdraws_a_family_the_replay_rejects():
    wl = SMALL.workload("chat-relaxed")
    prob = make_problem(SMALL, (wl,), modes=("pd",))
    seen = []

    def reject_first_decode(plan, evaluated):
        seen.append(plan)
        decode = next(r for r in plan.roles if r.role == RoleKind.DECODE)
        first = len(seen) == 1
        return (not first, [decode.id] if first else [], ["fake"], None)

    out = solve(prob, replay=reject_first_decode)
    assert len(out.rounds) == 2 and not out.rounds[0].holds and out.rounds[1].holds
    withdrawn = out.rounds[0].withdrawn
    assert withdrawn and all(k not in out.solution.options for k in withdrawn)
    assert out.evaluated.feasible
    first_tps = solve(prob).solution.tokens_per_s
    assert out.solution.tokens_per_s <= first_tps * (1 + 1e-9)
