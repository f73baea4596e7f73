"""``aicpp-opt compare``: for every workload of the instance and every SLO tier, the best plan
of each serving mode side by side, so it shows where each mode pays off and where only one is
feasible."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aicpp_opt.errors import InfeasibleError
from aicpp_opt.opt.problem import MODES, make_problem
from aicpp_opt.opt.solve import solve
from aicpp_opt.report.summary import describe_shape, headline
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.workload import SLO_TIERS, Workload


def _base_name(wl: Workload) -> str:
    for tier in SLO_TIERS:
        if wl.name.endswith(f"-{tier}"):
            return wl.name[: -len(tier) - 1]
    return wl.name


def workload_tiers(instance: Instance) -> list[Workload]:
    """Each distinct workload of the instance at every SLO tier (its own SLO kept when it is
    not a tier's)."""
    seen: dict[tuple, Workload] = {}
    for wl in instance.workloads:
        key = (wl.isl, wl.osl, wl.prefix_reuse)
        seen.setdefault(key, wl)
    out = []
    for wl in seen.values():
        base = _base_name(wl)
        for tier, slo in SLO_TIERS.items():
            out.append(replace(wl, name=f"{base}-{tier}", slo=slo))
    return out


def run_compare(console: Console, instance: Instance, json_out: Path | None) -> list[dict]:
    modes = tuple(m for m in MODES if m in instance.search.modes)
    cases = [(wl, m) for wl in workload_tiers(instance) for m in modes]
    results: list[dict] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("solving", total=len(cases))
        for wl, mode in cases:
            row = {"workload": wl.name, "mode": mode}
            try:
                out = solve(make_problem(instance, wl, (mode,)))
                roles = [f"{r.role} x{r.replicas}: {describe_shape(r)}" for r in out.plan.roles]
                row |= {"feasible": True, **headline(out.evaluated), "plan": roles}
            except InfeasibleError as err:
                row |= {"feasible": False, "reason": str(err)}
            results.append(row)
            progress.advance(task)
    console.print(_table(instance, results, modes))
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {json_out}")
    return results


def _table(instance: Instance, results: list[dict], modes: tuple[str, ...]) -> Table:
    t = Table(
        title=f"{instance.name}: tok/s per GPU (tok/s per user) of the best plan per mode",
        title_justify="left",
    )
    t.add_column("workload · SLO")
    for m in modes:
        t.add_column(m, justify="right")
    t.add_column("best")
    for wl in dict.fromkeys(r["workload"] for r in results):
        rows = {r["mode"]: r for r in results if r["workload"] == wl}
        cells = []
        for m in modes:
            r = rows[m]
            if r["feasible"]:
                cells.append(f"{r['tok_s_per_gpu']:,.0f} ({r['tok_s_per_user']:.0f})")
            else:
                cells.append("[red]infeasible[/]")
        feasible = [m for m in modes if rows[m]["feasible"]]
        if not feasible:
            best = "none feasible"
        else:
            top = max(feasible, key=lambda m: rows[m]["throughput_tok_s"])
            best = f"{top} (only feasible)" if len(feasible) == 1 else top
        t.add_row(wl, *cells, best)
    return t
