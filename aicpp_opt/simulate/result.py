"""A run's summary: per workload and per role, TTFT, TPOT and ITL (mean, p50, p90, p99),
throughput and SLO attainment over the measured requests (see ``stats`` for the definitions)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aicpp_opt.simulate.requests import Request
from aicpp_opt.simulate.sim import Simulation
from aicpp_opt.simulate.stats import Dist, percentile
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.workload import SLO


def _ms(x: float | None) -> float | None:
    return x * 1e3 if x is not None and math.isfinite(x) else None


def _finite(values: list[float]) -> np.ndarray:
    """Durations with NaN (the request never got there) as infinite."""
    t = np.array(values, dtype=float)
    return np.where(np.isnan(t), math.inf, t)


def ttfts(reqs: list[Request]) -> np.ndarray:
    """Arrival to first token, infinite for a request that never got one."""
    return _finite([r.first_token - r.arrival for r in reqs])


def tpots(reqs: list[Request]) -> np.ndarray:
    """Per-request TPOT of requests with two or more output tokens, infinite if unfinished."""
    return _finite([(r.finish - r.first_token) / (r.osl - 1) for r in reqs if r.osl > 1])


@dataclass(frozen=True)
class RoleStats:
    """One role over the measured requests it served. ``wait``: arrival to the start of the
    request's first prefill forward (prefill and aggregated roles). ``seat_wait``: the KV's
    arrival to joining a decode batch (P/D decode roles: the rest of the step in progress, and
    any wait for a free seat). ``batch_per_gpu``: mean
    decoding sequences per attention GPU over the window (decode and aggregated roles), to set
    beside the plan's."""

    role: str
    kind: RoleKind
    workload: str
    requests: int
    ttft: Dist | None = None
    wait: Dist | None = None
    seat_wait: Dist | None = None
    tpot: Dist | None = None
    itl: Dist | None = None
    throughput_tok_s: float | None = None
    batch_per_gpu: float | None = None

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind.value, "workload": self.workload, "requests": self.requests}
        for name in ("ttft", "wait", "seat_wait", "tpot", "itl"):
            value = getattr(self, name)
            if value is not None:
                out[f"{name}_ms"] = value.to_ms()
        if self.throughput_tok_s is not None:
            out["throughput_tok_s"] = self.throughput_tok_s
            out["batch_per_gpu"] = self.batch_per_gpu
        return out


@dataclass(frozen=True)
class WorkloadStats:
    """One workload over its measured requests (``unfinished`` of them never finished)."""

    workload: str
    slo: SLO
    rate_rps: float | None
    requests: int
    unfinished: int
    ttft: Dist
    tpot: Dist
    itl: Dist
    throughput_tok_s: float
    slo_attainment: float
    ttft_samples: np.ndarray = field(repr=False, compare=False)
    tpot_samples: np.ndarray = field(repr=False, compare=False)

    @property
    def slo_ttft(self) -> float:
        """TTFT at the SLO's percentile, seconds."""
        return percentile(self.ttft_samples, self.slo.percentile)

    @property
    def slo_tpot(self) -> float:
        """TPOT at the SLO's percentile, seconds."""
        return percentile(self.tpot_samples, self.slo.percentile)

    def to_dict(self) -> dict:
        p = f"p{self.slo.percentile:g}"
        return {
            "rate_rps": self.rate_rps,
            "requests": self.requests,
            "unfinished": self.unfinished,
            "slo": {"ttft_ms": self.slo.ttft * 1e3, "tpot_ms": self.slo.tpot * 1e3,
                    "percentile": self.slo.percentile},
            "ttft_ms": self.ttft.to_ms(),
            "tpot_ms": self.tpot.to_ms(),
            "itl_ms": self.itl.to_ms(),
            f"at_slo_{p}": {"ttft_ms": _ms(self.slo_ttft), "tpot_ms": _ms(self.slo_tpot)},
            "throughput_tok_s": self.throughput_tok_s,
            "slo_attainment": self.slo_attainment,
        }  # fmt: skip


@dataclass(frozen=True)
class SimResult:
    """What ``simulate_plan`` returns. ``window``: the measurement window (seconds) whose
    arrivals are measured and whose streamed tokens make the throughput."""

    workloads: dict[str, WorkloadStats]
    roles: dict[str, RoleStats]
    seed: int
    router: str
    source: str
    window: tuple[float, float]
    ended_at: float
    events: int
    notes: tuple[str, ...] = ()

    def workload(self, name: str | None = None) -> WorkloadStats:
        """A workload's stats (the first simulated one by default)."""
        return self.workloads[name] if name else next(iter(self.workloads.values()))

    def to_dict(self) -> dict:
        return {
            "simulator": "aicpp_opt.simulate (request-level discrete-event)",
            "seed": self.seed,
            "router": self.router,
            "source": self.source,
            "window_s": list(self.window),
            "ended_at_s": self.ended_at,
            "events": self.events,
            "workloads": {k: w.to_dict() for k, w in self.workloads.items()},
            "roles": {k: r.to_dict() for k, r in self.roles.items()},
            "notes": list(self.notes),
        }


def _itl(sim: Simulation, role_ids: list[str]) -> Dist:
    gaps = [sim.logs[r].itl() for r in role_ids]
    if not gaps:
        return Dist.of(np.empty(0))
    return Dist.weighted(
        np.concatenate([g for g, _ in gaps]), np.concatenate([w for _, w in gaps]).astype(float)
    )


def _window_tokens(sim: Simulation, role_ids: list[str], window: tuple[float, float]) -> float:
    start, end = window
    return sum(sim.logs[r].tokens_in(start, end) for r in role_ids) / max(end - start, 1e-9)


def _batch_per_gpu(sim: Simulation, role_id: str, window: tuple[float, float]) -> float:
    log, (start, end) = sim.logs[role_id], window
    t = np.asarray(log.step_end)
    inside = (t >= start) & (t < end)
    seat_seconds = np.asarray(log.step_seqs)[inside] @ np.asarray(log.step_seconds)[inside]
    role = sim.plan.role(role_id)
    gpus = role.replicas * role.shape.attention_gpus
    return float(seat_seconds / max(end - start, 1e-9) / gpus)


def _role_stats(sim: Simulation, role_id: str, window, measured: list[Request]) -> RoleStats:
    role = sim.plan.role(role_id)
    prefills = role.role != RoleKind.DECODE
    decodes = role.role != RoleKind.PREFILL
    mine = [r for r in measured if (r.prefill_role if prefills else r.decode_role) == role_id]
    parts: dict = {}
    if prefills:
        parts["ttft"] = Dist.of(ttfts(mine))
        parts["wait"] = Dist.of(_finite([r.prefill_start - r.arrival for r in mine]))
    if role.role == RoleKind.DECODE:
        parts["seat_wait"] = Dist.of(_finite([r.first_token - r.kv_done for r in mine]))
    if decodes:
        parts["tpot"] = Dist.of(tpots(mine))
        parts["itl"] = _itl(sim, [role_id])
        parts["throughput_tok_s"] = _window_tokens(sim, [role_id], window)
        parts["batch_per_gpu"] = _batch_per_gpu(sim, role_id, window)
    return RoleStats(role_id, role.role, role.workload, len(mine), **parts)


def summarise(
    sim: Simulation,
    window: tuple[float, float],
    rates: dict[str, float | None],
    *,
    seed: int,
    router: str,
    source: str,
    notes: tuple[str, ...] = (),
) -> SimResult:
    measured = [r for r in sim.requests if r.measured]
    workloads = {}
    for name, wl in sim.workloads.items():
        mine = [r for r in measured if r.workload == name]
        serving = [
            rid for rid, s in sim.roles.items()
            if s.role.workload == name and s.role.role != RoleKind.PREFILL
        ]  # fmt: skip
        ttft, tpot = ttfts(mine), tpots(mine)
        ok_tpot = np.array(
            [(r.finish - r.first_token) / (r.osl - 1) <= wl.slo.tpot if r.osl > 1 else True
             for r in mine], dtype=bool,
        )  # fmt: skip
        met = (ttft <= wl.slo.ttft) & ok_tpot
        workloads[name] = WorkloadStats(
            name,
            wl.slo,
            rates.get(name),
            len(mine),
            sum(1 for r in mine if math.isnan(r.finish)),
            Dist.of(ttft),
            Dist.of(tpot),
            _itl(sim, serving),
            _window_tokens(sim, serving, window),
            float(met.mean()) if len(mine) else math.nan,
            ttft,
            tpot,
        )
    roles = {rid: _role_stats(sim, rid, window, measured) for rid in sim.roles}
    return SimResult(
        workloads, roles, seed, router, source, window, sim.queue.now, sim.queue.handled, notes
    )
