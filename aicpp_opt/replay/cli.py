"""`aicpp-opt replay` and `aicpp-opt calibrate comm`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InputError
from aicpp_opt.replay.expand import ReplayInput
from aicpp_opt.replay.verify import Prediction


def load_plan_input(instance: str, plan_path: str, workload: str | None):
    """The plan's ReplayInput and its prediction, through the spec, the evaluator and the
    adapter (``aicpp_opt.replay.adapter``)."""
    from aicpp_opt.perf import evaluate
    from aicpp_opt.replay.adapter import prediction, replay_input
    from aicpp_opt.spec import load_instance, load_plan

    inst = load_instance(instance)
    plan = load_plan(plan_path)
    wl = inst.workload(workload)
    evaluation = evaluate(plan, inst, wl)
    return replay_input(plan, inst, wl, evaluation), prediction(evaluation)


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
def replay(instance, plan_json, workload, timeline, astra_sim, trace_dir, astra_timeout):
    """Replay PLAN_JSON on INSTANCE's network: per-role times, predicted vs replayed."""
    inp, pred = load_plan_input(instance, plan_json, workload)
    run_replay(
        inp,
        pred,
        timeline=timeline,
        astra_sim=astra_sim,
        trace_dir=trace_dir,
        astra_timeout=astra_timeout,
    )


def run_replay(
    inp: ReplayInput,
    pred: Prediction | None,
    *,
    timeline=None,
    astra_sim=None,
    trace_dir=None,
    astra_timeout=300.0,
) -> None:
    """Replay, print, draw; then, if asked, AstraSim. An AstraSim failure is printed after the
    built-in result, which stays as printed, and exits 2."""
    from aicpp_opt.replay import astra
    from aicpp_opt.replay.run import replay as run

    binary = astra.resolve_binary(astra_sim)
    result = run(inp)
    _print_result(result, pred)
    if timeline:
        from aicpp_opt.replay.timeline import draw

        click.echo(f"timeline: {draw(result, Path(timeline))}")
    if binary is None and not trace_dir:
        return
    out_dir = Path(trace_dir) if trace_dir else Path.cwd() / "astra_trace"
    files = astra.write_inputs(result.graph, inp.topology, out_dir, inp.hbm_bw)
    click.echo(f"chakra traces and AstraSim configs: {out_dir}")
    if binary is not None:
        ext = astra.run(binary, files, astra_timeout)
        click.echo(
            f"AstraSim decode step: {ext.makespan_s * 1e3:.3f} ms "
            f"(built-in {result.tpot_s * 1e3:.3f} ms)"
        )


def _print_result(result, pred: Prediction | None) -> None:
    from aicpp_opt.replay.verify import compare

    click.echo(f"replay: {result.simulator}")
    for role, t in result.roles.items():
        click.echo(
            f"  {role:<10} {t.gpus:>5} GPUs  finish {t.finish_s * 1e3:9.3f} ms  "
            f"busy {t.busy_s * 1e3:9.3f} ms  utilisation {t.utilisation:6.1%}"
        )
    for cat, s in sorted(result.category_s.items()):
        click.echo(f"  mean {cat:<15} {s * 1e6:10.2f} us")
    if pred is None:
        click.echo(f"  TPOT {result.tpot_s * 1e3:.3f} ms")
        return
    cmp = compare(pred, result)
    rows = [
        ("TPOT ms", pred.tpot_s * 1e3, cmp.replayed.tpot_s * 1e3),
        ("throughput tok/s", pred.throughput_tps, cmp.replayed.throughput_tps),
    ]
    if pred.ttft_s is not None and cmp.replayed.ttft_s is not None:
        rows.insert(0, ("TTFT ms", pred.ttft_s * 1e3, cmp.replayed.ttft_s * 1e3))
    click.echo(f"  {'':<18}{'predicted':>12}{'replayed':>12}{'diff':>9}")
    for name, p, r in rows:
        click.echo(f"  {name:<18}{p:12.3f}{r:12.3f}{(r / p - 1) if p else 0:9.1%}")


@click.command("comm")
@click.argument("instance")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the tables (default cost_tables/<instance>/sim).",
)
def calibrate_comm(instance, out):
    """Sweep collectives and M x N patterns on INSTANCE's topology, fit PWL tables, and
    compare with aiconfigurator-core's measured NCCL tables."""
    from aicpp_opt.replay import comm_sweep, nccl_reference
    from aicpp_opt.replay.topology import Topology

    name, system, dims = read_instance_topology(instance)
    topo = Topology.from_json(dims, "cluster.pools[0].topology")
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


def read_instance_topology(instance: str) -> tuple[str, str, list[dict]]:
    """(name, system, topology dims) of an instance's first pool, from a path or a name
    under instances/."""
    path = Path(instance)
    if not path.is_file():
        path = PROJECT_ROOT / "instances" / f"{instance}.json"
    if not path.is_file():
        raise InputError("instance", f"{instance} is neither a file nor a name in instances/")
    try:
        raw = json.loads(path.read_text())
        pool = raw["cluster"]["pools"][0]
        return raw.get("name", path.stem), pool["system"], pool["topology"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
        raise InputError(
            "instance", f"{path}: needs cluster.pools[0].system and .topology ({err})"
        ) from None
