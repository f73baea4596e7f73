"""Queueing delay before prefill starts.

- ``ttft_queueing``: M/D/c (Poisson arrivals, deterministic service, c servers), by the
  Cosmetatos approximation

      Wq(M/D/c) = 1/2 Wq(M/M/c) [1 + (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c)],

  with Wq(M/M/c) from the Erlang-C formula. For c = 1 the bracket is 1 and the formula is the
  exact Pollaczek-Khinchine M/D/1 wait. At rho >= 1 the queue is unstable: the wait is
  infinite.
- ``prefill_queue``: a P/D prefill replica, a batch queue whose lock-step forwards last longer
  the more requests they carry; exact (an embedded Markov chain), percentile included.
- ``seat_wait``: the wait for a free seat of a continuous-batching replica (GI/G/c over its
  sequences, a sequence holding its seat for its whole decode); ``seat_load``: the load at
  which a given share of Poisson arrivals waits for one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.linalg import solve_banded
from scipy.special import gammaincc, gammaln, pdtr

from aicpp_opt.model.delays import NO_WAIT, Wait

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
    return 0.5 * wq_mmc * _cosmetatos(servers, rho)


def _cosmetatos(c: int, rho: float) -> float:
    """Cosmetatos's correction of half the M/M/c wait to M/D/c's (1 at one server)."""
    return 1.0 + (1.0 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)


def wait_share(seats: int, offered: float, arrival_cv2: float = 1.0) -> float:
    """Share of arrivals that wait for one of ``seats`` seats at ``offered`` load (arrival rate
    x mean hold), arrivals whose gaps have squared coefficient of variation ``arrival_cv2``:
    Erlang C for Poisson arrivals (1); for more regular ones Erlang C at the load whose spare
    capacity in the Halfin-Whitt scaling, (1 - rho) sqrt(c), is divided by sqrt(arrival_cv2)
    (round-robin over 8 ranks at 88% of 6 seats: 27% wait, simulated 27%, Erlang C 69%). The
    holds' variability barely changes the share (M/D/c waits about as often as M/M/c)."""
    rho = offered / seats
    if rho >= 1.0:
        return 1.0
    if arrival_cv2 <= 0:
        return 0.0
    rho_eq = 1.0 - (1.0 - rho) / math.sqrt(min(arrival_cv2, 1.0))
    return erlang_c(seats, rho_eq * seats) if rho_eq > 0 else 0.0


def seat_wait(
    arrival_rate: float, hold: float, seats: int, arrival_cv2: float = 1.0, hold_cv2: float = 0.0
) -> Wait:
    """The wait for one of ``seats`` seats, each held ``hold`` seconds on average, at
    ``arrival_rate`` requests/s: ``wait_share`` of arrivals wait, exponentially, with the M/M/c
    mean of those that wait scaled by (arrival_cv2 + hold_cv2) / 2 (Allen-Cunneen) and by
    Cosmetatos's M/D/c correction."""
    if arrival_rate <= 0 or hold <= 0:
        return NO_WAIT
    offered = arrival_rate * hold
    rho = offered / seats
    if rho >= 1.0 - SATURATED:
        return Wait(1.0, math.inf)
    share = float(wait_share(seats, offered, arrival_cv2))
    factor = (arrival_cv2 + hold_cv2) / 2 * _cosmetatos(seats, rho)
    return Wait(share, share * factor * hold / (seats * (1.0 - rho)))


@lru_cache(maxsize=4096)
def seat_load(seats: int, share: float) -> float:
    """The offered load (arrival rate x hold) at which ``share`` of Poisson arrivals wait for
    one of ``seats`` seats (Erlang C rises with the load), to a relative 1e-9."""
    lo, hi = 0.0, float(seats)
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if erlang_c(seats, mid) <= share else (lo, mid)
    return lo


MAX_STATES = 50_000
"""A chain needing more states than this belongs to a replica within a hair of saturation,
where the wait is many forwards: reported as saturated (infinite)."""
TAIL_MASS = 1e-10
"""Stationary mass allowed in the last states of a truncated chain before it is grown."""


def _poisson_pmf(k: np.ndarray, a: float) -> np.ndarray:
    """P(A = k) for A ~ Poisson(a), 0 for negative k (log-space, so large k and a are safe;
    ``k`` and ``a`` broadcast)."""
    kk = np.maximum(k, 0)
    a = np.asarray(a, dtype=float)
    log_a = np.log(np.where(a > 0, a, 1.0))
    out = np.where(a > 0, np.exp(kk * log_a - a - gammaln(kk + 1)), (kk == 0) * 1.0)
    return np.where(k >= 0, out, 0.0)


@dataclass(frozen=True)
class PrefillQueue:
    """A request's path through a prefill replica (see ``prefill_queue``): the mean wait
    before its first forward starts, the share of requests that wait at all, the mean length
    of its own forward, the ``percentile`` of wait + own forward, and that law as ``GRID``
    equally likely quantiles."""

    wait: float
    busy: float
    forward: float
    percentile: float
    quantiles: tuple[float, ...]


U_POINTS = 32
"""Points of the arrival's position within the forward in progress (midpoint rule)."""
GRID = 256
"""Quantiles kept of a prefill replica's law of wait + own forward."""


@dataclass(frozen=True)
class _Mixture:
    """A prefill replica's law of wait + own forward as weighted atoms (``value``, ``weight``,
    with each atom's ``wait``), and the weight of requests that found it idle."""

    value: np.ndarray
    weight: np.ndarray
    wait: np.ndarray
    idle: float


@lru_cache(maxsize=16)
def _prefill_mixture(rate: float, forwards: tuple[float, ...], ranks: int) -> _Mixture | None:
    """The law ``prefill_queue`` reads (None: saturated; see there)."""
    batch = len(forwards)
    full = batch * ranks
    seconds = np.array([forwards[(m - 1) // ranks] for m in range(1, full + 1)])
    if rate * seconds[-1] >= full * (1.0 - SATURATED):
        return None
    law = _forward_end_law(rate, seconds)
    if law is None:
        return None
    u = (np.arange(U_POINTS) + 0.5) / U_POINTS
    # forwards that left nobody waiting, by their size m (the idle replica's one request: m = 1);
    # their arrivals' law depends on m only through S(m), so they are pooled per rank count
    starts = np.zeros(full + 1)
    starts[1:full] = law[1:full]
    starts[1] += law[0]
    carry = law[full:].copy()
    carry[0] += starts[full]
    parts = [(np.array([seconds[0]]), np.array([law[0]]), np.zeros(1))]
    for k in range(1, batch + 1):
        share = starts[(k - 1) * ranks + 1 : min(k * ranks, full - 1) + 1].sum()
        if share > 0:
            ahead = _arrived_before(rate * forwards[k - 1], u)
            parts += _arrivals(forwards, ranks, forwards[k - 1], share, ahead, u, rate)
    # full forwards, with r = n - B still waiting ahead of their arrivals
    ahead = _convolve_rows(carry, _arrived_before(rate * seconds[-1], u))
    ahead = ahead.clip(0.0, None)
    mass = np.cumsum(ahead.sum(axis=0)[::-1])[::-1]
    ahead = ahead[:, : max(1, int(np.count_nonzero(mass > TAIL_MASS * mass[0])))]
    parts += _arrivals(forwards, ranks, seconds[-1], 1.0, ahead, u, rate)
    value, weight, wait = (np.concatenate([p[i].ravel() for p in parts]) for i in range(3))
    keep = weight > 0
    return _Mixture(value[keep], weight[keep], wait[keep], float(law[0]))


@lru_cache(maxsize=4096)
def prefill_queue(
    rate: float, forwards: tuple[float, ...], ranks: int, percentile: float
) -> PrefillQueue:
    """A prefill replica whose ``ranks`` attention-DP ranks run forwards in lock step, at
    ``rate`` Poisson requests/s; ``forwards[k - 1]``: seconds of a forward whose busiest rank
    carries k requests (up to ``len(forwards)`` per rank, so B = ranks x len(forwards) per
    forward). A request that finds the replica idle starts a forward of its own at once; when
    a forward ends, the next takes up to B waiting requests in arrival order (spread evenly
    over the ranks), and lasts as long as its busiest rank's share.

    Exact in the number n waiting at forward ends (a Markov chain: a forward takes m =
    min(n, B), lasts S(m), and n' = n - m + Poisson(rate x S(m))); an arrival a fraction u into a
    forward that began with r still waiting finds r + Poisson(rate u S) ahead, so it waits
    (1 - u) S plus one full forward per B ahead, then rides a forward of everyone ahead in its
    batch, itself and the rest of the forward's arrivals. The wait's distribution is that
    mixture, integrated over u; the percentile is read from it, not from an assumed tail."""
    if rate <= 0:
        return PrefillQueue(0.0, 0.0, forwards[0], forwards[0], (forwards[0],))
    mix = _prefill_mixture(rate, forwards, ranks)
    if mix is None:
        return PrefillQueue(math.inf, 1.0, forwards[-1], math.inf, (math.inf,))
    value, weight, wait = mix.value, mix.weight, mix.wait
    total = weight.sum()
    order = np.argsort(value, kind="stable")
    cum = np.cumsum(weight[order]) / total
    levels = np.append((np.arange(GRID) + 0.5) / GRID, percentile / 100)
    at = np.minimum(np.searchsorted(cum, levels), len(cum) - 1)
    quantiles = value[order][at]
    return PrefillQueue(
        float(wait @ weight / total),
        float(1.0 - mix.idle / total),
        float((value - wait) @ weight / total),
        float(quantiles[-1]),
        tuple(quantiles[:-1].tolist()),
    )


def prefill_share_over(rate: float, forwards: tuple[float, ...], ranks: int, t: float) -> float:
    """The share of a prefill replica's requests (``prefill_queue``) whose wait + own forward
    exceeds ``t`` seconds: continuous in the rate where the percentile steps from one atom of
    the law to the next, so a search for the rate at which it reaches the SLO's tail converges
    like a smooth function's (``prefill_queue``'s percentile is at most ``t`` exactly when this
    is at most the tail, up to rounding)."""
    if rate <= 0:
        return float(forwards[0] > t)
    mix = _prefill_mixture(rate, forwards, ranks)
    if mix is None:
        return 1.0
    return float(mix.weight[mix.value > t].sum() / mix.weight.sum())


def _likely_state(a: np.ndarray, size: int) -> int:
    """A state of the forward-end chain with a weight far from negligible: where the fluid
    chain n -> rate x S(min(n, B)) settles (``a[m - 1]``: rate x S(m)), from n = rate x S(B)."""
    n = float(a[-1])
    for _ in range(64):
        n = float(a[min(max(int(n), 1), len(a)) - 1])
    return min(int(n), size - 1)


def _poisson_span(a: float) -> tuple[int, int]:
    """Counts [first, reach) of Poisson(a) outside which its mass is negligible (as beyond
    ``_poisson_reach``: eight standard deviations)."""
    return max(0, int(a - 8 * math.sqrt(a))), _poisson_reach(a)


def _poisson_reach(a: float) -> int:
    """Counts 0..reach-1 hold all but a negligible mass of Poisson(a)."""
    return int(a + 8 * math.sqrt(a) + 10)


def _convolve_rows(law: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The full linear convolution of ``law`` with each row of ``rows`` (by FFT)."""
    n = len(law) + rows.shape[1] - 1
    size = next_fast_len(n, real=True)
    return irfft(rfft(law, size)[None, :] * rfft(rows, size, axis=1), size, axis=1)[:, :n]


def _arrived_before(a: float, u: np.ndarray) -> np.ndarray:
    """Row i: the law of the arrivals in the first u[i] of a forward that draws Poisson(a)."""
    return _poisson_pmf(np.arange(_poisson_reach(a))[None, :], a * u[:, None])


def _arrivals(forwards, ranks, dur, share, ahead, u, rate) -> list[tuple[np.ndarray, ...]]:
    """(wait + own forward, weight, wait) of the arrivals during forwards of ``dur`` seconds
    (``share``: their stationary weight per forward; ``ahead[i, q]``: the chance an arrival at
    u[i] finds q requests ahead). One found fewer than B ahead rides the next forward, with
    those ahead, itself and the Poisson(rate (1 - u) dur) arriving after it (at most B);
    otherwise it waits one full forward per B ahead and rides a full one."""
    batch = len(forwards)
    full = batch * ranks
    weight = share * rate * dur / len(u) * ahead
    left = (1 - u)[:, None] * dur
    # fewer than B ahead: the next forward, its size spread by the arrivals after this one
    q = np.arange(min(full, ahead.shape[1]))[None, :, None]
    k = np.arange(1, batch + 1)[None, None, :]
    room = k * ranks - q - 1
    below = pdtr(np.maximum(room, 0), (rate * (1 - u) * dur)[:, None, None]) * (room >= 0)
    ride = np.diff(np.where(k == batch, 1.0, below), axis=2, prepend=0.0)
    soon = np.broadcast_to(left[:, :, None], ride.shape)
    out = [(soon + np.asarray(forwards), weight[:, : q.shape[1], None] * ride, soon)]
    if ahead.shape[1] > full:
        # B or more ahead: one full forward per B of them, then a full one
        later = left + np.arange(full, ahead.shape[1])[None, :] // full * forwards[-1]
        out.append((later + forwards[-1], weight[:, full:], later))
    return out


def _forward_end_law(rate: float, seconds: np.ndarray) -> np.ndarray | None:
    """Stationary law of the requests waiting when a forward ends (None: it needs more than
    ``MAX_STATES`` states, a replica within a hair of saturation)."""
    full = len(seconds)
    a_full = rate * seconds[-1]
    size = full + int(30 + 18 * math.sqrt(a_full) + 12 * a_full / (full - a_full))
    while size <= MAX_STATES:
        law = _chain(rate, seconds, size)
        if law[-max(10, size // 20) :].sum() <= TAIL_MASS:
            return law
        size *= 2
    return None


def _chain(rate: float, seconds: np.ndarray, size: int) -> np.ndarray:
    """The forward-end chain on 0..size-1 (mass beyond it folded into the last state). From n
    it moves to max(n - B, 0) + A, A ~ Poisson(rate x S(min(n, B))) held to the counts
    ``_poisson_span`` keeps, so its balance equations are banded (as many states below and
    above the diagonal as those moves reach); one of them is replaced by fixing the weight of
    a likely state (``_likely_state``; the idle state's may be 1e-50), then normalised."""
    full = len(seconds)
    a = rate * seconds  # row m - 1: the arrivals during a forward of m
    spans = np.array([_poisson_span(float(x)) for x in a])
    k = np.arange(spans[:, 1].max())
    pmf = _poisson_pmf(k[None, :], a[:, None])
    pmf[k[None, :] < spans[:, :1]] = 0.0
    n = np.arange(size)
    row = np.minimum(np.maximum(n, 1), full) - 1
    base = np.maximum(n - full, 0)
    lower = int((base + spans[row, 1] - 1 - n).max())
    upper = int((n - base - spans[row, 0]).max())
    band = np.zeros((lower + upper + 1, size))
    # n < B: the forward takes all n (one request after an idle spell), next n' = A
    for col in range(full):
        lo, hi = spans[row[col]]
        band[upper - col + lo : upper - col + hi, col] = pmf[row[col], lo:hi]
    # n >= B: n' = n - B + A; the last columns fold A past the last state
    lo, hi = spans[-1]
    band[upper - full + lo : upper - full + hi, full:] = pmf[-1, lo:hi, None]
    edge = np.arange(max(full, size - hi + full), size)
    cut = size - 1 - edge + full  # the A that lands on the last state
    tail = np.cumsum(pmf[-1][::-1])[::-1]
    fold = np.arange(lo, hi)[:, None]
    band[upper - full + fold, edge] = np.where(fold < cut, pmf[-1, lo:hi, None], 0.0)
    band[upper + size - 1 - edge, edge] = tail[cut]
    band[upper] -= 1.0
    anchor = _likely_state(a, size)
    cols = np.arange(max(0, anchor - lower), min(size, anchor + upper + 1))
    band[upper + anchor - cols, cols] = 0.0
    band[upper, anchor] = 1.0
    rhs = np.zeros(size)
    rhs[anchor] = 1.0
    law = np.clip(solve_banded((lower, upper), band, rhs), 0.0, None)
    return law / law.sum()
