"""A source refreshes one measurement in the background; handlers only read its latest sample.

Sources are shared: a `SourcePool` keeps one per key (e.g. one per NATS connection, stream and consumer), so
the load on NATS or Prometheus grows with the number of distinct sources, never with the number of
ScaledObjects or calls. A source nobody has read for `idle_timeout` is stopped.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from scaler.errors import Exhausted, NotFound, ScalerError, SourceUnavailable
from scaler.metrics import Metrics
from scaler.observations import ConsumerLag, PrefillHistory
from scaler.sources.bounded import describe

T = TypeVar("T")
S = TypeVar("S", bound="Source[Any]")
Clock = Callable[[], float]

log = logging.getLogger("pd_scaler.sources")

# A burst of wake-ups (one per published message) costs at most one refresh per this many seconds.
MIN_REFRESH_GAP = 0.005
# A source's loop ends within one request timeout; shutdown waits no longer than this for it.
STOP_TIMEOUT = 3.0
# Live sources (background loops) per process: each distinct server, stream, query or pod list is one.
DEFAULT_MAX_SOURCES = 256


class Source(abc.ABC, Generic[T]):
    """Keeps the latest sample of `fetch()`, its time, and the last error."""

    kind = "source"

    def __init__(self, name: str, interval: float, metrics: Metrics, clock: Clock = time.monotonic) -> None:
        self.name = name  # shown in logs, errors and metrics: must never hold a secret
        self.interval = interval
        self.metrics = metrics
        self.clock = clock
        self.last_used = clock()
        self.users = 0  # open streams that keep the source alive while nobody polls
        self._sample: T | None = None
        self._sampled_at = 0.0
        self._error: ScalerError | None = None  # the last fetch's error, None once a fetch succeeds
        self.refreshes = 0
        self.last_error: tuple[float, str] | None = None  # (clock time, message) of the last failed fetch, kept
        self._up: bool | None = None
        self._settled = asyncio.Event()  # set once the first fetch has succeeded or failed
        self._updated = asyncio.Event()  # replaced after every fetch; waiters hold the old one
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @abc.abstractmethod
    async def fetch(self) -> T:
        """One measurement; raise ScalerError (NotFound, SourceUnavailable) for what the user should see."""

    def open(self) -> None:
        """Take what the source holds while it is in its pool (called as it joins, before `start`)."""
        # Counters exist from the start, so rate() sees their first increment.
        self.metrics.source_refreshes.labels(self.kind, self.name)
        self.metrics.source_errors.labels(self.kind, self.name)

    async def close(self) -> None:
        """Release what `open` and `fetch` took."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"source {self.name}")

    async def stop(self) -> None:
        # A flag as well as a cancel: client libraries may swallow a cancellation mid-request.
        self._stopped = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            _, pending = await asyncio.wait([self._task], timeout=STOP_TIMEOUT)
            if pending:
                log.warning("source did not stop in time", extra={"fields": {"source": self.name}})
        await self.close()
        self._publish()  # let waiting streams see the stop

    def refresh_soon(self) -> None:
        """Refresh now instead of at the next interval (e.g. a message just arrived)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopped:
            started = self.clock()
            await self.refresh()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval - (self.clock() - started))
            await asyncio.sleep(max(0.0, MIN_REFRESH_GAP - (self.clock() - started)))

    @property
    def up(self) -> bool:
        return bool(self._up)

    async def refresh(self) -> None:
        """One fetch now; the background loop calls this, and so can a driver of simulated time."""
        self.metrics.source_refreshes.labels(self.kind, self.name).inc()
        self.refreshes += 1
        try:
            sample = await self.fetch()
        except ScalerError as exc:
            self._failed(exc)
        except Exception as exc:  # anything else a client library raises is still "this source failed"
            self._failed(SourceUnavailable(f"{self.name}: {describe(exc)}"))
        else:
            self._sample, self._sampled_at, self._error = sample, self.clock(), None
            if self._up is not True:
                log.info("source up", extra={"fields": {"source": self.name}})
            self._up = True
        self._settled.set()
        self._publish()

    def _failed(self, exc: ScalerError) -> None:
        self._error = exc
        self.last_error = (self.clock(), exc.message)
        self.metrics.source_errors.labels(self.kind, self.name).inc()
        if self._up is not False:
            log.warning("source down", extra={"fields": {"source": self.name, "error": exc.message}})
        self._up = False

    def _publish(self) -> None:
        updated, self._updated = self._updated, asyncio.Event()
        updated.set()

    async def next_update(self) -> None:
        """Returns after the next fetch (or the source's stop)."""
        await self._updated.wait()

    @property
    def is_settled(self) -> bool:
        """Whether the first fetch has ended (with a sample or an error)."""
        return self._settled.is_set()

    async def settled(self, timeout: float) -> None:
        """Wait (bounded) for the first fetch of a new source, so a first call need not fail."""
        if self._settled.is_set():
            return  # no task, no timer
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)

    def age(self) -> float | None:
        return None if self._sample is None else self.clock() - self._sampled_at

    def read(self, max_age: float) -> T:
        """The latest sample if it is at most `max_age` seconds old, else the error the user should see."""
        self.last_used = self.clock()
        if isinstance(self._error, NotFound):
            raise self._error
        last_error = f"; last error: {self._error.message}" if self._error else ""
        if self._sample is None:
            raise SourceUnavailable(f"{self.name}: no sample yet{last_error}")
        age = self.clock() - self._sampled_at
        if age > max_age:
            raise SourceUnavailable(
                f"{self.name}: newest sample is {age:.1f}s old, over maxStaleness {max_age:g}s{last_error}"
            )
        return self._sample

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Keep the source alive while a stream watches it."""
        self.users += 1
        try:
            yield
        finally:
            self.users -= 1
            self.last_used = self.clock()


class LagSource(Source[T]):
    """A source that knows a JetStream consumer's lag."""

    @abc.abstractmethod
    def lag(self, stream: str, consumer: str, max_age: float) -> ConsumerLag:
        """The lag in the latest sample (at most `max_age` old), or the error the user should see."""

    def history(self, stream: str, consumer: str, max_age: float) -> PrefillHistory:
        """The queue's sample history (the capacity policy); only sources that see each request keep one."""
        raise NotImplementedError(f"{self.kind} sources keep no arrival history")


class SourcePool:
    """One running source per key, at most `max_sources` of them; idle sources are stopped by `reap`.

    Sources are asked for inside `adding()` and join the pool together when it ends, so a caller that fails
    half-way (or would pass the cap) leaves nothing running. `background=False` starts no loops: the owner calls
    `Source.refresh()` itself (simulated time)."""

    def __init__(
        self,
        metrics: Metrics,
        idle_timeout: float,
        clock: Clock = time.monotonic,
        background: bool = True,
        max_sources: int = DEFAULT_MAX_SOURCES,
    ) -> None:
        self.metrics = metrics
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.background = background
        self.max_sources = max_sources
        self.generation = 0  # bumped whenever a source is removed, so holders of sources know to look again
        self._sources: dict[Hashable, Source[Any]] = {}
        self._new: dict[Hashable, Source[Any]] | None = None  # asked for in the current `adding()`
        metrics.watch_sources(self)

    def get(self, key: Hashable, factory: Callable[[], S]) -> S:
        """The pool's source for `key`, or a new one from `factory` that joins when `adding()` ends."""
        if self._new is None:
            raise RuntimeError("SourcePool.get outside SourcePool.adding()")
        source = self._sources.get(key) or self._new.get(key)
        if source is None:
            source = self._new[key] = factory()
        return source  # type: ignore[return-value]

    @contextlib.contextmanager
    def adding(self) -> Iterator[None]:
        """The new sources asked for inside start together when the block ends, if the cap admits them all;
        if the block raises, or the cap is reached (Exhausted, naming it), none of them starts."""
        self._new = {}
        try:
            yield
            new = self._new
            if new and len(self._sources) + len(new) > self.max_sources:
                names = ", ".join(source.name for source in new.values())
                raise Exhausted(
                    f"{len(self._sources)} sources are running, the most --max-sources ({self.max_sources}) "
                    f"allows; not starting {names}"
                )
            for key, source in new.items():
                self._sources[key] = source
                source.open()
                if self.background:
                    source.start()
                log.info("source started", extra={"fields": {"source": source.name}})
        finally:
            self._new = None

    def __iter__(self) -> Iterator[Source[Any]]:
        return iter(list(self._sources.values()))

    def __len__(self) -> int:
        return len(self._sources)

    async def reap(self) -> None:
        """Stop sources that no call has read for `idle_timeout` and no stream watches."""
        now = self.clock()
        for key, source in list(self._sources.items()):
            if source.users == 0 and now - source.last_used > self.idle_timeout:
                del self._sources[key]
                self.generation += 1
                await source.stop()
                self.metrics.forget_source(source.kind, source.name)
                log.info("source stopped (idle)", extra={"fields": {"source": source.name}})

    async def close(self) -> None:
        sources, self._sources = list(self._sources.values()), {}
        self.generation += 1
        await asyncio.gather(*(s.stop() for s in sources))
