"""JetStream consumer lag over the NATS protocol, and a core subscription that wakes it on every arrival.

`$JS.API.CONSUMER.INFO` is answered by the consumer's leader, so the numbers are current on clusters too.
Connections are shared by every source that uses the same profile; nats-py reconnects them on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from scaler.connections import NatsProfile
from scaler.errors import NotFound, SourceUnavailable
from scaler.metrics import Metrics
from scaler.observations import ConsumerLag, PrefillHistory
from scaler.sources import bounded
from scaler.sources.backlog import BacklogReader, BacklogTokens, Unread
from scaler.sources.base import Clock, LagSource
from scaler.sources.history import QueueHistory, prompt_tokens

log = logging.getLogger("pd_scaler.sources")

CONNECT_TIMEOUT = 1  # loopback or in-cluster connects take milliseconds
REQUEST_TIMEOUT = 2.0  # one consumer-info round trip takes ~0.5 ms; a stalled server must not hold a loop
# Reading the backlog's messages: one get takes ~0.5 ms, and a denied one is never answered (the server tells only
# the connection), so it waits out the timeout; after a failure the reads pause, the lag does not wait on them.
GET_TIMEOUT = 0.5
READ_RETRY = 30.0
_STREAM_NOT_FOUND = 10059  # JetStream API error codes (nats-server errors.json)


class NatsConnection:
    """One client per profile, connected on first use; after that nats-py's own reconnect logic applies."""

    def __init__(self, label: str, profile: NatsProfile, metrics: Metrics) -> None:
        self.label = label  # profile name or server list, never credentials
        self.profile = profile
        self.metrics = metrics
        metrics.nats_reconnects.labels(label)  # exists from the start, so rate() sees the first reconnect
        self.users = 0
        self._client: NatsClient | None = None
        self._last_error: Exception | None = None
        self._closing = False
        self._lock = asyncio.Lock()

    async def client(self) -> NatsClient:
        if self._client is not None and not self._client.is_closed:
            return self._client
        async with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = await self._connect()
                log.info("nats connected", extra={"fields": {"connection": self.label}})
        return self._client

    async def _connect(self) -> NatsClient:
        p = self.profile
        client = NatsClient()
        self._last_error = None
        try:
            # With unlimited reconnects nats-py also retries the first connect forever: bound it here,
            # and let the source's next refresh try again.
            await asyncio.wait_for(
                client.connect(
                    servers=list(p.servers),
                    name="pd-scaler",
                    user=p.user,
                    password=p.password.get_secret_value() if p.password else None,
                    token=p.token.get_secret_value() if p.token else None,
                    user_credentials=str(p.creds_file) if p.creds_file else None,
                    tls=p.tls.context() if p.tls else None,
                    connect_timeout=CONNECT_TIMEOUT,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,  # nats-py sleeps this long between tries of one server
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                ),
                CONNECT_TIMEOUT,
            )
        except BaseException as exc:
            # Cancelled too (its source stopping): nats-py may go on connecting, and nobody would close the client.
            with contextlib.suppress(Exception):
                await client.close()
            if not isinstance(exc, Exception):
                raise
            cause = self._last_error if isinstance(exc, asyncio.TimeoutError) and self._last_error else exc
            raise SourceUnavailable(f"nats {self.label}: cannot connect: {_describe(cause)}") from None
        if self._closing:  # closed while it connected: nobody would use or close this client
            await client.close()
            raise SourceUnavailable(f"nats {self.label}: closed")
        return client

    async def _disconnected(self) -> None:
        if self._client is None or self._closing:
            return  # a failed first connect (the source reports it) or our own close
        log.warning("nats disconnected", extra={"fields": {"connection": self.label}})

    async def _reconnected(self) -> None:
        self.metrics.nats_reconnects.labels(self.label).inc()
        log.info("nats reconnected", extra={"fields": {"connection": self.label}})

    async def _error(self, exc: Exception) -> None:
        # The first error of a failed connect says why (e.g. an authorization violation); later ones are echoes.
        self._last_error = self._last_error or exc
        log.debug("nats error", extra={"fields": {"connection": self.label, "error": _describe(exc)}})

    async def close(self) -> None:
        self._closing = True
        if self._client is not None and not self._client.is_closed:
            await self._client.close()
        self._client = None


class NatsConnections:
    """Shares a NatsConnection among sources by profile; closes it when the last source lets go."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._conns: dict[Hashable, NatsConnection] = {}

    def acquire(self, key: Hashable, label: str, profile: NatsProfile) -> NatsConnection:
        conn = self._conns.get(key)
        if conn is None:
            conn = self._conns[key] = NatsConnection(label, profile, self.metrics)
        conn.users += 1
        return conn

    async def release(self, conn: NatsConnection) -> None:
        conn.users -= 1
        if conn.users == 0:
            self._conns = {k: c for k, c in self._conns.items() if c is not conn}
            await conn.close()
            self.metrics.forget_connection(conn.label)


class JetStreamLagSource(LagSource[ConsumerLag]):
    """Consumer info for one (connection, stream, consumer), refreshed every interval and on every arrival.

    The arrivals subscription also counts each request and its prompt tokens into the queue's history; the backlog's
    prompt tokens are read from its messages, by sequence."""

    kind = "nats"

    conn: NatsConnection  # the shared connection, taken in `open`

    def __init__(
        self,
        conns: NatsConnections,
        conn_key: Hashable,
        label: str,
        profile: NatsProfile,
        stream: str,
        consumer: str,
        interval: float,
        metrics: Metrics,
        clock: Clock = time.monotonic,
        tokens_field: str = "prompt_token_ids",
        mean_prompt_tokens: float = 1000.0,
        history_span: float = 0.0,
    ) -> None:
        super().__init__(f"nats {label} stream={stream} consumer={consumer}", interval, metrics, clock)
        self.conns, self.stream, self.consumer = conns, stream, consumer
        self._connection = (conn_key, label, profile)
        self.tokens_field = tokens_field
        self.queue = QueueHistory(history_span, mean_prompt_tokens)
        self.backlog = BacklogReader(tokens_field, mean_prompt_tokens)
        self.reads_backlog = False  # only the capacity policy needs the backlog's tokens: the lag needs no reads
        self._read_failed: tuple[float, str] | None = None  # when reading the messages last failed, and why
        self._arrivals: list[Subscription] = []

    def open(self) -> None:
        super().open()
        self.conn = self.conns.acquire(*self._connection)

    async def fetch(self) -> ConsumerLag:
        nc = await self.conn.client()
        js = nc.jetstream(timeout=REQUEST_TIMEOUT)
        try:
            info = await js.consumer_info(self.stream, self.consumer)
            if not self._arrivals:
                await self._subscribe_arrivals(nc, (await js.stream_info(self.stream)).config.subjects or [])
        except NotFoundError as exc:
            if exc.err_code == _STREAM_NOT_FOUND:
                raise NotFound(f"nats {self.conn.label}: stream {self.stream!r} not found") from None
            raise NotFound(
                f"nats {self.conn.label}: consumer {self.consumer!r} not found on stream {self.stream!r}"
            ) from None
        except Exception as exc:
            raise SourceUnavailable(f"{self.name}: {_describe(exc)}") from None
        try:
            lag = ConsumerLag(
                pending=bounded.count(info.num_pending or 0, "consumer info num_pending"),
                ack_pending=bounded.count(info.num_ack_pending or 0, "consumer info num_ack_pending"),
            )
        except bounded.BadAnswer as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from None
        # The sample is as of the consumer info: reading the backlog after it takes up to a second (or a get's
        # timeout), and rates over samples stamped that much late would be off by as much.
        taken = self.clock()
        backlog = await self._backlog_tokens(nc, info, lag) if self.reads_backlog else None
        if backlog is None:
            self.queue.record(taken, lag.total, waiting=lag.pending)
        elif isinstance(backlog, BacklogTokens):
            self.queue.record(taken, lag.total, backlog.tokens, backlog.note, waiting=lag.pending)
        else:  # estimated from the newest arrivals seen, as the note says
            note = f"counted as the newest arrivals seen, at meanPromptTokens beyond them: {backlog}"
            self.queue.record(taken, lag.total, note=note, waiting=lag.pending)
        return lag

    async def _backlog_tokens(self, nc: NatsClient, info: ConsumerInfo, lag: ConsumerLag) -> BacklogTokens | str:
        """The backlog's prompt tokens read from its messages, or why they could not be."""
        filters = [f for f in [info.config.filter_subject, *(info.config.filter_subjects or [])] if f]
        if len(filters) > 1:
            return "the consumer has several filter subjects"
        subject = filters[0] if filters else ">"
        now = self.clock()
        if self._read_failed is not None and now - self._read_failed[0] < READ_RETRY:
            return self._read_failed[1]
        js = nc.jetstream(timeout=GET_TIMEOUT)

        async def get(seq: int) -> tuple[int, bytes] | None:
            try:
                msg = await js.get_msg(self.stream, seq=seq, subject=subject, next=True)
            except NotFoundError:
                return None  # no message stored at or after `seq`
            return msg.seq or seq, msg.data or b""

        try:
            floor = bounded.count(info.ack_floor.stream_seq if info.ack_floor else 0, "consumer info ack_floor")
            delivered = bounded.count(info.delivered.stream_seq if info.delivered else 0, "consumer info delivered")
            counted = await self.backlog.count(floor, delivered, lag.ack_pending, lag.pending, get)
        except Unread as exc:
            return str(exc)
        except Exception as exc:
            why = (
                f"reading its messages failed: {_describe(exc, GET_TIMEOUT)} (the NATS user needs to publish to "
                f"$JS.API.STREAM.MSG.GET.{self.stream}); next try in {READ_RETRY:g}s"
            )
            self._read_failed = (now, why)
            return why
        self._read_failed = None
        return counted

    def lag(self, stream: str, consumer: str, max_age: float) -> ConsumerLag:
        """The same reader as JszSource's; this source measures only its own stream and consumer."""
        return self.read(max_age)

    def history(self, stream: str, consumer: str, max_age: float) -> PrefillHistory:
        self.read(max_age)  # the same freshness rule as the lag
        return self.queue.snapshot()

    async def _subscribe_arrivals(self, nc: NatsClient, subjects: list[str]) -> None:
        # A plain (non-queue) subscription gets a copy of each published request without touching the work
        # queue: it counts the request and its prompt tokens, and wakes the loop for the consumer's numbers.
        async def arrived(msg: Msg) -> None:
            tokens = prompt_tokens(msg.data, self.tokens_field)
            self.queue.arrival(self.queue.mean if tokens is None else tokens)
            self.refresh_soon()

        self._arrivals = [await nc.subscribe(subject, cb=arrived) for subject in subjects]
        await nc.flush(int(REQUEST_TIMEOUT))  # the server has the subscription: no arrival after this is missed

    async def close(self) -> None:
        for sub in self._arrivals:
            with contextlib.suppress(nats.errors.Error):  # the connection is going away anyway
                await sub.unsubscribe()
        self._arrivals = []
        await self.conns.release(self.conn)


def _describe(exc: BaseException, timeout: float = REQUEST_TIMEOUT) -> str:
    text = str(exc).strip()
    if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, nats.errors.Error) and text.startswith("nats: "):
        return bounded.short(text)  # nats-py's own errors already say what happened
    return bounded.describe(exc)
