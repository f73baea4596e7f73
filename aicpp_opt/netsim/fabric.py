"""Several GPU pools, each its own multi-dimensional topology, joined by scale-out links.

Global GPU ids: pool p's GPUs are ``offset[p] .. offset[p] + slots_p - 1`` where ``slots_p``
is the product of its dimension sizes; inside a pool the ids are the pool topology's own.
Links: each pool's links (its injection ports and dimensions) in one block after the other,
then one scale-out NIC pair per GPU (uplink ``2 g``, downlink ``2 g + 1`` of the block) for
traffic between pools, then the infinite padding link. A NIC runs at the pool's slowest
outer dimension (its scale-out link, ``Pool.link(False)`` in the spec) with that dimension's
latency. A flow between pools crosses the source's egress port and NIC uplink, then the
destination's NIC downlink and ingress port: latency = the two NIC latencies, the same two
link traversals as a switch hop. Flows inside a pool route exactly as in its ``Topology``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aicpp_opt.errors import InputError
from aicpp_opt.netsim.topology import Dim, Topology


@dataclass(frozen=True)
class Fabric:
    """Pools (one ``Topology`` each) on a shared scale-out network; the simulator's topology."""

    pools: tuple[Topology, ...]

    def __post_init__(self) -> None:
        if not self.pools:
            raise InputError("cluster.pools", "needs at least one pool")

    @cached_property
    def offsets(self) -> np.ndarray:
        """First global GPU id of each pool, and the total at the end."""
        return np.concatenate([[0], np.cumsum([t.num_gpus for t in self.pools])]).astype(np.int64)

    @cached_property
    def _link_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([t.num_links for t in self.pools])]).astype(np.int64)

    @property
    def num_gpus(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_links(self) -> int:
        """Real links; id ``num_links`` is the infinite padding link."""
        return int(self._link_offsets[-1]) + 2 * self.num_gpus

    def pools_holding(self, gpus) -> list[int]:
        """Indices of the pools that hold the given global GPU ids, ascending."""
        self.check_gpus(gpus, "replay.gpus")
        return sorted({int(p) for p in self.pool_of(np.asarray(gpus, dtype=np.int64))})

    @staticmethod
    def nic(topo: Topology) -> Dim:
        """A pool's scale-out NIC: its slowest outer dimension (its only one if it has one)."""
        outer = topo.dims[1:] or topo.dims
        return min(outer, key=lambda d: d.bw)

    @cached_property
    def capacity(self) -> np.ndarray:
        caps = [t.capacity[:-1] for t in self.pools]
        caps += [np.full(2 * t.num_gpus, self.nic(t).bw) for t in self.pools]
        return np.concatenate([*caps, [np.inf]])

    def pool_of(self, gpus: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, gpus, side="right") - 1

    def check_gpus(self, gpus, field: str) -> None:
        arr = np.asarray(gpus)
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_gpus):
            raise InputError(field, f"GPU ids must lie in 0..{self.num_gpus - 1} of the fabric")

    def routes(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Links (F x width, padded with the infinite link) and path latency (s) per flow."""
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        ps, pd = self.pool_of(src), self.pool_of(dst)
        pad = self.num_links
        per_pool = [t.routes(src[:0], dst[:0])[0].shape[1] for t in self.pools]
        links = np.full((len(src), max(4, *per_pool)), pad, dtype=np.int64)
        lat = np.zeros(len(src))
        for p, t in enumerate(self.pools):
            mine = (ps == p) & (pd == p)
            if not mine.any():
                continue
            off = self.offsets[p]
            local, llat = t.routes(src[mine] - off, dst[mine] - off)
            links[mine, : local.shape[1]] = np.where(
                local == t.num_links, pad, local + self._link_offsets[p]
            )
            lat[mine] = llat
        cross = np.flatnonzero(ps != pd)
        if len(cross):
            self._cross_routes(links, lat, cross, src, dst, ps, pd)
        return links, lat

    def _cross_routes(self, links, lat, cross, src, dst, ps, pd) -> None:
        """Egress port and NIC uplink of the source, NIC downlink and ingress port of the
        destination."""
        s, d, a, b = src[cross], dst[cross], ps[cross], pd[cross]
        sizes = np.array([t.num_gpus for t in self.pools])
        nic_lat = np.array([self.nic(t).latency for t in self.pools])
        nic_base = self._link_offsets[-1]
        links[cross, 0] = self._link_offsets[a] + s - self.offsets[a]
        links[cross, 1] = self._link_offsets[b] + sizes[b] + d - self.offsets[b]
        links[cross, 2] = nic_base + 2 * s
        links[cross, 3] = nic_base + 2 * d + 1
        lat[cross] = nic_lat[a] + nic_lat[b]
