"""Predicted against replayed numbers. The solve -> replay -> correct loop lives in the
optimiser (``aicpp_opt.opt.solve`` with ``aicpp_opt.opt.replay_check``)."""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.replay.run import ReplayResult


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
