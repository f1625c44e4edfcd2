"""KEDA `nats-jetstream` compatibility: consumer lag read from the NATS monitoring endpoint `/jsz`.

One loop per (endpoint, account) serves every stream and consumer of that account, as one `/jsz` answer
holds them all. Like the JetStream API source, lag = num_pending + num_ack_pending.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from scaler.errors import NotFound, SourceUnavailable
from scaler.metrics import Metrics
from scaler.observations import ConsumerLag
from scaler.sources.base import Clock, LagSource

REQUEST_TIMEOUT = 2.0

Lags = dict[str, dict[str, ConsumerLag]]  # stream → consumer → lag


class JszSource(LagSource[Lags]):
    kind = "nats-jsz"

    def __init__(
        self, base_url: str, account: str, interval: float, metrics: Metrics, clock: Clock = time.monotonic
    ) -> None:
        super().__init__(f"nats-monitoring {base_url} account={account}", interval, metrics, clock)
        self.url = f"{base_url}/jsz"
        self.account = account
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> Lags:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        params = {"acc": self.account, "config": "true", "consumers": "true"}
        try:
            async with self._session.get(self.url, params=params) as resp:
                if resp.status != 200:
                    raise SourceUnavailable(f"{self.name}: HTTP {resp.status} from /jsz")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise SourceUnavailable(f"{self.name}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        return _lags(body, self.account)

    def lag(self, stream: str, consumer: str, max_age: float) -> ConsumerLag:
        consumers = self.read(max_age).get(stream)
        if consumers is None:
            raise NotFound(f"{self.name}: stream {stream!r} not found")
        if consumer not in consumers:
            raise NotFound(f"{self.name}: consumer {consumer!r} not found on stream {stream!r}")
        return consumers[consumer]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _lags(body: Any, account: str) -> Lags:
    lags: Lags = {}
    for acc in body.get("account_details") or []:
        if acc.get("name") != account and acc.get("id") != account:
            continue
        for stream in acc.get("stream_detail") or []:
            lags[stream["name"]] = {
                c["name"]: ConsumerLag(
                    pending=int(c.get("num_pending", 0)), ack_pending=int(c.get("num_ack_pending", 0))
                )
                for c in stream.get("consumer_detail") or []
            }
    return lags
