"""The replay as a check in the optimiser's closed loop: replay the chosen plan on the network
simulator and report what it found in the terms the loop tightens. The replay times the decode
step, the prefill and the KV transfer on the network from the op model; it has no arrivals, so
the TTFT it is judged by keeps the model's wait and replaces the prefill and KV parts with the
replayed ones, and its TPOT percentile is the model's scaled by the replayed step."""

from __future__ import annotations

from aicpp_opt.evaluate.evaluation import Evaluation
from aicpp_opt.opt.problem import Problem
from aicpp_opt.opt.solve import Checked, Replayer
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import Plan


def replay_checker(prob: Problem, astra_sim: str | None = None) -> Replayer:
    """A check that replays a plan (built-in simulator; AstraSim too when a binary is given)."""
    from aicpp_opt.replay.adapter import replay_plan

    def check(plan: Plan, evaluated: Evaluation) -> Checked:
        rep = replay_plan(
            plan, prob.instance, prob.workload, routing=prob.routing, astra_sim=astra_sim
        )
        slo = prob.workload.slo
        step = next(r.step.total for r in evaluated.roles if r.kind != RoleKind.PREFILL)
        ratio = rep.step_s / step
        tpot = evaluated.tpot.percentile * ratio
        t = evaluated.ttft
        prefill = rep.prefill_s if rep.prefill_s is not None else t.prefill
        kv = rep.kv_transfer_s if rep.kv_transfer_s is not None else t.kv_transfer
        ttft = t.percentile - t.prefill - t.kv_transfer + prefill + kv
        return Checked(
            f"replay ({rep.simulator})",
            tpot,
            ttft,
            prefill,
            evaluated.flow.decode_capacity / ratio,
            bool(tpot <= slo.tpot and ttft <= slo.ttft),
            rep,
        )

    return check
