"""The event queue: a clock and a heap of (time, sequence, handler, arguments). Events at the
same time run in the order they were scheduled, so a run is deterministic."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class EventQueue:
    """Schedules handlers at future times and runs them in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.handled = 0

    def at(self, time: float, handler: Callable[..., None], *args: Any) -> None:
        """Run ``handler(*args)`` at ``time`` (never before now)."""
        heapq.heappush(self._heap, (max(time, self.now), next(self._seq), handler, args))

    def step(self) -> bool:
        """Run the earliest event; False when none is left."""
        if not self._heap:
            return False
        time, _, handler, args = heapq.heappop(self._heap)
        self.now = time
        self.handled += 1
        handler(*args)
        return True

    @property
    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None
