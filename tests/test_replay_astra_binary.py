"""The real AstraSim analytical binary (``AICPP_ASTRA_SIM``; skipped without one) against
the built-in replay on the same graphs: single collectives, the shipped hand plans and the
plans ``solve`` picks on the single-pool instances.

Agreement is asserted where both simulators model the same thing: the congestion-unaware
backend (no link is shared in it), one-dimension topologies (AstraSim sends a message over
one dimension only), GPUs whose sends do not queue (AstraSim keeps one in flight per GPU;
where that tells, AstraSim must lie between the built-in with shared ports and with its
rule). The remaining differences are measured and explained by
``benchmarks/astra_vs_builtin.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.adapter import network, replay_plan
from aicpp_opt.replay.astra import ENV_VAR, AstraResult, one_comm_at_a_time, run, write_inputs
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan

BINARY = os.environ.get(ENV_VAR, "")
pytestmark = pytest.mark.skipif(
    not Path(BINARY).is_file(),
    reason=f"no AstraSim binary: set {ENV_VAR} to AstraSim_Analytical_Congestion_Unaware",
)
UNAWARE = "Congestion_Unaware" in Path(BINARY).name
needs_unaware = pytest.mark.skipif(
    not UNAWARE,
    reason="tolerances hold for the congestion-unaware backend (the congestion-aware one "
    "stores and forwards each message whole at a switch)",
)
SWITCH8 = Topology((Dim("switch", 8, 450e9, 250e-9),))
PLANS = ["nvl72_afd", "nvl72_agg", "nvl72_pd", "nvl72_afd_tp2_agrs"]
MULTI_DIM = ("small_h200_16", "h200_hgx_9x8")  # two dimensions of more than one GPU


def both(graph: Graph, topo: Topology, tmp_path: Path) -> tuple[float, float]:
    astra = run(Path(BINARY), write_inputs(graph, topo, tmp_path)).makespan_s
    return astra, simulate(graph, topo).makespan


def agrees(astra_s: float, graph: Graph, topo) -> None:
    """AstraSim's step within 5% of the built-in one on the same graph; where a GPU's sends
    queue in AstraSim (the built-in with one send in flight per GPU is over 5% slower: an EP
    exchange of small messages to many peers), below the built-in with AstraSim's rule and
    not 5% below the plain built-in (AstraSim queues the sends, but its congestion-unaware
    backend shares no link, so the receivers' ports are not shared either)."""
    builtin = simulate(graph, topo).makespan
    queued = simulate(one_comm_at_a_time(graph), topo).makespan
    if queued <= builtin * 1.05:
        assert astra_s == pytest.approx(builtin, rel=0.05)
    else:
        assert builtin * 0.95 < astra_s < queued


@needs_unaware
@pytest.mark.parametrize(
    ("kind", "members", "algorithm"),
    [
        ("all_reduce", 8, "ring"),
        ("all_gather", 8, "ring"),
        ("reduce_scatter", 8, "ring"),
        ("all_reduce", 8, "halving_doubling"),
        ("reduce_scatter", 8, "halving_doubling"),
        ("alltoall", 8, "ring"),
        ("all_reduce", 4, "ring"),
        ("all_gather", 4, "ring"),
    ],
)
def test_one_collective_takes_the_same_time(tmp_path, kind, members, algorithm):
    g = Graph()
    g.collective(kind, range(members), 64 << 20, algorithm, "c", "c")
    astra, builtin = both(g, SWITCH8, tmp_path)
    assert astra == pytest.approx(builtin, rel=1e-3)


@needs_unaware
def test_two_collectives_of_one_group_in_a_row_finish(tmp_path):
    # a repeated dependency used to leave both ranks waiting forever (reported as 0 ms)
    g = Graph()
    a = [g.compute(r, 1e-5, "attn", "attention") for r in (0, 1)]
    first = g.collective("all_reduce", (0, 1), 1 << 20, "ring", "tp", "tp", a)
    g.collective("all_reduce", (0, 1), 1 << 20, "ring", "tp", "tp", (first, first))
    astra, builtin = both(g, SWITCH8, tmp_path)
    assert astra == pytest.approx(builtin, rel=1e-2)


@pytest.mark.parametrize("name", PLANS)
def test_shipped_plans_replay_on_astrasim(tmp_path, name):
    inst = load_instance("h200_nvl72")
    plan = load_plan(f"instances/plans/{name}.json", inst)
    rep = replay_plan(plan, inst, astra_sim=BINARY, trace_dir=str(tmp_path / "tr"))
    assert isinstance(rep.astra, AstraResult), rep.astra
    if UNAWARE:
        agrees(rep.astra.makespan_s, rep.result.graph, network(inst))
    else:
        assert rep.astra.makespan_s > 0


@pytest.mark.parametrize("instance", ["h200_nvl72", "gb200_nvl72", "small_h200_16", "h200_hgx_9x8"])
def test_solved_single_pool_plans_replay_on_astrasim(tmp_path, instance):
    out = tmp_path / "solve.json"
    res = CliRunner().invoke(main, ["solve", instance, "--no-replay", "--json", str(out)])
    assert res.exit_code == 0, res.output
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(json.loads(out.read_text())["plan"]))
    args = ["replay", instance, str(plan), "--astra-sim", BINARY, "--json"]
    res = CliRunner().invoke(main, [*args, "--trace-dir", str(tmp_path / "tr")])
    if not UNAWARE and instance in MULTI_DIM:
        # c459ab6's congestion-aware backend takes one-dimension topologies only
        assert res.exit_code == 2 and "only support 1-dim" in res.output
        return
    assert res.exit_code == 0, res.output
    astra = json.loads(res.output)["astra_sim"]
    # a transfer between GPUs that differ in several dimensions crosses only one in
    # AstraSim (stated in a note): there the two do not model the same network
    crossing = any("differ in several dimensions" in n for n in astra["notes"])
    if UNAWARE and not crossing:
        inst = load_instance(instance)
        graph = replay_plan(load_plan(plan, inst), inst).result.graph
        agrees(astra["step_ms"] / 1e3, graph, network(inst))
    else:
        assert astra["step_ms"] > 0
