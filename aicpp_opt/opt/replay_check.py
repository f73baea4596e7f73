"""The replay as a check in the optimiser's closed loop: replay the chosen plan on the network
simulator and report what it found in the terms the loop tightens (TPOT, prefill time, the
decode side's request pull)."""

from __future__ import annotations

from aicpp_opt.opt.problem import Problem
from aicpp_opt.opt.solve import Checked, Replayer
from aicpp_opt.perf.evaluate import Evaluation
from aicpp_opt.spec.plan import Plan


def replay_checker(prob: Problem, astra_sim: str | None = None) -> Replayer:
    """A check that replays a plan (built-in simulator; AstraSim too when a binary is given)."""
    from aicpp_opt.replay.adapter import replay_plan

    def check(plan: Plan, evaluated: Evaluation) -> Checked:
        rep = replay_plan(plan, prob.instance, prob.workload, evaluated, astra_sim=astra_sim)
        slo = prob.workload.slo
        ttft = evaluated.ttft
        replayed_prefill = rep.ttft_s - ttft.queueing - ttft.kv_transfer
        return Checked(
            f"replay ({rep.simulator})",
            float(rep.tpot_s),
            float(rep.ttft_s),
            max(float(replayed_prefill), 0.0),
            evaluated.flow.decode_capacity * evaluated.tpot / rep.tpot_s,
            bool(rep.tpot_s <= slo.tpot and rep.ttft_s <= slo.ttft),
            rep,
        )

    return check
