"""Multi-dimensional GPU topology: links, dimension-order routing, per-GPU injection limits.

Dimensions are innermost first (the first is the NVLink domain). A GPU's coordinate in
dimension d is ``(gpu // stride_d) % size_d``. Link semantics follow AstraSim's analytical
network: a switch traversal is two links (GPU to switch, switch to GPU), a ring hop is one
link per neighbour step along the shorter direction, a fully connected dimension has one
direct link per ordered pair. ``bw_GBps`` is per GPU per direction, so a fully connected
dimension of size n gives each of its n-1 links bw/(n-1). Every flow also crosses its
source's egress and its destination's ingress port, the per-GPU injection limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aicpp_opt.errors import InputError

KINDS = ("switch", "ring", "fully_connected")


@dataclass(frozen=True)
class Dim:
    """One topology dimension: kind, size, bw (bytes/s per GPU per direction), latency (s/link)."""

    kind: str
    size: int
    bw: float
    latency: float

    @classmethod
    def from_json(cls, raw: dict, field: str = "topology") -> Dim:
        """Parse the instance-file form {"kind", "size", "bw_GBps", "latency_ns"}."""
        try:
            kind, size = raw["kind"], int(raw["size"])
            bw, lat = float(raw["bw_GBps"]) * 1e9, float(raw["latency_ns"]) * 1e-9
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(field, f"needs kind, size, bw_GBps, latency_ns ({err})") from None
        dim = cls(kind, size, bw, lat)
        dim.validate(field)
        return dim

    def validate(self, field: str) -> None:
        if self.kind not in KINDS:
            raise InputError(field, f"kind {self.kind!r} unknown; use one of {', '.join(KINDS)}")
        if self.size < 1 or self.bw <= 0 or self.latency < 0:
            raise InputError(field, "size must be >= 1, bw_GBps > 0 and latency_ns >= 0")

    @property
    def max_hops(self) -> int:
        return {"switch": 2, "ring": self.size // 2, "fully_connected": 1}[self.kind]


@dataclass(frozen=True)
class Topology:
    """Links of a multi-dimensional topology and routes between GPUs.

    ``injection_bw`` caps each GPU's total egress and ingress (bytes/s); by default it is the
    sum of the GPU's per-dimension bandwidths, so it binds only when one GPU drives several
    dimensions at once.
    """

    dims: tuple[Dim, ...]
    injection_bw: float | None = None

    @classmethod
    def from_json(cls, dims: list[dict], field: str = "topology") -> Topology:
        if not dims:
            raise InputError(field, "needs at least one dimension")
        return cls(tuple(Dim.from_json(d, f"{field}[{i}]") for i, d in enumerate(dims)))

    @cached_property
    def num_gpus(self) -> int:
        return int(np.prod([d.size for d in self.dims]))

    @cached_property
    def _strides(self) -> list[int]:
        strides, s = [], 1
        for d in self.dims:
            strides.append(s)
            s *= d.size
        return strides

    @cached_property
    def _blocks(self) -> list[int]:
        """First link id of each dimension's block; ids 0..2G-1 are the injection ports."""
        starts, nxt, g = [], 2 * self.num_gpus, self.num_gpus
        for d in self.dims:
            starts.append(nxt)
            per_gpu = {"switch": 2, "ring": 2, "fully_connected": d.size}[d.kind]
            nxt += g * per_gpu
        starts.append(nxt)
        return starts

    @property
    def num_links(self) -> int:
        """Real links; id ``num_links`` is a padding link of infinite capacity."""
        return self._blocks[-1]

    @cached_property
    def capacity(self) -> np.ndarray:
        """Bytes/s of every link, plus the infinite padding link at the end."""
        g = self.num_gpus
        inj = self.injection_bw or sum(d.bw for d in self.dims)
        cap = np.empty(self.num_links + 1)
        cap[: 2 * g] = inj
        for i, d in enumerate(self.dims):
            lo, hi = self._blocks[i], self._blocks[i + 1]
            cap[lo:hi] = d.bw / (d.size - 1) if d.kind == "fully_connected" and d.size > 1 else d.bw
        cap[-1] = np.inf
        return cap

    def check_gpus(self, gpus, field: str) -> None:
        arr = np.asarray(gpus)
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_gpus):
            raise InputError(field, f"GPU ids must lie in 0..{self.num_gpus - 1} of the topology")

    def routes(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Links (F x max_hops, padded with the infinite link) and path latency (s) per flow.

        Dimension-order routing, innermost dimension first; src == dst gives an empty path.
        """
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        n, pad, g = len(src), self.num_links, self.num_gpus
        width = 2 + sum(d.max_hops for d in self.dims)
        links = np.full((n, width), pad, dtype=np.int64)
        lat = np.zeros(n)
        moving = src != dst
        links[moving, 0] = src[moving]
        links[moving, 1] = g + dst[moving]
        col, cur = 2, src.copy()
        for i, d in enumerate(self.dims):
            stride, base = self._strides[i], self._blocks[i]
            a = (cur // stride) % d.size
            b = (dst // stride) % d.size
            hop = a != b
            nxt = cur + (b - a) * stride
            if d.kind == "switch":
                links[hop, col] = base + 2 * cur[hop]
                links[hop, col + 1] = base + 2 * nxt[hop] + 1
                lat[hop] += 2 * d.latency
            elif d.kind == "fully_connected":
                links[hop, col] = base + cur[hop] * d.size + b[hop]
                lat[hop] += d.latency
            else:
                self._ring_hops(links, lat, col, cur, a, b, hop, d, stride, base)
            col += d.max_hops
            cur = np.where(hop, nxt, cur)
        return links, lat

    @staticmethod
    def _ring_hops(links, lat, col, cur, a, b, hop, d, stride, base) -> None:
        """Fill ring hops along the shorter direction; link 2*gpu is clockwise, 2*gpu+1 counter."""
        fwd = (b - a) % d.size
        cw = fwd <= d.size - fwd
        steps = np.where(cw, fwd, d.size - fwd)
        lat[hop] += steps[hop] * d.latency
        pos = a.copy()
        origin = cur - a * stride
        for k in range(d.max_hops):
            on = hop & (steps > k)
            gpu = origin + pos * stride
            links[on, col + k] = base + 2 * gpu[on] + np.where(cw[on], 0, 1)
            pos = np.where(on, (pos + np.where(cw, 1, -1)) % d.size, pos)
