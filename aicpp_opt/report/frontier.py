"""``aicpp-opt frontier``: the best plan per GPU budget and mode for capacity planners, and
optionally the per-GPU vs per-user front of a TPOT sweep. Writes ``frontier.csv``,
``frontier.json`` and ``frontier.png``.

Per mode the capacities are settled once and one MILP is re-solved per budget (the budget is a
mutable parameter). Each plan's $/hour and $ per million output tokens come from the pools'
``cost_per_gpu_hour`` (empty where a pool has no price). The front: per mode, the per-GPU
objective at the largest budget for each TPOT target (each target trades tokens/s per user,
1 / TPOT, against tokens/s per GPU)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from aicpp_opt import deadline
from aicpp_opt.errors import NOT_REACHED, InfeasibleError, OutOfTimeError
from aicpp_opt.jsonio import write_json, write_text_atomic
from aicpp_opt.report.summary import describe_shape, headline
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import Outcome, solve_budgets
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.workload import Workload
from aicpp_opt.studies.pricing import fleet_cost

COLUMNS = (
    "kind",
    "mode",
    "budget",
    "tpot_slo_ms",
    "feasible",
    "throughput_tok_s",
    "tok_s_per_gpu",
    "tok_s_per_user",
    "tpot_ms",
    "ttft_ms",
    "gpus_used",
    "usd_per_hour",
    "usd_per_mtok",
    "plan",
    "reason",
)


def _row(
    instance: Instance,
    kind: str,
    mode: str,
    budget: int,
    tpot_slo: float,
    got: Outcome | Exception,
):
    row = {"kind": kind, "mode": mode, "budget": budget, "tpot_slo_ms": tpot_slo}
    if isinstance(got, InfeasibleError):
        return {**row, "feasible": False, "reason": str(got)}
    if isinstance(got, OutOfTimeError):
        return {**row, "feasible": None, "reason": NOT_REACHED}
    shapes = "; ".join(f"{r.id} x{r.replicas}: {describe_shape(r)}" for r in got.plan.roles)
    dollars = fleet_cost(instance, got.solution.gpus, got.evaluated.output_tps) or {}
    return {
        **row,
        "feasible": True,
        **headline(got.evaluated),
        "usd_per_hour": dollars.get("usd_per_hour"),
        "usd_per_mtok": dollars.get("usd_per_million_tokens"),
        "plan": shapes,
        "reason": "",
    }


def run_frontier(
    console: Console,
    instance: Instance,
    workload: Workload,
    budgets: list[int],
    modes: tuple[str, ...],
    tpots_ms: list[float],
    out_dir: Path,
    objective: str = "throughput",
) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    top = max(budgets)
    slo_ms = workload.slo.tpot * 1e3
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("solving", total=len(modes) * (1 + len(tpots_ms)))
        for mode in modes:
            got_all = _solved(budgets, instance, (workload,), (mode,), objective=objective)
            for b, got in zip(budgets, got_all, strict=True):
                rows.append(_row(instance, "budget", mode, b, slo_ms, got))
            progress.advance(task)
            for tpot_ms in tpots_ms:
                wl = replace(workload, slo=replace(workload.slo, tpot=tpot_ms / 1e3))
                got = _solved([top], instance, (wl,), (mode,), top, "per-gpu")[0]
                rows.append(_row(instance, "front", mode, top, tpot_ms, got))
                progress.advance(task)
    _write(rows, out_dir)
    _plot(rows, modes, out_dir / "frontier.png", instance.name, workload.name)
    console.print(escape(f"wrote {out_dir / 'frontier.csv'}, frontier.json and frontier.png"))
    missed = sum(r["reason"] == NOT_REACHED for r in rows)
    if missed:
        raise OutOfTimeError(
            f"{missed} of {len(rows)} cases were not solved (written as such): "
            f"{deadline.summary()}; raise --time-limit or ask for fewer budgets, modes or TPOTs"
        )
    return rows


def _solved(budgets: list[int], *problem, **options) -> list[Outcome | Exception]:
    """``solve_budgets`` of ``make_problem(*problem, **options)``; every budget gets the error
    when the time runs out before the MILP (building the problem, settling its capacities)."""
    try:
        return solve_budgets(make_problem(*problem, **options), budgets)
    except OutOfTimeError as err:
        return [err for _ in budgets]


def _write(rows: list[dict], out_dir: Path) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in COLUMNS})
    write_text_atomic(out_dir / "frontier.csv", text.getvalue())
    write_json(out_dir / "frontier.json", rows)


def _plot(rows: list[dict], modes: tuple[str, ...], path: Path, name: str, wl: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = any(r["kind"] == "front" for r in rows)
    fig, axes = plt.subplots(1, 2 if front else 1, figsize=(12 if front else 6.5, 4.5))
    left = axes[0] if front else axes
    for mode in modes:
        pts = [r for r in rows if r["kind"] == "budget" and r["mode"] == mode and r["feasible"]]
        left.plot(
            [r["budget"] for r in pts], [r["throughput_tok_s"] for r in pts], "o-", label=mode
        )
        if front:
            pts = [r for r in rows if r["kind"] == "front" and r["mode"] == mode and r["feasible"]]
            pts.sort(key=lambda r: r["tok_s_per_user"])
            axes[1].plot(
                [r["tok_s_per_user"] for r in pts],
                [r["tok_s_per_gpu"] for r in pts],
                "o-",
                label=mode,
            )
    left.set(xlabel="GPU budget", ylabel="output tokens/s", title=f"{name} · {wl}")
    if front:
        axes[1].set(
            xlabel="tokens/s per user (1 / TPOT)",
            ylabel="tokens/s per GPU",
            title="per-GPU vs per-user front (TPOT sweep)",
        )
    for ax in axes if front else [axes]:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
