"""`aicpp-opt replay`: replay a plan on the network simulator beside the evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import click

from aicpp_opt.errors import InputError
from aicpp_opt.jsonio import dumps_json
from aicpp_opt.paths import output_dir, output_file
from aicpp_opt.replay.astra import ENV_VAR, AstraInputs, AstraResult, resolve_binary


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
    simulated from the op model, beside the evaluator's numbers. Options and output paths are
    checked before any work."""
    from aicpp_opt.evaluate.evaluation import evaluate_plan
    from aicpp_opt.model.routing import parse_routing
    from aicpp_opt.model.steps import accepted_tokens
    from aicpp_opt.replay.adapter import replay_plan
    from aicpp_opt.spec.instance import load_instance
    from aicpp_opt.spec.model import load_model
    from aicpp_opt.spec.plan import load_plan

    if not math.isfinite(astra_timeout) or astra_timeout <= 0:
        raise InputError(
            "--astra-timeout", f"must be a positive number of seconds, got {astra_timeout}"
        )
    output_file(Path(timeline) if timeline else None, "--timeline")
    if trace_dir:
        output_dir(Path(trace_dir), "--trace-dir")
    resolve_binary(astra_sim)
    route = parse_routing(routing, "--routing")
    inst = load_instance(instance)
    plan = load_plan(plan_json, inst, load_model(inst.model).moe.num_experts)
    wl = inst.workload(workload) if workload else None
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
        click.echo(dumps_json(report.to_dict(), indent=1), nl=False)
    else:
        accepted = {
            r.id: accepted_tokens(r.mtp, (wl or inst.workload(r.workload)).mtp_acceptance)
            for r in plan.roles
        }
        print_report(report, evaluate_plan(plan, inst, wl, routing=route), accepted)
    if isinstance(report.astra, InputError):
        err = report.astra
        raise InputError(err.field, f"{err.message} (the built-in result above stands)")


def print_report(report, evaluation, accepted: dict[str, float]) -> None:
    """Per-side times, mean op durations, the evaluator's numbers against the replayed ones
    (``accepted``: each role's accepted tokens per step), AstraSim's result."""
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
    click.echo(f"  {'':<34}{'evaluator':>12}{'replayed':>12}{'diff':>9}")
    for row in _rows(report, evaluation, accepted):
        name, p, r = row
        diff = r / p - 1 if p and math.isfinite(p) else 0.0
        click.echo(f"  {name:<34}{p:12.3f}{r:12.3f}{diff:9.1%}")
    click.echo("  (the replay has no arrivals: TTFT queueing is not part of it)")
    if report.timeline is not None:
        click.echo(f"timeline: {report.timeline}")
    astra = report.astra
    if isinstance(astra, AstraResult):
        builtin = result.sim.makespan
        click.echo(
            f"AstraSim decode step: {astra.makespan_s * 1e3:.3f} ms (built-in "
            f"{builtin * 1e3:.3f} ms on the same graph, {astra.makespan_s / builtin - 1:+.1%}); "
            f"{astra.binary.name}, inputs in {astra.trace_dir}"
        )
    elif isinstance(astra, AstraInputs):
        click.echo(f"AstraSim inputs in {astra.trace_dir}; no binary (--astra-sim, {ENV_VAR})")
    if isinstance(astra, AstraResult | AstraInputs):
        for note in astra.notes:
            click.echo(f"  AstraSim note: {note}")


def _rows(report, evaluation, accepted: dict[str, float]) -> list[tuple[str, float, float]]:
    """(label, evaluator, replayed) per role: step and TPOT of serving roles at the batch their
    rate fills (the evaluator's step there is its mean TPOT x accepted tokens per step; its
    breakdown's step is at the configured batch; a plan without rates is replayed at its
    configured batch, and the label shows both batches, evaluator's|replay's, when they
    differ), prefill forward and KV transfer of prefill roles; then the fleet's throughput."""
    rows = []
    for r in evaluation.roles:
        rep = report.role(r.role)
        if rep.prefill_s is not None:
            rows.append((f"{r.role} prefill ms", r.step.total * 1e3, rep.prefill_s * 1e3))
            kv = r.ttft.kv_transfer if r.ttft is not None else 0.0
            rows.append((f"{r.role} KV transfer ms", kv * 1e3, rep.kv_transfer_s * 1e3))
        else:
            step = r.tpot.mean * accepted[r.role]
            ev, rp = r.filled_batch, rep.batch_per_gpu
            at = f"{rp:.1f}" if ev is None or round(ev, 1) == round(rp, 1) else f"{ev:.1f}|{rp:.1f}"
            rows.append((f"{r.role} step ms at {at}/GPU", step * 1e3, rep.step_s * 1e3))
            rows.append((f"{r.role} TPOT mean ms", r.tpot.mean * 1e3, rep.tpot_s * 1e3))
    rows.append(("throughput tok/s", evaluation.output_tps, report.throughput_tps))
    return rows
