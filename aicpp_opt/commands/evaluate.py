"""``aicpp-opt evaluate INSTANCE PLAN.json``: print a plan's step breakdown (every op with its
source), latencies (mean and SLO percentile), throughput, memory and feasibility; ``--json OUT``
writes the full result. Exits 3 when the plan breaks an SLO or memory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aicpp_opt.errors import InfeasibleError
from aicpp_opt.evaluate.evaluation import Evaluation, evaluate_plan
from aicpp_opt.jsonio import write_json
from aicpp_opt.model.context import SURROGATES
from aicpp_opt.model.routing import parse_routing
from aicpp_opt.model.schedule import PIPELINES
from aicpp_opt.paths import output_file
from aicpp_opt.report.summary import make_console
from aicpp_opt.spec.enums import Framework, values
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import load_plan


def _source(op) -> str:
    marks = " (extrapolated)" if op.cost.extrapolated else ""
    marks += f" [fallback: {op.cost.fallback}]" if op.cost.fallback else ""
    return escape(op.cost.source + marks)


def print_evaluation(ev: Evaluation, console: Console) -> None:
    for role in ev.roles:
        title = f"{role.role} ({role.kind.value}): {role.step.total * 1e3:.3f} ms per step"
        t = Table(title=escape(title))
        for col in ("op", "layer", "stage", "side", "count", "ms each", "ms total", "source"):
            t.add_column(col, justify="right" if col.startswith(("count", "ms")) else "left")
        for op in role.step.ops:
            t.add_row(
                op.name,
                op.layer.value,
                op.stage.value,
                op.side.value,
                f"{op.count:g}",
                f"{op.seconds * 1e3:.4f}",
                f"{op.total * 1e3:.3f}",
                _source(op),
            )
        console.print(t)
    for w in ev.workloads:
        f, p = w.flow, f"p{w.workload.slo.percentile:g}"
        console.print(
            f"{escape(w.workload.name)}: TPOT mean {w.tpot.mean * 1e3:.2f} ms, {p} "
            f"{w.tpot.percentile * 1e3:.2f} ms | TTFT mean {w.ttft.total * 1e3:.1f} ms, {p} "
            f"{w.ttft.percentile * 1e3:.1f} ms (wait {w.ttft.queueing * 1e3:.1f}, prefill "
            f"{w.ttft.prefill * 1e3:.1f}, KV {w.ttft.kv_transfer * 1e3:.2f}) | "
            f"{f.arrival_rate:.2f} req/s, {f.output_tps:,.0f} tok/s, "
            f"{f.output_tps_per_user:.1f} tok/s/user"
        )
    per_gpu = ev.output_tps / ev.gpus if ev.gpus else 0.0
    console.print(
        f"throughput {ev.output_tps:,.0f} tok/s | {per_gpu:,.1f} tok/s/GPU on {ev.gpus} GPUs"
    )
    for flag in ev.flags:
        mark = "[green]ok [/]" if flag.ok else "[red]NO [/]"
        console.print(f"{mark} {escape(flag.name)}: {escape(flag.reason)}")
    for note in ev.notes:
        console.print(escape(f"note: {note}"))
    console.print("feasible" if ev.feasible else "[red]infeasible[/]")


@click.command(name="evaluate")
@click.argument("instance")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--workload", "-w", default=None, help="Workload name of the instance, or a preset.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option("--surrogate", type=click.Choice(SURROGATES), default="measured")
@click.option("--pipeline", type=click.Choice(PIPELINES), default="pipelined")
@click.option(
    "--routing", default="eplb", show_default=True, help="eplb | balanced | power_law_<a>"
)
@click.option(
    "--framework",
    type=click.Choice(values(Framework)),
    default=None,
    help="Price with this framework's tables (default: the plan's, else the model's best).",
)
def evaluate(instance, plan, workload, json_out, surrogate, pipeline, routing, framework):
    """Evaluate PLAN.json on INSTANCE (a name under instances/ or a path); exit 3 when the plan
    breaks an SLO or memory (after printing and writing the result)."""
    output_file(json_out, "--json")
    route = parse_routing(routing, "--routing")
    inst = load_instance(instance)
    p = load_plan(plan, inst, load_model(inst.model).moe.num_experts)
    if framework is not None:
        p = replace(p, framework=Framework(framework))
    ev = evaluate_plan(
        p,
        inst,
        inst.workload(workload) if workload else None,
        surrogate=surrogate,
        pipeline=pipeline,
        routing=route,
    )
    print_evaluation(ev, make_console())
    if json_out is not None:
        write_json(json_out, ev.to_dict())
    broken = [f.reason for f in ev.flags if not f.ok]
    if broken:
        raise InfeasibleError(f"the plan breaks {len(broken)} check(s): {'; '.join(broken)}")
