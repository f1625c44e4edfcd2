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
    """Latest target per key, at most `limit` keys (the least recently changed are forgotten first).

    One wake-up for all watchers: targets change seldom, and a watcher whose target did not change sends nothing,
    so no per-key state outlives the keys."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._targets: OrderedDict[K, float] = OrderedDict()
        self._changed = asyncio.Event()  # replaced on every change; watchers hold the old one

    def get(self, key: K, default: float) -> float:
        return self._targets.get(key, default)

    def set(self, key: K, target: float) -> None:
        """Record `target`; wake the watchers when it differs from the last one."""
        if self._targets.get(key) == target:
            return
        self._targets[key] = target
        self._targets.move_to_end(key)
        while len(self._targets) > self.limit:
            del self._targets[next(iter(self._targets))]
        self._publish()

    async def changed(self) -> None:
        """Returns after the next change of any target."""
        await self._changed.wait()

    def forget_where(self, predicate: Callable[[K], bool]) -> None:
        forgotten = [k for k in self._targets if predicate(k)]
        for key in forgotten:
            del self._targets[key]
        if forgotten:
            self._publish()  # a watcher looks again and finds the trigger's own target

    def _publish(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
