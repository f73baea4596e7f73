"""The replay as a check in the solve's closed loop: replay the chosen plan on the network
simulator and judge every role by what it found. The replay times steps, prefill forwards and
KV transfers from the op model on the network; it has no arrivals, so a serving role's TPOT
percentile is the evaluator's scaled by the replayed mean TPOT over the evaluator's, both at
the role's operating point, and a prefill role's TTFT keeps the evaluator's wait and replaces
the prefill and KV parts with the replayed ones."""

from __future__ import annotations

from aicpp_opt.evaluate.evaluation import Evaluation
from aicpp_opt.model.routing import Routing
from aicpp_opt.search.solve import Replayer
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan


def replay_checker(instance: Instance, routing: Routing, astra_sim: str | None = None) -> Replayer:
    """A check that replays a plan (built-in simulator; AstraSim too when a binary is given)."""
    from aicpp_opt.replay.adapter import replay_plan

    def check(plan: Plan, evaluated: Evaluation):
        rep = replay_plan(plan, instance, routing=routing, astra_sim=astra_sim, fold=True)
        failing, lines = [], []
        for r in evaluated.roles:
            slo = instance.workload(r.workload).slo
            got = rep.role(r.role)
            if got.prefill_s is None:
                tpot = r.tpot.percentile * got.tpot_s / r.tpot.mean
                ok = tpot <= slo.tpot
                lines.append(
                    f"{r.role}: TPOT mean {r.tpot.mean * 1e3:.2f} -> {got.tpot_s * 1e3:.2f} ms "
                    f"at {got.batch_per_gpu:.1f} sequences per GPU, TPOT p{slo.percentile:g} "
                    f"{tpot * 1e3:.2f} ms (SLO {slo.tpot * 1e3:g})"
                )
            else:
                t = r.ttft
                ttft = t.percentile - t.prefill - t.kv_transfer + got.prefill_s + got.kv_transfer_s
                ok = ttft <= slo.ttft
                lines.append(
                    f"{r.role}: prefill {t.prefill * 1e3:.1f} -> {got.prefill_s * 1e3:.1f} ms, "
                    f"KV {t.kv_transfer * 1e3:.2f} -> {got.kv_transfer_s * 1e3:.2f} ms, TTFT "
                    f"p{slo.percentile:g} {ttft * 1e3:.1f} ms (SLO {slo.ttft * 1e3:g})"
                )
            if not ok:
                failing.append(r.role)
        return not failing, failing, [*lines, *astra_lines(rep.astra_dict())], rep

    return check


def astra_lines(astra: dict | None) -> list[str]:
    """AstraSim's decode step beside the built-in one on the same graph, or its error (it
    judges nothing: the built-in replay's result stands)."""
    if astra is None:
        return []
    if "error" in astra:
        return [f"AstraSim: {astra['error']}"]
    return [
        f"AstraSim decode step of {astra['role']}: {astra['step_ms']:.2f} ms (built-in "
        f"{astra['builtin_step_ms']:.2f} ms on the same graph)"
    ]
