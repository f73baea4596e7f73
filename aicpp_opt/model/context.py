"""The evaluation context, built once per (instance, workload, framework): the model, one cost
model and one communication model per pool (both reading the deployment framework's tables),
the routing model and the switches (surrogate, pipeline model). Lookups are memoised here so
the optimiser can price thousands of shapes."""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aicpp_opt.costs import CostModel
from aicpp_opt.costs.comm import CommModel, pool_topology
from aicpp_opt.costs.curve import Latency
from aicpp_opt.errors import InputError
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
from aicpp_opt.model.schedule import PIPELINES
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.spec.enums import Framework, values
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.model import ModelSpec, load_model
from aicpp_opt.spec.workload import Workload

SURROGATES = ("measured", "pwl")


def memoized(fn):
    """Cache ``fn(ctx, *args)`` in ``ctx.memo``: the op model's pieces are pure functions of
    their arguments and return immutable ops, so a shape priced at many batches (or many AFD
    pairings) reuses every piece it shares."""

    @functools.wraps(fn)
    def wrapper(ctx, *args):
        key = (fn.__name__, *args)
        hit = ctx.memo.get(key)
        if hit is None:
            hit = ctx.memo[key] = fn(ctx, *args)
        return hit

    return wrapper


@dataclass
class Context:
    """Everything the op model reads. ``surrogate`` "measured" interpolates the measured grids
    (read through a padding envelope: a batch can always be padded to a larger measured one, as
    CUDA-graph serving does, so noise never makes more load cheaper); "pwl" the fitted PWLs."""

    model: ModelSpec
    workload: Workload
    pools: dict[str, Pool]
    costs: dict[str, CostModel]
    comm: dict[str, CommModel]
    framework: str
    routing: Routing = DEFAULT_ROUTING
    surrogate: str = "measured"
    pipeline: str = "pipelined"
    _curves: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _costs: dict[tuple, Latency] = field(default_factory=dict, repr=False)
    memo: dict[tuple, Any] = field(default_factory=dict, repr=False)
    """Callers' memo of derived results (the optimiser caches step times per shape here)."""

    def curve(self, pool: str, op: str, **axes: Any) -> Any:
        key = (pool, op, tuple(sorted(axes.items())))
        curve = self._curves.get(key)
        if curve is None:
            curve = self._curves[key] = self.costs[pool].curve(op, **axes)
        return curve

    def cost(self, pool: str, op: str, x: float, **axes: Any) -> Latency:
        """Latency of ``op`` at load ``x`` on ``pool``'s system from the framework's table."""
        key = (pool, op, x, tuple(sorted(axes.items())))
        hit = self._costs.get(key)
        if hit is None:
            hit = self._costs[key] = self._lookup(pool, op, x, **axes)
        return hit

    def _lookup(self, pool: str, op: str, x: float, **axes: Any) -> Latency:
        curve = self.curve(pool, op, **axes)
        if self.surrogate == "measured":
            lat = curve.eval(x)
            seconds = min(lat.seconds, self._padded(curve, x))
            return Latency(seconds, lat.extrapolated, lat.source, lat.fallback)
        return Latency(
            float(curve.pwl(x)), curve.is_extrapolated(x), f"pwl of {curve.source}", curve.fallback
        )

    def _padded(self, curve: Any, x: float) -> float:
        key = ("padded", id(curve))
        env = self._curves.get(key)
        if env is None:
            env = self._curves[key] = (curve.x, np.minimum.accumulate(curve.seconds[::-1])[::-1])
        xs, ys = env
        i = bisect.bisect_left(xs, x)
        return float(ys[i]) if i < len(xs) else math.inf

    def axis_max(self, pool: str, op: str, axis: str, **match: Any) -> float:
        """Largest measured value of a numeric axis of ``op`` on ``pool``'s system (among the
        series whose other axes equal ``match``, where given and present)."""
        key = ("axis_max", pool, op, axis, tuple(sorted(match.items())))
        if key not in self._curves:
            keys = self.costs[pool].table(op).keys
            same = [k for k in keys if all(k.get(a, v) == v for a, v in match.items())]
            self._curves[key] = max(k[axis] for k in same or keys)
        return self._curves[key]

    def system(self, pool: str) -> Any:
        return self.costs[pool].system

    def memory_op(self, pool: str, nbytes: float, kernels: int = 1) -> Latency:
        """A memory-bound kernel sequence (norms, residual adds, embedding) moving ``nbytes``:
        the system spec's empirical memory-op model (aiconfigurator-core's: bytes at
        ``mem_bw_scaling`` x HBM bandwidth plus ``mem_latency`` per kernel). Not measured."""
        spec = self.system(pool)
        if not spec.mem_latency and not spec.mem_bw_scaling:
            return Latency(0.0, False, f"not counted: {spec.name} gives no memory-op model")
        seconds = nbytes / (spec.hbm_bw * spec.mem_bw_scaling) + kernels * spec.mem_latency
        return Latency(
            seconds,
            False,
            f"memory-op model of {spec.name} (HBM {spec.hbm_bw / 1e12:g} TB/s x "
            f"{spec.mem_bw_scaling:g} + {spec.mem_latency * 1e6:g} us per kernel; "
            f"{spec.mem_source})",
        )

    def cross_comm(self, a: str, b: str) -> CommModel:
        """Prices for traffic from pool ``a`` to pool ``b`` (the same pool: its own model): two
        domains joined by the slower pool's scale-out network, with the sending pool's
        calibrated link model. Keyed by direction: a model built for b -> a must not answer
        for a -> b (it would make prices depend on which was asked first)."""
        if a == b:
            return self.comm[a]
        key = ("cross", a, b)
        if key not in self.memo:
            pa, pb = self.pools[a], self.pools[b]
            la, lb = pa.link(False), pb.link(False)
            inner = Dim(
                "switch",
                max(pa.domain_size, pb.domain_size),
                min(pa.topology[0].bw, pb.topology[0].bw),
                max(pa.topology[0].latency, pb.topology[0].latency),
            )
            outer = Dim("switch", 2, min(la.bw, lb.bw), max(la.latency, lb.latency))
            self.memo[key] = CommModel(
                pa, self.costs[a], self.surrogate, topology=Topology((inner, outer))
            )
        return self.memo[key]


def needed_ops(model: ModelSpec) -> tuple[str, ...]:
    """The cost-table ops a model's decode and prefill read on the preferred path."""
    a = model.attention.kind
    attention = (
        (f"{a}_generation", f"{a}_context")
        if a in ("mla", "dsa")
        else ("attention_generation", "attention_context")
    )
    ops = (*attention, "gemm", "moe", "moe_wideep", "custom_all_reduce")
    ops += ("moe_dispatch", "moe_combine")
    return ops + (("shared_expert",) if model.moe.shared_ffn else ())


def default_framework(model: ModelSpec, costs: CostModel) -> str:
    """The framework whose own tables cover most of what ``model`` needs on this system (ties:
    the order of ``Framework``): the one a deployment of it is best priced with."""
    need = needed_ops(model)

    def covered(fw: str) -> int:
        return sum(fw in costs.available(op) for op in need if op in costs.selection)

    return max(values(Framework), key=lambda fw: (covered(fw), -values(Framework).index(fw)))


def build_context(
    instance: Instance,
    workload: Workload,
    *,
    framework: str | None = None,
    routing: Routing = DEFAULT_ROUTING,
    surrogate: str = "measured",
    pipeline: str = "pipelined",
    model: ModelSpec | None = None,
    tables: dict[str, CostModel] | None = None,
) -> Context:
    """Load the model and one cost and communication model per pool for ``framework`` (default:
    the framework with the most complete tables for the model on the first pool's system).
    ``tables`` shares already loaded cost models (keyed by pool) between contexts."""
    if surrogate not in SURROGATES:
        raise InputError("surrogate", f"unknown {surrogate!r}; use {' or '.join(SURROGATES)}")
    if pipeline not in PIPELINES:
        raise InputError("pipeline", f"unknown {pipeline!r}; use {' or '.join(PIPELINES)}")
    model = model or load_model(instance.model_of(workload))
    if framework is None:
        first = (tables or {}).get(instance.pools[0].name) or CostModel.load(
            instance.pools[0].system
        )
        framework = default_framework(model, first)
    costs = {
        p.name: (
            tables[p.name]
            if tables and tables[p.name].framework == framework
            else CostModel.load(p.system, framework=framework)
        )
        for p in instance.pools
    }
    comm = {p.name: CommModel(p, costs[p.name], surrogate) for p in instance.pools}
    return Context(
        model=model,
        workload=workload,
        pools={p.name: p for p in instance.pools},
        costs=costs,
        comm=comm,
        framework=framework,
        routing=routing,
        surrogate=surrogate,
        pipeline=pipeline,
    )


__all__ = ["Context", "build_context", "default_framework", "pool_topology"]
