"""One optimisation problem: the instance, the workloads served and their traffic (one
workload, a mix of shares, or request-rate demands), the allowed modes, the GPU budget, the
objective, the framework and routing, and one evaluation context per workload (measured
grids), shared by every solve and check of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from aicpp_opt.errors import InputError, brief
from aicpp_opt.model.context import Context, build_context
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
from aicpp_opt.search.catalog import Family
from aicpp_opt.search.formulation import Traffic
from aicpp_opt.spec.instance import MODES, Instance
from aicpp_opt.spec.workload import Workload

OBJECTIVES = ("throughput", "per-gpu", "per-dollar")
INSTANCE_OBJECTIVES = {
    "throughput": "throughput",
    "throughput_per_gpu": "per-gpu",
    "throughput_per_dollar": "per-dollar",
}
"""The instance file's ``search.objective`` names and the CLI's."""


@dataclass
class Problem:
    instance: Instance
    workloads: tuple[Workload, ...]
    traffic: Traffic
    modes: tuple[str, ...]
    budget: int
    objective: str
    """throughput | per-gpu | per-dollar, or ``cost`` (sizing: the cheapest fleet that serves
    ``traffic.demand``)."""
    contexts: dict[str, Context]
    afd_placement: str | None = None
    """Only ``colocated`` or ``split`` AFD units (None: the solver chooses)."""
    keep: Callable[[Family], bool] | None = None
    """Only families it accepts (a study forcing a ratio class, a dispatch, a shape)."""
    progress: Callable[[str, int, int], None] | None = None
    """Called with (workload, groups settled, groups) while capacities settle (a progress
    bar)."""

    @property
    def framework(self) -> str:
        return next(iter(self.contexts.values())).framework

    @property
    def routing(self) -> Routing:
        return next(iter(self.contexts.values())).routing

    @property
    def ratio(self) -> bool:
        return self.objective in ("per-gpu", "per-dollar")

    def resource(self, per_dollar: bool | None = None) -> dict[str, float]:
        """Weight of one GPU of each pool: its price for per-dollar objectives, else 1."""
        dollars = self.objective == "per-dollar" if per_dollar is None else per_dollar
        return {p.name: float(p.cost_per_gpu_hour) if dollars else 1.0 for p in self.instance.pools}


def _check_prices(instance: Instance, field: str) -> None:
    missing = [p.name for p in instance.pools if p.cost_per_gpu_hour is None]
    if missing:
        raise InputError(
            f"cluster.pools[{missing[0]}].cost_per_gpu_hour", f"is required for {field}"
        )


def make_problem(
    instance: Instance,
    workloads: tuple[Workload, ...] | None = None,
    modes: tuple[str, ...] | None = None,
    budget: int | None = None,
    objective: str | None = None,
    framework: str | None = None,
    routing: Routing = DEFAULT_ROUTING,
    shares: dict[str, float] | None = None,
    demand: dict[str, float] | None = None,
    per_dollar: bool = False,
    afd_placement: str | None = None,
) -> Problem:
    """The problem for one framework (default: the model's best-covered). Workloads: the
    given ones (shares from ``shares``, else the instance's mix, else one workload); with
    ``demand`` (requests/s per workload name) the problem is sizing: the cheapest fleet (GPUs,
    or dollars with ``per_dollar``) that serves it."""
    modes = tuple(modes or instance.search.modes)
    for m in modes:
        if m not in MODES:
            raise InputError(
                "--mode", f"unknown mode {brief(m)}; use auto or one of {', '.join(MODES)}"
            )
    total = sum(p.gpus for p in instance.pools)
    if budget is not None and budget < 1:
        raise InputError("--budget", f"must be at least 1 GPU, got {budget}")
    if demand:
        objective = "cost"
        workloads = tuple(instance.workload(name) for name in demand)
        if per_dollar:
            _check_prices(instance, "--per-dollar")
    else:
        objective = objective or INSTANCE_OBJECTIVES[instance.search.objective]
        if objective not in OBJECTIVES:
            raise InputError(
                "--objective", f"unknown {brief(objective)}; use {', '.join(OBJECTIVES)}"
            )
        if objective == "per-dollar":
            _check_prices(instance, "--objective per-dollar")
        if workloads is None:
            mix = dict(shares or instance.mix)
            workloads = (
                tuple(instance.workload(n) for n in mix) if mix else (instance.workloads[0],)
            )
    names = [w.name for w in workloads]
    known = {w.name for w in instance.workloads}
    extra = tuple(w for w in workloads if w.name not in known)
    if extra:  # workloads made up by a caller (a tier, a sweep point) join the instance
        instance = replace(instance, workloads=instance.workloads + extra)
    if not demand:
        mix = dict(shares or instance.mix)
        shares = {n: mix.get(n, 0.0) for n in names} if len(names) > 1 else {names[0]: 1.0}
        if len(names) > 1 and not all(shares.values()):
            raise InputError("mix", f"give a traffic share to every workload served: {names}")
    contexts: dict[str, Context] = {}
    tables = None
    for wl in workloads:
        ctx = build_context(instance, wl, framework=framework, routing=routing, tables=tables)
        framework, tables = ctx.framework, ctx.costs
        contexts[wl.name] = ctx
    traffic = Traffic(
        {w.name: w.osl for w in workloads},
        {} if demand else dict(shares),
        dict(demand or {}),
    )
    return Problem(
        instance,
        tuple(workloads),
        traffic,
        modes,
        min(budget or total, total),
        objective,
        contexts,
        afd_placement,
    )
