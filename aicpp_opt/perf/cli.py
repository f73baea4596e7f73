"""``aicpp-opt evaluate INSTANCE PLAN.json``: print a plan's step breakdown, latencies,
throughput, memory and feasibility; ``--json OUT`` writes the full result."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from aicpp_opt.perf.context import PIPELINES, SURROGATES
from aicpp_opt.perf.evaluate import Evaluation, evaluate_plan
from aicpp_opt.report.summary import make_console
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import load_plan


def _print(ev: Evaluation, console: Console) -> None:
    for role in ev.roles:
        t = Table(title=f"{role.role}: {role.step.total * 1e3:.3f} ms per step")
        for col in ("op", "layer", "side", "count", "ms each", "ms total", "source"):
            t.add_column(col, justify="right" if col.startswith(("count", "ms")) else "left")
        for op in role.step.ops:
            mark = " (extrapolated)" if op.cost.extrapolated else ""
            t.add_row(
                op.name,
                op.layer,
                op.side,
                f"{op.count:g}",
                f"{op.seconds * 1e3:.4f}",
                f"{op.total * 1e3:.3f}",
                op.cost.source + mark,
            )
        console.print(t)
    f = ev.flow
    console.print(
        f"TPOT {ev.tpot * 1e3:.2f} ms | TTFT {ev.ttft.total * 1e3:.1f} ms "
        f"(queue {ev.ttft.queueing * 1e3:.1f}, prefill {ev.ttft.prefill * 1e3:.1f}, "
        f"KV {ev.ttft.kv_transfer * 1e3:.2f})"
    )
    console.print(
        f"throughput {f.output_tps:,.0f} tok/s | {f.output_tps_per_gpu:,.1f} tok/s/GPU "
        f"on {ev.gpus} GPUs "
        f"| {f.output_tps_per_user:.1f} tok/s/user | {f.arrival_rate:.2f} req/s"
    )
    for flag in ev.flags:
        mark = "[green]ok [/]" if flag.ok else "[red]NO [/]"
        console.print(f"{mark} {flag.name}: {flag.reason}")
    for note in ev.notes:
        console.print(f"note: {note}")
    console.print("feasible" if ev.feasible else "[red]infeasible[/]")


@click.command(name="evaluate")
@click.argument("instance")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--workload", "-w", default=None, help="Workload name of the instance, or a preset.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the full result here.",
)
@click.option(
    "--surrogate",
    type=click.Choice(SURROGATES),
    default="measured",
    help="Measured grids or PWL fits.",
)
@click.option(
    "--pipeline", type=click.Choice(PIPELINES), default="pipelined", help="AFD pipeline model."
)
def evaluate(
    instance: str,
    plan: Path,
    workload: str | None,
    json_out: Path | None,
    surrogate: str,
    pipeline: str,
) -> None:
    """Evaluate PLAN.json on INSTANCE (a name under instances/ or a path)."""
    inst = load_instance(instance)
    model = load_model(inst.model)
    p = load_plan(plan, inst, model.moe.num_experts)
    ev = evaluate_plan(p, inst, inst.workload(workload), surrogate=surrogate, pipeline=pipeline)
    _print(ev, make_console())
    if json_out is not None:
        json_out.write_text(json.dumps(ev.to_dict(), indent=2) + "\n")
