"""Every transfer is priced here: TP collectives, EP dispatch and combine, AFD A->F and F->A
exchanges, P->D KV transfers.

Three sources, in this order:

1. **Measured.** The system's NCCL / custom all-reduce / DeepEP tables, where the pattern's
   group and link class lie in what they measured: a group inside one NVLink domain of at most
   the measured node's GPUs on links as fast as the system's NVLink; or, for DeepEP, EP groups
   over domains that are the system's nodes on its scale-out network. Along the load axis the
   table's grid holds; beyond its last point the price continues along the calibrated model's
   slope from that point (flagged extrapolated), so crossing the edge never jumps.
2. **Anchored model.** A pattern no table measures but whose family was measured on a smaller
   group (EP 16 in a 72-GPU NVLink domain from EP 8 in a node; EP 128 from EP 64; TP 16 from TP
   8): the measured price of the anchor (the largest measured group of that family, same link
   class when measured) plus the calibrated model's increment from the anchor on the system's
   setting to the pattern on the instance's topology, never below the anchor (more GPUs in a
   group never make it cheaper).
3. **Model.** Patterns no table has a family for (AFD M x N exchanges, KV transfers) or systems
   without communication tables: the calibrated link model (``linkmodel``) on the instance's own
   topology: ``alpha + hop x hops + simulated time at efficiency x bandwidth``, a PWL in bytes
   fitted to a sweep of the simulator (``netsim``), named in the source with its fit error; a
   system never calibrated gets nominal links (flagged).

Which calibrated family prices what: each NCCL collective its own; EP dispatch / combine the
DeepEP family of its mode; AFD exchanges DeepEP low-latency's (token copies sent GPU to GPU, as
its kernels do); a KV transfer inside a domain NCCL alltoall's (copy-engine point-to-point over
NVLink), across domains DeepEP low-latency's inter-domain fit (RDMA over the scale-out NICs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aicpp_opt import diskcache
from aicpp_opt.costs import CostModel
from aicpp_opt.costs.curve import Curve, Latency
from aicpp_opt.costs.linkmodel import (
    FILE,
    NOMINAL,
    TINY,
    LinkFit,
    deepep_copies,
    deepep_name,
    exchange_bytes,
    family,
    read,
    system_topology,
    token_bytes,
)
from aicpp_opt.costs.pwl_fit import TARGET_REL_ERR, fit_series
from aicpp_opt.netsim import patterns
from aicpp_opt.netsim.patterns import Geometry, Pattern
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.spec.instance import Pool

SWEEP_BYTES = tuple(float(4**k) for k in range(4, 18))
"""Message sizes (bytes) the simulator is swept over for a model curve: 256 B .. 16 GiB."""
NCCL_OPS = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")


@dataclass(frozen=True)
class EpPayload:
    """What one EP rank sends in a DeepEP dispatch or combine: ``tokens`` (the busiest rank's,
    routing skew included) of ``token_bytes`` each per copy, over ``ep`` ranks, and the model's
    dimensions the measured table is keyed by."""

    tokens: float
    token_bytes: float
    hidden: int
    topk: int
    num_experts: int


def pool_topology(pool: Pool) -> Topology:
    return Topology(tuple(Dim(d.kind, d.size, d.bw, d.latency) for d in pool.topology))


def domains_spanned(pool: Pool, gpus: int) -> int:
    """NVLink domains a contiguous, domain-aligned group of ``gpus`` GPUs spans."""
    return max(1, math.ceil(gpus / pool.domain_size))


class CommModel:
    """Communication prices for one pool of an instance, as one framework's deployment sees
    them. ``surrogate`` "pwl" reads the tables' fitted PWLs (what the optimiser linearises),
    "measured" their grids."""

    def __init__(
        self,
        pool: Pool,
        costs: CostModel,
        surrogate: str = "measured",
        topology: Topology | None = None,
    ):
        self.pool = pool
        self.costs = costs
        self.surrogate = surrogate
        self._topology = topology
        self._models: dict[tuple, Curve] = {}
        self._prices: dict[tuple, Latency] = {}
        self._measured_sizes: dict[object, tuple[int, ...]] = {}

    def _memo(self, key: tuple, price) -> Latency:
        hit = self._prices.get(key)
        if hit is None:
            hit = self._prices[key] = price()
        return hit

    @cached_property
    def fits(self) -> dict[str, LinkFit]:
        return read(self.costs.root / self.costs.system.name / FILE)

    @cached_property
    def topology(self) -> Topology:
        """The pool's topology, or the one traffic between two pools crosses."""
        return self._topology or pool_topology(self.pool)

    def fit(self, name: str, domains: int) -> LinkFit:
        """The calibrated family for ``name`` over ``domains`` domains: its own link class
        when calibrated, else the other class's, else nominal links."""
        fam = family(name, domains)
        if fam in self.fits:
            return self.fits[fam]
        other = family(name, 1 if domains > 1 else 2)
        return self.fits.get(other, NOMINAL)

    # ------------------------------------------------------------------ public prices

    def collective(self, op: str, nbytes: float, group: int, domains: int = 1) -> Latency:
        """An NCCL collective (``op`` in NCCL_OPS) of ``nbytes`` (NCCL's message size) over
        ``group`` GPUs spanning ``domains`` NVLink domains. All-reduce inside a domain takes the
        faster of NCCL and the framework's custom all-reduce, as the engines do."""
        key = ("collective", op, nbytes, group, domains)
        return self._memo(key, lambda: self._collective(op, nbytes, group, domains))

    def ep_exchange(
        self, phase: str, mode: str, payload: EpPayload, ep: int, domains: int
    ) -> Latency:
        """DeepEP ``phase`` (dispatch / combine) in ``mode`` of ``payload`` over ``ep`` ranks
        spanning ``domains`` NVLink domains."""
        key = ("ep", phase, mode, payload, ep, domains)
        return self._memo(key, lambda: self._ep_exchange(phase, mode, payload, ep, domains))

    def m_to_n(self, senders: int, receivers: int, nbytes: float, domains: int) -> Latency:
        """Each of ``senders`` GPUs sends ``nbytes`` spread over ``receivers`` GPUs (AFD A->F or
        F->A), the two sides in one NVLink domain (``domains`` 1) or in two."""
        key = ("m_to_n", senders, receivers, nbytes, domains)
        return self._memo(key, lambda: self._m_to_n(senders, receivers, nbytes, domains))

    def p2p(self, nbytes: float, domains: int) -> Latency:
        """One stream of ``nbytes`` from a GPU to a GPU in the same (1) or another (2) domain."""
        return self._memo(("p2p", nbytes, domains), lambda: self._p2p(nbytes, domains))

    def _collective(self, op: str, nbytes: float, group: int, domains: int) -> Latency:
        """An NCCL collective (``op`` in NCCL_OPS) of ``nbytes`` (NCCL's message size) over
        ``group`` GPUs spanning ``domains`` NVLink domains. All-reduce inside a domain takes the
        faster of NCCL and the framework's custom all-reduce, as the engines do."""
        if group <= 1 or nbytes <= 0:
            return Latency(0.0, False, "none: single GPU")
        geom = Geometry(Pattern(op), group, domains=domains)
        model = self._model(geom, self.fit(op, domains), self.topology)
        ops = [op, "custom_all_reduce"] if op == "all_reduce" and domains == 1 else [op]
        prices = [self._measured_collective(o, nbytes, group, domains, model) for o in ops]
        found = [p for p in prices if p is not None]
        if found:
            return min(found, key=lambda p: p.seconds)
        return self._anchored_collective(op, nbytes, geom, model)

    def _ep_exchange(
        self, phase: str, mode: str, payload: EpPayload, ep: int, domains: int
    ) -> Latency:
        """DeepEP ``phase`` (dispatch / combine) in ``mode`` of ``payload`` over ``ep`` ranks
        spanning ``domains`` NVLink domains."""
        if ep <= 1 or payload.tokens <= 0:
            return Latency(0.0, False, "none: EP 1")
        name = deepep_name(phase, mode)
        copies = deepep_copies(payload.topk, ep, mode)
        nbytes = payload.tokens * copies * payload.token_bytes * (ep - 1) / ep
        model = self._model(
            Geometry(Pattern.EXCHANGE, ep, domains=domains), self.fit(name, domains), self.topology
        )
        if self._deepep_table(phase) is None:
            return self._flagged(model, nbytes, f"no DeepEP table on {self.costs.system.name}")
        # the measured load axis is tokens at DeepEP's own bytes per copy; the payload's bytes
        # (dtype, skew) are expressed as that many measured tokens
        measured_tokens = payload.tokens * payload.token_bytes / token_bytes(payload.hidden, phase)
        measured_eps = self._deepep_eps(phase, mode, payload)
        if not measured_eps:
            return self._flagged(model, nbytes, "DeepEP measured no such model shape")
        spec = self.costs.system
        axes = {
            "hidden": payload.hidden,
            "topk": payload.topk,
            "num_experts": payload.num_experts,
            "mode": mode,
        }
        if ep in measured_eps and self._deepep_matches(ep, domains):
            curve = self.costs.curve(f"moe_{phase}", ep=ep, **axes)
            return self._on_grid(curve, measured_tokens, model, nbytes / measured_tokens)
        intra = [e for e in measured_eps if e <= spec.gpus_per_node]
        inter = [e for e in measured_eps if e > spec.gpus_per_node and e <= ep]
        anchor = max(inter) if domains > 1 and inter else max(intra or measured_eps)
        a_dom = max(1, anchor // spec.gpus_per_node)
        a_curve = self.costs.curve(f"moe_{phase}", ep=anchor, **axes)
        a_copies = deepep_copies(payload.topk, anchor, mode)
        a_bytes_per_token = exchange_bytes(1.0, a_copies, payload.hidden, phase, anchor)
        a_model = self._model(
            Geometry(Pattern.EXCHANGE, anchor, domains=a_dom),
            self.fit(name, a_dom),
            system_topology(spec, anchor),
            system=True,
        )
        base = self._on_grid(a_curve, measured_tokens, a_model, a_bytes_per_token)
        a_bytes = measured_tokens * a_bytes_per_token
        step = self._value(model, nbytes) - self._value(a_model, a_bytes)
        return Latency(
            base.seconds + max(0.0, step),
            base.extrapolated,
            f"{base.source} + model increment EP{anchor}->EP{ep} ({model.source})",
            base.fallback,
        )

    def _m_to_n(self, senders: int, receivers: int, nbytes: float, domains: int) -> Latency:
        """Each of ``senders`` GPUs sends ``nbytes`` spread over ``receivers`` GPUs (AFD A->F or
        F->A), the two sides in one NVLink domain (``domains`` 1) or in two."""
        geom = Geometry(Pattern.M_TO_N, senders, receivers, domains)
        fit = self.fit(deepep_name("dispatch", "low_latency"), domains)
        return self._flagged(self._model(geom, fit, self.topology), nbytes, "")

    def _p2p(self, nbytes: float, domains: int) -> Latency:
        """One stream of ``nbytes`` from a GPU to a GPU in the same (1) or another (2) domain."""
        fit = (
            self.fit("alltoall", 1)
            if domains == 1
            else self.fit(deepep_name("dispatch", "low_latency"), 2)
        )
        geom = Geometry(Pattern.P2P, 1, domains=domains)
        return self._flagged(self._model(geom, fit, self.topology), nbytes, "")

    # ------------------------------------------------------------------ pieces

    def _value(self, curve: Curve, x: float) -> float:
        if self.surrogate == "pwl":
            return float(curve.pwl(x))
        return curve.eval(x).seconds

    def _flagged(self, model: Curve, nbytes: float, why: str) -> Latency:
        note = f" ({why})" if why else ""
        return Latency(self._value(model, nbytes), False, model.source + note)

    def _on_grid(self, curve: Curve, x: float, model: Curve, bytes_per_x: float) -> Latency:
        """A measured curve at load ``x``; beyond its last point, its last value plus the
        model's increment from there (the model is in bytes, ``bytes_per_x`` per unit of x)."""
        hi = curve.x[-1]
        if x <= hi:
            lat = curve.eval(x) if self.surrogate == "measured" else None
            seconds = lat.seconds if lat else float(curve.pwl(x))
            return Latency(seconds, bool(x < curve.x[0]), curve.source, curve.fallback)
        edge = self._value(curve, hi) if self.surrogate == "pwl" else float(curve.seconds[-1])
        step = self._value(model, x * bytes_per_x) - self._value(model, hi * bytes_per_x)
        return Latency(
            edge + max(0.0, step),
            True,
            f"{curve.source} to its last point, then {model.source}",
            curve.fallback,
        )

    def _measured_collective(
        self, op: str, nbytes: float, group: int, domains: int, model: Curve
    ) -> Latency | None:
        """``op``'s measured price when the system measured this group on these links."""
        spec = self.costs.system
        if op not in self.costs.selection or not self.costs.available(op):
            return None
        groups = self._groups(op)
        fits_node = domains == 1 and group <= spec.gpus_per_node
        same_links = math.isclose(self.pool.topology[0].bw, spec.nvlink_bw)
        if not (fits_node and same_links and groups[0] <= group <= groups[-1]):
            return None
        return self._on_grid(self.costs.curve(op, num_gpus=group), nbytes, model, 1.0)

    def _groups(self, op: str) -> tuple[int, ...]:
        """The group sizes ``op``'s table measured, ascending (read once per op)."""
        hit = self._measured_sizes.get(op)
        if hit is None:
            sizes = {k["num_gpus"] for k in self.costs.table(op).keys}
            hit = self._measured_sizes[op] = tuple(sorted(sizes))
        return hit

    def _anchored_collective(self, op: str, nbytes: float, geom: Geometry, model: Curve):
        spec = self.costs.system
        if not self.costs.available(op):
            return self._flagged(model, nbytes, f"no {op} table on {spec.name}")
        anchor = max(g for g in self._groups(op) if g <= spec.gpus_per_node)
        a_model = self._model(
            Geometry(geom.pattern, anchor),
            self.fit(op, 1),
            system_topology(spec, anchor),
            system=True,
        )
        base = self._on_grid(self.costs.curve(op, num_gpus=anchor), nbytes, a_model, 1.0)
        step = self._value(model, nbytes) - self._value(a_model, nbytes)
        return Latency(
            base.seconds + max(0.0, step),
            base.extrapolated,
            f"{base.source} + model increment {anchor}->{geom.members} GPUs ({model.source})",
            base.fallback,
        )

    def _deepep_table(self, phase: str):
        op = f"moe_{phase}"
        return self.costs.table(op) if self.costs.available(op) else None

    def _deepep_eps(self, phase: str, mode: str, payload: EpPayload) -> tuple[int, ...]:
        """The EP sizes DeepEP's ``phase`` table measured in ``mode`` for the payload's model
        shape, ascending (read once per shape)."""
        shape = (payload.hidden, payload.topk, payload.num_experts)
        key = (phase, mode, shape)
        hit = self._measured_sizes.get(key)
        if hit is None:
            table = self._deepep_table(phase)
            hit = self._measured_sizes[key] = tuple(
                sorted(
                    k["ep"]
                    for k in table.keys
                    if k["mode"] == mode and (k["hidden"], k["topk"], k["num_experts"]) == shape
                )
            )
        return hit

    def _deepep_matches(self, ep: int, domains: int) -> bool:
        """The instance's links are the measured ones for this EP group."""
        spec, pool = self.costs.system, self.pool
        if domains == 1:
            return ep <= spec.gpus_per_node and math.isclose(pool.topology[0].bw, spec.nvlink_bw)
        return pool.domain_size == spec.gpus_per_node and math.isclose(
            pool.link(False).bw, spec.scaleout_bw
        )

    def _model(self, geom: Geometry, fit: LinkFit, topo: Topology, system: bool = False) -> Curve:
        """The calibrated model of ``geom`` on ``topo`` as a curve in bytes (cached)."""
        key = (geom, fit, topo)
        curve = self._models.get(key)
        if curve is None:
            curve = self._models[key] = stored_model_curve(geom, fit, topo, system)
        return curve


CURVE_CODE = ("costs", "netsim")
"""Packages whose source decides a model curve: editing one invalidates the stored curves."""


def stored_model_curve(geom: Geometry, fit: LinkFit, topo: Topology, system: bool = False) -> Curve:
    """``model_curve``, kept in the disk cache (``aicpp_opt.diskcache``) under its inputs and
    the code that simulates it, so worker processes of one solve and later runs reuse what one
    of them simulated."""
    name = "curve-" + diskcache.digest(
        {
            "curve": [repr(geom), repr(fit), repr(topo), system],
            "code": diskcache.code_version(CURVE_CODE),
        }
    )
    hit = diskcache.load(name)
    if hit is not None:
        try:
            x, y, px, py = (np.array(hit[k], dtype=float) for k in ("x", "y", "pwl_x", "pwl_y"))
            whole = x.ndim == px.ndim == 1 and x.shape == y.shape and px.shape == py.shape
            if whole and x.size and px.size and np.isfinite([*x, *y, *px, *py]).all():
                return Curve(str(hit["op"]), str(hit["axis"]), x, y, px, py, str(hit["source"]))
        except (KeyError, TypeError, ValueError):
            pass  # a file of another shape: simulated again
    curve = model_curve(geom, fit, topo, system)
    diskcache.store(
        name,
        {
            "op": curve.op,
            "axis": curve.load_axis,
            "x": curve.x.tolist(),
            "y": curve.seconds.tolist(),
            "pwl_x": curve.pwl_x.tolist(),
            "pwl_y": curve.pwl_seconds.tolist(),
            "source": curve.source,
        },
    )
    return curve


def model_curve(geom: Geometry, fit: LinkFit, topo: Topology, system: bool = False) -> Curve:
    """``alpha`` + the simulated time of ``geom`` on ``topo`` with every link at the fit's
    efficiency x its bandwidth and a latency of max(the fit's ``hop``, its own) per traversal,
    over ``SWEEP_BYTES``, with its PWL fit (the calibration fitted ``hop`` on links of no
    latency, so it holds the measured system's link latencies too). For a fixed pattern the
    simulated time is affine in the bytes (every flow's rate is set by the pattern alone, and
    all sizes scale together), so the sweep is read off runs at one and two reference sizes and
    a latency-only run once those prove affine; otherwise every size is simulated. ``system``
    marks the system's own measured setting (for sources)."""
    scaled = Topology(
        tuple(
            Dim(d.kind, d.size, d.bw * fit.efficiency, max(fit.hop, d.latency)) for d in topo.dims
        )
    )
    x = np.array(SWEEP_BYTES)
    ref = SWEEP_BYTES[len(SWEEP_BYTES) // 2]
    t0, t1, t2 = patterns.sweep(geom, scaled, (TINY, ref, 2 * ref))
    if math.isclose(t2 - t1, t1 - t0, rel_tol=1e-6, abs_tol=1e-15):
        sim = t0 + (t1 - t0) * x / ref
    else:
        sim = np.array(patterns.sweep(geom, scaled, x))
    y = fit.alpha + sim
    pwl = fit_series(x, y, TARGET_REL_ERR)
    where = "the system's measured setting" if system else _topology_label(topo)
    source = f"simulated {geom.label()} on {where}, link model {fit.describe()}"
    return Curve(geom.pattern.value, "bytes", x, y, pwl.pwl_x, pwl.pwl_y, source)


def _topology_label(topo: Topology) -> str:
    return " x ".join(f"{d.kind} {d.size} @ {d.bw / 1e9:g} GB/s" for d in topo.dims if d.size > 1)


MXN_SHAPES = ((1, 1), (4, 2), (8, 4), (16, 8), (32, 16), (48, 24))


def _standard_patterns(pool: Pool) -> list[tuple[str, Geometry]]:
    """(family, geometry) of the patterns a plan on ``pool`` prices with the model."""
    out: list[tuple[str, Geometry]] = []
    n = 2
    while n <= pool.gpus:
        d = domains_spanned(pool, n)
        out += [(op, Geometry(Pattern(op), n, domains=d)) for op in NCCL_OPS]
        for phase in ("dispatch", "combine"):
            for mode in ("low_latency", "normal"):
                out.append((deepep_name(phase, mode), Geometry(Pattern.EXCHANGE, n, domains=d)))
        n *= 2
    lowlat = deepep_name("dispatch", "low_latency")
    for m, r in MXN_SHAPES:
        for d in (1, 2) if pool.num_domains > 1 else (1,):
            if (d == 1 and m + r <= pool.domain_size) or (d == 2 and max(m, r) <= pool.domain_size):
                out.append((lowlat, Geometry(Pattern.M_TO_N, m, r, d)))
    out.append(("alltoall", Geometry(Pattern.P2P, 1, domains=1)))
    if pool.num_domains > 1:
        out.append((lowlat, Geometry(Pattern.P2P, 1, domains=2)))
    return out


def instance_curves(instance) -> dict[str, dict]:
    """Per pool, a cost-table document of the model curves its unmeasured patterns are priced
    with (each series keyed by family and geometry; what ``calibrate comm --instance`` writes
    for inspection, computed exactly as the runtime computes them)."""
    from aicpp_opt.costs.series_doc import SCHEMA, fitted_series

    out = {}
    for pool in instance.pools:
        comm = CommModel(pool, CostModel.load(pool.system))
        measured = []
        for name, geom in _standard_patterns(pool):
            fit = comm.fit(name, geom.domains)
            curve = comm._model(geom, fit, comm.topology)
            key = {"family": name, "pattern": geom.pattern.value, "members": geom.members}
            key |= {"receivers": geom.receivers, "domains": geom.domains}
            measured.append((key, curve.x, curve.seconds * 1e3))
        series, summary = fitted_series(measured)
        out[pool.name] = {
            "schema": SCHEMA,
            "system": pool.system,
            "backend": "sim",
            "op": "comm_model",
            "load_axis": "bytes",
            "axes": ["family", "pattern", "members", "receivers", "domains"],
            "covers": "calibrated link model on the instance's topology (costs.comm)",
            "topology": _topology_label(comm.topology),
            "link_model": {k: v.describe() for k, v in comm.fits.items()},
            "error": summary,
            "series": series,
        }
    return out
