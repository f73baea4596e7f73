"""Timing a pattern alone: a ring collective over many domains, run as its first two domains'
part, against the whole ring simulated flow by flow."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.netsim.collectives import ring_part
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.patterns import Geometry, Pattern, _ring_part, graph, seconds
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology

RINGS = (Pattern.ALL_GATHER, Pattern.REDUCE_SCATTER, Pattern.ALL_REDUCE)


def whole(geom: Geometry, topo: Topology, nbytes: float) -> float:
    return simulate(graph(geom, topo, nbytes), topo).makespan


@given(
    st.sampled_from(RINGS),
    st.sampled_from(["switch", "fully_connected", "ring"]),
    st.sampled_from(["switch", "fully_connected"]),
    st.integers(1, 4),
    st.integers(3, 6),
    st.floats(1e9, 900e9),
    st.floats(1e9, 900e9),
    st.floats(0.0, 5e-6),
    st.floats(1.0, 4e9),
)
@settings(max_examples=30, deadline=None)
def test_ring_over_domains_runs_as_its_two_domain_part(
    pattern, inner, outer, per, domains, bw_in, bw_out, lat, nbytes
):
    """Domains joined by a switch or fully connected dimension: the part's time is the whole
    ring's, at any bandwidths, latencies and sizes (the latency-only size too)."""
    topo = Topology((Dim(inner, 4, bw_in, lat / 3), Dim(outer, 8, bw_out, lat)))
    geom = Geometry(pattern, per * domains, domains=domains)
    assert _ring_part(geom, topo) is not None
    for size in (nbytes, 1e-9):
        assert seconds(geom, topo, size) == pytest.approx(whole(geom, topo, size), rel=1e-12)


def test_a_ring_of_domains_is_not_two_domains_alike():
    """Why a ring-shaped outer dimension is simulated whole: the ring's wrap-around from the
    last domain to the first takes several hops, which two domains' part would not see."""
    topo = Topology((Dim("switch", 2, 450e9, 1e-6), Dim("ring", 8, 50e9, 5e-6)))
    geom = Geometry(Pattern.ALL_GATHER, 12, domains=6)
    members = tuple(d * 2 + i for d in range(2) for i in range(2))
    src, dst, sizes, deps = ring_part("all_gather", members, 1e6, 12)
    part = Graph()
    for j in range(len(src)):
        part.transfer(src[j], dst[j], sizes[j], "part", "comm", deps[j])
    assert _ring_part(geom, topo) is None
    assert simulate(part, topo).makespan < 0.99 * whole(geom, topo, 1e6)
    assert seconds(geom, topo, 1e6) == whole(geom, topo, 1e6)
