"""The HTTP side: Prometheus `/metrics`, Kubernetes probes `/healthz` and `/readyz`, and `/status`."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from scaler import status_page
from scaler.engine import Engine
from scaler.metrics import Metrics
from scaler.render import Shared


def app(engine: Engine, metrics: Metrics, ready: Callable[[], bool]) -> web.Application:
    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=await metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="not ready\n")

    def clocks() -> status_page.Clocks:
        return status_page.Clocks(engine.clock(), time.time())

    status_html: Shared[str] = Shared()
    status_json: Shared[str] = Shared()

    async def status(request: web.Request) -> web.Response:
        # Thousands of ScaledObjects take a second to draw (HTML) or a good fraction of one (JSON): in a worker
        # thread. The lists are taken here, on the loop that changes them; what the thread reads of an entry is
        # replaced whole (answers) or fixed-size (the history ring).
        now = clocks()
        objects, running = list(engine.status), list(engine.sources.pool)
        if _wants_html(request):
            html = await status_html(status_page.page, objects, running, now)
            return web.Response(text=html, content_type="text/html")
        body = await status_json(status_page.page_json, objects, running, now)
        return web.Response(text=body, content_type="application/json")

    async def scaledobject(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        entry = engine.status.get(namespace, name)
        if entry is None:
            error = f"no ScaledObject {namespace}/{name} has been asked about lately"
            return web.json_response({"error": error}, status=404)
        return web.json_response(status_page.scaledobject_json(entry, clocks(), detail=True))

    application = web.Application()
    application.router.add_get("/metrics", metrics_page)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/status", status)
    application.router.add_get("/status/{namespace}/{name}", scaledobject)
    return application


def _wants_html(request: web.Request) -> bool:
    """A browser asks for text/html; `curl`, scripts and `pd-scaler explain` get JSON (as does ?format=json)."""
    wanted = request.query.get("format")
    if wanted in ("html", "json"):
        return wanted == "html"
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept
