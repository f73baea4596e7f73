"""Folded replays: a block of identical layers built on a few of them, the rest added as whole
periods, must time every role as the full graph does (the full simulation is the reference),
and the period arithmetic must match a hand-worked case."""

from __future__ import annotations

import numpy as np
import pytest
from forwards import plain_forward

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.netsim.simulate import SimResult, simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.adapter import replay_plan
from aicpp_opt.replay.build import Repeat, ReplicaGpus, forward_graph, unbuilt_seconds
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan

NVL72 = load_instance("h200_nvl72")
PLANS = PROJECT_ROOT / "instances" / "plans"
TIMES = ("step_s", "tpot_s", "prefill_s", "kv_transfer_s", "mixed_step_s", "rate_capacity")


@pytest.mark.parametrize("name", sorted(p.name for p in PLANS.glob("*.json")))
def test_folded_replay_times_every_role_as_the_full_graph(name):
    plan = load_plan(PLANS / name, NVL72)
    full = replay_plan(plan, NVL72)
    folded = replay_plan(plan, NVL72, fold=True)
    assert len(folded.result.graph.ops) < len(full.result.graph.ops) / 2
    for a, b in zip(full.roles, folded.roles, strict=True):
        for field in TIMES:
            want, got = getattr(a, field), getattr(b, field)
            assert (want is None) == (got is None), (a.role, field)
            if want is not None:
                assert got == pytest.approx(want, rel=1e-9), (a.role, field)
    assert folded.throughput_tps == pytest.approx(full.throughput_tps, rel=1e-9)


def _sim(starts: list[float], ops_per_layer: int = 2) -> tuple[SimResult, tuple[range, ...]]:
    """A simulation whose layer i's ops start at starts[i] (+0, +0.1, ...) and last 0.05 s."""
    start = np.array([t + 0.1 * j for t in starts for j in range(ops_per_layer)])
    sim = SimResult(start, start + 0.05, {}, float(start.max() + 0.05), 0)
    layers = tuple(range(i * ops_per_layer, (i + 1) * ops_per_layer) for i in range(len(starts)))
    return sim, layers


def test_one_layer_period_adds_the_missing_layers():
    # 6 of 20 layers built, one period of 1.0 s from layer 1 on; the last built layer differs
    sim, layers = _sim([0.0, 0.7, 1.7, 2.7, 3.7, 4.2])
    assert unbuilt_seconds(sim, (Repeat(20, layers),)) == pytest.approx(14 * 1.0)


def test_two_layer_period_adds_whole_periods():
    # alternating 1.0 / 1.5 s layers: every two layers take 2.5 s; 8 built of 20, 12 missing
    starts = [0.0, 0.4, 1.4, 2.9, 3.9, 5.4, 6.4, 7.0]
    sim, layers = _sim(starts)
    assert unbuilt_seconds(sim, (Repeat(20, layers),)) == pytest.approx(6 * 2.5)


def test_not_yet_periodic_layers_are_not_extrapolated():
    sim, layers = _sim([0.0, 1.0, 2.0, 3.1, 4.0, 5.0])
    assert unbuilt_seconds(sim, (Repeat(20, layers),)) is None


@pytest.mark.parametrize("decode", [False, True])
def test_folded_two_batch_overlap_times_the_full_graph(decode):
    """A plain worker's two micro-batches over 40 layers, in micro-batch order (prefill) and in
    SGLang's interleaved decode order, with the dispatch exposed: built on 12 layers, the
    folded step is the full one's."""
    topo = Topology((Dim("switch", 4, 50e9, 2e-6),))
    fwd, shape = plain_forward(
        2, 40, 4, 9e-5, 8e-5, 6e6, 2e6, t_prep=1e-5, t_shared=2e-5, decode=decode
    )
    gpus = ReplicaGpus((0, 1, 2, 3))
    full, _, _ = forward_graph(fwd, gpus, shape)
    part, _, repeats = forward_graph(fwd, gpus, shape, fold=12)
    sim = simulate(part, topo)
    unbuilt = unbuilt_seconds(sim, repeats)
    assert len(part.ops) < len(full.ops) / 2 and unbuilt is not None
    assert sim.makespan + unbuilt == pytest.approx(simulate(full, topo).makespan, rel=1e-9)
