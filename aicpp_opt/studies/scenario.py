"""One scenario of a sweep (instance, workload at an SLO tier, GPU budget, model, mode,
objective) and the function that solves it into one flat table row. The function is
module-level and the scenario carries the instance file's content, so a worker on another
machine needs neither the spec nor the instance file (only this package, its models and cost
tables)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from aicpp_opt.errors import InfeasibleError, InputError
from aicpp_opt.replay.check import replay_checker
from aicpp_opt.report.summary import headline
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import Outcome, solve
from aicpp_opt.spec.instance import Instance, parse_instance
from aicpp_opt.spec.plan import plan_to_dict
from aicpp_opt.spec.workload import Workload

OWN_SLO = "own"
"""The SLO tier that keeps the workload's own targets."""

KEY_COLUMNS = (
    "id",
    "instance",
    "workload",
    "slo_tier",
    "slo_ttft_ms",
    "slo_tpot_ms",
    "budget",
    "model",
    "framework",
    "mode",
    "objective",
    "replay",
    "time_limit",
)
HEADLINE_COLUMNS = (
    "gpus_used",
    "throughput_tok_s",
    "tok_s_per_gpu",
    "tok_s_per_user",
    "requests_per_s",
    "ttft_ms",
    "ttft_mean_ms",
    "tpot_ms",
    "tpot_mean_ms",
)
"""The evaluator's headline numbers (``report.summary.headline``): TTFT and TPOT at the SLO
percentile, and their means."""
RESULT_COLUMNS = (
    "status",
    "feasible",
    "reason",
    "plan_mode",
    *HEADLINE_COLUMNS,
    "replay_tpot_mean_ms",
    "replay_throughput_tok_s",
    "notes",
    "plan",
    "solve_seconds",
)
COLUMNS = KEY_COLUMNS + RESULT_COLUMNS
TIMING_COLUMNS = ("solve_seconds",)
"""Columns that differ between two runs of the same scenarios (wall-clock time)."""

STATUSES = ("ok", "rejected", "infeasible", "bad-input", "crashed")
"""``ok``: a plan its checks hold; ``rejected``: the MILP's plan breaks an SLO on the evaluator
(or the replay, when run; reason and numbers say how); ``infeasible``: no plan meets the SLOs
(reason says why); ``bad-input``: the scenario was rejected (e.g. per-dollar on a pool without
a price, or the solver's time limit); ``crashed``: an unexpected exception or a lost worker (a
rerun solves it again)."""


@dataclass(frozen=True)
class Scenario:
    """Everything one solve needs, resolved: the instance (its name and the file's JSON text),
    the workload with the tier's SLO applied, the GPU budget (at most the instance's GPUs),
    the model, the serving framework whose tables price it, the mode (``auto``: every mode the
    instance allows), the objective."""

    instance: str
    instance_json: str
    workload: Workload
    slo_tier: str
    budget: int
    model: str
    framework: str
    mode: str
    objective: str
    replay: bool
    time_limit: float

    @property
    def id(self) -> str:
        """Readable axes, then a digest of every field (the instance file's content included),
        so an edited instance or a changed setting is a new scenario, never a stale result."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return (
            f"{self.instance}/{self.workload.name}/{self.slo_tier}/{self.budget:04d}gpu/"
            f"{self.model}/{self.framework}/{self.mode}/{self.objective}#{digest[:10]}"
        )

    def key_row(self) -> dict[str, Any]:
        slo = self.workload.slo
        return {
            "id": self.id,
            "instance": self.instance,
            "workload": self.workload.name,
            "slo_tier": self.slo_tier,
            "slo_ttft_ms": slo.ttft * 1e3,
            "slo_tpot_ms": slo.tpot * 1e3,
            "budget": self.budget,
            "model": self.model,
            "framework": self.framework,
            "mode": self.mode,
            "objective": self.objective,
            "replay": self.replay,
            "time_limit": self.time_limit,
        }


def failed_row(
    scenario: Scenario, status: str, reason: str, seconds: float | None
) -> dict[str, Any]:
    """The row of a scenario without a plan (``seconds`` None: not known, the worker died)."""
    return full_row(
        scenario.key_row()
        | {"status": status, "feasible": False, "reason": reason, "solve_seconds": seconds}
    )


def full_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every column, None where the row has no value."""
    return {c: row.get(c) for c in COLUMNS}


def scenario_instance(scenario: Scenario) -> Instance:
    """The instance as the scenario serves it: the model, and its one workload (the tier's SLO)
    alone, so every part that looks a workload up by name (the replay's SLO check) finds it."""
    inst = parse_instance(json.loads(scenario.instance_json))
    return replace(inst, model=scenario.model, workloads=(scenario.workload,), mix=())


def solve_scenario(scenario: Scenario) -> dict[str, Any]:
    """Solve one scenario as ``aicpp-opt solve -w WORKLOAD`` would (the replay only when asked)
    and return its row; an infeasible or rejected scenario is a row too, with its one-line
    reason."""
    start = time.perf_counter()
    s = scenario
    try:
        inst = scenario_instance(s)
        modes = None if s.mode == "auto" else (s.mode,)
        prob = make_problem(inst, (s.workload,), modes, s.budget, s.objective, s.framework)
        replayer = replay_checker(inst, prob.routing) if s.replay else None
        out = solve(prob, time_limit=s.time_limit, replay=replayer)
    except InfeasibleError as err:
        return failed_row(s, "infeasible", str(err), time.perf_counter() - start)
    except InputError as err:
        return failed_row(s, "bad-input", str(err), time.perf_counter() - start)
    return full_row(
        s.key_row() | _outcome_columns(out) | {"solve_seconds": time.perf_counter() - start}
    )


def _outcome_columns(out: Outcome) -> dict[str, Any]:
    """The evaluator's numbers on the measured grids (the replay's beside them when run)."""
    ev = out.evaluated
    replayed = out.replay.to_dict() if out.replay is not None else {}
    holds = ev.feasible and (not out.rounds or out.rounds[-1].holds)
    return {
        "status": "ok" if holds else "rejected",
        "feasible": holds,
        "reason": "" if holds else "; ".join(out.warnings),
        "plan_mode": str(out.plan.mode),
        **{k: _plain(v) for k, v in headline(ev).items()},
        "replay_tpot_mean_ms": _plain(replayed.get("tpot_mean_ms")),
        "replay_throughput_tok_s": _plain(replayed.get("throughput_tok_s")),
        "notes": "; ".join([*out.warnings, *ev.notes]),
        "plan": json.dumps(plan_to_dict(out.plan), sort_keys=True),
    }


def _plain(value: Any) -> Any:
    """Python numbers for JSON and parquet (the evaluator and the replay may give numpy's)."""
    return value.item() if hasattr(value, "item") else value
