"""The command's time limit. The CLI marks when a command starts (``begin``); a command with
``--time-limit`` sets the limit from that moment (``limit``), so set-up, option checks,
imports, option generation, the MILP and the checks all count. Long loops call ``check``, the
MILP gets ``remaining()``; each part names itself with ``phase`` so that running out says where
the time went. Without a limit (library use, tests calling functions) nothing is ever cut."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from aicpp_opt.errors import OutOfTimeError


@dataclass
class Deadline:
    """Start time, limit (seconds, inf when none) and the seconds spent per phase so far."""

    start: float
    seconds: float = math.inf
    current: str = "set-up"
    since: float = 0.0
    spent: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def enter(self, name: str) -> None:
        now = self.elapsed()
        self.spent[self.current] = self.spent.get(self.current, 0.0) + now - self.since
        self.current, self.since = name, now

    def breakdown(self) -> str:
        self.enter(self.current)
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.spent.items() if v >= 0.05)

    def summary(self) -> str:
        return (
            f"the time limit of {self.seconds:g} s ran out during {self.current} "
            f"({self.elapsed():.1f} s: {self.breakdown()})"
        )


_now: Deadline = Deadline(time.monotonic())


def begin() -> None:
    """A command starts now, with no limit yet."""
    global _now
    _now = Deadline(time.monotonic())


def limit(seconds: float) -> None:
    """The running command must finish within ``seconds`` of its start."""
    _now.seconds = seconds


def phase(name: str) -> None:
    """The command enters part ``name`` (for the message when time runs out); checks it."""
    _now.enter(name)
    check()


def check() -> None:
    """Raise ``OutOfTimeError`` once the limit has passed."""
    if _now.remaining() <= 0:
        raise expired()


def remaining() -> float:
    """Seconds left (inf without a limit)."""
    return _now.remaining()


def summary() -> str:
    """Where the time went, in words."""
    return _now.summary()


def expired() -> OutOfTimeError:
    """The error when time runs out before any plan is found."""
    return OutOfTimeError(
        f"{_now.summary()} with no plan; raise --time-limit, or shrink the search (--mode, "
        "--budget, fewer pools, TP values or micro-batches)"
    )
