"""One optimisation problem: instance, workload, allowed modes, GPU budget and objective,
with the two evaluation contexts (PWL surrogates for the optimiser, measured grids for the
check) built once and shared by every solve and check of it."""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.errors import InputError
from aicpp_opt.model.context import Context, build_context
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
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
    """Everything fixed for one solve: instance, workload, contexts, modes, budget, objective."""

    instance: Instance
    workload: Workload
    modes: tuple[str, ...]
    budget: int
    objective: str
    pwl: Context
    measured: Context

    @property
    def framework(self) -> str:
        return self.pwl.framework

    @property
    def routing(self) -> Routing:
        return self.pwl.routing

    @property
    def capacity(self) -> dict[str, int]:
        return {p.name: p.gpus for p in self.instance.pools}


def make_problem(
    instance: Instance,
    workload: Workload,
    modes: tuple[str, ...] | None = None,
    budget: int | None = None,
    objective: str | None = None,
    framework: str | None = None,
    routing: Routing = DEFAULT_ROUTING,
) -> Problem:
    """The problem for one framework (default: the model's best-covered) and routing."""
    modes = tuple(modes or instance.search.modes)
    for m in modes:
        if m not in MODES:
            raise InputError("--mode", f"unknown mode {m!r}; use auto or one of {', '.join(MODES)}")
    total = sum(p.gpus for p in instance.pools)
    if budget is not None and budget < 1:
        raise InputError("--budget", f"must be at least 1 GPU, got {budget}")
    objective = objective or INSTANCE_OBJECTIVES[instance.search.objective]
    if objective not in OBJECTIVES:
        raise InputError("--objective", f"unknown {objective!r}; use {', '.join(OBJECTIVES)}")
    if objective == "per-dollar":
        missing = [p.name for p in instance.pools if p.cost_per_gpu_hour is None]
        if missing:
            raise InputError(
                f"cluster.pools[{missing[0]}].cost_per_gpu_hour",
                "is required for --objective per-dollar",
            )
    pwl = build_context(instance, workload, framework=framework, routing=routing, surrogate="pwl")
    measured = build_context(
        instance,
        workload,
        framework=pwl.framework,
        routing=routing,
        model=pwl.model,
        tables=pwl.costs,
    )
    return Problem(instance, workload, modes, min(budget or total, total), objective, pwl, measured)


def resource_weights(prob: Problem) -> dict[str, float] | None:
    if prob.objective == "per-gpu":
        return {p.name: 1.0 for p in prob.instance.pools}
    if prob.objective == "per-dollar":
        return {p.name: float(p.cost_per_gpu_hour) for p in prob.instance.pools}
    return None


def add_gpus(a: dict[str, int], b: dict[str, int], n: int = 1) -> dict[str, int]:
    """GPUs per pool of ``a`` plus ``n`` times ``b``."""
    return {k: a.get(k, 0) + n * b.get(k, 0) for k in {*a, *b}}


def fits_budget(prob: Problem, gpus: dict[str, int]) -> bool:
    """Within every pool and the total budget."""
    cap = prob.capacity
    return sum(gpus.values()) <= prob.budget and all(g <= cap[p] for p, g in gpus.items())
