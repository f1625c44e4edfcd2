"""Each ScaledObject trigger's current per-replica target, and a wake-up for the streams that push it to KEDA.

A policy may change a target at run time (e.g. a learned per-replica capacity): the engine offers every
decision's target here, `GetMetricSpec` answers the latest one and `StreamMetricSpec` sends each change.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Targets(Generic[K]):
    """Latest target per key, at most `limit` keys (the least recently changed are forgotten first)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._targets: OrderedDict[K, float] = OrderedDict()
        self._changed: dict[K, asyncio.Event] = {}

    def get(self, key: K, default: float) -> float:
        return self._targets.get(key, default)

    def set(self, key: K, target: float) -> None:
        """Record `target`; wake the watchers of `key` when it differs from the last one."""
        if self._targets.get(key) == target:
            return
        self._targets[key] = target
        self._targets.move_to_end(key)
        while len(self._targets) > self.limit:
            self._drop(next(iter(self._targets)))
        changed = self._changed.pop(key, None)
        if changed is not None:
            changed.set()

    async def changed(self, key: K) -> None:
        """Returns after the next change of `key`'s target."""
        event = self._changed.get(key)
        if event is None:
            event = self._changed[key] = asyncio.Event()
        await event.wait()

    def forget_where(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._targets if predicate(k)]:
            self._drop(key)

    def _drop(self, key: K) -> None:
        del self._targets[key]
        changed = self._changed.pop(key, None)
        if changed is not None:
            changed.set()  # a watcher looks again and finds the trigger's own target
