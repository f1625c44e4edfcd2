"""`pd-scaler demo`: the prefill role end to end on one machine, no Kubernetes needed.

Starts a local `nats-server` (JetStream, loopback, a temporary store) with Dynamo's prefill queue, replays the
bundled Azure trace's arrivals into it as Dynamo's decode workers would (JSON of vLLM's `RemotePrefillRequest`),
runs prefill workers that take one request, ack it and prefill for a time proportional to its prompt, and serves
pd-scaler. In place of KEDA and the HPA it asks the scaler over gRPC every HPA sync period and sets the number of
workers as the HPA would (the simulator's emulation of the HPA controller), printing each decision. `--speed`
runs the whole timeline faster. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import logging
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import nats
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy

from scaler import logs
from scaler.durations import duration_arg
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import CannotListen, Server, Settings
from scaler.simulate.autoscaling import HPA, SYNC_PERIOD
from scaler.simulate.trace import Request, parse_azure, scale_load

STREAM, CONSUMER = "dynamo_prefill_queue", "worker-group"  # Dynamo's names for namespace `dynamo` (REFERENCE §2)
TRACE = "azure_llm_2023_conv.csv"
TRACE_CREDIT = "Azure LLM inference trace 2023, Microsoft Azure (AzurePublicDataset), CC-BY 4.0"
NAME, NAMESPACE = "dynamo-pd-prefill", "default"
BLOCK_SIZE = 128  # the ACK guide's Dynamo config
VOCABULARY = 151_936  # Qwen3's: token ids in the messages stay in range
# One prefill replica of Qwen3-32B on 2 x H200 (the simulator's default profile): 2,048 tokens in 0.128 s.
PREFILL_TOKENS_PER_S = 16_000.0

log = logging.getLogger("pd_scaler.demo")


class DemoError(Exception):
    """Something the demo needs is missing or taken: one line for the user."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number above 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of 1 or more")
    return int(text)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], port: Callable[[str], int]) -> None:
    cmd = commands.add_parser(
        "demo", help="local demo: nats-server, a replayed trace, prefill workers and the scaler (Ctrl-C stops)"
    )
    cmd.add_argument("--grpc-port", type=port, default=9090, help="the scaler's gRPC port (default %(default)s)")
    cmd.add_argument("--http-port", type=port, default=8080, help="the scaler's HTTP port (default %(default)s)")
    cmd.add_argument("--speed", type=_positive, default=1.0, help="replay this many times faster (default 1)")
    cmd.add_argument("--load", type=_positive, default=4.0, help="times the trace's request rate (default %(default)s)")
    cmd.add_argument(
        "--prefill-tokens-per-s",
        type=_positive,
        default=PREFILL_TOKENS_PER_S,
        help="one prefill worker's speed (default %(default)g: Qwen3-32B on 2 x H200)",
    )
    cmd.add_argument("--lag-threshold", type=_positive, default=5.0, help="lagThreshold (default %(default)g)")
    cmd.add_argument("--max-replicas", type=_count, default=6, help="maxReplicaCount (default %(default)s)")
    cmd.add_argument(
        "--startup-delay", type=duration_arg, default=30.0, help="a new prefill worker's start-up time (default 30s)"
    )
    cmd.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    logs.configure("text", args.log_level)
    try:
        return asyncio.run(Demo(args).run())
    except (DemoError, CannotListen) as exc:
        print(f"pd-scaler demo: {exc}", file=sys.stderr)
        return 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsProcess:
    """`nats-server -js` on loopback with a temporary store, as the tests run it."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = workdir / "nats-server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(workdir / "jetstream")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )

    async def connect(self, timeout: float = 10.0) -> NatsClient:
        """Once the server accepts connections (it opens its client port after JetStream is up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.proc.poll() is not None:
                last = self.log.read_text(errors="replace").strip().splitlines()[-1:]
                raise DemoError(f"nats-server exited: {last[0] if last else self.proc.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if loop.time() > deadline:
                    raise DemoError(f"nats-server did not answer on {self.url} within {timeout:g}s") from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                return await nats.connect(self.url)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def remote_prefill_request(number: int, request: Request) -> bytes:
    """Dynamo's message: msgspec's JSON of vLLM's RemotePrefillRequest (REFERENCE §2)."""
    blocks = math.ceil(request.prompt / BLOCK_SIZE)
    return json.dumps(
        {
            "engine_id": "demo-decode-0",
            "request_id": f"demo-{number}",
            "prompt_token_ids": [(number + i) % VOCABULARY for i in range(request.prompt)],
            "sampling_params": {"n": 1, "temperature": 0.0, "max_tokens": request.output},
            "block_ids": list(range(blocks)),
            "computed_block_ids": [],
        },
        separators=(",", ":"),
    ).encode()


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.speed: float = args.speed
        self.replicas = 1  # prefill workers wanted (the HPA's count, as on the scaling adapter)
        self.workers: list[asyncio.Task[None]] = []
        self.loop = asyncio.get_event_loop()
        self.start = 0.0

    def now(self) -> float:
        """Trace time: seconds since the demo started, times --speed."""
        return (self.loop.time() - self.start) * self.speed

    async def sleep(self, trace_seconds: float) -> None:
        await asyncio.sleep(max(trace_seconds, 0.0) / self.speed)

    async def run(self) -> int:
        args = self.args
        self.loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, stop.set)
        data = importlib.resources.files("scaler.simulate") / "data" / TRACE
        trace = scale_load(parse_azure(data.read_text()), args.load)
        if shutil.which("nats-server") is None:
            raise DemoError("nats-server is not installed (`make demo` installs it)")
        failed: asyncio.Task[Any] | None = None
        with tempfile.TemporaryDirectory(prefix="pd-scaler-demo-") as workdir:
            server = Server(Settings(bind_address="127.0.0.1", grpc_port=args.grpc_port, http_port=args.http_port))
            await server.start()  # first: a taken port ends the demo before anything else starts
            nats_server = NatsProcess(Path(workdir))
            tasks: list[asyncio.Task[Any]] = []
            nc: NatsClient | None = None
            try:
                nc = await nats_server.connect()
                js = nc.jetstream()
                await js.add_stream(
                    name=STREAM, subjects=[f"{STREAM}.*"], retention=RetentionPolicy.WORK_QUEUE, max_age=600
                )
                await js.add_consumer(STREAM, ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT))
                self._greet(server, nats_server.url, trace)
                self.start = self.loop.time()
                tasks = [
                    asyncio.create_task(self._publish(js, trace), name="publisher"),
                    asyncio.create_task(self._autoscale(js, server.grpc_port, nats_server.url), name="hpa"),
                    asyncio.create_task(stop.wait(), name="signal"),
                ]
                self._resize(js, starting=False)  # the replica already running when the demo starts
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                failed = next((t for t in done if not t.cancelled() and t.exception() is not None), None)
            finally:
                print("stopping", flush=True)
                for task in [*tasks, *self.workers]:
                    task.cancel()
                await asyncio.gather(*tasks, *self.workers, return_exceptions=True)
                await server.stop()  # before nats-server, so the scaler's sources see no outage
                if nc is not None:
                    await nc.close()
                nats_server.stop()
        if failed is not None:
            raise DemoError(f"the {failed.get_name()} stopped: {failed.exception()}")
        print("stopped", flush=True)
        return 0

    def _greet(self, server: Server, nats_url: str, trace: Sequence[Request]) -> None:
        a = self.args
        url = f"http://127.0.0.1:{server.http_port}"
        # The command as the user can type it: `make demo` runs .venv/bin/pd-scaler, not one on the PATH.
        command = sys.argv[0] if Path(sys.argv[0]).name == "pd-scaler" else "pd-scaler"
        print(
            f"nats-server (JetStream) on {nats_url}: stream {STREAM}, consumer {CONSUMER}\n"
            f"replaying {len(trace):,} requests of the {TRACE_CREDIT}, at {a.load:g}x its load and {a.speed:g}x "
            f"its speed, against prefill workers of {a.prefill_tokens_per_s:g} tokens/s "
            f"({a.startup_delay:g}s to start)\n"
            f"pd-scaler: gRPC on 127.0.0.1:{server.grpc_port}, status page {url}/status\n"
            f"decisions below, every {SYNC_PERIOD:g}s of trace time (the HPA's sync period) for {NAMESPACE}/{NAME} "
            f"(maxReplicaCount {a.max_replicas}); the scaler's own account: {command} explain {NAMESPACE}/{NAME} "
            f"--url {url}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )

    async def _publish(self, js: JetStreamContext, trace: Sequence[Request]) -> None:
        """Arrivals at their trace times, round after round; each a remote-prefill request on the queue."""
        number, offset = 0, 0.0
        while True:
            for request in trace:
                await self.sleep(offset + request.arrival - self.now())
                await js.publish(f"{STREAM}.queue", remote_prefill_request(number, request))
                number += 1
            offset += trace[-1].arrival + 1.0

    async def _prefill_worker(self, js: JetStreamContext, index: int, starting: bool) -> None:
        """Like a Dynamo prefill worker: pull one request, ack it at once, prefill; stop when scaled away."""
        if starting:
            await self.sleep(self.args.startup_delay)
        subscription = await js.pull_subscribe_bind(CONSUMER, STREAM)
        while index < self.replicas:
            try:
                [message] = await subscription.fetch(1, timeout=1)
            except NatsTimeout:
                continue
            await message.ack()
            prompt = len(json.loads(message.data)["prompt_token_ids"])
            await self.sleep(prompt / self.args.prefill_tokens_per_s)
        await subscription.unsubscribe()

    def _resize(self, js: JetStreamContext, starting: bool) -> None:
        """Workers up to the replica count; those above it stop after their current request."""
        self.workers = [w for w in self.workers if not w.done()]
        for index in range(len(self.workers), self.replicas):
            worker = self._prefill_worker(js, index, starting)
            self.workers.append(asyncio.create_task(worker, name=f"prefill-{index}"))

    async def _autoscale(self, js: JetStreamContext, grpc_port: int, nats_url: str) -> None:
        """KEDA and the HPA: every sync period, the scaler's answer → the HPA's replica count → workers."""
        a = self.args
        metadata = {
            "scalerAddress": f"127.0.0.1:{grpc_port}",
            "role": "prefill",
            "natsServer": nats_url,
            "stream": STREAM,
            "consumer": CONSUMER,
            "lagThreshold": f"{a.lag_threshold:g}",
        }
        ref = pb.ScaledObjectRef(name=NAME, namespace=NAMESPACE, scalerMetadata=metadata)
        hpa = HPA(min_replicas=1, max_replicas=a.max_replicas)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            scaler = pb_grpc.ExternalScalerStub(channel)
            while True:
                await self.sleep(SYNC_PERIOD)
                value: float | None = None
                target = a.lag_threshold
                try:
                    await scaler.IsActive(ref)  # KEDA asks each polling interval (scale to and from zero)
                    [spec] = (await scaler.GetMetricSpec(ref)).metricSpecs
                    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)
                    [metric] = (await scaler.GetMetrics(request)).metricValues
                except grpc.aio.AioRpcError as exc:  # the HPA keeps its count when the metric cannot be read
                    said = f"{exc.code().name}: {exc.details()}"
                else:
                    value, target = metric.metricValueFloat, spec.targetSizeFloat
                    wants = math.ceil(value / target)
                    said = f"{spec.metricName} {value:g}, target {target:g} per replica: wants {wants}"
                before = self.replicas
                self.replicas = hpa.reconcile(self.now(), before, value, target, "AverageValue", before)
                self._resize(js, starting=True)
                minutes, seconds = divmod(int(self.now()), 60)
                change = f"{before} -> {self.replicas}" if self.replicas != before else f"stay {before}"
                print(f"{minutes:3d}:{seconds:02d}  {said}; prefill replicas {change}", flush=True)
