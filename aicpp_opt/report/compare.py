"""``aicpp-opt compare``: for every workload of the instance and every SLO tier, the best plan
of each of the four serving modes side by side (AFD modes once with units colocated in an
NVLink domain and once split across it, where a pool has several domains), so it shows where
each mode pays off and where only one is feasible; and per mode the lowest TPOT its fastest
shape reaches at batch 1."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from aicpp_opt import deadline
from aicpp_opt.errors import NOT_REACHED, InfeasibleError, OutOfTimeError
from aicpp_opt.jsonio import write_json
from aicpp_opt.report.summary import describe_shape, headline
from aicpp_opt.search.catalog import AFD_PLACEMENTS
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import fastest_decode, solve
from aicpp_opt.spec.instance import MODES, Instance
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


def columns(instance: Instance) -> list[tuple[str, str, str | None]]:
    """(column name, mode, AFD placement) per column."""
    split = any(p.num_domains > 1 for p in instance.pools) or len(instance.pools) > 1
    out = []
    for mode in MODES:
        if mode.startswith("afd") and split:
            out += [(f"{mode} {where}", mode, where) for where in AFD_PLACEMENTS]
        else:
            out.append((mode, mode, None))
    return out


def run_compare(console: Console, instance: Instance, json_out: Path | None) -> dict:
    cols = columns(instance)
    names = tuple(name for name, _, _ in cols)
    tiers = workload_tiers(instance)
    cases = [(wl, col) for wl in tiers for col in cols]
    bases = [wl for wl in tiers if wl.name.endswith("-relaxed")]
    results: list[dict] = []
    tightest: dict[str, dict[str, float | str | None]] = {}
    missed = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("solving", total=len(cases) + len(bases) * len(MODES))
        for wl in bases:
            name = _base_name(wl)
            tightest[name] = {}
            for mode in MODES:
                try:
                    best = fastest_decode(make_problem(instance, (wl,), (mode,)), wl.name)
                    tightest[name][mode] = best[0] * 1e3 if best is not None else None
                except OutOfTimeError:
                    missed += 1
                    tightest[name][mode] = NOT_REACHED
                progress.advance(task)
        for wl, (name, mode, where) in cases:
            row = {"workload": wl.name, "mode": name}
            try:
                prob = make_problem(instance, (wl,), (mode,), afd_placement=where)
                out = solve(prob)
                roles = [f"{r.id} x{r.replicas}: {describe_shape(r)}" for r in out.plan.roles]
                row |= {"feasible": True, **headline(out.evaluated), "plan": roles}
            except InfeasibleError as err:
                row |= {"feasible": False, "reason": str(err)}
            except OutOfTimeError:
                missed += 1
                row |= {"feasible": None, "reason": NOT_REACHED}
            results.append(row)
            progress.advance(task)
    console.print(_table(instance, results, names))
    console.print(_tightest_table(tightest, MODES))
    out = {"plans": results, "tightest_tpot_ms": tightest}
    if json_out is not None:
        write_json(json_out, out)
        console.print(escape(f"wrote {json_out}"))
    if missed:
        raise OutOfTimeError(
            f"{missed} of {len(cases) + len(bases) * len(MODES)} cases were not solved (shown "
            f"as such): {deadline.summary()}; raise --time-limit"
        )
    return out


FAMILIES = {"agg": "aggregated", "pd": "P/D", "afd": "AFD", "afd+pd": "AFD"}
"""AFD alone and AFD with P/D prefill are one family: where only AFD is feasible is the
question compare answers."""


def only_feasible(per_mode: dict[str, float | str | None]) -> str:
    """The TPOT targets (ms) only one family of modes can meet, and which of its modes (a mode
    the time limit cut off counts as unknown, not as infeasible)."""
    best: dict[str, float] = {}
    for mode, t in per_mode.items():
        if isinstance(t, float):
            fam = FAMILIES[mode]
            best[fam] = min(t, best.get(fam, t))
    ranked = sorted((t, fam) for fam, t in best.items())
    if not ranked:
        return "none feasible"
    t0, fam = ranked[0]
    if len(ranked) == 1:
        return f"only {fam}: every TPOT >= {t0:.1f} ms"
    t1 = ranked[1][0]
    if t1 <= t0:
        return "-"
    modes = [
        m for m, t in per_mode.items() if FAMILIES[m] == fam and isinstance(t, float) and t < t1
    ]
    return f"only {fam} ({', '.join(modes)}): TPOT in [{t0:.1f}, {t1:.1f}) ms"


def _tightest_cell(v: float | str | None) -> str:
    if v is None:
        return "none"
    return "not solved" if isinstance(v, str) else f"{v:.1f}"


def _tightest_table(
    tightest: dict[str, dict[str, float | str | None]], modes: tuple[str, ...]
) -> Table:
    """Per workload the lowest TPOT each mode can meet (TTFT, memory and budget held), and the
    TPOT targets only one family of modes can meet."""
    t = Table(
        title="Lowest TPOT each mode's fastest shape reaches at batch 1 (ms, memory held; TTFT "
        "and budget not checked); targets only one family meets",
        title_justify="left",
    )
    t.add_column("workload")
    for m in modes:
        t.add_column(m, justify="right")
    t.add_column("only one family feasible")
    for name, per_mode in tightest.items():
        cells = [_tightest_cell(v) for v in per_mode.values()]
        t.add_row(escape(name), *cells, only_feasible(per_mode))
    return t


def _table(instance: Instance, results: list[dict], modes: tuple[str, ...]) -> Table:
    t = Table(
        title=escape(f"{instance.name}: best plan per mode: output tok/s (per GPU, per user)"),
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
                cells.append(
                    f"{r['throughput_tok_s']:,.0f} ({r['tok_s_per_gpu']:,.0f}, "
                    f"{r['tok_s_per_user']:.0f})"
                )
            elif r["feasible"] is None:
                cells.append("not solved (time limit)")
            else:
                cells.append("[red]infeasible[/]")
        feasible = [m for m in modes if rows[m]["feasible"]]
        if not feasible:
            best = "none feasible"
        else:
            top = max(feasible, key=lambda m: rows[m]["throughput_tok_s"])
            best = f"{top} (only feasible)" if len(feasible) == 1 else top
        t.add_row(escape(wl), *cells, best)
    return t
