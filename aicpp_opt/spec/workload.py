"""Workloads: request lengths, prefix reuse and latency SLOs, with named presets.

Presets and SLO tiers (the numbers, and why):

- ``chat``: ISL 1024, OSL 512. Conversational turns with a system prompt and a short history;
  issue 3 fixes ISL ~1k / OSL ~500, the usual short-prompt chat benchmark point.
- ``coding``: ISL 8192, OSL 1024. Code completion / editing with repository context; the
  8k-in / 1k-out point is the standard long-input benchmark scenario (issue 3: ~8k / ~1k).
- ``agentic-coding``: ISL 32768, OSL 512, prefix reuse 0.8. Tool-using agents resend the whole
  growing conversation every turn, so most of the prompt is a cached prefix; issue 3 asks for
  ISL ~32k, reuse >= 75 %, OSL ~500. 0.8 is the value used here.
- SLO tiers (issue 3): relaxed TTFT 2 s / TPOT 50 ms, interactive 1 s / 20 ms,
  strict 0.5 s / 10 ms, all at p90. An instance may override any of them per workload.

This module also holds the small field readers that the instance and plan parsers share, so that
every malformed field produces the same one-line ``InputError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aicpp_opt.errors import InputError, brief, key_name
from aicpp_opt.spec.limits import MAX_CV, MAX_NAME, MAX_SLO_MS, MAX_TOKENS

# ---------------------------------------------------------------- field readers (shared)


def req(data: dict, key: str, where: str) -> Any:
    """The value of a required key, or an InputError naming ``where.key``."""
    if not isinstance(data, dict):
        raise InputError(where, "must be a JSON object")
    if key not in data:
        raise InputError(f"{where}.{key}", "is required")
    return data[key]


def num(value: Any, field: str, *, lo: float = 0.0, strict: bool = False, hi: float | None = None):
    """A finite number >= lo (> lo when strict), <= hi when given."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(field, f"must be a finite number, got {brief(value)}")
    if (strict and value <= lo) or value < lo:
        raise InputError(field, f"must be {'>' if strict else '>='} {lo:g}, got {brief(value)}")
    if hi is not None and value > hi:
        raise InputError(field, f"must be <= {hi:g}, got {brief(value)}")
    return value


def integer(value: Any, field: str, *, lo: int = 1, hi: int | None = None) -> int:
    """An integer >= lo, <= hi when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, f"must be an integer, got {brief(value)}")
    if value < lo:
        raise InputError(field, f"must be >= {lo}, got {brief(value)}")
    if hi is not None and value > hi:
        raise InputError(field, f"must be <= {hi}, got {brief(value)}")
    return value


def text(value: Any, field: str, choices: tuple[str, ...] | None = None) -> str:
    """A non-empty string of at most MAX_NAME characters, one of ``choices`` when given."""
    if not isinstance(value, str) or not value:
        raise InputError(field, f"must be a non-empty string, got {brief(value)}")
    if choices is not None and value not in choices:
        raise InputError(field, f"unknown value {brief(value)}; use one of {', '.join(choices)}")
    if len(value) > MAX_NAME or not value.isprintable():
        raise InputError(field, f"{brief(value)} must be at most {MAX_NAME} printable characters")
    return value


def only_keys(data: dict, allowed: set[str], where: str) -> None:
    """Reject unknown keys (typos would otherwise be silently ignored)."""
    extra = sorted(set(data) - allowed)
    if extra:
        raise InputError(
            f"{where}.{key_name(extra[0])}", f"unknown field; allowed: {', '.join(sorted(allowed))}"
        )


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True)
class SLO:
    """Latency targets in seconds at a percentile of requests."""

    ttft: float
    tpot: float
    percentile: float = 90.0


MTP_ACCEPTANCE = 0.85
"""Probability that a multi-token-prediction draft token is accepted: DeepSeek-V3 Technical
Report (arXiv:2412.19437), section 5.4.3: "the acceptance rate of the second token prediction
ranges between 85% and 90% across various generation topics"; the low end is the default."""


@dataclass(frozen=True)
class Workload:
    """Mean request lengths (tokens), the share of the prompt served from a cached prefix, SLOs.

    ``isl_cv`` / ``osl_cv`` are the coefficients of variation of a lognormal length
    distribution (0: every request has the mean length). ``mtp_acceptance``: the chance each
    MTP draft token is accepted (draft i counts when drafts 1..i all are)."""

    name: str
    isl: float
    osl: float
    prefix_reuse: float
    slo: SLO
    isl_cv: float = 0.0
    osl_cv: float = 0.0
    mtp_acceptance: float = MTP_ACCEPTANCE
    model: str | None = None
    """The model this workload's requests go to (None: the instance's)."""

    @property
    def new_prompt_tokens(self) -> float:
        """Prompt tokens that need prefill compute (prefix hits skip it)."""
        return self.isl * (1.0 - self.prefix_reuse)

    @property
    def decode_context(self) -> float:
        """Mean KV length over a sequence's decode lifetime: ISL + OSL/2."""
        return self.isl + self.osl / 2.0


SLO_TIERS: dict[str, SLO] = {
    "relaxed": SLO(ttft=2.0, tpot=0.050),
    "interactive": SLO(ttft=1.0, tpot=0.020),
    "strict": SLO(ttft=0.5, tpot=0.010),
}

PRESETS: dict[str, dict[str, float]] = {
    "chat": {"isl": 1024, "osl": 512, "prefix_reuse": 0.0},
    "coding": {"isl": 8192, "osl": 1024, "prefix_reuse": 0.0},
    "agentic-coding": {"isl": 32768, "osl": 512, "prefix_reuse": 0.8},
}

_KEYS = {
    "name",
    "preset",
    "slo",
    "isl",
    "osl",
    "prefix_reuse",
    "ttft_ms",
    "tpot_ms",
    "percentile",
    "distribution",
    "mtp_acceptance",
    "model",
}


def _lengths(entry: dict, where: str) -> dict[str, float]:
    """Preset lengths overridden by explicit ones."""
    base: dict[str, float] = {}
    if "preset" in entry:
        preset = text(entry["preset"], f"{where}.preset", tuple(PRESETS))
        base = dict(PRESETS[preset])
    for key in ("isl", "osl"):
        if key in entry:
            base[key] = num(entry[key], f"{where}.{key}", lo=0, strict=True, hi=MAX_TOKENS)
        elif key not in base:
            raise InputError(f"{where}.{key}", "is required when no preset is given")
    if "prefix_reuse" in entry:
        base["prefix_reuse"] = num(entry["prefix_reuse"], f"{where}.prefix_reuse", hi=0.99)
    base.setdefault("prefix_reuse", 0.0)
    return base


def _slo(entry: dict, where: str) -> SLO:
    tier = text(entry.get("slo", "relaxed"), f"{where}.slo", tuple(SLO_TIERS))
    base = SLO_TIERS[tier]
    ttft = (
        num(entry["ttft_ms"], f"{where}.ttft_ms", strict=True, hi=MAX_SLO_MS) / 1e3
        if "ttft_ms" in entry
        else base.ttft
    )
    tpot = (
        num(entry["tpot_ms"], f"{where}.tpot_ms", strict=True, hi=MAX_SLO_MS) / 1e3
        if "tpot_ms" in entry
        else base.tpot
    )
    pct = num(entry.get("percentile", base.percentile), f"{where}.percentile", strict=True, hi=99.9)
    return SLO(ttft=ttft, tpot=tpot, percentile=pct)


def _distribution(entry: dict, where: str) -> tuple[float, float]:
    dist = entry.get("distribution")
    if dist is None:
        return 0.0, 0.0
    field = f"{where}.distribution"
    if not isinstance(dist, dict):
        raise InputError(field, 'must be an object like {"kind": "lognormal", "isl_cv": 0.5}')
    only_keys(dist, {"kind", "isl_cv", "osl_cv"}, field)
    text(dist.get("kind", "lognormal"), f"{field}.kind", ("lognormal", "fixed"))
    return num(dist.get("isl_cv", 0.0), f"{field}.isl_cv", hi=MAX_CV), num(
        dist.get("osl_cv", 0.0), f"{field}.osl_cv", hi=MAX_CV
    )


def parse_workload(entry: Any, where: str = "workload") -> Workload:
    """A preset name, or an object with a preset and/or explicit lengths and SLO overrides."""
    if isinstance(entry, str):
        entry = {"preset": entry}
    if not isinstance(entry, dict):
        raise InputError(where, "must be a preset name or an object")
    only_keys(entry, _KEYS, where)
    lengths = _lengths(entry, where)
    name = entry.get("name") or entry.get("preset")
    name = text(name, f"{where}.name")
    if "slo" in entry and "name" not in entry:
        name = f"{name}-{entry['slo']}"
    isl_cv, osl_cv = _distribution(entry, where)
    return Workload(
        name=name,
        isl=float(lengths["isl"]),
        osl=float(lengths["osl"]),
        prefix_reuse=float(lengths["prefix_reuse"]),
        slo=_slo(entry, where),
        isl_cv=isl_cv,
        osl_cv=osl_cv,
        mtp_acceptance=num(
            entry.get("mtp_acceptance", MTP_ACCEPTANCE), f"{where}.mtp_acceptance", hi=1.0
        ),
        model=text(entry["model"], f"{where}.model") if "model" in entry else None,
    )
