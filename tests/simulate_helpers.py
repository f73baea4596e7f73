"""Helpers of the simulator tests: a small instance whose workloads the tests shape, plans
written as dicts, and a pricer with times the test chooses (so expected values are worked out
by hand or from closed forms, not from the op model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aicpp_opt.simulate.pricing import RankLoad
from aicpp_opt.spec.instance import parse_instance
from aicpp_opt.spec.plan import Plan, Role, parse_plan


def instance(*workloads: dict, gpus: int = 16, domain: int = 8):
    return parse_instance(
        {
            "name": "sim-test",
            "cluster": {
                "pools": [
                    {
                        "name": "h200",
                        "system": "h200_sxm",
                        "gpus": gpus,
                        "topology": [
                            {"kind": "switch", "size": domain, "bw_GBps": 450, "latency_ns": 250},
                            {"kind": "switch", "size": gpus // domain, "bw_GBps": 50,
                             "latency_ns": 2000},
                        ],
                    }
                ]
            },
            "model": "deepseek-v3.2",
            "workloads": list(workloads) or [{"name": "w", "isl": 100, "osl": 2}],
        }
    )  # fmt: skip


def role(kind: str, gpus: int, *, replicas: int = 1, dp: int = 1, domain: int = 0, **extra):
    """A plan role of ``replicas`` x ``gpus`` GPUs (attention DP ``dp``, EP = GPUs)."""
    return {
        "role": kind,
        "pool": "h200",
        "replicas": replicas,
        "placement": [{"pool": "h200", "domain": domain, "gpus": replicas * gpus}],
        "shape": {"attn_tp": gpus // dp, "attn_dp": dp, "moe_tp": 1, "moe_ep": gpus},
        **extra,
    }


def plan(inst, *roles: dict, **extra) -> Plan:
    return parse_plan({"roles": list(roles), **extra}, inst)


@dataclass
class StubPricer:
    """Forwards priced by ``forward_fn(role, loads)``, decode steps by ``decode_fn(seqs)``,
    every KV transfer ``kv_s`` seconds."""

    forward_fn: Callable[[Role, Sequence[RankLoad]], float]
    decode_fn: Callable[[int], float] = lambda n: 1e-3
    kv_s: float = 0.0

    def forward(self, role: Role, loads: Sequence[RankLoad]) -> float:
        return self.forward_fn(role, loads)

    def decode(self, role: Role, seqs: int) -> float:
        return self.decode_fn(seqs)

    def kv(self, prefill: Role, decode: Role, isl: int, domains: int) -> float:
        return self.kv_s


def constant(seconds: float) -> Callable[[Role, Sequence[RankLoad]], float]:
    return lambda role, loads: seconds


def slowest_tokens(per_token: float, base: float = 0.0):
    """base + per_token x the busiest rank's tokens (decode sequences + prompt pieces)."""

    def price(role: Role, loads: Sequence[RankLoad]) -> float:
        return base + per_token * max(x.decode_seqs + sum(e - s for s, e in x.spans) for x in loads)

    return price
