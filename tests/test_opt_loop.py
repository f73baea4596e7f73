"""The closed loop: when a check (here a replay stand-in that finds decode 30 % slower than
the evaluator) breaks an SLO, the optimiser tightens its model and re-solves until the plan
holds under every check, reporting each round."""

from __future__ import annotations

from aicpp_opt.opt.problem import make_problem
from aicpp_opt.opt.solve import Checked, solve
from aicpp_opt.spec.instance import load_instance


def test_loop_corrects_a_slower_replay_until_the_plan_holds():
    inst = load_instance("instances/small_h200_16.json")
    prob = make_problem(inst, inst.workloads[0])
    slo = prob.workload.slo

    def slower(plan, ev):
        tpot = ev.tpot * 1.3
        rate = ev.flow.decode_capacity / 1.3
        return Checked("replay x1.3", tpot, ev.ttft.total, ev.ttft.prefill, rate, tpot <= slo.tpot)

    plain = solve(prob)
    out = solve(prob, replay=slower)
    assert [r.holds for r in out.rounds][-2:] == [True, True]
    assert any(not r.holds for r in out.rounds)
    assert out.rounds[-1].corrections.tpot > 1.25
    assert out.evaluated.feasible
    assert out.evaluated.tpot * 1.3 <= slo.tpot
    assert out.evaluated.flow.output_tps < plain.evaluated.flow.output_tps
    assert not out.warnings
