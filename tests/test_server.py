"""`pd-scaler serve` as a process: flags and env vars, health, reflection, probes, logs, profiles, SIGTERM."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scaler.metrics import Metrics
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from tests.conftest import make_queue, metrics_request, rpc_error
from tests.servers import NatsServer, free_port, wait_http

SECRET = "pd-s3cret-planted"


class Process:
    def __init__(
        self, tmp_path: Path, *args: str, env: dict[str, str] | None = None, nofile: int | None = None
    ) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log = tmp_path / "pd-scaler.log"
        environ = {
            # As in a pod: not the GRPC_VERBOSITY importing `scaler` set in this process.
            **{k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"},
            "PD_SCALER_GRPC_PORT": str(self.grpc_port),
            "PD_SCALER_HTTP_PORT": str(self.http_port),
            "PD_SCALER_BIND_ADDRESS": "127.0.0.1",
            **(env or {}),
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scaler", "serve", *args],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A pod's usual open-file limit, when a test needs it (a connection flood).
                preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None,
            )

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    p = Process(tmp_path, "--log-format", "json", "--refresh-interval", "100ms")
    wait_http(f"http://127.0.0.1:{p.http_port}/readyz")
    yield p
    p.proc.kill()
    p.proc.wait()


async def test_serves_health_reflection_and_probes_on_the_ports_from_env_vars(process: Process):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "externalscaler.ExternalScaler"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflect.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            break
        assert names == {
            "externalscaler.ExternalScaler",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }

    assert process.http("/healthz") == (200, "ok\n")
    assert process.http("/readyz") == (200, "ready\n")
    status, body = process.http("/metrics")
    assert status == 200
    assert "# TYPE pd_scaler_grpc_requests_total counter" in body
    assert process.http("/status") == (200, json.dumps({"sources": [], "scaledobjects": []}))
    assert process.http("/nothing-else")[0] == 404


async def test_sigterm_ends_open_streams_and_exits_zero(process: Process, nats_server: NatsServer, js: object):
    # `js`: an empty prefill queue, so the role is inactive and the stream has nothing to say.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        ref = pb.ScaledObjectRef(
            name="prefill",
            namespace="dynamo",
            scalerMetadata={"role": "prefill", "natsServer": nats_server.url, "lagThreshold": "5"},
        )
        stream = stub.StreamIsActive(ref)
        await stub.GetMetricSpec(ref)  # the stream is open once the server has answered a later call

        process.proc.send_signal(signal.SIGTERM)
        responses = [r async for r in stream]  # ends when the server closes the stream
        assert responses == []
        assert await stream.code() == grpc.StatusCode.OK
    assert process.proc.wait(10) == 0
    lines = [json.loads(line) for line in process.output().splitlines()]
    assert [line["msg"] for line in lines if line["logger"] == "pd_scaler.server"] == [
        "serving",
        "shutting down",
        "stopped",
    ]


def test_a_bad_env_var_names_itself(tmp_path: Path):
    p = Process(tmp_path, env={"PD_SCALER_REFRESH_INTERVAL": "soon"})
    assert p.proc.wait(10) == 2
    assert p.output() == (
        "pd-scaler serve: error: PD_SCALER_REFRESH_INTERVAL='soon': 'soon' is not a duration; use a number of "
        "seconds or units ms, s, m, h (e.g. 30s, 1m30s) (see pd-scaler serve --help)\n"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--grpc-port", "http"], "pd-scaler serve: error: argument --grpc-port: 'http' is not a port (0-65535)"),
        (["--log-level", "loud"], "pd-scaler serve: error: argument --log-level: invalid choice: 'loud' (choose from "),
        (["--grcp-port", "9090"], "pd-scaler: error: unrecognized arguments: --grcp-port 9090 (see pd-scaler --help)"),
    ],
    ids=["bad-value", "bad-choice", "unknown-flag"],
)
def test_a_bad_flag_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str], said: str):
    p = Process(tmp_path, *args)
    assert p.proc.wait(10) == 2
    [line] = p.output().splitlines()
    assert line.startswith(said)


@pytest.mark.parametrize("taken", ["grpc", "http"])
def test_a_taken_port_is_one_line_and_exit_code_2(tmp_path: Path, taken: str):
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        p = Process(tmp_path, env={f"PD_SCALER_{taken.upper()}_PORT": str(port)})
        assert p.proc.wait(20) == 2
    what = "gRPC" if taken == "grpc" else "HTTP"
    assert p.output() == f"pd-scaler: {what} port: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_version_is_the_installed_packages() -> None:
    result = subprocess.run([sys.executable, "-m", "scaler", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"pd-scaler {importlib.metadata.version('pd-scaler')}\n"


def test_a_bad_connections_file_is_refused_without_echoing_it(tmp_path: Path):
    bad = tmp_path / "connections.yaml"
    bad.write_text(f"nats:\n  prod:\n    servers: []\n    password: {SECRET}\n")
    p = Process(tmp_path, "--connections", str(bad))
    assert p.proc.wait(10) == 2
    assert p.output() == (
        f"pd-scaler: --connections {bad}: "
        "nats.prod.servers: Tuple should have at least 1 item after validation, not 0\n"
    )


def test_a_profile_url_with_credentials_and_a_bad_port_is_refused_without_echoing_it(tmp_path: Path):
    bad = tmp_path / "connections.yaml"
    bad.write_text(f"prometheus:\n  monitoring:\n    url: http://scaler:{SECRET}@prometheus:badport\n")
    p = Process(tmp_path, "--connections", str(bad))
    assert p.proc.wait(10) == 2
    assert p.output() == (
        f"pd-scaler: --connections {bad}: prometheus.monitoring: url: the port is not a number from 0 to 65535\n"
    )


async def test_connection_profile_credentials_reach_nats_and_nothing_else(tmp_path: Path):
    nats_server = NatsServer(tmp_path, "--user", "prefill-scaler", "--pass", SECRET)
    nats_server.start()
    try:
        import nats

        nc = await nats.connect(nats_server.url, user="prefill-scaler", password=SECRET)
        js = nc.jetstream()
        await make_queue(js)
        await js.publish("dynamo_prefill_queue.queue", b"{}")
        await nc.close()

        token = tmp_path / "token"
        token.write_text(SECRET)
        creds = tmp_path / "nats.creds"
        creds.write_text(f"-----BEGIN NATS USER JWT-----\n{SECRET}\n------END NATS USER JWT------\n")
        profiles = tmp_path / "connections.yaml"
        profiles.write_text(
            f"nats:\n"
            f"  dynamo:\n    servers: [{nats_server.url}]\n    user: prefill-scaler\n    password: {SECRET}\n"
            f"  wrong:\n    servers: [{nats_server.url}]\n    user: prefill-scaler\n    password: not-{SECRET}\n"
            f"  token:\n    servers: [{nats_server.url}]\n    token: {SECRET}\n"
            f"  inurl:\n    servers: ['nats://prefill-scaler:not-{SECRET}@127.0.0.1:{nats_server.port}']\n"
            f"  creds:\n    servers: [{nats_server.url}]\n    credsFile: {creds}\n"
            f"prometheus:\n"
            f"  basic:\n    url: http://127.0.0.1:1\n    basicAuth: {{username: u, password: {SECRET}}}\n"
            f"  bearer:\n    url: http://127.0.0.1:1\n    bearerTokenFile: {token}\n"
            f"  inurl:\n    url: http://scaler:{SECRET}@127.0.0.1:1\n"
        )
        p = Process(tmp_path, "--connections", str(profiles), "--log-level", "debug")
        wait_http(f"http://127.0.0.1:{p.http_port}/readyz")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
                stub = pb_grpc.ExternalScalerStub(channel)

                def ref(profile: str) -> pb.ScaledObjectRef:
                    meta = {"role": "prefill", "natsConnection": profile, "lagThreshold": "5"}
                    return pb.ScaledObjectRef(name=profile, namespace="dynamo", scalerMetadata=meta)

                answer = await stub.GetMetrics(metrics_request(ref("dynamo")))
                assert answer.metricValues[0].metricValueFloat == 1.0

                error = await rpc_error(stub.GetMetrics(metrics_request(ref("wrong"))))
                assert error is not None
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert error.details() == (
                    "nats wrong stream=dynamo_prefill_queue consumer=worker-group: no sample yet; last error: "
                    "nats wrong: cannot connect: nats: 'Authorization Violation'"
                )
                captured = [error.details()]
                for profile in ("token", "inurl", "creds"):
                    error = await rpc_error(stub.GetMetrics(metrics_request(ref(profile))))
                    assert error is not None
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    captured.append(error.details())
                for profile in ("basic", "bearer", "inurl"):
                    meta = {
                        "role": "decode",
                        "prometheusConnection": profile,
                        "podSelector": "app=x",
                        "threshold": "0.8",
                    }
                    ref_decode = pb.ScaledObjectRef(name=profile, namespace="dynamo", scalerMetadata=meta)
                    error = await rpc_error(stub.GetMetrics(metrics_request(ref_decode)))
                    assert error is not None
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    captured.append(error.details())
                captured += [p.http("/metrics")[1], p.http("/status")[1]]
        finally:
            p.proc.send_signal(signal.SIGTERM)
            assert p.proc.wait(10) == 0
        captured.append(p.output())
        assert all(SECRET not in text for text in captured), [t for t in captured if SECRET in t]
        assert "nats connected" in p.output()
    finally:
        nats_server.stop()


def test_make_run_defaults_are_the_documented_ports() -> None:
    from scaler.cli import parser

    args = parser().parse_args(["serve"])
    assert (args.grpc_port, args.http_port, args.refresh_interval, args.log_format) == (9090, 8080, 1.0, "text")


_ = asyncio  # the async tests above run on pytest-asyncio's loop


def test_calls_are_counted_by_method_and_code_and_unary_ones_timed_in_their_buckets() -> None:
    metrics = Metrics()
    for seconds in (0.00005, 0.0001, 0.0003, 3.0):  # 0.1 ms is a bound: it counts in its own bucket
        metrics.observe_call("GetMetrics", "OK", seconds)
    metrics.observe_call("GetMetrics", "UNAVAILABLE", 0.002)
    metrics.observe_stream("StreamIsActive", "CANCELLED", 600.0)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
        if s.name.startswith("pd_scaler_grpc_request")
    }
    requests = {k[1]: v for k, v in samples.items() if k[0] == "pd_scaler_grpc_requests_total"}
    assert requests == {
        (("code", "OK"), ("method", "GetMetrics")): 4,
        (("code", "UNAVAILABLE"), ("method", "GetMetrics")): 1,
        (("code", "CANCELLED"), ("method", "StreamIsActive")): 1,
    }
    buckets = {
        dict(k[1])["le"]: v for k, v in samples.items() if k[0] == "pd_scaler_grpc_request_duration_seconds_bucket"
    }
    assert [buckets[le] for le in ("0.0001", "0.00025", "0.0005", "0.0025", "2.5", "+Inf")] == [2, 2, 3, 4, 4, 5]
    method = (("method", "GetMetrics"),)
    assert samples[("pd_scaler_grpc_request_duration_seconds_count", method)] == 5
    assert samples[("pd_scaler_grpc_request_duration_seconds_sum", method)] == pytest.approx(3.00245)
    assert not [k for k in samples if "StreamIsActive" in str(k) and "duration" in k[0]]  # streams: only counted
