"""What every perf function returns: a list of costed ops whose sum is the step time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cost:
    """One latency lookup: seconds, where it came from, and whether the grid was extrapolated."""

    seconds: float
    source: str
    extrapolated: bool = False


@dataclass(frozen=True)
class OpCost:
    """An op or communication repeated ``count`` times per step (e.g. once per MoE layer).

    ``layer``: dense | moe | step (once per step) | pipeline (AFD overlap credit);
    ``side``: gpu | attention | ffn | link."""

    name: str
    layer: str
    count: float
    cost: Cost
    side: str = "gpu"

    @property
    def seconds(self) -> float:
        return self.cost.seconds

    @property
    def total(self) -> float:
        return self.count * self.cost.seconds

    def to_dict(self) -> dict:
        return {
            "op": self.name,
            "layer": self.layer,
            "side": self.side,
            "count": self.count,
            "ms_each": self.cost.seconds * 1e3,
            "ms_total": self.total * 1e3,
            "source": self.cost.source,
            "extrapolated": self.cost.extrapolated,
        }


@dataclass(frozen=True)
class StepBreakdown:
    """A step (or prefill forward) as its ops; ``total`` is exactly their sum.

    ``traffic`` counts token copies moved by MoE dispatch and combine (conservation checks);
    ``notes`` say which model produced the number (pipeline model, binding resource)."""

    ops: tuple[OpCost, ...]
    traffic: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(op.total for op in self.ops)

    @property
    def extrapolated(self) -> bool:
        return any(op.cost.extrapolated for op in self.ops)

    def to_dict(self) -> dict:
        return {
            "total_ms": self.total * 1e3,
            "ops": [op.to_dict() for op in self.ops],
            "traffic": self.traffic,
            "notes": list(self.notes),
        }
