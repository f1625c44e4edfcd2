"""The HTTP side: Prometheus `/metrics`, Kubernetes probes `/healthz` and `/readyz`, and `/status`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from scaler.engine import Engine
from scaler.metrics import Metrics


def app(engine: Engine, metrics: Metrics, ready: Callable[[], bool]) -> web.Application:
    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=await metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="not ready\n")

    async def status(_: web.Request) -> web.Response:
        sources: list[dict[str, Any]] = [
            {"kind": s.kind, "name": s.name, "up": s.up, "sample_age_s": s.age(), "watching_streams": s.users}
            for s in engine.sources.pool
        ]
        return web.json_response({"sources": sources, "scaledobjects": engine.activity()})

    application = web.Application()
    application.router.add_get("/metrics", metrics_page)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/status", status)
    return application
