"""AstraSim against the built-in replay on the same op graphs: single collectives and
point-to-point patterns on small topologies, then the decode step of the shipped hand plans
and of the plan ``solve`` picks on every shipped instance (first workload).

Both simulators get the same graph: the decode step of replica 0 of the plan's first serving
role, as ``replay_plan`` builds it from the op model (a decode-only iteration for an
aggregated role); AstraSim gets it through the Chakra traces and configs of
``aicpp_opt.replay.astra``. The notes under a row list what the written inputs say AstraSim
runs differently. Other differences, shown by the pattern rows: AstraSim keeps one send or
collective in flight per GPU (sends go one after another: one path latency more per send
than the built-in's shared port; the ``1 in flight`` column is the built-in simulator on the
graph with each GPU's sends and collectives chained so, ``astra.one_comm_at_a_time``); the
congestion-unaware backend shares no link (``incast``: several senders into one GPU each
get full bandwidth, the built-in shares the receiver's link); the congestion-aware backend
stores and forwards each message whole at a switch (``one send``: twice the serialization)
and takes one-dimension topologies only; a message between GPUs that differ in several
dimensions crosses only the first of them in AstraSim (``cross-node send``).

    python benchmarks/astra_vs_builtin.py [--astra-sim PATH ...] [instances/x.json ...]

Without a binary (``--astra-sim`` or ``AICPP_ASTRA_SIM``) it says so and skips.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InfeasibleError, InputError
from aicpp_opt.model.routing import parse_routing
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.adapter import network, replay_plan
from aicpp_opt.replay.astra import (
    ENV_VAR,
    one_comm_at_a_time,
    resolve_binary,
    run,
    write_inputs,
)
from aicpp_opt.replay.check import replay_checker
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import solve
from aicpp_opt.spec.instance import Instance, load_instance
from aicpp_opt.spec.plan import Plan, load_plan

HAND_PLANS = ["nvl72_afd", "nvl72_agg", "nvl72_pd", "nvl72_afd_tp2_agrs"]
SWITCH8 = Topology((Dim("switch", 8, 450e9, 250e-9),))
HGX = Topology((Dim("switch", 8, 450e9, 250e-9), Dim("switch", 9, 50e9, 2e-6)))
MIB64 = 64 << 20


def patterns() -> list[tuple[str, Graph, Topology]]:
    """Single collectives (64 MiB, 8-GPU switch at 450 GB/s) and point-to-point patterns."""
    out = []
    for kind, algo, n in [
        ("all_reduce", "ring", 8),
        ("all_gather", "ring", 8),
        ("reduce_scatter", "ring", 8),
        ("all_reduce", "halving_doubling", 8),
        ("alltoall", "ring", 8),
        ("all_reduce", "ring", 4),
        ("alltoall", "ring", 4),
    ]:
        g = Graph()
        g.collective(kind, range(n), MIB64, algo, kind, "c")
        where = "all 8" if n == 8 else f"{n} of 8"
        out.append((f"{kind} {algo} ({where})", g, SWITCH8))
    g = Graph()
    g.transfer(0, 1, MIB64, "send", "p2p")
    out.append(("one send", g, SWITCH8))
    g = Graph()
    for src in (1, 2, 3):
        g.transfer(src, 0, MIB64, "send", "p2p")
    out.append(("incast 3 -> 1", g, SWITCH8))
    g = Graph()
    for dst in (1, 2, 3):
        g.transfer(0, dst, MIB64, "send", "p2p")
    out.append(("fan-out 1 -> 3", g, SWITCH8))
    g = Graph()
    for dst in range(1, 8):
        g.transfer(0, dst, 64 << 10, "send", "p2p")
    out.append(("fan-out 1 -> 7, 64 KiB each", g, SWITCH8))
    g = Graph()
    g.transfer(0, 9, MIB64, "send", "p2p")
    out.append(("cross-node send (8x9)", g, HGX))
    return out


def decode_graph(plan: Plan, inst: Instance, routing: str = "eplb") -> Graph:
    """The decode-step graph of replica 0 of the plan's first serving role."""
    return replay_plan(plan, inst, routing=parse_routing(routing, "--routing")).result.graph


def cases(paths: list[str]):
    """(label, decode graph, network) of the hand plans, of nvl72_pd with balanced routing
    (equal EP shares: what is left is AstraSim's one send at a time) and of the plan ``solve``
    picks for each instance."""
    nvl72 = load_instance("h200_nvl72")
    for name in HAND_PLANS:
        plan = load_plan(PROJECT_ROOT / "instances" / "plans" / f"{name}.json", nvl72)
        yield f"plan {name}", decode_graph(plan, nvl72), network(nvl72)
        if name == "nvl72_pd":
            equal = decode_graph(plan, nvl72, "balanced")
            yield "plan nvl72_pd, equal EP shares", equal, network(nvl72)
    for path in paths:
        inst = load_instance(path)
        prob = make_problem(inst, inst.workloads[:1])
        try:
            out = solve(prob, replay=replay_checker(inst, prob.routing))
        except InfeasibleError as err:
            print(f"{inst.name}: infeasible ({err})", file=sys.stderr)
            continue
        graph = replay_plan(out.plan, inst, routing=prob.routing).result.graph
        yield f"solve {inst.name} ({out.plan.mode})", graph, network(inst)


def astra_ms(binary: Path, graph: Graph, topo, folder: Path) -> tuple[float | None, list[str]]:
    """AstraSim's makespan (ms, None when it refused or failed) and the notes: what the
    written inputs say it runs differently, or its error."""
    try:
        inputs = write_inputs(graph, topo, folder)
    except InputError as err:
        return None, [f"not written: {err.message}"]
    try:
        return run(binary, inputs).makespan_s * 1e3, list(inputs.notes)
    except InputError as err:
        return None, [*inputs.notes, f"{binary.name}: {err.message.split(': ', 1)[-1]}"]


def row(label: str, graph: Graph, topo, binaries: list[Path], tmp: Path) -> None:
    builtin_ms = simulate(graph, topo).makespan * 1e3
    serial_ms = simulate(one_comm_at_a_time(graph), topo).makespan * 1e3
    cells, notes = [], {}
    for i, binary in enumerate(binaries):
        ms, got = astra_ms(binary, graph, topo, tmp / f"{len(list(tmp.iterdir()))}_{i}")
        notes.update(dict.fromkeys(got))
        cells.append(
            f"{'-':>20}{'-':>8}" if ms is None else f"{ms:20.4f}{ms / builtin_ms - 1:+8.1%}"
        )
    print(f"{label:<40}{builtin_ms:12.4f}{serial_ms:14.4f}{''.join(cells)}")
    for note in notes:
        print(f"    note: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*")
    ap.add_argument("--astra-sim", action="append", default=[], help="binary; repeatable")
    args = ap.parse_args(argv)
    raw = args.astra_sim or ([os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else [])
    if not raw:
        print(
            f"SKIPPED: no AstraSim binary; pass --astra-sim PATH or set {ENV_VAR} "
            "(AstraSim_Analytical_Congestion_Unaware, optionally the Congestion_Aware one too)",
            file=sys.stderr,
        )
        return 0
    binaries = [resolve_binary(b) for b in raw]
    paths = args.instances or sorted(str(p) for p in (PROJECT_ROOT / "instances").glob("*.json"))
    names = "".join(
        f"{b.name.removeprefix('AstraSim_Analytical_'):>20}{'diff':>8}" for b in binaries
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        builtin = f"{'built-in ms':>12}{'1 in flight':>14}"
        print(f"{'pattern (64 MiB unless stated)':<40}{builtin}{names}")
        for label, graph, topo in patterns():
            row(label, graph, topo, binaries, tmp)
        print(f"\n{'decode step':<40}{builtin}{names}")
        for label, graph, topo in cases(paths):
            row(label, graph, topo, binaries, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
