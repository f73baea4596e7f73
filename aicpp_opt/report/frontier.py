"""``aicpp-opt frontier``: the best plan per GPU budget and mode, and the per-GPU vs per-user
front, for capacity planners. Writes ``frontier.csv``, ``frontier.json`` and ``frontier.png``.

The front: per mode, the per-GPU objective is solved at the largest budget for a sweep of TPOT
targets; each target trades tokens/s per user (1 / TPOT) against tokens/s per GPU."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from aicpp_opt.errors import InfeasibleError
from aicpp_opt.opt.problem import make_problem
from aicpp_opt.opt.solve import solve
from aicpp_opt.report.summary import describe_shape, headline
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.workload import Workload

TPOT_SWEEP_MS = (15, 20, 25, 30, 40, 50, 70, 100)
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
    "plan",
    "reason",
)


def _row(kind, mode, budget, tpot_slo, prob_fn) -> dict:
    row = {"kind": kind, "mode": mode, "budget": budget, "tpot_slo_ms": tpot_slo}
    try:
        out = solve(prob_fn())
    except InfeasibleError as err:
        return {**row, "feasible": False, "reason": str(err)}
    ev = out.evaluated
    shapes = "; ".join(f"{r.role} x{r.replicas}: {describe_shape(r)}" for r in out.plan.roles)
    return {**row, "feasible": True, **headline(ev), "plan": shapes, "reason": ""}


def run_frontier(
    console: Console,
    instance: Instance,
    workload: Workload,
    budgets: list[int],
    modes: tuple[str, ...],
    tpots_ms: list[float],
    out_dir: Path,
) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    top = max(budgets)
    jobs = [("budget", m, b, workload.slo.tpot * 1e3) for b in budgets for m in modes]
    jobs += [("front", m, top, t) for m in modes for t in tpots_ms]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("solving", total=len(jobs))
        for kind, mode, budget, tpot_ms in jobs:
            wl = replace(workload, slo=replace(workload.slo, tpot=tpot_ms / 1e3))
            objective = "throughput" if kind == "budget" else "per-gpu"
            rows.append(
                _row(
                    kind,
                    mode,
                    budget,
                    tpot_ms,
                    lambda wl=wl, mode=mode, budget=budget, objective=objective: make_problem(
                        instance, wl, (mode,), budget, objective
                    ),
                )
            )
            progress.advance(task)
    _write(rows, out_dir)
    _plot(rows, modes, out_dir / "frontier.png", instance.name, workload.name)
    console.print(f"wrote {out_dir / 'frontier.csv'}, frontier.json and frontier.png")
    return rows


def _write(rows: list[dict], out_dir: Path) -> None:
    with (out_dir / "frontier.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in COLUMNS})
    (out_dir / "frontier.json").write_text(json.dumps(rows, indent=2) + "\n")


def _plot(rows: list[dict], modes: tuple[str, ...], path: Path, name: str, wl: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode in modes:
        pts = [r for r in rows if r["kind"] == "budget" and r["mode"] == mode and r["feasible"]]
        left.plot(
            [r["budget"] for r in pts], [r["throughput_tok_s"] for r in pts], "o-", label=mode
        )
        front = [r for r in rows if r["kind"] == "front" and r["mode"] == mode and r["feasible"]]
        front.sort(key=lambda r: r["tok_s_per_user"])
        right.plot(
            [r["tok_s_per_user"] for r in front],
            [r["tok_s_per_gpu"] for r in front],
            "o-",
            label=mode,
        )
    left.set(xlabel="GPU budget", ylabel="output tokens/s", title=f"{name} · {wl}")
    right.set(
        xlabel="tokens/s per user (1 / TPOT)",
        ylabel="tokens/s per GPU",
        title="per-GPU vs per-user front (TPOT sweep)",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
