"""One instant query against the Prometheus HTTP API, refreshed in the background and shared by every
ScaledObject that needs it. An empty result is "no data", never zero: the decision layer says which pods
have no series."""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from typing import Any

import aiohttp

from scaler.connections import PrometheusProfile
from scaler.errors import SourceUnavailable
from scaler.metrics import Metrics
from scaler.signals import Series
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
    ) -> None:
        super().__init__(f"prometheus {label} query={query}", interval, metrics, clock)
        self.profile = profile
        self.query = query
        self.url = profile.url.rstrip("/") + "/api/v1/query"
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        p = self.profile
        ssl_context: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(p.ca)) if p.ca else True
        auth = (
            aiohttp.BasicAuth(p.basic_auth.username, p.basic_auth.password.get_secret_value()) if p.basic_auth else None
        )
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            auth=auth,
            connector=aiohttp.TCPConnector(ssl=ssl_context),
        )

    async def fetch(self) -> tuple[Series, ...]:
        if self._session is None:
            self._session = self._open()
        try:
            headers = self.profile.headers()
            async with self._session.get(self.url, params={"query": self.query}, headers=headers) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            detail = (
                f"no answer within {REQUEST_TIMEOUT:g}s"
                if isinstance(exc, asyncio.TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            raise SourceUnavailable(f"{self.name}: {detail}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "unexpected answer") if isinstance(body, dict) else "unexpected answer"
            raise SourceUnavailable(f"{self.name}: HTTP {resp.status}: {error}")
        return _vector(body)

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
        value = float(item["value"][1])
        if math.isfinite(value):  # a NaN sample is no measurement
            out.append(Series(labels=item.get("metric", {}), value=value))
    return tuple(out)
