"""Process wiring: the gRPC server (scaler, health, reflection), the HTTP server, and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import _async as health_aio  # health.aio, typed
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scaler import http
from scaler.admission import Admission
from scaler.connections import Connections
from scaler.engine import DEFAULT_MAX_SCALEDOBJECTS, Engine
from scaler.http_listener import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, PROBES, HttpListener
from scaler.metrics import Metrics
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service import ExternalScaler
from scaler.sources.base import DEFAULT_MAX_SOURCES
from scaler.sources.bounded import DEFAULT_MAX_BODY_BYTES
from scaler.sources.live import LiveSources

log = logging.getLogger("pd_scaler.server")

SERVICE = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
# The largest request gRPC accepts (its default is 4 MB). A ScaledObjectRef within the metadata limits
# (scaler.triggers.MAX_KEYS keys of MAX_KEY_LENGTH + MAX_VALUE_LENGTH ASCII characters) fits; anything larger is
# refused by gRPC with RESOURCE_EXHAUSTED before Python decodes a byte of it.
MAX_REQUEST_BYTES = 256 * 1024


@dataclass(frozen=True)
class Settings:
    bind_address: str = "0.0.0.0"
    grpc_port: int = 9090
    http_port: int = 8080
    refresh_interval: float = 1.0
    source_idle_timeout: float = 300.0
    connections: Connections = field(default_factory=Connections)
    shutdown_grace: float = 5.0
    kubeconfig: Path | None = None
    kube_refresh_interval: float = 5.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: mutual TLS, clients need a certificate signed by this CA
    max_source_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    http_header_timeout: float = DEFAULT_HEADER_TIMEOUT
    http_max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_sources: int = DEFAULT_MAX_SOURCES
    max_scaledobjects: int = DEFAULT_MAX_SCALEDOBJECTS
    http_local_only: bool = False  # /metrics, /status and any page but the probes answer only loopback clients
    admission: Admission = field(default_factory=Admission)  # --namespaces, --allowed-sources, --connections-only

    def grpc_credentials(self) -> grpc.ServerCredentials | None:
        """TLS for the gRPC port (KEDA: enableTLS with a TriggerAuthentication), or None for plaintext."""
        if self.tls_cert is None and self.tls_key is None:
            if self.tls_client_ca is not None:
                raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if self.tls_cert is None or self.tls_key is None:
            raise ValueError("--tls-cert and --tls-key go together")
        ca = self.tls_client_ca.read_bytes() if self.tls_client_ca else None
        return grpc.ssl_server_credentials(
            [(self.tls_key.read_bytes(), self.tls_cert.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


class CannotListen(Exception):
    """A port the scaler is told to listen on is taken or not allowed: it cannot serve."""


def _refuse_taken(host: str, port: int, what: str) -> None:
    """CannotListen with the reason, before gRPC tries: gRPC reports a taken port as a bare "Failed to bind"
    and logs its own lines to stderr."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
            probe.bind(address)
    except OSError as exc:
        raise CannotListen(f"{what} port: cannot listen on {host}:{port}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    """The system's words for an error (aiohttp wraps them in its own sentence; name lookups have no errno)."""
    return (os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)).lower()


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        sources = LiveSources(
            settings.connections,
            self.metrics,
            refresh_interval=settings.refresh_interval,
            idle_timeout=settings.source_idle_timeout,
            kubeconfig=settings.kubeconfig,
            kube_refresh_interval=settings.kube_refresh_interval,
            max_body_bytes=settings.max_source_body_bytes,
            max_sources=settings.max_sources,
        )
        self.engine = Engine(
            sources, self.metrics, admission=settings.admission, max_scaledobjects=settings.max_scaledobjects
        )
        self.service = ExternalScaler(self.engine, self.metrics)
        self.health = health_aio.HealthServicer()
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                ("grpc.so_reuseport", 0),  # a second scaler on a taken port must fail, not silently share it
            ]
        )
        self.grpc_port = 0
        self.http_port = 0
        self._ready = False
        self._http: HttpListener | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        pb_grpc.add_ExternalScalerServicer_to_server(self.service, self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc)
        address = f"{s.bind_address}:{s.grpc_port}"
        credentials = s.grpc_credentials()
        _refuse_taken(s.bind_address, s.grpc_port, "gRPC")
        try:
            if credentials is None:
                self.grpc_port = self.grpc.add_insecure_port(address)
            else:
                self.grpc_port = self.grpc.add_secure_port(address, credentials)
        except RuntimeError:  # grpc says only "Failed to bind"
            raise CannotListen(f"gRPC port: cannot listen on {address} (in use, or not allowed)") from None
        await self.grpc.start()
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

        self._http = HttpListener(
            http.app(self.engine, self.metrics, lambda: self._ready),
            max_connections=s.http_max_connections,
            header_timeout=s.http_header_timeout,
            public_paths=PROBES if s.http_local_only else None,
        )
        try:
            await self._http.start(s.bind_address, s.http_port)
        except OSError as exc:
            await self._http.stop()
            await self.grpc.stop(None)
            raise CannotListen(f"HTTP port: cannot listen on {s.bind_address}:{s.http_port}: {_reason(exc)}") from None
        self.http_port = self._http.port
        self._housekeeping = asyncio.create_task(self.engine.run(), name="housekeeping")
        self._ready = True
        tls = "mutual" if s.tls_client_ca else "server" if s.tls_cert else "off"
        log.info("serving", extra={"fields": {"grpc_port": self.grpc_port, "http_port": self.http_port, "tls": tls}})

    async def stop(self) -> None:
        """Stop taking calls, end streams, let in-flight calls finish (bounded), release sources."""
        self._ready = False
        await self.health.enter_graceful_shutdown()
        if self._housekeeping:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        stopping = asyncio.create_task(self.grpc.stop(self.settings.shutdown_grace))
        await self.engine.close()  # ends open StreamIsActive calls
        await stopping
        if self._http:
            await self._http.stop()
        log.info("stopped")


async def serve(settings: Settings) -> int:
    server = Server(settings)
    await server.start()
    # What exists now (modules, schemas, the clients' classes: most of the heap) lives as long as the process:
    # frozen, the collector's full passes, which stop the loop, no longer walk it.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    # A call still open at the stop ends on grpc's side once the core has cancelled it, just after stop returns:
    # let those tasks end (bounded by the grace) before asyncio.run cancels what is left, which grpc would log as
    # an error of the call's servicer method.
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=settings.shutdown_grace)
    return 0
