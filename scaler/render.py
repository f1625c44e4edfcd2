"""Pages rendered in a worker thread: thousands of ScaledObjects take a second to render, and KEDA's calls are
answered on the event loop meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Shared(Generic[T]):
    """One rendering at a time: requests that overlap it share it rather than start another."""

    def __init__(self) -> None:
        self._running: asyncio.Future[T] | None = None

    async def __call__(self, render: Callable[..., T], *args: Any) -> T:
        """`render(*args)` in a worker thread, or the rendering already under way."""
        if self._running is None:
            running = asyncio.get_running_loop().run_in_executor(None, render, *args)
            running.add_done_callback(self._done)
            self._running = running
        return await asyncio.shield(self._running)

    def _done(self, _: asyncio.Future[T]) -> None:
        self._running = None
