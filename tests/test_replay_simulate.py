"""Closed forms and contention of the built-in flow-level simulator."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.errors import InputError
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import max_min_rates, simulate
from aicpp_opt.netsim.topology import Dim, Topology

BW, LAT = 450e9, 250e-9


def switch(n: int, bw: float = BW, lat: float = LAT) -> Topology:
    return Topology((Dim("switch", n, bw, lat),))


@given(st.floats(1.0, 1e10), st.integers(2, 16), st.floats(1e9, 1e12), st.floats(0, 1e-5))
@settings(max_examples=40, deadline=None)
def test_single_transfer_is_latency_plus_size_over_bandwidth(size, n, bw, lat):
    g = Graph()
    g.transfer(0, n - 1, size, "x", "comm")
    got = simulate(g, switch(n, bw, lat)).makespan
    assert got == pytest.approx(2 * lat + size / bw, rel=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_uncontended_ring_all_reduce_matches_closed_form(n):
    size = 64e6
    g = Graph()
    g.collective("all_reduce", range(n), size, "ring", "ar", "comm")
    got = simulate(g, switch(n)).makespan
    rounds = 2 * (n - 1)
    assert got == pytest.approx(rounds / n * size / BW + rounds * 2 * LAT, rel=1e-12)


def test_ring_all_reduce_on_a_ring_topology_uses_neighbour_links():
    n, size = 8, 1e8
    topo = Topology((Dim("ring", n, BW, LAT),))
    g = Graph()
    g.collective("all_reduce", range(n), size, "ring", "ar", "comm")
    rounds = 2 * (n - 1)
    assert simulate(g, topo).makespan == pytest.approx(rounds / n * size / BW + rounds * LAT)


def test_many_to_one_shares_the_receivers_port():
    k, size = 7, 1e9
    g = Graph()
    for i in range(1, k + 1):
        g.transfer(i, 0, size, "x", "comm")
    sim = simulate(g, switch(8))
    assert sim.makespan == pytest.approx(2 * LAT + k * size / BW, rel=1e-12)


def test_two_flows_on_one_ring_link_halve_the_rate():
    topo = Topology((Dim("ring", 4, BW, LAT),))
    size = 1e9
    alone = Graph()
    alone.transfer(0, 2, size, "x", "comm")
    both = Graph()
    both.transfer(0, 2, size, "x", "comm")  # 0->1->2
    both.transfer(1, 2, size, "y", "comm")  # shares link 1->2
    t_alone = simulate(alone, topo).makespan
    t_both = simulate(both, topo).makespan
    assert t_alone == pytest.approx(2 * LAT + size / BW)
    assert t_both == pytest.approx(2 * LAT + 2 * size / BW)


def test_opposite_directions_do_not_contend():
    g = Graph()
    g.transfer(0, 1, 1e9, "x", "comm")
    g.transfer(1, 0, 1e9, "y", "comm")
    assert simulate(g, switch(2)).makespan == pytest.approx(2 * LAT + 1e9 / BW)


def test_max_min_gives_leftover_to_unconstrained_flow():
    # link 0 cap 10 shared by flows a, b; link 1 cap 100 used by b and c.
    links = np.array([[0, 1], [0, 2], [1, 2]])
    cap = np.array([10.0, 100.0, np.inf])
    rates = max_min_rates(links, cap)
    assert rates.tolist() == pytest.approx([5.0, 5.0, 95.0])


@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 7), st.floats(1e3, 1e9)),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=30, deadline=None)
def test_contention_never_beats_the_lone_transfer(flows):
    topo = Topology((Dim("switch", 4, BW, LAT), Dim("ring", 2, 50e9, 1e-6)))
    g = Graph()
    for s, d, b in flows:
        g.transfer(s, d, b, "x", "comm")
    sim = simulate(g, topo)
    for i, (s, d, b) in enumerate(flows):
        lone = Graph()
        lone.transfer(s, d, b, "x", "comm")
        assert sim.op_end[i] >= simulate(lone, topo).makespan * (1 - 1e-9)
    egress = {}
    for s, d, b in flows:
        if s != d:
            egress[s] = egress.get(s, 0) + b
    if egress:  # a GPU cannot push its bytes faster than its injection port
        inj = BW + 50e9
        assert sim.makespan >= max(egress.values()) / inj * (1 - 1e-9)


def test_compute_is_serial_per_gpu_and_transfers_overlap_it():
    g = Graph()
    a = g.compute(0, 1e-3, "a", "attention")
    g.transfer(0, 1, 450e6, "t", "comm", (a,))  # 1 ms of data
    g.compute(0, 1e-3, "b", "attention")
    sim = simulate(g, switch(2))
    assert sim.op_start[2] == pytest.approx(1e-3)
    assert sim.makespan == pytest.approx(2e-3 + 2 * LAT)


@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter"])
def test_halving_doubling_moves_the_same_bytes_in_log_rounds(kind):
    n, size = 8, 8e8
    g = Graph()
    g.collective(kind, range(n), size, "halving_doubling", "c", "comm")
    phases = 2 if kind == "all_reduce" else 1
    expected = phases * ((n - 1) / n * size / BW + math.log2(n) * 2 * LAT)
    assert simulate(g, switch(n)).makespan == pytest.approx(expected)


def test_bad_input_names_the_field():
    with pytest.raises(InputError, match="topology"):
        Topology.from_json([{"kind": "torus", "size": 4, "bw_GBps": 1, "latency_ns": 1}])
    g = Graph()
    g.transfer(0, 9, 1.0, "x", "comm")
    with pytest.raises(InputError, match="GPU ids"):
        simulate(g, switch(4))
    with pytest.raises(InputError):
        g.collective("all_reduce", range(3), 1.0, "halving_doubling", "c", "comm")
        simulate(g, switch(4))
