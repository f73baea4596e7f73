"""`aicpp-opt replay` and `aicpp-opt calibrate comm`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import click

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InputError
from aicpp_opt.replay.astra import ENV_VAR, AstraResult


def load_plan(instance: str, plan_path: str, workload: str | None):
    """The instance, the validated plan, the workload and the plan's evaluation."""
    from aicpp_opt.perf.evaluate import evaluate_plan
    from aicpp_opt.spec.instance import load_instance
    from aicpp_opt.spec.model import load_model
    from aicpp_opt.spec.plan import load_plan as read_plan

    inst = load_instance(instance)
    plan = read_plan(plan_path, inst, load_model(inst.model).moe.num_experts)
    wl = inst.workload(workload)
    return inst, plan, wl, evaluate_plan(plan, inst, wl)


@click.command()
@click.argument("instance")
@click.argument("plan_json", type=click.Path(dir_okay=False))
@click.option("--workload", default=None, help="Workload name (default: the instance's first).")
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
def replay(instance, plan_json, workload, timeline, astra_sim, trace_dir, astra_timeout, as_json):
    """Replay PLAN_JSON on INSTANCE's network: per-role times, predicted vs replayed."""
    from aicpp_opt.replay.adapter import replay_plan

    inst, plan, wl, evaluation = load_plan(instance, plan_json, workload)
    report = replay_plan(
        plan,
        inst,
        wl,
        evaluation,
        astra_sim=astra_sim,
        trace_dir=trace_dir,
        timeline=timeline,
        astra_timeout=astra_timeout,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        print_report(report)
    if isinstance(report.astra, str) and (astra_sim or os.environ.get(ENV_VAR)):
        raise InputError("--astra-sim", "AstraSim failed (above); the built-in result stands")


def print_report(report) -> None:
    """Per-role times, mean op durations, predicted against replayed, AstraSim's result."""
    result, cmp = report.result, report.comparison
    click.echo(f"replay: {report.simulator}")
    for role, t in result.roles.items():
        click.echo(
            f"  {role:<10} {t.gpus:>5} GPUs  finish {t.finish_s * 1e3:9.3f} ms  "
            f"busy {t.busy_s * 1e3:9.3f} ms  utilisation {t.utilisation:6.1%}"
        )
    if result.prefill_s is not None:
        click.echo(
            f"  prefill forward {result.prefill_s * 1e3:.3f} ms, "
            f"KV transfer {result.kv_transfer_s * 1e3:.3f} ms"
        )
    for cat, s in sorted(result.category_s.items()):
        if cat != "sync":
            click.echo(f"  mean {cat:<15} {s * 1e6:10.2f} us")
    pred, rep = cmp.predicted, cmp.replayed
    rows = [
        ("TPOT ms", pred.tpot_s * 1e3, rep.tpot_s * 1e3),
        ("throughput tok/s", pred.throughput_tps, rep.throughput_tps),
    ]
    if pred.ttft_s is not None and report.ttft_s is not None:
        rows.insert(0, ("TTFT ms", pred.ttft_s * 1e3, report.ttft_s * 1e3))
    click.echo(f"  {'':<18}{'predicted':>12}{'replayed':>12}{'diff':>9}")
    for name, p, r in rows:
        diff = r / p - 1 if p and math.isfinite(p) else 0.0
        click.echo(f"  {name:<18}{p:12.3f}{r:12.3f}{diff:9.1%}")
    if report.timeline is not None:
        click.echo(f"timeline: {report.timeline}")
    if isinstance(report.astra, AstraResult):
        click.echo(
            f"AstraSim decode step: {report.astra.makespan_s * 1e3:.3f} ms "
            f"(built-in {report.tpot_s * 1e3:.3f} ms); inputs in {report.astra.trace_dir}"
        )
    elif report.astra is not None:
        click.echo(f"AstraSim: {report.astra}")


@click.command("comm")
@click.argument("instance")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the tables (default cost_tables/<instance>/sim).",
)
def calibrate_comm(instance, out):
    """Sweep collectives and M x N patterns on INSTANCE's (first pool's) topology, fit PWL
    tables, and compare with aiconfigurator-core's measured NCCL tables."""
    from aicpp_opt.replay import comm_sweep
    from aicpp_opt.replay.adapter import network
    from aicpp_opt.spec.instance import load_instance
    from calibrate import nccl_reference

    inst = load_instance(instance)
    name, system = inst.name, inst.pools[0].system
    topo = network(replace(inst, pools=inst.pools[:1]))
    try:
        measured = nccl_reference.load(system)
    except InputError as err:
        click.echo(f"no measured NCCL reference ({err}); tables use the nominal topology")
        measured = []
    train = [m for m in measured if m[1] < 8 and m[2] >= 1 << 20 and m[1] <= topo.num_gpus]
    model = comm_sweep.LinkModel()
    if train:
        model = comm_sweep.fit_link_model(
            topo, train, f"fitted on {system} NCCL tables, 2-4 GPUs, messages >= 1 MiB"
        )
    click.echo(
        f"link model: efficiency {model.efficiency:.3f}, overhead "
        f"{model.overhead_s * 1e6:.2f} us ({model.source})"
    )
    folder = Path(out) if out else PROJECT_ROOT / "cost_tables" / name / "sim"
    folder.mkdir(parents=True, exist_ok=True)
    for op in comm_sweep.OPS:
        table = comm_sweep.collective_table(name, topo, op, model)
        (folder / f"{op}.json").write_text(json.dumps(table, indent=1))
    (folder / "afd_mxn.json").write_text(
        json.dumps(comm_sweep.mxn_table(name, topo, model), indent=1)
    )
    click.echo(f"tables: {folder}")
    click.echo(f"{'op':<15}{'gpus':>5}{'bytes':>12}{'measured ms':>13}{'sim ms':>10}{'err':>8}")
    for op, n, nbytes, seconds in measured:
        if n > topo.num_gpus:
            continue
        sim = comm_sweep.collective_time(topo, op, n, nbytes, model=model)
        click.echo(
            f"{op:<15}{n:>5}{int(nbytes):>12}{seconds * 1e3:13.4f}{sim * 1e3:10.4f}"
            f"{sim / seconds - 1:8.1%}"
        )
