"""One schedule for every mode: the per-layer cycle on hand-worked cases (two-batch overlap on a
plain worker, K micro-batches on an AFD unit), the step it builds, and the replay, which does not
assume the cycle model, against it."""

import pytest
from forwards import afd_forward, plain_forward

from aicpp_opt.model.ops import Stage
from aicpp_opt.model.schedule import AFD_RESOURCES, PLAIN_RESOURCES, cycle, schedule, step_seconds
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.build import ReplicaGpus, forward_graph

US = 1e-6


def test_two_batch_overlap_on_a_plain_worker_by_hand():
    """Attention 100, shared 20, experts 80 us on the GPU; dispatch 30 and combine 50 us on the
    network. K = 2: GPU load 200, network 80, one micro-batch's trip 280: the GPU binds at 400
    per layer, against 560 serial."""
    stages = {
        Stage.ATTENTION: 100 * US,
        Stage.SHARED: 20 * US,
        Stage.DISPATCH: 30 * US,
        Stage.EXPERTS: 80 * US,
        Stage.COMBINE: 50 * US,
    }
    c = cycle(stages, PLAIN_RESOURCES, 2, "pipelined")
    assert c.seconds == pytest.approx(400 * US)
    assert c.serial == pytest.approx(560 * US)
    assert c.round_trip == pytest.approx(280 * US)
    assert c.binds.startswith("GPU")
    assert cycle(stages, PLAIN_RESOURCES, 2, "serial").seconds == pytest.approx(560 * US)


def test_afd_micro_batches_by_hand():
    """The same stage times on an AFD unit: every stage on its own resource. K = 2: the trip
    (280) binds over 2 x the busiest (attention 120); K = 3: 3 x 120 = 360 binds."""
    stages = {
        Stage.ATTENTION: 100 * US,
        Stage.SHARED: 20 * US,
        Stage.DISPATCH: 30 * US,
        Stage.EXPERTS: 80 * US,
        Stage.COMBINE: 50 * US,
    }
    two = cycle(stages, AFD_RESOURCES, 2, "pipelined")
    assert two.seconds == pytest.approx(280 * US) and two.binds == "one micro-batch's round trip"
    three = cycle(stages, AFD_RESOURCES, 3, "pipelined")
    assert three.seconds == pytest.approx(360 * US) and three.binds.startswith("attention GPUs")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_step_is_layers_times_cycle_plus_step_ops(k):
    fwd, _ = afd_forward(k=k, moe_layers=5, t_a=1e-4, t_f=3e-4, head=2e-4)
    step = schedule(fwd)
    per_layer = max(k * 3e-4, 4e-4) if k > 1 else 4e-4  # links carry no time in this forward
    assert step.total == pytest.approx(5 * per_layer + k * 2e-4)
    assert step_seconds(fwd) == pytest.approx(step.total)
    credits = [op for op in step.ops if op.name.startswith("overlap credit")]
    assert (k == 1) == (not credits)


def _replay(fwd, shape, gpus, topo, dispatch="direct"):
    graph, _, _ = forward_graph(fwd, gpus, shape, dispatch)
    return simulate(graph, topo).makespan


@pytest.mark.parametrize("t_f", [1e-4, 4e-4])
def test_replay_of_an_afd_unit_matches_the_cycle_model(t_f):
    """4 attention and 2 FFN GPUs on one NVLink switch, K = 2, 20 layers: the replay's own
    dependencies give the model's cycle up to pipeline fill (one round trip)."""
    bw, lat = 450e9, 250e-9
    topo = Topology((Dim("switch", 8, bw, lat),))
    fwd, shape = afd_forward(k=2, moe_layers=20, t_a=1e-4, t_f=t_f, a2f=4e6, f2a=4e6)
    gpus = ReplicaGpus((0, 1, 2, 3), (4, 5), (((0, 1, 2, 3), (4, 5)),))
    replayed = _replay(fwd, shape, gpus, topo)
    # each A->F moves 4 MB from every attention GPU: the 2 FFN GPUs take 8 MB each at 450 GB/s
    link = 4e6 * 4 / 2 / bw + 2 * lat
    trip = 1e-4 + link + t_f + link
    model = 20 * max(2 * 1e-4, 2 * t_f, 2 * link, trip)
    assert model <= replayed <= model + trip * 1.05


def test_replay_of_one_micro_batch_is_the_serial_sum():
    bw, lat = 450e9, 250e-9
    topo = Topology((Dim("switch", 8, bw, lat),))
    fwd, shape = afd_forward(k=1, moe_layers=6, t_a=1e-4, t_f=2e-4, a2f=2e6, f2a=2e6)
    gpus = ReplicaGpus((0, 1, 2, 3), (4, 5), (((0, 1, 2, 3), (4, 5)),))
    link = 2e6 * 4 / 2 / bw + 2 * lat
    assert _replay(fwd, shape, gpus, topo) == pytest.approx(6 * (1e-4 + link + 2e-4 + link))


@pytest.mark.parametrize("nbytes", [3e6, 12e6])
def test_plain_two_batch_overlap_replay_against_the_cycle_bound(nbytes):
    """A plain worker of 4 GPUs with EP traffic, two micro-batches: each GPU sends ``nbytes``
    per dispatch and per combine through a switch (nbytes / bw + two hops). The replay never
    beats the cycle bound and stays within one round trip of it."""
    bw, lat = 50e9, 2e-6
    topo = Topology((Dim("switch", 4, bw, lat),))
    fwd, shape = plain_forward(k=2, moe_layers=10, gpus=4, dispatch=nbytes, combine=nbytes)
    replayed = _replay(fwd, shape, ReplicaGpus((0, 1, 2, 3)), topo, "")
    link = nbytes / bw + 2 * lat
    trip = 2e-4 + 2 * link
    model = 10 * max(2 * 2e-4, 2 * 2 * link, trip)
    assert model * (1 - 1e-9) <= replayed
    assert replayed <= model + trip * 1.05
