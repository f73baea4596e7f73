"""One communication pattern on a topology, timed alone: a collective over a group, an
all-to-all token exchange (EP dispatch or combine), an M x N exchange between two GPU sets (AFD)
or one point-to-point stream (a KV transfer). The cost layer prices communication no table
measures with these times; the placement of a pattern's GPUs is part of its description.

Placement: a group of ``members`` GPUs spanning ``domains`` scale-up domains puts an equal share
in each of domains 0..d-1 (the first slots of each); an M x N exchange across domains puts the
senders in domain 0 and the receivers in domain 1, inside one domain it puts them side by side;
a cross-domain point-to-point stream goes from slot 0 of domain 0 to slot 0 of domain 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from aicpp_opt.errors import InputError
from aicpp_opt.netsim.collectives import ring_part
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import makespans
from aicpp_opt.netsim.topology import Topology


class Pattern(StrEnum):
    """What moves. Collectives carry NCCL's message size (the full buffer per rank); the
    exchanges carry the bytes each sender sends in all."""

    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALLTOALL = "alltoall"
    EXCHANGE = "exchange"
    M_TO_N = "m_to_n"
    P2P = "p2p"


COLLECTIVE_ALGORITHM = {
    Pattern.ALL_REDUCE: "ring",
    Pattern.ALL_GATHER: "ring",
    Pattern.REDUCE_SCATTER: "ring",
    Pattern.ALLTOALL: "direct",
}
"""The algorithm each collective is simulated with: NCCL's ring for the reductions and
gathers, direct sends for all-to-all (what NCCL's alltoall does)."""


@dataclass(frozen=True)
class Geometry:
    """A pattern and where its GPUs sit: ``members`` (group size, or senders of an M x N
    exchange), ``receivers`` (M x N only) and the scale-up ``domains`` they span."""

    pattern: Pattern
    members: int
    receivers: int = 0
    domains: int = 1

    def label(self) -> str:
        who = (
            f"{self.members}x{self.receivers}"
            if self.pattern == Pattern.M_TO_N
            else (f"{self.members} GPUs")
        )
        where = "one domain" if self.domains == 1 else f"{self.domains} domains"
        return f"{self.pattern.value} over {who} in {where}"


def placement(geom: Geometry, topo: Topology) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(senders or members, receivers) GPU ids of the pattern on ``topo``."""
    size = topo.dims[0].size
    domains = geom.domains
    if domains > math.ceil(topo.num_gpus / size):
        raise InputError("topology", f"{geom.label()} needs more domains than the topology has")
    if geom.pattern == Pattern.M_TO_N:
        m, n = geom.members, geom.receivers
        if domains == 1:
            if m + n > size:
                raise InputError("topology", f"{geom.label()} does not fit one domain of {size}")
            return tuple(range(m)), tuple(range(m, m + n))
        start = math.ceil(m / size) * size
        if start + n > topo.num_gpus:
            raise InputError("topology", f"{geom.label()} needs more GPUs than the topology has")
        return tuple(range(m)), tuple(range(start, start + n))
    if geom.pattern == Pattern.P2P:
        return (0,), ((size if domains > 1 else 1),)
    per = math.ceil(geom.members / domains)
    if per > size:
        raise InputError("topology", f"{geom.label()} puts {per} GPUs in a domain of {size}")
    gpus = [d * size + i for d in range(domains) for i in range(per)][: geom.members]
    return tuple(gpus), ()


def graph(geom: Geometry, topo: Topology, nbytes: float) -> Graph:
    """The op graph of one occurrence of the pattern moving ``nbytes`` (see ``Pattern``)."""
    senders, receivers = placement(geom, topo)
    g = Graph()
    if geom.pattern in COLLECTIVE_ALGORITHM:
        algo = COLLECTIVE_ALGORITHM[geom.pattern]
        g.collective(geom.pattern.value, senders, nbytes, algo, geom.pattern.value, "comm")
    elif geom.pattern == Pattern.EXCHANGE:
        share = nbytes / max(len(senders) - 1, 1)
        for a in senders:
            for b in senders:
                if a != b:
                    g.transfer(a, b, share, "exchange", "comm")
    elif geom.pattern == Pattern.M_TO_N:
        for a in senders:
            for b in receivers:
                g.transfer(a, b, nbytes / len(receivers), "m_to_n", "comm")
    else:
        g.transfer(senders[0], receivers[0], nbytes, "p2p", "comm")
    return g


def seconds(geom: Geometry, topo: Topology, nbytes: float) -> float:
    """Simulated time of one occurrence of the pattern, alone on the network."""
    return sweep(geom, topo, (nbytes,))[0]


def sweep(geom: Geometry, topo: Topology, sizes: Sequence[float]) -> list[float]:
    """``seconds`` at each of ``sizes``, from one graph lowered once: every flow of a pattern
    carries a fixed share of its bytes. A ring collective over three or more domains that the
    topology joins alike runs as its first two domains' part (``_ring_part``): the same times,
    on a fraction of the flows."""
    part = _ring_part(geom, topo)
    if part is None:
        return makespans(graph(geom, topo, 1.0), topo, sizes)
    src, dst, shares, deps = ring_part(geom.pattern.value, part, 1.0, geom.members)
    g = Graph()
    for j in range(len(src)):
        g.transfer(src[j], dst[j], shares[j], geom.pattern.value, "comm", deps[j])
    return makespans(g, topo, sizes)


def _ring_part(geom: Geometry, topo: Topology) -> tuple[int, ...] | None:
    """The members of a ring collective's first two domains when the ring repeats them alike,
    else None. The ring visits each domain's equal share in turn, so moving every member one
    domain on maps the ring onto itself; when the domains hang off one switch or fully
    connected dimension (every pair of them linked alike) that move maps the network onto
    itself too, so every domain's members keep the same times as the first's, and a ring of
    two domains (each hop's traffic and sharing the same) runs every round as the whole one
    does."""
    domains = geom.domains
    if COLLECTIVE_ALGORITHM.get(geom.pattern) != "ring" or domains < 3 or len(topo.dims) < 2:
        return None
    outer = topo.dims[1]
    if geom.members % domains or outer.kind == "ring" or domains > outer.size:
        return None
    members, _ = placement(geom, topo)
    return members[: 2 * geom.members // domains]
