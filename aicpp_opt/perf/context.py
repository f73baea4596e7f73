"""The evaluation context, built once per (instance, workload): model, one cost model per pool,
topology, and the switches (surrogate, pipeline model, routing distribution). Curve lookups are
cached here so the optimiser can call the role-level functions thousands of times."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aicpp_opt.errors import InputError
from aicpp_opt.perf.breakdown import Cost
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.model import ModelSpec, load_model
from aicpp_opt.spec.workload import Workload

SURROGATES = ("measured", "pwl")
PIPELINES = ("pipelined", "serial")


class CostSource(Protocol):
    """What perf needs from ``aicpp_opt.costs.CostModel``."""

    system: Any

    def curve(self, op: str, **axes: Any) -> Any: ...

    def table(self, op: str) -> Any: ...


@dataclass
class PerfContext:
    """Everything the role-level functions read. ``pipeline`` picks the AFD model
    ("pipelined": closed-cycle bound, default; "serial": no overlap)."""

    model: ModelSpec
    workload: Workload
    pools: dict[str, Pool]
    costs: dict[str, CostSource]
    surrogate: str = "measured"
    pipeline: str = "pipelined"
    routing: str = "power_law_1.01"
    _curves: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _costs: dict[tuple, Cost] = field(default_factory=dict, repr=False)
    memo: dict[tuple, Any] = field(default_factory=dict, repr=False)
    """Callers' memo of derived results (the optimiser caches step times per shape here)."""

    def curve(self, pool: str, op: str, **axes: Any) -> Any:
        key = (pool, op, tuple(sorted(axes.items())))
        curve = self._curves.get(key)
        if curve is None:
            curve = self._curves[key] = self.costs[pool].curve(op, **axes)
        return curve

    def cost(self, pool: str, op: str, x: float, **axes: Any) -> Cost:
        """Latency of ``op`` at load ``x`` on ``pool``'s system: measured grid or PWL.
        Memoised: the optimiser asks for the same op at the same load for many shapes."""
        key = (pool, op, x, tuple(sorted(axes.items())))
        hit = self._costs.get(key)
        if hit is None:
            hit = self._costs[key] = self._lookup(pool, op, x, **axes)
        return hit

    def _lookup(self, pool: str, op: str, x: float, **axes: Any) -> Cost:
        curve = self.curve(pool, op, **axes)
        if self.surrogate == "measured":
            lat = curve.eval(x)
            return Cost(min(lat.seconds, self._padded(curve, x)), lat.source, lat.extrapolated)
        return Cost(float(curve.pwl(x)), f"pwl of {curve.source}", curve.is_extrapolated(x))

    def _padded(self, curve: Any, x: float) -> float:
        """The cheapest measured point at or above load ``x``: a batch can always be padded up
        to a larger measured one (as CUDA-graph serving does), so measurement noise never makes
        more load cheaper. Equal to the measured grid wherever that is non-decreasing."""
        key = ("padded", id(curve))
        env = self._curves.get(key)
        if env is None:
            env = self._curves[key] = (curve.x, np.minimum.accumulate(curve.seconds[::-1])[::-1])
        xs, ys = env
        i = bisect.bisect_left(xs, x)
        return float(ys[i]) if i < len(xs) else math.inf

    def axis_max(self, pool: str, op: str, axis: str) -> float:
        """Largest measured value of a numeric axis of ``op`` on ``pool``'s system."""
        key = ("axis_max", pool, op, axis)
        if key not in self._curves:
            self._curves[key] = max(k[axis] for k in self.costs[pool].table(op).keys)
        return self._curves[key]

    def system(self, pool: str) -> Any:
        return self.costs[pool].system


def build_context(
    instance: Instance,
    workload: Workload,
    *,
    model: ModelSpec | None = None,
    costs: dict[str, CostSource] | None = None,
    surrogate: str = "measured",
    pipeline: str = "pipelined",
    routing: str = "power_law_1.01",
) -> PerfContext:
    """Load the model and one CostModel per pool (``costs`` injects them, e.g. in tests)."""
    if surrogate not in SURROGATES:
        raise InputError("surrogate", f"unknown {surrogate!r}; use {' or '.join(SURROGATES)}")
    if pipeline not in PIPELINES:
        raise InputError("pipeline", f"unknown {pipeline!r}; use {' or '.join(PIPELINES)}")
    if costs is None:
        from aicpp_opt.costs import CostModel

        costs = {p.name: CostModel.load(p.system) for p in instance.pools}
    return PerfContext(
        model=model or load_model(instance.model),
        workload=workload,
        pools={p.name: p for p in instance.pools},
        costs=costs,
        surrogate=surrogate,
        pipeline=pipeline,
        routing=routing,
    )
