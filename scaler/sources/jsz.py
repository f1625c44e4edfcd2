"""KEDA `nats-jetstream` compatibility: consumer lag read from the NATS monitoring endpoint `/jsz`.

One loop per (endpoint, account) serves every stream and consumer of that account, as one `/jsz` answer
holds them all. Like the JetStream API source, lag = num_pending + num_ack_pending.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from scaler.errors import NotFound, SourceUnavailable
from scaler.metrics import Metrics
from scaler.observations import ConsumerLag
from scaler.sources import bounded
from scaler.sources.base import Clock, LagSource

REQUEST_TIMEOUT = 2.0

Lags = dict[str, dict[str, ConsumerLag]]  # stream → consumer → lag


class JszSource(LagSource[Lags]):
    kind = "nats-jsz"

    def __init__(
        self,
        base_url: str,
        account: str,
        interval: float,
        metrics: Metrics,
        clock: Clock = time.monotonic,
        max_body_bytes: int = bounded.DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(f"nats-monitoring {base_url} account={account}", interval, metrics, clock)
        self.url = f"{base_url}/jsz"
        self.account = account
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> Lags:
        if self._session is None:
            self._session = bounded.session(REQUEST_TIMEOUT)
        params = {"acc": self.account, "config": "true", "consumers": "true"}
        try:
            status, body = await bounded.get_json(self._session, self.url, max_bytes=self.max_body_bytes, params=params)
            if status != 200:
                raise bounded.BadAnswer(f"HTTP {status} from /jsz")
            return _lags(body, self.account)
        except bounded.BadAnswer as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from None

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
    """Every consumer's lag in a /jsz answer, or BadAnswer naming the first field that is not what NATS sends."""
    lags: Lags = {}
    for acc in _objects(_get(body, "account_details"), "account_details"):
        if acc.get("name") != account and acc.get("id") != account:
            continue
        for stream in _objects(acc.get("stream_detail"), "stream_detail"):
            consumers = lags[_name(stream, "stream_detail")] = {}
            for c in _objects(stream.get("consumer_detail"), "consumer_detail"):
                where = f"consumer_detail {_name(c, 'consumer_detail')!r}"
                consumers[c["name"]] = ConsumerLag(
                    pending=bounded.count(c.get("num_pending", 0), f"{where} num_pending"),
                    ack_pending=bounded.count(c.get("num_ack_pending", 0), f"{where} num_ack_pending"),
                )
    return lags


def _get(body: Any, key: str) -> Any:
    if not isinstance(body, dict):
        raise bounded.BadAnswer("answer is not a /jsz object")
    return body.get(key)


def _objects(value: Any, field: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise bounded.BadAnswer(f"{field} is not a list of objects")
    return value


def _name(item: dict[str, Any], field: str) -> str:
    name = item.get("name")
    if not isinstance(name, str):
        raise bounded.BadAnswer(f"{field} entry without a name")
    return name
