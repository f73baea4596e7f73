"""Routing load: how many token copies reach each expert GPU, from top-k, the expert placement
and the skew of the measured routing distributions.

Distributions use the cost tables' names: ``balanced``/``uniform`` (every expert equally
likely) and ``power_law_<a>`` (expert of popularity rank i chosen with weight i^-a, the
generator behind aiconfigurator's skewed MoE measurements). A token picks ``top_k`` distinct
experts, so no expert is chosen with probability above 1: weights are water-filled to that cap.
Experts are placed round-robin by popularity rank over the EP GPUs (what an EPLB-style balancer
converges to without replication); the skew factor is the busiest GPU's load over the mean."""

from __future__ import annotations

from functools import lru_cache

from aicpp_opt.errors import InputError


def _weights(distribution: str, num_experts: int) -> list[float]:
    if distribution in ("balanced", "uniform"):
        return [1.0] * num_experts
    if distribution.startswith("power_law_"):
        try:
            alpha = float(distribution.removeprefix("power_law_"))
        except ValueError:
            raise InputError("routing", f"bad power-law exponent in {distribution!r}") from None
        return [(i + 1) ** -alpha for i in range(num_experts)]
    raise InputError(
        "routing", f"unknown distribution {distribution!r}; use balanced or power_law_<a>"
    )


@lru_cache(maxsize=256)
def selection_probabilities(distribution: str, num_experts: int, top_k: int) -> tuple[float, ...]:
    """P(expert i among a token's top-k picks), summing to top_k, each capped at 1."""
    w = _weights(distribution, num_experts)
    probs = [0.0] * num_experts
    free = list(range(num_experts))
    budget = float(top_k)
    while free:
        scale = budget / sum(w[i] for i in free)
        capped = [i for i in free if w[i] * scale >= 1.0]
        if not capped:
            for i in free:
                probs[i] = w[i] * scale
            break
        for i in capped:
            probs[i] = 1.0
        budget -= len(capped)
        free = [i for i in free if i not in capped]
    return tuple(probs)


@lru_cache(maxsize=1024)
def skew_factor(distribution: str, num_experts: int, top_k: int, ep: int) -> float:
    """Busiest EP GPU's share of expert-token assignments over the mean share (>= 1)."""
    probs = selection_probabilities(distribution, num_experts, top_k)
    loads = [sum(probs[g::ep]) for g in range(ep)]
    return max(loads) * ep / sum(loads)


def distinct_targets(top_k: int, groups: int) -> float:
    """Expected number of distinct GPUs (out of ``groups``) a token's top-k experts live on,
    under uniform placement: groups * (1 - (1 - 1/groups)^top_k)."""
    return groups * (1.0 - (1.0 - 1.0 / groups) ** top_k)


def tokens_per_ffn_gpu(tokens: float, top_k: int, ep: int, skew: float) -> float:
    """Expert-token assignments on the busiest of ``ep`` expert GPUs for ``tokens`` tokens."""
    return tokens * top_k / ep * skew
