"""Queueing delay before prefill starts: M/D/c (Poisson arrivals, deterministic service, c
servers), by the Cosmetatos approximation

    Wq(M/D/c) = 1/2 Wq(M/M/c) [1 + (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c)],

with Wq(M/M/c) from the Erlang-C formula. For c = 1 the bracket is 1 and the formula is the
exact Pollaczek-Khinchine M/D/1 wait. At rho >= 1 the queue is unstable: the wait is infinite."""

from __future__ import annotations

import math

from scipy.special import gammaincc

SATURATED = 1e-9
"""Utilisation within this of 1 is saturation (a fleet balanced on its prefill capacity sits at
rho = 1 up to rounding)."""


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``offered`` = lambda * S.

    Closed form through the Erlang-B formula B = Poisson pmf(c; a) / Poisson cdf(c; a) (the cdf
    is the regularised upper incomplete gamma Q(c + 1, a)), so the cost does not grow with the
    number of servers: fleets reach thousands of prefill ranks."""
    rho = offered / servers
    if rho >= 1.0:
        return 1.0
    if offered <= 0.0:
        return 0.0
    log_pmf = -offered + servers * math.log(offered) - math.lgamma(servers + 1)
    erlang_b = math.exp(log_pmf) / gammaincc(servers + 1, offered)
    return erlang_b / (1.0 - rho * (1.0 - erlang_b))


def ttft_queueing(arrival_rate: float, service_time: float, servers: int) -> float:
    """Mean wait (seconds) before service in M/D/c; 0 at no load, inf when saturated."""
    if arrival_rate <= 0 or service_time <= 0:
        return 0.0
    offered = arrival_rate * service_time
    rho = offered / servers
    if rho >= 1.0 - SATURATED:
        return math.inf
    wq_mmc = erlang_c(servers, offered) * service_time / (servers * (1.0 - rho))
    c = servers
    correction = 1.0 + (1.0 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)
    return 0.5 * wq_mmc * correction
