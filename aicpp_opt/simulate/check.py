"""The request-level simulation as a check in the solve's closed loop: simulate the chosen plan
at the rates it was planned for and judge each workload by the simulated TTFT and TPOT at its
SLO percentile (not means). A workload that misses blames roles by what the simulation measured:
a TPOT miss the serving roles whose own TPOT percentile misses (all of the workload's serving
roles when none does alone); a TTFT miss the role with the longest queue at that percentile
(a prefill or aggregated role's wait for its first forward, a decode role's wait for a seat)."""

from __future__ import annotations

from aicpp_opt.evaluate.evaluation import Evaluation
from aicpp_opt.search.solve import Replayer
from aicpp_opt.simulate.result import RoleStats, SimResult
from aicpp_opt.simulate.stats import Dist, ms_text
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan
from aicpp_opt.spec.workload import Workload

SOLVE_DURATION_S = 120.0
"""Seconds of arrivals the solve's check simulates (a quarter of it warm-up): long enough for a
p90 over thousands of requests on the shipped racks, short enough to run in a solve."""
MAX_REQUESTS = 50_000
"""Arrivals the check simulates at most (about 10 s on one core): a fleet serving thousands of
requests/s gets a shorter run, still thousands of measured requests per workload."""


def slo_life(wl: Workload) -> float:
    """Seconds from arrival to last token of a request that meets both SLO targets: the drain
    a measured request gets before it counts as infinitely late (a fleet's run, cut short by
    ``MAX_REQUESTS``, can be shorter than one request's life)."""
    return wl.slo.ttft + (wl.osl - 1) * wl.slo.tpot


def at_percentile(d: Dist | None, p: float) -> float:
    """The smallest stored percentile at or above ``p`` (conservative for other targets)."""
    if d is None or not d.count:
        return 0.0
    for q, value in ((50, d.p50), (90, d.p90), (99, d.p99)):
        if p <= q:
            return value
    return d.p99


def blamed(res: SimResult, workload: str) -> list[str]:
    """The roles of ``workload`` whose results the simulation says break its SLO."""
    w = res.workloads[workload]
    slo, p = w.slo, w.slo.percentile
    mine = [s for s in res.roles.values() if s.workload == workload and s.requests]
    out: list[str] = []
    if w.slo_tpot > slo.tpot:
        serving = [s for s in mine if s.kind != RoleKind.PREFILL]
        slow = [s.role for s in serving if at_percentile(s.tpot, p) > slo.tpot]
        out += slow or [s.role for s in serving]
    if w.slo_ttft > slo.ttft:

        def queue(s: RoleStats) -> float:
            return at_percentile(s.seat_wait if s.kind == RoleKind.DECODE else s.wait, p)

        if mine:
            out.append(max(mine, key=queue).role)
    return list(dict.fromkeys(out))


def simulation_checker(
    instance: Instance, duration_s: float = SOLVE_DURATION_S, seed: int = 0
) -> Replayer:
    """A check that simulates the plan request by request (seeded, so a solve is repeatable)."""
    from aicpp_opt import deadline
    from aicpp_opt.simulate.flows import planned_rate
    from aicpp_opt.simulate.run import simulate_plan

    def check(plan: Plan, evaluated: Evaluation):
        rate = sum(planned_rate(plan, name) for name in plan.workloads)
        seconds = min(duration_s, MAX_REQUESTS / rate) if rate > 0 else duration_s
        life = max(slo_life(instance.workload(n)) for n in plan.workloads)
        res = simulate_plan(
            plan,
            instance,
            duration_s=seconds,
            seed=seed,
            drain_s=max(seconds, life),
            progress=lambda *_: deadline.check(),
        )
        failing = []
        lines = [f"{seconds:.4g} s of Poisson arrivals at the planned rates, seed {seed}"]
        if seconds < life:
            lines.append(
                f"the run is shorter than a request's life ({life:.3g} s): its throughput counts "
                "the roles filling up from empty, not a steady state (latencies are of the "
                "requests arriving in it, each followed to its end)"
            )
        for name, w in res.workloads.items():
            slo = w.slo
            p = f"p{slo.percentile:g}"
            lines.append(
                f"{name}: TTFT {p} {ms_text(w.slo_ttft)} ms (SLO {slo.ttft * 1e3:g}), TPOT {p} "
                f"{ms_text(w.slo_tpot)} ms (SLO {slo.tpot * 1e3:g}); {w.requests} requests"
                f"{f' ({w.unfinished} unfinished)' if w.unfinished else ''}, SLO met by "
                f"{w.slo_attainment:.1%}"
            )
            failing += blamed(res, name)
        return not failing, failing, lines, res

    return check
