"""One point of a study: a solve (the instance with one model and one workload, the modes, the
GPU budget, the objective, AFD placement and the families kept), or the lowest TPOT the
fastest shape reaches. A point runs in an executor worker (``run_point``) and returns flat
table rows; the evaluator's numbers (measured grids), the plan's cost and what binds its
serving role come with every solved row, so any number a study prints traces to one row.

Points are frozen dataclasses: picklable for the executor, hashable so studies that ask for the
same solve share it, and printable into a stable key for the resume log."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aicpp_opt.errors import InfeasibleError, InputError
from aicpp_opt.evaluate.evaluation import Evaluation
from aicpp_opt.model.schedule import AFD_RESOURCES, PLAIN_RESOURCES
from aicpp_opt.report.summary import headline
from aicpp_opt.search.catalog import Family
from aicpp_opt.search.problem import Problem, make_problem
from aicpp_opt.search.solve import Outcome, describe, fastest_decode, solve
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan, Role, plan_to_dict
from aicpp_opt.spec.workload import Workload
from aicpp_opt.studies.pricing import fleet_cost, plan_gpus
from aicpp_opt.studies.scenario import HEADLINE_COLUMNS

KEY_COLUMNS = (
    "instance",
    "model",
    "workload",
    "isl",
    "osl",
    "prefix_reuse",
    "slo_ttft_ms",
    "slo_tpot_ms",
    "percentile",
    "modes",
    "budget",
    "objective",
    "afd_placement",
    "keep",
)
"""A solve point's settings: the model and workload (its SLO in ms), the modes in one MILP,
the GPU budget, the objective, the AFD placement allowed and the families kept."""
RESULT_COLUMNS = (
    "status",
    "feasible",
    "reason",
    "plan_mode",
    "framework",
    *HEADLINE_COLUMNS,
    "usd_per_hour",
    "usd_per_mtok",
    "afd_m",
    "afd_n",
    "afd_units",
    "afd_k",
    "dispatch",
    "afd_colocated",
    "binds",
    "top_op",
    "decode_load",
    "plan",
    "seconds",
)
"""What a solved row holds beyond its point's keys: ``status`` (``ok``: the plan holds on the
evaluator; ``rejected``: it does not, ``reason`` says why; ``infeasible``: no plan meets the
SLOs; ``bad-input``), the evaluator's headline numbers (TTFT and TPOT at the SLO percentile),
$/hour and $ per million output tokens, the largest AFD role's M, N, units, K, dispatch and
placement, what binds the first serving role (``binds``: the resource of its schedule busiest
over a step; ``top_op``: its largest op line), ``decode_load`` (the serving roles' rate over
their capacity: below 1 when prefill or TTFT limits the flow), the plan as JSON and the wall
seconds."""
SOLVE_COLUMNS = KEY_COLUMNS + RESULT_COLUMNS
FLOOR_COLUMNS = ("floor_tpot_ms", "shape")


@dataclass(frozen=True)
class Keep:
    """The families a study forces (``Problem.keep``): AFD units of one M:N ratio class and/or
    one dispatch strategy. Families without an AFD unit (the P/D prefill feeding AFD decode
    units) always pass."""

    ratio: tuple[int, int] | None = None
    dispatch: str | None = None

    def __call__(self, family: Family) -> bool:
        a = family.role.afd
        if a is None:
            return True
        if self.ratio is not None and (a.attention_gpus, a.ffn_gpus) != self.ratio:
            return False
        return self.dispatch is None or a.dispatch == self.dispatch

    def describe(self) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f"M:N {self.ratio[0]}:{self.ratio[1]}")
        if self.dispatch is not None:
            parts.append(f"dispatch {self.dispatch}")
        return ", ".join(parts)


@dataclass(frozen=True)
class SolvePoint:
    """``solve`` on ``instance`` (one model, one workload: ``study_instance``) with these
    modes in one MILP, at most ``budget`` GPUs."""

    instance: Instance
    modes: tuple[str, ...]
    budget: int
    objective: str = "throughput"
    afd_placement: str | None = None
    keep: Keep | None = None
    time_limit: float = 60.0

    @property
    def workload(self) -> Workload:
        return self.instance.workloads[0]

    def labels(self) -> dict[str, Any]:
        """The point's settings, as table columns (``KEY_COLUMNS``)."""
        return workload_columns(self.instance) | {
            "modes": ",".join(self.modes),
            "budget": self.budget,
            "objective": self.objective,
            "afd_placement": self.afd_placement or "",
            "keep": self.keep.describe() if self.keep else "",
        }

    def problem(self) -> Problem:
        prob = make_problem(
            self.instance,
            (self.workload,),
            self.modes,
            self.budget,
            self.objective,
            afd_placement=self.afd_placement,
        )
        return replace(prob, keep=self.keep)

    def solve(self) -> tuple[Problem, Outcome]:
        prob = self.problem()
        return prob, solve(prob, time_limit=self.time_limit)

    def attempt(self, labels: dict[str, Any], start: float):
        """``(problem, outcome)``, or the one row saying why there is no plan (infeasible, or
        bad input) under ``labels``: what every point built on this solve starts from."""
        try:
            return self.solve()
        except InfeasibleError as err:
            return [labels | failed("infeasible", str(err), start)]
        except InputError as err:
            return [labels | failed("bad-input", str(err), start)]

    def run(self) -> list[dict[str, Any]]:
        start = time.perf_counter()
        got = self.attempt(self.labels(), start)
        if isinstance(got, list):
            return got
        prob, out = got
        warnings = "; ".join(out.warnings)
        row = plan_columns(prob.instance, out.plan, out.evaluated, warnings)
        return [self.labels() | row | {"seconds": time.perf_counter() - start}]


@dataclass(frozen=True)
class FloorPoint:
    """The lowest TPOT any shape of ``modes`` reaches at one sequence per GPU (memory held;
    TTFT and budget not checked): below it no plan of those modes exists, whatever the GPUs."""

    instance: Instance
    modes: tuple[str, ...]

    def labels(self) -> dict[str, Any]:
        return workload_columns(self.instance) | {"modes": ",".join(self.modes)}

    def run(self) -> list[dict[str, Any]]:
        start = time.perf_counter()
        prob = make_problem(self.instance, (self.instance.workloads[0],), self.modes)
        best = fastest_decode(prob, self.instance.workloads[0].name)
        row = self.labels()
        if best is None:
            return [row | {"floor_tpot_ms": None, "shape": "no shape holds the model"}]
        seconds, family = best
        return [
            row
            | {
                "floor_tpot_ms": seconds * 1e3,
                "shape": describe(family),
                "seconds": time.perf_counter() - start,
            }
        ]


class Point(Protocol):
    """What the runner needs of a point (frozen dataclasses: hashable, picklable, printable)."""

    def labels(self) -> dict[str, Any]:
        """Its settings as table columns (the row of a point whose task crashed)."""

    def run(self) -> list[dict[str, Any]]:
        """Its table rows."""


def run_point(point: Point) -> list[dict[str, Any]]:
    """The executor's task: a point's rows."""
    return point.run()


def point_key(point: object) -> str:
    """A stable digest of everything a point computes from (its printed fields)."""
    return hashlib.sha256(repr(point).encode()).hexdigest()[:16]


def workload_columns(instance: Instance) -> dict[str, Any]:
    """The model and the one workload of a point's instance, with its SLO (ms)."""
    wl = instance.workloads[0]
    return {
        "instance": instance.name,
        "model": instance.model,
        "workload": wl.name,
        "isl": wl.isl,
        "osl": wl.osl,
        "prefix_reuse": wl.prefix_reuse,
        "slo_ttft_ms": wl.slo.ttft * 1e3,
        "slo_tpot_ms": wl.slo.tpot * 1e3,
        "percentile": wl.slo.percentile,
    }


def failed(status: str, reason: str, start: float) -> dict[str, Any]:
    """The result columns of a point without a plan."""
    return {"status": status, "feasible": False, "reason": reason} | {
        "seconds": time.perf_counter() - start
    }


def plan_columns(
    instance: Instance, plan: Plan, ev: Evaluation, warnings: str = ""
) -> dict[str, Any]:
    """The result columns of an evaluated plan: status, headline numbers, cost, AFD shape and
    what binds."""
    broken = "; ".join(f.reason for f in ev.flags if not f.ok)
    dollars = fleet_cost(instance, plan_gpus(plan), ev.output_tps) or {}
    binds, top = bottleneck(ev, plan)
    return {
        "status": "ok" if ev.feasible else "rejected",
        "feasible": ev.feasible,
        "reason": "; ".join(x for x in (broken, warnings) if x),
        "plan_mode": str(plan.mode),
        "framework": str(plan.framework) if plan.framework else "",
        **{k: plain(v) for k, v in headline(ev).items()},
        "usd_per_hour": dollars.get("usd_per_hour"),
        "usd_per_mtok": dollars.get("usd_per_million_tokens"),
        **afd_columns(plan),
        "binds": binds,
        "top_op": top,
        "decode_load": plain(decode_load(ev)),
        "plan": json.dumps(plan_to_dict(plan), sort_keys=True),
    }


def afd_columns(plan: Plan) -> dict[str, Any]:
    """M, N, units, K, dispatch and placement of the plan's largest AFD role (None without)."""
    units = [r for r in plan.roles if r.afd is not None]
    if not units:
        return dict.fromkeys(("afd_m", "afd_n", "afd_units", "afd_k", "dispatch", "afd_colocated"))
    r = max(units, key=lambda r: r.gpus)
    a = r.afd
    return {
        "afd_m": a.attention_gpus,
        "afd_n": a.ffn_gpus,
        "afd_units": r.replicas,
        "afd_k": r.micro_batches,
        "dispatch": str(a.dispatch),
        "afd_colocated": a.colocated,
    }


def serving_role(plan: Plan) -> Role:
    """The plan's largest decode or aggregated role."""
    return max((r for r in plan.roles if r.role != RoleKind.PREFILL), key=lambda r: r.gpus)


def bottleneck(ev: Evaluation, plan: Plan) -> tuple[str, str]:
    """What binds the plan's first serving role: the resource of its schedule (GPU and
    network; AFD: attention GPUs, A->F links, FFN GPUs, F->A links) busiest over one step (the
    sum of its op lines, in ms of the step), and the step's largest op line."""
    result = next(r for r in ev.roles if r.kind != RoleKind.PREFILL)
    resources = AFD_RESOURCES if plan.role(result.role).afd is not None else PLAIN_RESOURCES
    step = result.step
    busy: dict[str, float] = {}
    lines = [op for op in step.ops if op.total > 0]  # not the (negative) overlap credits
    for op in lines:
        busy[resources[op.stage]] = busy.get(resources[op.stage], 0.0) + op.total
    most = max(busy, key=busy.get)
    top = max(lines, key=lambda op: op.total)
    total = step.total * 1e3
    return (
        f"{most} busy {busy[most] * 1e3:.2f} of {total:.2f} ms",
        f"{top.name} [{top.layer.value}] {top.total * 1e3:.2f} of {total:.2f} ms",
    )


def decode_load(ev: Evaluation) -> float | None:
    """The serving (decode and aggregated) roles' requests/s over their capacity: 1 when
    decode limits the flow, below 1 when prefill or TTFT does (None: no serving capacity)."""
    serving = [r for r in ev.roles if r.kind != RoleKind.PREFILL]
    capacity = sum(r.capacity for r in serving)
    return sum(r.rate for r in serving) / capacity if capacity else None


def plain(value: Any) -> Any:
    """Python numbers for CSV, JSON and parquet (the evaluator may give numpy's)."""
    return value.item() if hasattr(value, "item") else value
