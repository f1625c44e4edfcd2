"""`pd-scaler` command line. Every flag can also be set by the env var PD_SCALER_<FLAG> (e.g. PD_SCALER_GRPC_PORT)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from scaler import check, demo, explain, logs
from scaler.admission import Admission
from scaler.connections import Connections
from scaler.durations import duration_arg
from scaler.engine import DEFAULT_MAX_SCALEDOBJECTS
from scaler.http_listener import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from scaler.server import CannotListen, Settings, serve
from scaler.simulate import cli as simulate_cli
from scaler.sources.base import DEFAULT_MAX_SOURCES
from scaler.sources.bounded import DEFAULT_MAX_BODY_BYTES

ENV_PREFIX = "PD_SCALER_"


def _positive_duration(text: str) -> float:
    seconds = duration_arg(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return seconds


_BYTE_UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _byte_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*(Ki|Mi|Gi|)\s*", text)
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of bytes above 0, e.g. 16Mi, 512Ki or 1048576")
    return int(match[1]) * _BYTE_UNITS[match[2]]


def _bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected true or false")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number above 0")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _EnvDefaults:
    """Adds flags whose default comes from PD_SCALER_<FLAG> when set, and says so in --help."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add(self, flag: str, default: Any, help: str, type: Callable[[str], Any] = str, **kw: Any) -> None:
        env = ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")
        raw = os.environ.get(env)
        if raw is not None:
            try:
                default = type(raw)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                self.parser.error(f"{env}={raw!r}: {exc}")
        if kw.get("action") != "store_const":  # a bare switch takes no value, so no type
            kw["type"] = type
        self.parser.add_argument(flag, default=default, help=f"{help} (env {env}; default %(default)s)", **kw)


def _admission_flags(flags: _EnvDefaults, bare_switch: bool = False) -> None:
    """What a scaler admits: `serve` enforces it, `check` reports what it would refuse. `bare_switch`: the
    on/off flag takes no value (before positional arguments, a value would swallow the first of them)."""
    flags.add(
        "--namespaces",
        (),
        "serve ScaledObjects in these namespaces only, comma-separated (default: every namespace)",
        type=_names,
    )
    flags.add(
        "--allowed-sources",
        (),
        "addresses a trigger may name, as scheme://host:port patterns with * and ?, comma-separated "
        "(e.g. 'nats://*.svc.cluster.local:4222'; default: any)",
        type=_names,
    )
    flags.add(
        "--connections-only",
        False,
        "accept only named connection profiles (natsConnection, prometheusConnection), no address in a trigger",
        type=_bool,
        **({"action": "store_const", "const": True} if bare_switch else {"nargs": "?", "const": True}),
    )


def admission(args: argparse.Namespace) -> Admission:
    return Admission(
        namespaces=frozenset(args.namespaces),
        allowed_sources=args.allowed_sources,
        connections_only=args.connections_only,
    )


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="pd-scaler", description="KEDA external scaler for prefill/decode LLM serving.")
    top.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('pd-scaler')}")
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", top.add_subparsers(dest="command", required=True)
    )
    serve_cmd = commands.add_parser("serve", help="serve KEDA's ExternalScaler gRPC API")
    flags = _EnvDefaults(serve_cmd)
    flags.add("--bind-address", "0.0.0.0", "address the gRPC and HTTP servers listen on")
    flags.add("--grpc-port", 9090, "gRPC port (ExternalScaler, health, reflection)", type=_port)
    flags.add("--http-port", 8080, "HTTP port (/metrics, /healthz, /readyz, /status)", type=_port)
    flags.add(
        "--http-header-timeout",
        DEFAULT_HEADER_TIMEOUT,
        "close an HTTP connection whose request headers take longer, or that is idle this long",
        type=_positive_duration,
    )
    flags.add(
        "--http-max-connections",
        DEFAULT_MAX_CONNECTIONS,
        "open HTTP connections at most; a new one evicts the oldest idle one",
        type=_positive_int,
    )
    flags.add(
        "--http-local-only",
        False,
        "answer /metrics, /status and every page but the probes only on localhost (kubectl port-forward)",
        type=_bool,
        nargs="?",
        const=True,
    )
    _admission_flags(flags)
    flags.add("--refresh-interval", 1.0, "how often each source refreshes, e.g. 1s", type=_positive_duration)
    flags.add(
        "--source-idle-timeout",
        300.0,
        "stop a source nobody asked about for this long",
        type=_positive_duration,
    )
    flags.add("--connections", None, "YAML file of connection profiles (servers and credentials)", type=Path)
    flags.add(
        "--kubeconfig",
        None,
        "kubeconfig for role discovery: decode, and prefill with refineCapacity (default: the in-cluster config)",
        type=Path,
    )
    flags.add(
        "--kube-refresh-interval",
        5.0,
        "how often a role's pods are re-listed (decode; prefill with refineCapacity)",
        type=_positive_duration,
    )
    flags.add("--tls-cert", None, "PEM certificate for gRPC TLS (with --tls-key)", type=Path)
    flags.add("--tls-key", None, "PEM private key for gRPC TLS", type=Path)
    flags.add("--tls-client-ca", None, "PEM CA: require client certificates signed by it (mutual TLS)", type=Path)
    flags.add(
        "--max-source-body-bytes",
        DEFAULT_MAX_BODY_BYTES,
        "largest HTTP answer read from a source (Prometheus, NATS /jsz), e.g. 16Mi",
        type=_byte_size,
    )
    flags.add(
        "--max-sources",
        DEFAULT_MAX_SOURCES,
        "live sources at most (one per distinct server, stream, query or pod list); past it RESOURCE_EXHAUSTED",
        type=_positive_int,
    )
    flags.add(
        "--max-scaledobjects",
        DEFAULT_MAX_SCALEDOBJECTS,
        "ScaledObjects (and trigger variants) kept in memory and in /metrics; the least recently asked go first",
        type=_positive_int,
    )
    flags.add("--shutdown-grace", 5.0, "on SIGTERM, how long in-flight calls may take", type=duration_arg)
    flags.add("--log-format", "text", "log line format", choices=("text", "json"))
    flags.add("--log-level", "info", "log level", choices=("debug", "info", "warning", "error"))
    _admission_flags(_EnvDefaults(check.add_parser(commands)), bare_switch=True)
    _EnvDefaults(explain.add_parser(commands)).add(
        "--url", "http://127.0.0.1:8080", "the running pd-scaler's HTTP address (its --http-port)"
    )
    demo.add_parser(commands, _port)
    simulate_cli.add_parser(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "check":
        return check.run(args, admission(args))
    if args.command == "explain":
        return explain.run(args)
    if args.command == "simulate":
        return simulate_cli.run(args)
    if args.command == "demo":
        return demo.run(args)
    logs.configure(args.log_format, args.log_level)
    try:
        connections = Connections.load(args.connections)
    except ValueError as exc:
        print(f"pd-scaler: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        bind_address=args.bind_address,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        refresh_interval=args.refresh_interval,
        source_idle_timeout=args.source_idle_timeout,
        connections=connections,
        shutdown_grace=args.shutdown_grace,
        kubeconfig=args.kubeconfig,
        kube_refresh_interval=args.kube_refresh_interval,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        max_source_body_bytes=args.max_source_body_bytes,
        http_header_timeout=args.http_header_timeout,
        http_max_connections=args.http_max_connections,
        max_sources=args.max_sources,
        max_scaledobjects=args.max_scaledobjects,
        http_local_only=args.http_local_only,
        admission=admission(args),
    )
    try:
        settings.grpc_credentials()  # refuse a half-configured or unreadable TLS set-up before serving
    except (ValueError, OSError) as exc:
        print(f"pd-scaler: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(settings))
    except CannotListen as exc:
        print(f"pd-scaler: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
