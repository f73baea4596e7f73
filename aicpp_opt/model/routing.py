"""How a batch's tokens spread over the EP ranks of a MoE layer, and how much more the busiest
rank gets than the mean (the skew). One routing model drives the expert-kernel lookup, EP
dispatch / combine and the AFD receivers.

Routings:

- ``eplb`` (default): what an EPLB-style balancer achieves. EPLB (DeepSeek's expert-parallel
  load balancer, run by SGLang with ``--enable-eplb``) places and replicates experts so that every
  rank's *expected* load is equal; what remains is the batch-to-batch fluctuation of the routing
  itself ("the router never emits perfectly balanced traffic, so every live batch still skews
  load", LMSYS, *Improving DeepEP MoE Load Balance in SGLang with Waterfill and LPLB*). That
  residual is derived, not assumed: a rank's count of a batch's expert picks is a sum over tokens
  of how many of the token's ``top_k`` distinct experts it holds (hypergeometric); the busiest of
  ``ep`` ranks is the expected maximum of ``ep`` such counts, in the normal approximation. Small
  batches on many ranks skew most (EP 64 at 8 tokens per rank: about 1.3x); large ones approach 1.
  The expert kernels are read from the tables' ``balanced`` rows at the busiest rank's load.
- ``balanced``: every rank gets exactly the mean (skew 1; aiconfigurator's ``balanced_logits``).
- ``power_law_<a>``: aiconfigurator-core's skewed generator (collector ``helper.py``,
  ``_generate_power_law_distribution``): per-expert loads drawn from a continuous power law of
  exponent ``a`` by inverse CDF on [1, 0.8 T] (T tokens; [0.01, 2] when T x top_k <= experts),
  scaled to T x top_k picks, experts in random order, ``ep`` contiguous groups; the busiest group
  is what its kernels measured (they swap it to rank 0). The skew here is that busiest group's
  share x ep, averaged over ``POWER_LAW_DRAWS`` seeded draws. The expert kernels are read from
  the tables' own ``power_law_<a>`` rows, which embed that skew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import integrate
from scipy.special import ndtr

from aicpp_opt.errors import InputError, brief

POWER_LAW_DRAWS = 64
POWER_LAW_SEED = 0


@dataclass(frozen=True)
class Routing:
    """``kind`` eplb | balanced | power_law, ``alpha`` the power-law exponent."""

    kind: str
    alpha: float = 0.0

    @property
    def name(self) -> str:
        return f"power_law_{self.alpha:g}" if self.kind == "power_law" else self.kind

    @property
    def kernel_distribution(self) -> str:
        """The ``distribution`` axis value of the expert-kernel tables to read."""
        return self.name if self.kind == "power_law" else "balanced"

    @property
    def kernel_embeds_skew(self) -> bool:
        """The measured kernel already is the busiest rank's (power-law rows)."""
        return self.kind == "power_law"

    def skew(self, tokens: float, num_experts: int, top_k: int, ep: int) -> float:
        """Busiest EP rank's expert picks over the mean, for a batch of ``tokens`` tokens
        entering the layer across the EP group."""
        if ep <= 1 or self.kind == "balanced":
            return 1.0
        t = max(1, round(tokens))
        if self.kind == "eplb":
            return _fluctuation_skew(t, num_experts, top_k, ep)
        return _power_law_skew(t, num_experts, top_k, ep, self.alpha)


DEFAULT_ROUTING = Routing("eplb")
ROUTING_HELP = "eplb | balanced | power_law_<a>"


def parse_routing(text: str, field: str = "routing") -> Routing:
    """``eplb``, ``balanced`` (``uniform``) or ``power_law_<a>`` with a > 1."""
    if text in ("eplb", "balanced"):
        return Routing(text)
    if text == "uniform":
        return Routing("balanced")
    if text.startswith("power_law_"):
        try:
            alpha = float(text.removeprefix("power_law_"))
        except ValueError:
            alpha = math.nan
        if not (math.isfinite(alpha) and alpha > 1.0):
            raise InputError(field, f"power-law exponent must be a number > 1, got {brief(text)}")
        return Routing("power_law", alpha)
    raise InputError(field, f"unknown routing {brief(text)}; use eplb, balanced or power_law_<a>")


@lru_cache(maxsize=64)
def expected_max_normal(n: int) -> float:
    """E[max of n independent standard normals] (numerical integral)."""
    if n <= 1:
        return 0.0

    def density(x: float) -> float:
        pdf = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return n * x * pdf * ndtr(x) ** (n - 1)

    return float(integrate.quad(density, -12, 12, limit=200)[0])


@lru_cache(maxsize=4096)
def _fluctuation_skew(tokens: int, num_experts: int, top_k: int, ep: int) -> float:
    per_rank = num_experts / ep
    p = per_rank / num_experts
    mean = tokens * top_k * p
    # a token's picks on one rank: top_k draws without replacement from num_experts experts
    var = tokens * top_k * p * (1 - p) * (num_experts - top_k) / max(num_experts - 1, 1)
    return 1.0 + math.sqrt(var) / mean * expected_max_normal(ep)


@lru_cache(maxsize=4096)
def _power_law_skew(tokens: int, num_experts: int, top_k: int, ep: int, alpha: float) -> float:
    rng = np.random.default_rng(POWER_LAW_SEED)
    lo, hi = (1.0, tokens * 0.8) if tokens * top_k > num_experts else (0.01, 2.0)
    hi = max(hi, lo * (1 + 1e-9))
    u = rng.random((POWER_LAW_DRAWS, num_experts))
    a = 1.0 - alpha
    loads = ((hi**a - lo**a) * u + lo**a) ** (1.0 / a)
    groups = loads.reshape(POWER_LAW_DRAWS, ep, num_experts // ep).sum(axis=2)
    return float(np.mean(groups.max(axis=1) / groups.sum(axis=1) * ep))


def distinct_targets(top_k: int, groups: int) -> float:
    """Expected distinct GPUs (of ``groups``) a token's ``top_k`` experts live on, experts
    spread uniformly: groups x (1 - (1 - 1/groups)^top_k)."""
    return groups * (1.0 - (1.0 - 1.0 / groups) ** top_k)


def rank_shares(skew: float, ep: int) -> tuple[float, ...]:
    """Each EP rank's share of a batch's expert picks: the busiest (first) ``skew / ep``, the
    others the rest in equal parts."""
    if ep <= 1:
        return (1.0,)
    hot = min(skew, float(ep)) / ep
    return (hot, *([(1.0 - hot) / (ep - 1)] * (ep - 1)))
