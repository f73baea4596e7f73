"""What ``solve`` and ``size`` print and write: the problem (workloads, shares or demand, SLO
targets), the plan, the MILP's numbers beside the evaluator's and the replay's, what the solver
decided and how long each phase took."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aicpp_opt.report.summary import (
    describe_shape,
    headline,
    memory_table,
    numbers_table,
    plan_table,
    print_tables,
)
from aicpp_opt.search.problem import Problem
from aicpp_opt.search.solve import Outcome
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import plan_to_dict
from aicpp_opt.studies.pricing import fleet_cost


def milp_numbers(prob: Problem, out: Outcome) -> dict[str, float]:
    """What the MILP itself predicts: output tokens/s, per GPU, requests/s per workload, GPUs."""
    sol = out.solution
    gpus = sum(sol.gpus.values())
    several = len(prob.workloads) > 1
    rates: dict[str, float] = {}
    for key, rate in sol.rates.items():
        fam = sol.options[key].family
        if fam.kind != RoleKind.PREFILL:
            tag = f"@{fam.workload}" if several else ""
            rates[f"requests_per_s{tag}"] = rates.get(f"requests_per_s{tag}", 0.0) + rate
    return {
        **rates,
        "throughput_tok_s": sol.tokens_per_s,
        "tok_s_per_gpu": sol.tokens_per_s / gpus if gpus else 0.0,
        "gpus_used": gpus,
    }


def cost(prob: Problem, out: Outcome) -> dict[str, float] | None:
    """Dollars per hour of the GPUs the plan uses and per million output tokens, from the pools'
    ``cost_per_gpu_hour`` (None when a used pool has no price)."""
    return fleet_cost(prob.instance, out.solution.gpus, out.evaluated.output_tps)


def slo_lines(prob: Problem) -> list[str]:
    """Each workload's targets, its share or demand, and how they are judged."""
    lines = []
    for w in prob.workloads:
        s = w.slo
        traffic = (
            f"demand {prob.traffic.demand[w.name]:g} req/s"
            if prob.traffic.demand
            else f"share {prob.traffic.shares.get(w.name, 1.0):.0%}"
        )
        lines.append(
            f"{w.name} (ISL {w.isl:g}, OSL {w.osl:g}, prefix reuse {w.prefix_reuse:.0%}; "
            f"{traffic}): TTFT <= {s.ttft * 1e3:g} ms and TPOT <= {s.tpot * 1e3:g} ms at "
            f"p{s.percentile:g} (the plan is judged at the percentile; means are shown beside)"
        )
    return lines


def decision_lines(out: Outcome) -> list[str]:
    """What the solver chose per role, and for AFD units what M, N and K mean."""
    lines = []
    for r in out.plan.roles:
        text = f"{r.id}: {r.replicas} x {describe_shape(r)}"
        if r.afd is not None:
            a = r.afd
            text += (
                f"; M:N = {a.attention_gpus}:{a.ffn_gpus} per unit, so the role's attention "
                f"GPUs are {r.replicas * a.attention_gpus} and FFN GPUs "
                f"{r.replicas * a.ffn_gpus} (units x unit size, chosen by the MILP); "
                f"K={r.micro_batches} micro-batches ping-pong so one's A<->F transfer hides "
                "behind the other's compute"
            )
        if r.rate is not None:
            text += f"; planned {r.rate:.2f} req/s"
        lines.append(text)
    return lines


def timing_line(out: Outcome, seconds: float) -> str:
    t, st = out.timing, out.solution.stats
    cached = f", {t.cached} workload(s) from the cache" if t.cached else ""
    return (
        f"time: {seconds:.2f} s in all; capacities {t.capacities:.2f} s ({t.families} families, "
        f"{t.exact} exact capacities{cached}); HiGHS {t.milp:.2f} s ({st.status}, gap "
        f"{st.gap:.1e}, {st.n_vars} variables of which {st.n_integer} integer, "
        f"{st.n_constraints} constraints, {st.iterations} solve(s)); evaluator "
        f"{t.evaluate:.2f} s; replay {t.replay:.2f} s; simulation {t.simulate:.2f} s"
    )


def print_outcome(console: Console, prob: Problem, out: Outcome, seconds: float) -> None:
    inst = prob.instance
    objective = "cheapest fleet for the demand" if prob.objective == "cost" else prob.objective
    console.print(
        f"[bold]{escape(inst.name)}[/] · modes {', '.join(prob.modes)} · objective {objective} · "
        f"framework {prob.framework} · routing {prob.routing.name}"
    )
    for line in slo_lines(prob):
        console.print(escape(f"  {line}"))
    replay = out.replay.to_dict() if out.replay is not None else None
    print_tables(
        console,
        plan_table(out.plan),
        numbers_table(
            {
                "MILP": milp_numbers(prob, out),
                "evaluator": headline(out.evaluated),
                **astra_columns(replay),
                "simulated": simulated_numbers(out),
            }
        ),
        memory_table(out.evaluated),
    )
    if prob.objective == "cost":
        pools = ", ".join(f"{p}: {g} GPUs" for p, g in sorted(out.solution.gpus.items()))
        console.print(escape(f"fleet: {pools}"))
    dollars = cost(prob, out)
    if dollars is not None:
        console.print(
            f"cost: ${dollars['usd_per_hour']:,.2f} per hour for the GPUs used, "
            f"${dollars['usd_per_million_tokens']:.3f} per million output tokens "
            "(the instance's cost_per_gpu_hour; GPUs only)"
        )
    console.print("decided by the MILP:")
    for line in decision_lines(out):
        console.print(escape(f"  {line}"))
    for i, r in enumerate(out.rounds, 1):
        verdict = "holds" if r.holds else f"breaks an SLO; {r.remedy}: {', '.join(r.withdrawn)}"
        console.print(escape(f"check {i}: {r.checker}: {verdict}"))
        for line in r.detail:
            console.print(escape(f"  {line}"))
    console.print(timing_line(out, seconds))
    for note in ((replay or {}).get("astra_sim") or {}).get("notes", []):
        console.print(escape(f"AstraSim note: {note}"))
    for w in [*out.warnings, *astra_warnings(out)]:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    for note in out.evaluated.notes:
        console.print(escape(f"note: {note}"))


def outcome_dict(prob: Problem, out: Outcome) -> dict:
    st = out.solution.stats
    return {
        "objective": prob.objective,
        "framework": prob.framework,
        "traffic": {"shares": prob.traffic.shares, "demand": prob.traffic.demand},
        "plan": plan_to_dict(out.plan),
        "predicted": milp_numbers(prob, out),
        "evaluated": headline(out.evaluated),
        "evaluation": out.evaluated.to_dict(),
        "cost": cost(prob, out),
        "replay": out.replay.to_dict() if out.replay is not None else None,
        "simulated": out.simulated.to_dict() if out.simulated is not None else None,
        "solver": {
            "status": st.status,
            "optimal": st.optimal,
            "gap": st.gap,
            "seconds": st.seconds,
            "n_vars": st.n_vars,
            "n_integer": st.n_integer,
            "n_constraints": st.n_constraints,
            "iterations": st.iterations,
        },
        "timing": out.timing.to_dict(),
        "rounds": [vars(r) for r in out.rounds],
        "warnings": [*out.warnings, *astra_warnings(out)],
        "notes": list(out.evaluated.notes),
    }


def simulated_numbers(out: Outcome) -> dict[str, float | None] | None:
    """The simulation's column: per workload TTFT and TPOT at the SLO percentile and their
    means (ms), requests/s; the fleet's output tok/s over the measurement window."""
    res = out.simulated
    if res is None:
        return None
    several = len(res.workloads) > 1

    def ms(x: float) -> float | None:
        return x * 1e3 if math.isfinite(x) else None

    col: dict[str, float | None] = {}
    for name, w in res.workloads.items():
        tag = f"@{name}" if several else ""
        col |= {
            f"ttft_ms{tag}": ms(w.slo_ttft),
            f"ttft_mean_ms{tag}": ms(w.ttft.mean),
            f"tpot_ms{tag}": ms(w.slo_tpot),
            f"tpot_mean_ms{tag}": ms(w.tpot.mean),
            f"requests_per_s{tag}": w.rate_rps,
            f"slo_attainment{tag}": w.slo_attainment * 100,
        }
    tokens = sum(w.throughput_tok_s for w in res.workloads.values())
    gpus = out.evaluated.gpus
    return col | {
        "throughput_tok_s": tokens,
        "tok_s_per_gpu": tokens / gpus if gpus else 0.0,
        "gpus_used": gpus,
    }


def astra_columns(replay: dict | None) -> dict[str, dict | None]:
    """The replay's column and, when AstraSim ran, its decode step beside the built-in one on
    the same graph (replica 0 of the first serving role)."""
    astra = (replay or {}).get("astra_sim") or {}
    if astra.get("step_ms") is None:
        return {"replay": replay}
    return {
        "replay": {**replay, "astra_step_ms": astra["builtin_step_ms"]},
        "AstraSim": {"astra_step_ms": astra["step_ms"]},
    }


def astra_warnings(out: Outcome) -> list[str]:
    """AstraSim's failure on the chosen plan (a warning: the built-in replay's result stands)."""
    astra = out.replay.astra_dict() if out.replay is not None else None
    if astra is None or "error" not in astra:
        return []
    return [f"AstraSim: {astra['error']}; the built-in replay's result stands"]


def framework_table(results: list[tuple[Problem, Outcome]], reasons: dict[str, str]) -> Table:
    """One row per framework: the best plan's numbers, or why none exists."""
    t = Table(title="Per framework (one framework per deployment)", title_justify="left")
    for col in ("framework", "output tok/s", "tok/s per GPU", "GPUs", "plan"):
        t.add_column(col)
    for prob, out in results:
        ev = out.evaluated
        roles = "; ".join(f"{r.id} x{r.replicas}" for r in out.plan.roles)
        per_gpu = ev.output_tps / ev.gpus if ev.gpus else 0.0
        t.add_row(
            prob.framework, f"{ev.output_tps:,.0f}", f"{per_gpu:,.1f}", str(ev.gpus), escape(roles)
        )
    for fw, why in reasons.items():
        t.add_row(fw, "-", "-", "-", escape(f"infeasible: {why}"))
    return t
