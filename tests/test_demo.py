"""`pd-scaler demo` (what `make demo` runs) end to end: it starts nats-server, the replay, the prefill workers and
the scaler; decisions with a non-zero prefill value appear within 60 s; SIGTERM or Ctrl-C stops it all cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port

DECISION = re.compile(r"^\s*\d+:\d\d  (\S+) (\S+), target (\S+) per replica: wants (\d+); prefill replicas (.+)$")


async def line(stream: asyncio.StreamReader, deadline: float) -> str:
    loop = asyncio.get_running_loop()
    raw = await asyncio.wait_for(stream.readline(), max(deadline - loop.time(), 0.01))
    assert raw, "the demo ended early"
    return raw.decode().rstrip("\n")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_the_demo_scales_prefill_on_the_replayed_trace_and_stops_cleanly(stop: signal.Signals) -> None:
    grpc_port, http_port = free_port(), free_port()
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "scaler", "demo", "--speed", "5"),
        *("--grpc-port", str(grpc_port), "--http-port", str(http_port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert demo.stdout is not None
    assert demo.stderr is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    try:
        greeting = [await line(demo.stdout, deadline) for _ in range(5)]
        nats_url = re.search(r"nats://127\.0\.0\.1:\d+", greeting[0])
        assert nats_url is not None, greeting
        assert "Azure LLM inference trace 2023, Microsoft Azure (AzurePublicDataset), CC-BY 4.0" in greeting[1]
        assert f"status page http://127.0.0.1:{http_port}/status" in greeting[2]
        decisions = []
        while True:
            text = await line(demo.stdout, deadline)
            match = DECISION.match(text)
            assert match, text
            decisions.append(match.groups())
            if float(match[2]) > 0:
                break
        metric, value, target, wants, _ = decisions[-1]
        assert (metric, target) == ("prefill-lag-dynamo-prefill-queue-worker-group", "5")
        assert int(wants) == -(-float(value) // 5)

        # The scaler's status page shows the ScaledObject the demo's KEDA asks about.
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/status", headers={"Accept": "application/json"})
        status = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(request, timeout=5)))
        assert [(o["namespace"], o["name"]) for o in status["scaledobjects"]] == [("default", "dynamo-pd-prefill")]
    finally:
        if demo.returncode is None:
            demo.send_signal(stop)
    assert await asyncio.wait_for(demo.wait(), 30) == 0
    rest = (await demo.stdout.read()).decode().splitlines()
    assert rest[-2:] == ["stopping", "stopped"]
    assert (await demo.stderr.read()).decode() == ""
    # Everything it started is gone: nats-server and both ports are free again.
    host, port = nats_url[0].removeprefix("nats://").split(":")
    for taken in (int(port), grpc_port, http_port):
        with socket.socket() as probe:
            assert probe.connect_ex((host, taken)) != 0, taken


async def test_a_taken_port_ends_the_demo_with_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        demo = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "scaler", "demo", "--http-port", str(port), "--grpc-port", str(free_port())),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(demo.communicate(), 30)
    assert demo.returncode == 2
    assert out == b""
    assert err.decode() == f"pd-scaler demo: HTTP port: cannot listen on 127.0.0.1:{port}: address already in use\n"


async def test_without_nats_server_the_demo_says_how_to_get_it(tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "scaler", "demo", "--http-port", str(free_port()), "--grpc-port", str(free_port())),
        env={**os.environ, "PATH": str(tmp_path)},  # no nats-server on it
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(demo.communicate(), 30)
    assert (demo.returncode, out) == (2, b"")
    assert err.decode() == "pd-scaler demo: nats-server is not installed (`make demo` installs it)\n"
