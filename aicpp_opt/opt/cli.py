"""``aicpp-opt solve``, ``frontier`` and ``compare``: the optimiser's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console

from aicpp_opt.errors import InputError
from aicpp_opt.opt.problem import MODES, OBJECTIVES, make_problem
from aicpp_opt.opt.replay_check import replay_checker
from aicpp_opt.opt.solve import Outcome, solve
from aicpp_opt.report.frontier import TPOT_SWEEP_MS, run_frontier
from aicpp_opt.report.summary import (
    headline,
    make_console,
    memory_table,
    numbers_table,
    plan_table,
    print_tables,
)
from aicpp_opt.spec.instance import instance_path, load_instance
from aicpp_opt.spec.plan import plan_to_dict

MODE_CHOICES = ("auto", *MODES)


def positive_list(text: str, option: str, kind: type) -> list:
    """Comma-separated positive numbers, or a one-line error naming the option."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise InputError(option, f"comma-separated positive numbers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise InputError(option, f"every value must be positive, got {text!r}")
    return values


def plain(value):
    """JSON form of numpy scalars (simulator results carry them)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def parse_modes(mode: str) -> tuple[str, ...] | None:
    """``auto`` means every mode the instance allows."""
    if mode not in MODE_CHOICES:
        raise InputError("--mode", f"unknown mode {mode!r}; use one of {', '.join(MODE_CHOICES)}")
    if mode == "auto":
        return None
    return (mode,)


def instance_workload(inst, name: str | None):
    """A workload the instance lists (its first when ``name`` is None)."""
    if name is None:
        return inst.workloads[0]
    names = [w.name for w in inst.workloads]
    if name not in names:
        raise InputError(
            "--workload", f"{name!r} is not in {inst.name}; use one of {', '.join(names)}"
        )
    return inst.workload(name)


def outcome_dict(out: Outcome) -> dict:
    m = out.solver
    replay = out.replay.to_dict() if out.replay is not None else None
    return {
        "plan": plan_to_dict(out.plan),
        "predicted": headline(out.predicted),
        "evaluated": headline(out.evaluated),
        "replay": replay,
        "solver": {
            "method": m.method,
            "status": m.status,
            "gap": m.gap,
            "seconds": m.seconds,
            "n_vars": m.n_vars,
            "n_constraints": m.n_constraints,
            "iterations": m.iterations,
        },
        "rounds": [
            {
                "checker": r.checker,
                "corrections": vars(r.corrections),
                "predicted_tpot_ms": r.predicted_tpot * 1e3,
                "checked_tpot_ms": r.checked_tpot * 1e3,
                "predicted_ttft_ms": r.predicted_ttft * 1e3,
                "checked_ttft_ms": r.checked_ttft * 1e3,
                "holds": r.holds,
            }
            for r in out.rounds
        ],
        "warnings": out.warnings,
        "notes": list(out.evaluated.notes),
    }


def print_outcome(console: Console, out: Outcome) -> None:
    m = out.solver
    replay = out.replay.to_dict() if out.replay is not None else None
    print_tables(
        console,
        plan_table(out.plan),
        numbers_table(
            {
                "MILP (PWL)": headline(out.predicted),
                "evaluator (measured)": headline(out.evaluated),
                "replay": replay,
            }
        ),
        memory_table(out.evaluated),
    )
    console.print(
        f"solver: {m.method}, {m.status}, gap {m.gap:.2e}, {m.seconds:.2f} s, "
        f"{m.n_vars} variables, {m.n_constraints} constraints"
    )
    for i, r in enumerate(out.rounds, 1):
        verdict = "holds" if r.holds else "breaks an SLO"
        console.print(
            f"round {i}: {r.checker}: TPOT {r.predicted_tpot * 1e3:.2f} -> "
            f"{r.checked_tpot * 1e3:.2f} ms, TTFT {r.predicted_ttft * 1e3:.1f} -> "
            f"{r.checked_ttft * 1e3:.1f} ms: {verdict}"
        )
    for w in out.warnings:
        console.print(f"[yellow]warning:[/] {w}")


@click.command(name="solve")
@click.argument("instance")
@click.option("--mode", default="auto", show_default=True, help=" | ".join(MODE_CHOICES))
@click.option("--workload", "-w", default=None, help="Workload of the instance (default: first).")
@click.option("--budget", type=int, default=None, help="GPUs at most (default: all).")
@click.option("--objective", default=None, help=" | ".join(OBJECTIVES))
@click.option("--time-limit", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--method", default="milp", show_default=True, help="milp | enumerate")
@click.option(
    "--gap", type=float, default=1e-6, show_default=True, help="Relative MILP gap to prove."
)
@click.option("--replay/--no-replay", default=True, show_default=True)
@click.option("--astra-sim", default=None, help="AstraSim analytical binary to replay on too.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def solve_command(
    instance,
    mode,
    workload,
    budget,
    objective,
    time_limit,
    method,
    gap,
    replay,
    astra_sim,
    json_out,
):
    """The plan with the most output tokens/s (or per GPU, per dollar) under the SLOs."""
    if method not in ("milp", "enumerate"):
        raise InputError("--method", f"unknown method {method!r}; use milp or enumerate")
    if not 0 <= gap < 1:
        raise InputError("--gap", f"must be in [0, 1), got {gap}")
    if time_limit <= 0:
        raise InputError("--time-limit", f"must be positive seconds, got {time_limit}")
    console = make_console()
    inst = load_instance(instance)
    modes = parse_modes(mode)
    prob = make_problem(inst, instance_workload(inst, workload), modes, budget, objective)
    start = time.perf_counter()
    replayer = replay_checker(prob, astra_sim) if replay else None
    out = solve(prob, time_limit=time_limit, method=method, replay=replayer, rel_gap=gap)
    console.print(
        f"[bold]{inst.name}[/] · {prob.workload.name} · modes {', '.join(prob.modes)} · "
        f"objective {prob.objective} · {time.perf_counter() - start:.2f} s"
    )
    print_outcome(console, out)
    if json_out is not None:
        record = {"instance": str(instance_path(instance).resolve()), **outcome_dict(out)}
        json_out.write_text(json.dumps(record, indent=2, default=plain) + "\n")
        console.print(f"wrote {json_out}")


@click.command()
@click.argument("instance")
@click.option("--budgets", required=True, help="Comma-separated GPU budgets, e.g. 8,16,32,72.")
@click.option("--workload", "-w", default=None)
@click.option("--modes", default=",".join(MODES), show_default=True)
@click.option(
    "--tpots",
    default=",".join(str(t) for t in TPOT_SWEEP_MS),
    show_default=True,
    help="TPOT targets (ms) of the per-GPU vs per-user front.",
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("frontier"))
def frontier(instance, budgets, workload, modes, tpots, out_dir):
    """Best plan per GPU budget and mode (CSV, JSON, PNG), and the per-GPU vs per-user front."""
    sizes = positive_list(budgets, "--budgets", int)
    targets = positive_list(tpots, "--tpots", float)
    inst = load_instance(instance)
    mode_list = tuple(m.strip() for m in modes.split(","))
    for m in mode_list:
        if m not in MODES:
            raise InputError("--modes", f"unknown mode {m!r}; use {', '.join(MODES)}")
    wl = instance_workload(inst, workload)
    run_frontier(make_console(), inst, wl, sizes, mode_list, targets, out_dir)


@click.command()
@click.argument("instance")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def compare(instance, json_out):
    """Best aggregated, P/D and AFD+P/D plan per workload and SLO tier, side by side."""
    from aicpp_opt.report.compare import run_compare

    run_compare(make_console(), load_instance(instance), json_out)
