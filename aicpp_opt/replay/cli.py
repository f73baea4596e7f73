"""`aicpp-opt replay` and `aicpp-opt calibrate comm`."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import click

from aicpp_opt.errors import InputError
from aicpp_opt.replay.astra import ENV_VAR, AstraResult


@click.command()
@click.argument("instance")
@click.argument("plan_json", type=click.Path(dir_okay=False))
@click.option("--workload", default=None, help="Workload name (default: the instance's first).")
@click.option(
    "--routing", default="eplb", show_default=True, help="eplb | balanced | power_law_<a>"
)
@click.option("--timeline", type=click.Path(dir_okay=False), help="Write the Gantt chart PNG.")
@click.option(
    "--astra-sim",
    "astra_sim",
    default=None,
    help="AstraSim analytical binary (or set AICPP_ASTRA_SIM).",
)
@click.option(
    "--trace-dir",
    type=click.Path(file_okay=False),
    help="Where to write Chakra traces and AstraSim configs.",
)
@click.option("--astra-timeout", default=300.0, show_default=True, help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the replayed numbers as JSON.")
def replay(
    instance, plan_json, workload, routing, timeline, astra_sim, trace_dir, astra_timeout, as_json
):
    """Replay PLAN_JSON on INSTANCE's network: the decode step, the prefill and its KV transfer
    simulated from the op model, beside the evaluator's numbers."""
    from aicpp_opt.evaluate.evaluation import evaluate_plan
    from aicpp_opt.model.routing import parse_routing
    from aicpp_opt.replay.adapter import replay_plan
    from aicpp_opt.spec.instance import load_instance
    from aicpp_opt.spec.model import load_model
    from aicpp_opt.spec.plan import load_plan

    route = parse_routing(routing, "--routing")
    inst = load_instance(instance)
    plan = load_plan(plan_json, inst, load_model(inst.model).moe.num_experts)
    wl = inst.workload(workload)
    report = replay_plan(
        plan,
        inst,
        wl,
        routing=route,
        astra_sim=astra_sim,
        trace_dir=trace_dir,
        timeline=timeline,
        astra_timeout=astra_timeout,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        print_report(report, evaluate_plan(plan, inst, wl, routing=route))
    if isinstance(report.astra, str) and (astra_sim or os.environ.get(ENV_VAR)):
        raise InputError("--astra-sim", "AstraSim failed (above); the built-in result stands")


def print_report(report, evaluation) -> None:
    """Per-side times, mean op durations, the evaluator's numbers against the replayed ones,
    AstraSim's result."""
    result = report.result
    click.echo(f"replay: {report.simulator}")
    for role, t in result.roles.items():
        click.echo(
            f"  {role:<10} {t.gpus:>5} GPUs  finish {t.finish_s * 1e3:9.3f} ms  "
            f"busy {t.busy_s * 1e3:9.3f} ms  utilisation {t.utilisation:6.1%}"
        )
    for cat, s in sorted(result.category_s.items()):
        if cat != "sync":
            click.echo(f"  mean {cat:<15} {s * 1e6:10.2f} us")
    ev = evaluation
    rows = [
        ("TPOT mean ms", ev.tpot.mean * 1e3, report.tpot_s * 1e3),
        ("throughput tok/s", ev.flow.output_tps, report.throughput_tps),
    ]
    if report.prefill_s is not None:
        rows.insert(0, ("prefill ms", ev.ttft.prefill * 1e3, report.prefill_s * 1e3))
        rows.insert(1, ("KV transfer ms", ev.ttft.kv_transfer * 1e3, report.kv_transfer_s * 1e3))
    click.echo(f"  {'':<18}{'evaluator':>12}{'replayed':>12}{'diff':>9}")
    for name, p, r in rows:
        diff = r / p - 1 if p and math.isfinite(p) else 0.0
        click.echo(f"  {name:<18}{p:12.3f}{r:12.3f}{diff:9.1%}")
    click.echo("  (the replay has no arrivals: TTFT queueing is not part of it)")
    if report.timeline is not None:
        click.echo(f"timeline: {report.timeline}")
    if isinstance(report.astra, AstraResult):
        click.echo(
            f"AstraSim decode step: {report.astra.makespan_s * 1e3:.3f} ms "
            f"(built-in {report.step_s * 1e3:.3f} ms); inputs in {report.astra.trace_dir}"
        )
    elif report.astra is not None:
        click.echo(f"AstraSim: {report.astra}")


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@click.command("comm")
@click.option("--system", default=None, help="Calibrate this system's link model.")
@click.option("--instance", default=None, help="Write the model curves of this instance.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for --instance's curves (default: comm_curves/<instance name>).",
)
def calibrate_comm(system, instance, out):
    """Fit a system's link model (overhead, hop latency, bandwidth efficiency per NCCL
    collective and DeepEP mode) to its measured tables and write cost_tables/<system>/
    link_model.json; with --instance, write the curves the runtime prices that instance's
    unmeasured patterns with."""
    from aicpp_opt.costs import CostModel, linkmodel

    if system is None and instance is None:
        raise InputError("--system", "give --system S (calibrate) and/or --instance I (curves)")
    if system is not None:
        cm = CostModel.load(system)
        tables = {op: cm.table(op) for op in linkmodel.TABLES if cm.available(op)}
        fits = linkmodel.calibrate(cm.system, tables)
        path = cm.root / system / linkmodel.FILE
        linkmodel.write(path, fits)
        for name, fit in sorted(fits.items()):
            click.echo(f"{name:<36} {fit.describe()}")
        click.echo(f"wrote {path}")
    if instance is not None:
        _write_curves(instance, out)


def _write_curves(instance: str, out: Path | None) -> None:
    from aicpp_opt.costs.comm import instance_curves
    from aicpp_opt.spec.instance import load_instance

    inst = load_instance(instance)
    if not SAFE_NAME.match(inst.name):
        raise InputError("name", f"{inst.name!r} cannot name a folder; use letters, digits, ._-")
    folder = out or Path("comm_curves") / inst.name
    folder.mkdir(parents=True, exist_ok=True)
    for pool, doc in instance_curves(inst).items():
        path = folder / f"{pool}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        click.echo(f"wrote {path} ({len(doc['series'])} patterns)")
