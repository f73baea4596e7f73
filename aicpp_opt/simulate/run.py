"""``simulate_plan``: run the request-level simulation of a plan on an instance.

Arrivals: Poisson at each simulated workload's rate (the plan's, or ``rates``), or a trace for
one workload. Warm-up: the roles start empty, so requests arriving before ``warmup_s``
(default: a quarter of the duration for Poisson arrivals, none for a trace) are served but not
measured; neither are those arriving after the duration. Arrivals go on past the duration until
every measured request has finished (so the last measured ones see the same load), at most
``drain_s`` more seconds (default: the duration; at least a minute for a trace); measured
requests unfinished by then count as infinitely late."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from aicpp_opt.errors import InputError
from aicpp_opt.evaluate.evaluation import contexts
from aicpp_opt.simulate.flows import ROUTERS, planned_rate
from aicpp_opt.simulate.pricing import OpModelPricer, Pricer
from aicpp_opt.simulate.requests import poisson_arrivals, trace_arrivals
from aicpp_opt.simulate.result import SimResult, summarise
from aicpp_opt.simulate.sim import Simulation
from aicpp_opt.simulate.trace import read_trace
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan

DEFAULT_DURATION_S = 600.0
WARMUP_SHARE = 0.25
MIN_TRACE_DRAIN_S = 60.0


def _workloads(plan: Plan, workload: str | None, trace: bool) -> list[str]:
    if workload is not None:
        if workload not in plan.workloads:
            raise InputError(
                "--workload", f"the plan serves {', '.join(plan.workloads)}, not {workload!r}"
            )
        return [workload]
    if trace and len(plan.workloads) > 1:
        raise InputError(
            "--workload", f"a trace feeds one workload; choose one of {', '.join(plan.workloads)}"
        )
    return list(plan.workloads)


def _rate(plan: Plan, name: str, rates: dict[str, float] | None) -> float:
    if rates and name in rates:
        rate = rates[name]
        if not (rate > 0 and math.isfinite(rate)):
            raise InputError("--rate", f"must be a positive number of requests/s, got {rate!r}")
        return float(rate)
    return planned_rate(plan, name)


def simulate_plan(
    plan: Plan,
    instance: Instance,
    *,
    duration_s: float | None = None,
    seed: int = 0,
    workload: str | None = None,
    rates: dict[str, float] | None = None,
    trace: str | Path | None = None,
    router: str = "random",
    warmup_s: float | None = None,
    drain_s: float | None = None,
    pricer: Pricer | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> SimResult:
    """Simulate ``plan`` (every workload it serves, or ``workload``) for ``duration_s`` seconds
    of arrivals (default 600 s; for a trace, its span). ``rates`` overrides the requests/s of
    workloads by name. ``pricer`` prices forwards (default: the op model of the plan's
    contexts). ``progress(now, end)`` is called as simulated time advances."""
    if router not in ROUTERS:
        raise InputError("--router", f"unknown {router!r}; use one of {', '.join(ROUTERS)}")
    names = _workloads(plan, workload, trace is not None)
    rows = read_trace(trace) if trace is not None else None
    if rows is not None and duration_s is not None:
        rows = tuple(r for r in rows if r.timestamp < duration_s)
        if not rows:
            raise InputError("--duration", f"no trace request arrives before {duration_s:g} s")
    if duration_s is None:
        duration_s = rows[-1].timestamp if rows else DEFAULT_DURATION_S
    if rows is None and not duration_s > 0:
        raise InputError("--duration", f"must be > 0 seconds, got {duration_s!r}")
    if warmup_s is None:
        warmup_s = 0.0 if rows else WARMUP_SHARE * duration_s
    if not 0 <= warmup_s < max(duration_s, 1e-9):
        raise InputError("--warmup", f"must be in [0, duration {duration_s:g}) s, got {warmup_s}")
    if drain_s is None:
        drain_s = max(duration_s, MIN_TRACE_DRAIN_S) if rows else duration_s
    workloads = {n: instance.workload(n) for n in names}
    per_rate = {n: None if rows else _rate(plan, n, rates) for n in names}
    sim = Simulation(
        plan,
        workloads,
        pricer or OpModelPricer(contexts(instance, plan)),
        router=router,
        seed=seed,
        measure_from=warmup_s,
        measure_until=math.inf if rows else duration_s,
        stop_at=duration_s + drain_s,
    )
    streams = np.random.SeedSequence([seed, 1]).spawn(len(names))
    for name, stream in zip(names, streams, strict=True):
        wl = workloads[name]
        if rows is not None:
            sim.feed(name, trace_arrivals(rows, wl.prefix_reuse))
        else:
            sim.feed(name, poisson_arrivals(wl, per_rate[name], np.random.default_rng(stream)))
    end_estimate = duration_s + (drain_s if rows else 0.0)
    ended = sim.run(None if progress is None else lambda now: progress(now, end_estimate))
    window = (warmup_s, ended if rows else duration_s)
    notes = []
    if sim.pending:
        notes.append(
            f"stopped at {sim.stop_at:g} s with {sim.pending} measured requests unfinished: "
            "a role cannot keep up with the load (they count as infinitely late)"
        )
    source = f"trace {trace}" if rows else "poisson"
    return summarise(sim, window, per_rate, seed=seed, router=router, source=source,
                     notes=tuple(notes))  # fmt: skip
