"""One schedule for every mode: the per-layer cycle on hand-worked cases (two-batch overlap on a
plain worker, K micro-batches on an AFD unit), the step it builds, and the replay, which does not
assume the cycle model, against it."""

import pytest
from forwards import afd_forward, plain_forward

from aicpp_opt.model.ops import Stage
from aicpp_opt.model.schedule import (
    AFD_RESOURCES,
    PLAIN_RESOURCES,
    cycle,
    schedule,
    sglang_decode_cycle,
    step_seconds,
)
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


def test_sglang_decode_overlap_by_hand():
    """Prepare 10, attention 90, shared 20, experts 80 us on the GPU (200 per micro-batch).
    Dispatch 24 and combine 24 hide behind shared + the other's prepare (30) and the other's
    attention (90): 400 per layer. Dispatch 64, combine 124: the GPU waits 34 for each, twice
    (once per micro-batch): 400 + 2 x 34 + 2 x 34 = 536, where the cyclic-network bound says
    max(2 x 200, 200 + 188) = 400."""
    base = {Stage.PREPARE: 10 * US, Stage.ATTENTION: 90 * US, Stage.SHARED: 20 * US}
    base[Stage.EXPERTS] = 80 * US
    hidden = {**base, Stage.DISPATCH: 24 * US, Stage.COMBINE: 24 * US}
    waits = {**base, Stage.DISPATCH: 64 * US, Stage.COMBINE: 124 * US}
    assert sglang_decode_cycle(hidden)[0] == pytest.approx(400 * US)
    assert sglang_decode_cycle(waits)[0] == pytest.approx(536 * US)
    assert cycle(waits, PLAIN_RESOURCES, 2, "pipelined", True).seconds == pytest.approx(536 * US)
    assert cycle(waits, PLAIN_RESOURCES, 2, "pipelined").seconds == pytest.approx(400 * US)


@pytest.mark.parametrize(("dispatch", "combine"), [(1e6, 1e6), (3e6, 6e6), (6e6, 2e6)])
def test_replay_of_plain_decode_overlap_matches_the_sglang_cycle(dispatch, combine):
    """The stages above on 4 GPUs behind one 50 GB/s switch, 20 layers: the replay runs each
    GPU's stream in SGLang's order and times the sends itself (each GPU sends its bytes over its
    port: bytes / bandwidth + two hops); its step is the cycle model's within one round trip
    (the pipeline's fill and drain)."""
    bw, lat = 50e9, 2e-6
    topo = Topology((Dim("switch", 4, bw, lat),))
    kw = {"t_prep": 10 * US, "t_attn": 90 * US, "t_shared": 20 * US, "t_exp": 80 * US}
    fwd, shape = plain_forward(2, 20, 4, dispatch=dispatch, combine=combine, decode=True, **kw)
    replayed = _replay(fwd, shape, ReplicaGpus((0, 1, 2, 3)), topo, "")
    d, c = dispatch / bw + 2 * lat, combine / bw + 2 * lat
    stages = {Stage.PREPARE: 10 * US, Stage.ATTENTION: 90 * US, Stage.SHARED: 20 * US}
    stages |= {Stage.EXPERTS: 80 * US, Stage.DISPATCH: d, Stage.COMBINE: c}
    model = 20 * sglang_decode_cycle(stages)[0]
    assert step_seconds(fwd) == pytest.approx(20 * 400 * US)  # the forward's links carry 0 s
    assert abs(replayed - model) <= 200 * US + d + c
