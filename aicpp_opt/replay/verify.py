"""Predicted against replayed numbers, and the bounded solve -> replay -> correct loop.

The loop is generic: the optimizer passes a ``solve(corrections)`` callable that returns a
plan, its prediction and its ``ReplayInput``; the replay checks the SLOs; where the replay
is slower than the prediction, the correction for the decode step (and for the TTFT) is
the replayed/predicted ratio, which the optimizer applies to the costs it got wrong before
solving again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aicpp_opt.replay.expand import ReplayInput
from aicpp_opt.replay.run import ReplayResult, replay


@dataclass(frozen=True)
class Prediction:
    """The optimizer's (or evaluator's) numbers for a plan."""

    tpot_s: float
    ttft_s: float | None
    throughput_tps: float
    ttft_queue_s: float = 0.0  # the queueing share of ttft_s


@dataclass(frozen=True)
class Comparison:
    """Predicted and replayed TPOT, TTFT and throughput of one plan."""

    predicted: Prediction
    replayed: Prediction

    @property
    def tpot_err(self) -> float:
        return self.replayed.tpot_s / self.predicted.tpot_s - 1


def compare(pred: Prediction, result: ReplayResult) -> Comparison:
    """Replayed numbers beside the predicted ones. The replayed TTFT keeps the predicted
    queueing (the replay has no arrival process) and replaces compute + KV transfer; the
    replayed throughput scales the predicted one by predicted/replayed TPOT (decode-bound)."""
    ttft = None
    if pred.ttft_s is not None and result.ttft_s is not None:
        ttft = pred.ttft_queue_s + result.ttft_s
    tps = pred.throughput_tps * pred.tpot_s / result.tpot_s if result.tpot_s > 0 else 0.0
    return Comparison(pred, Prediction(result.tpot_s, ttft, tps, pred.ttft_queue_s))


@dataclass(frozen=True)
class Slo:
    tpot_s: float
    ttft_s: float | None = None

    def holds(self, p: Prediction) -> bool:
        ttft_ok = self.ttft_s is None or p.ttft_s is None or p.ttft_s <= self.ttft_s
        return p.tpot_s <= self.tpot_s and ttft_ok


@dataclass
class Round:
    plan: object
    comparison: Comparison
    holds: bool
    corrections: dict[str, float]


@dataclass
class LoopResult:
    rounds: list[Round] = field(default_factory=list)

    @property
    def final(self) -> Round:
        return self.rounds[-1]


SolveFn = Callable[[dict[str, float]], tuple[object, Prediction, ReplayInput]]


def closed_loop(
    solve: SolveFn,
    slo: Slo,
    max_rounds: int = 4,
    replay_fn: Callable[[ReplayInput], ReplayResult] = replay,
) -> LoopResult:
    """Solve, replay, and while the replay breaks an SLO, scale the costs the replay found
    slower (``tpot``, ``ttft`` multipliers, compounded over rounds) and solve again."""
    corrections = {"tpot": 1.0, "ttft": 1.0}
    out = LoopResult()
    for _ in range(max_rounds):
        plan, pred, inp = solve(dict(corrections))
        cmp = compare(pred, replay_fn(inp))
        holds = slo.holds(cmp.replayed)
        out.rounds.append(Round(plan, cmp, holds, dict(corrections)))
        if holds:
            break
        corrections["tpot"] *= max(1.0, cmp.replayed.tpot_s / pred.tpot_s)
        if pred.ttft_s and cmp.replayed.ttft_s:
            corrections["ttft"] *= max(1.0, cmp.replayed.ttft_s / pred.ttft_s)
    return out
