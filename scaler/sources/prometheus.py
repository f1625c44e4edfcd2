"""One instant query against the Prometheus HTTP API, refreshed in the background and shared by every
ScaledObject that needs it. An empty result is "no data", never zero: the decision layer says which pods
have no series."""

from __future__ import annotations

import ssl
import time
from typing import Any

import aiohttp

from scaler.connections import PrometheusProfile
from scaler.errors import SourceUnavailable
from scaler.metrics import Metrics
from scaler.signals import Series
from scaler.sources import bounded
from scaler.sources.base import Clock, Source

REQUEST_TIMEOUT = 2.0


class PrometheusSource(Source[tuple[Series, ...]]):
    kind = "prometheus"

    def __init__(
        self,
        label: str,
        profile: PrometheusProfile,
        query: str,
        interval: float,
        metrics: Metrics,
        clock: Clock = time.monotonic,
        max_body_bytes: int = bounded.DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(f"prometheus {label} query={query}", interval, metrics, clock)
        self.profile = profile
        self.query = query
        self.url = profile.url.rstrip("/") + "/api/v1/query"
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        ca = self.profile.ca
        return bounded.session(REQUEST_TIMEOUT, ssl_context=ssl.create_default_context(cafile=str(ca)) if ca else True)

    async def fetch(self) -> tuple[Series, ...]:
        if self._session is None:
            self._session = self._open()
        try:
            headers = self.profile.headers()
        except OSError as exc:  # a token file that is missing or unreadable
            raise SourceUnavailable(f"{self.name}: cannot read bearerTokenFile: {bounded.describe(exc)}") from None
        try:
            status, body = await bounded.get_json(
                self._session, self.url, max_bytes=self.max_body_bytes, params={"query": self.query}, headers=headers
            )
        except bounded.BadAnswer as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            detail = bounded.short(error) if isinstance(error, str) else "unexpected answer"
            raise SourceUnavailable(f"{self.name}: HTTP {status}: {detail}")
        try:
            return _vector(body)
        except bounded.BadAnswer as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _vector(body: dict[str, Any]) -> tuple[Series, ...]:
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        return ()
    out = []
    for item in data.get("result") or []:
        labels = item.get("metric", {})
        field = "value of " + bounded.series_name(labels.get("__name__", ""), labels)
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise bounded.BadAnswer(f"{field} has no number: {bounded.short(repr(item.get('value')), 40)}") from None
        out.append(Series(labels=labels, value=bounded.measurement(value, field)))
    return tuple(out)
