"""`/status` (JSON and HTML), `pd-scaler explain` and the log of rejected triggers, against a running scaler."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from nats.js import JetStreamContext

from scaler.errors import InvalidTrigger
from scaler.logs import Once
from scaler.observations import Decision
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from scaler.status import HISTORY_POINTS, RECENT_DECISIONS, Ring, StatusBoard
from tests import kubeapi
from tests.conftest import CONSUMER, STREAM, eventually, make_queue, metrics_request, prefill_ref, rpc_error
from tests.exporters import NAMESPACE
from tests.servers import NatsServer, PrometheusServer
from tests.test_decode import DECODER, decode_ref, kube, prometheus  # noqa: F401 (fixtures)
from tests.test_decode import value as decode_value
from tests.test_prefill import lag_becomes, publish

METRIC = f"prefill-lag-{STREAM.replace('_', '-')}-{CONSUMER}"
INVALID = "key 'lagThreshold': invalid value '-1': Input should be greater than 0"


async def get(server: Server, path: str, accept: str = "application/json") -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}{path}", headers={"Accept": accept}) as r,
    ):
        return r.status, r.content_type, await r.text()


async def status_json(server: Server) -> dict[str, Any]:
    status, content_type, body = await get(server, "/status")
    assert (status, content_type) == (200, "application/json")
    return dict(json.loads(body))


def by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {so["name"]: so for so in status["scaledobjects"]}


async def test_status_shows_each_answer_and_error_and_no_activity_after_an_error(
    scaler: Server, stub: pb_grpc.ExternalScalerStub, js: JetStreamContext, nats_server: NatsServer
):
    await publish(js, 11)
    ok = prefill_ref(nats_server, name="prefill")
    await lag_becomes(stub, ok, 11.0)
    assert (await stub.IsActive(ok)).result is True

    # Asked about with bad metadata only: it is listed all the same.
    broken = prefill_ref(nats_server, name="broken", lagThreshold="-1")
    assert (await rpc_error(stub.GetMetrics(metrics_request(broken)))) is not None

    # Active, then its consumer goes: NOT_FOUND, so no longer active.
    await make_queue(js, "retired_queue", "retired")
    await js.publish("retired_queue.x", b"{}")
    retired = prefill_ref(nats_server, name="retired", stream="retired_queue", consumer="retired")
    await lag_becomes(stub, retired, 1.0)
    assert (await stub.IsActive(retired)).result is True
    await js.delete_consumer("retired_queue", "retired")

    async def retired_not_found() -> None:
        error = await rpc_error(stub.IsActive(retired))
        assert error is not None
        assert error.code() == grpc.StatusCode.NOT_FOUND

    await eventually(retired_not_found)
    status = await status_json(scaler)
    objects = by_name(status)
    assert sorted(objects) == ["broken", "prefill", "retired"]

    prefill = objects["prefill"]
    shown = ("namespace", "active", "role", "policy", "metric", "value", "target", "replicas")
    assert {k: prefill[k] for k in shown} == {
        "namespace": "dynamo", "active": True, "role": "prefill", "policy": "lag", "metric": METRIC,
        "value": 11.0, "target": 5.0, "replicas": 3,
    }  # fmt: skip
    assert prefill["reason"] == "lag 11 (11 pending + 0 ack-pending) > activation 0"
    assert prefill["last_error"] is None

    assert objects["broken"]["active"] is False
    assert (objects["broken"]["role"], objects["broken"]["value"]) == (None, None)
    assert {k: objects["broken"]["last_error"][k] for k in ("code", "error")} == {
        "code": "INVALID_ARGUMENT",
        "error": INVALID,
    }
    assert objects["broken"]["last_error"]["age_s"] < 30

    gone = objects["retired"]
    assert (gone["active"], gone["value"], gone["replicas"], gone["role"]) == (False, None, None, "prefill")
    assert gone["last_error"]["code"] == "NOT_FOUND"
    assert gone["last_error"]["error"] == (
        f"nats {nats_server.url}: consumer 'retired' not found on stream 'retired_queue'"
    )

    # The fields /status always had stay.
    source = next(s for s in status["sources"] if s["name"].endswith(f"stream={STREAM} consumer={CONSUMER}"))
    assert set(source) >= {"kind", "name", "up", "sample_age_s", "watching_streams", "refreshes", "last_error"}
    assert (source["kind"], source["up"], source["watching_streams"], source["last_error"]) == ("nats", True, 0, None)
    assert source["refreshes"] >= 1
    down = next(s for s in status["sources"] if "retired_queue" in s["name"])
    assert (down["up"], down["last_error"]["error"]) == (False, gone["last_error"]["error"])
    await js.delete_stream("retired_queue")


async def test_the_page_is_html_for_a_browser_and_escapes_what_callers_send(
    scaler: Server, stub: pb_grpc.ExternalScalerStub, nats_server: NatsServer
):
    evil = '<img src=x onerror="alert(1)">'
    ref = pb.ScaledObjectRef(
        name=evil, namespace="<b>ns</b>", scalerMetadata={"role": "prefill", "natsServer": nats_server.url, evil: "1"}
    )
    assert (await rpc_error(stub.GetMetricSpec(ref))) is not None
    status, content_type, page = await get(scaler, "/status", accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert (status, content_type) == (200, "text/html")
    assert "<img" not in page
    assert "<b>" not in page
    assert "&lt;b&gt;ns&lt;/b&gt;/&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "INVALID_ARGUMENT: unknown key &#x27;&lt;img src=x" in page
    assert "http://" not in page.replace(nats_server.url, "").split("<body>")[1].replace('xmlns="http://www.w3', "")
    # ?format= overrides what the client accepts
    assert (await get(scaler, "/status?format=json", accept="text/html"))[1] == "application/json"


async def explain(server: Server, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scaler", "explain", *args, "--url", f"http://127.0.0.1:{server.http_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_explain_prints_the_answer_why_and_the_recent_decisions(
    scaler: Server, stub: pb_grpc.ExternalScalerStub, js: JetStreamContext, nats_server: NatsServer
):
    ref = prefill_ref(nats_server, name="prefill")
    await lag_becomes(stub, ref, 0.0)
    broken = prefill_ref(nats_server, name="prefill", lagThreshold="-1")  # KEDA sent bad metadata once
    assert (await rpc_error(stub.GetMetrics(metrics_request(broken)))) is not None
    await publish(js, 7)
    await lag_becomes(stub, ref, 7.0)

    code, out, err = await explain(scaler, "dynamo/prefill")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(
        "dynamo/prefill: value 7 / target 5 -> 2 replicas, active: lag 7 (7 pending + 0 ack-pending) > activation 0 ("
    )
    assert lines[1] == f"  role prefill, policy lag, metric {METRIC}"
    assert lines[2].startswith(f"  last error: INVALID_ARGUMENT: {INVALID} (20")
    assert lines[3] == "recent decisions, newest first:"
    decisions = [line.split("  ", 2)[2] for line in lines[4:]]
    idle = "value 0 / target 5 -> 0 replicas, inactive: lag 0 (0 pending + 0 ack-pending) <= activation 0"
    rejected = f"error INVALID_ARGUMENT: {INVALID}"
    # One line per change of outcome (a lag of 0 may be answered again before the new sample).
    assert decisions[0] == "value 7 / target 5 -> 2 replicas, active: lag 7 (7 pending + 0 ack-pending) > activation 0"
    assert decisions[1:] in ([rejected, idle], [idle, rejected, idle])

    assert await explain(scaler, "dynamo/nobody") == (
        1,
        "",
        f"pd-scaler explain: dynamo/nobody: unknown to the scaler at http://127.0.0.1:{scaler.http_port} "
        "(KEDA has not asked about it lately)\n",
    )


async def test_explain_says_when_no_scaler_answers(scaler: Server):
    port = scaler.http_port
    await scaler.stop()
    code, out, err = await explain(scaler, "dynamo/prefill")
    assert (code, out) == (1, "")
    assert err.startswith(f"pd-scaler explain: cannot reach a pd-scaler at http://127.0.0.1:{port}: ")
    assert len(err.splitlines()) == 1


async def test_a_rejected_trigger_is_logged_once_per_error(
    scaler: Server, stub: pb_grpc.ExternalScalerStub, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, "pd_scaler.engine")
    bad = prefill_ref(nats_server, name="so-1", lagThreshold="-1")
    for _ in range(5):
        await rpc_error(stub.GetMetrics(metrics_request(bad)))
        await rpc_error(stub.GetMetricSpec(bad))
    other_error = prefill_ref(nats_server, name="so-1", lagThreshold="none")
    other_object = prefill_ref(nats_server, name="so-2", lagThreshold="-1")
    for ref in (other_error, other_object, bad):
        await rpc_error(stub.IsActive(ref))
    logged = [(r.getMessage(), r.fields) for r in caplog.records if r.name == "pd_scaler.engine"]  # type: ignore[attr-defined]
    base = {"namespace": "dynamo", "code": "INVALID_ARGUMENT"}
    assert logged == [
        ("trigger rejected", {**base, "scaledobject": "so-1", "error": INVALID}),
        ("trigger rejected", {**base, "scaledobject": "so-1",
                              "error": "key 'lagThreshold': invalid value 'none': Input should be a valid number, "
                                       "unable to parse string as a number"}),
        ("trigger rejected", {**base, "scaledobject": "so-2", "error": INVALID}),
    ]  # fmt: skip


def test_log_once_is_bounded_and_rate_limited():
    now = [0.0]
    once = Once(limit=3, rate=1.0, burst=2.0, clock=lambda: now[0])
    assert [once(k) for k in ("a", "a", "b", "c")] == [True, False, True, False]  # burst of 2 spent
    assert once.suppressed == 1
    now[0] = 1.0
    assert [once("c"), once("c")] == [True, False]  # refused before, so not remembered: logged now
    now[0] = 10.0
    assert [once("d"), once("a")] == [True, True]  # "a" was the oldest of 3 remembered keys: forgotten


def test_history_is_a_fixed_ring_and_the_board_a_bounded_set():
    ring = Ring(size=4, spacing=30.0)
    for t in range(0, 300, 10):
        ring.add(float(t), float(t), 5.0)
    # One point per 30 s slot, the latest in it; the last 4 slots.
    assert ring.points() == [(t, t, 5.0) for t in (200.0, 230.0, 260.0, 290.0)]
    assert Ring().points() == []
    assert HISTORY_POINTS == 120

    board = StatusBoard(limit=3)
    decision = Decision("m", 1.0, 2.0, True, "why")
    for i in range(5):
        board.decided("ns", f"so-{i}", "prefill", "lag", decision, at=float(i))
    board.failed("ns", "so-3", InvalidTrigger("bad"), at=9.0)
    board.decided("ns", "so-5", "prefill", "lag", decision, at=10.0)
    assert [e.name for e in board] == ["so-3", "so-4", "so-5"]
    for t in range(100):
        board.decided("ns", "so-5", "prefill", "lag", decision, at=100.0 + 31 * t)
    assert len(board.get("ns", "so-5").recent) == RECENT_DECISIONS  # type: ignore[union-attr]


def test_the_same_decision_answered_again_within_a_slot_is_recorded_once_and_a_new_one_replaces_it():
    # KEDA asks several times per sample: the board keeps one point per slot, the latest decision in it.
    board = StatusBoard()
    first, second = Decision("m", 1.0, 2.0, True, "first"), Decision("m", 3.0, 2.0, True, "second")
    for at in (0.0, 5.0, 10.0):
        board.decided("ns", "so", "prefill", "capacity", first, at)
    entry = board.get("ns", "so")
    assert entry is not None
    assert entry.last is not None
    assert (entry.last.at, entry.last.reason, len(entry.recent)) == (0.0, "first", 1)
    board.decided("ns", "so", "prefill", "capacity", second, 12.0)
    assert (entry.last.at, entry.last.reason, len(entry.recent)) == (12.0, "second", 1)
    assert entry.history.points() == [(12.0, 3.0, 2.0)]
    board.decided("ns", "so", "prefill", "capacity", second, 31.0)  # the next slot: a point of its own
    assert [p[0] for p in entry.history.points()] == [12.0, 31.0]
    board.failed("ns", "so", InvalidTrigger("bad"), 32.0)
    board.decided("ns", "so", "prefill", "capacity", second, 33.0)  # after an error, the answer is news again
    assert (entry.last.at, entry.last.error) == (33.0, "")


# -- in a real browser ------------------------------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")  # fmt: skip


async def chromium(profile: Path, *args: str) -> str:
    """Headless Debian chromium on a throw-away profile; its stdout (--dump-dom prints the rendered DOM)."""
    if shutil.which("chromium") is None:
        raise RuntimeError("chromium is not installed: run `make test`, which installs it")
    proc = await asyncio.create_subprocess_exec(
        "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, f"chromium {args} exited {proc.returncode}"
    return out.decode()


async def test_the_page_renders_in_a_browser_with_values_reasons_and_the_failing_error(
    tmp_path: Path,
    kube: tuple[kubeapi.KubeAPI, Path],  # noqa: F811 (the fixture)
    prometheus: PrometheusServer,  # noqa: F811 (the fixture)
    make_scaler: Callable[..., Awaitable[Server]],
    js: JetStreamContext,
    nats_server: NatsServer,
):
    """Saves the screenshot as status-page.png in the test's tmp dir (docs/status-page.png is a copy of one)."""
    server = await make_scaler(kubeconfig=kube[1], kube_refresh_interval=0.1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        await publish(js, 11)
        prefill = prefill_ref(nats_server, name="dynamo-pd-prefill")
        await lag_becomes(stub, prefill, 11.0)
        decode = await decode_value(stub, decode_ref(prometheus))
        typo = prefill_ref(nats_server, name="prefill-typo", lagTreshold="5")  # a ScaledObject KEDA cannot use
        assert (await rpc_error(stub.GetMetrics(metrics_request(typo)))) is not None

    url = f"http://127.0.0.1:{server.http_port}/status"
    dom = await chromium(tmp_path / "profile", "--dump-dom", url)
    text = html.unescape(re.sub(r"<[^>]+>", "|", dom))
    cells = [c.strip() for c in text.split("|") if c.strip()]
    assert "dynamo/dynamo-pd-prefill" in cells
    assert "11 / 5" in cells
    assert "lag 11 (11 pending + 0 ack-pending) > activation 0" in cells
    assert f"{NAMESPACE}/{DECODER}" in cells
    assert f"{decode:.4g} / 0.8" in cells
    assert f"gpu-memory sum {decode:.3f} over 2 pods > activation 0" in cells
    assert "dynamo/prefill-typo" in cells
    typo_error = f"INVALID_ARGUMENT: {server.engine.status.get('dynamo', 'prefill-typo').last_error.error}"  # type: ignore[union-attr]
    assert typo_error.startswith("INVALID_ARGUMENT: unknown key 'lagTreshold' (did you mean 'lagThreshold'?); ")
    assert typo_error in cells
    assert cells.count("error") == 1  # the typo's activity
    assert dom.count("<svg") == 2  # a chart per ScaledObject that has a metric
    assert "<script" not in dom

    screenshot = tmp_path / "status-page.png"
    await chromium(tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1400,860", url)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000
