"""Which calls this scaler serves, set by its operator: the namespaces (`--namespaces`) and the sources a trigger
may point it at (`--allowed-sources`, `--connections-only`).

The namespace a call names and the addresses in its metadata are the caller's word: without these, anyone who
can reach the gRPC port can have the scaler list pods in any namespace, or connect wherever they like. Pure
functions of the settings and the call; checked before any source is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from scaler.errors import Forbidden, InvalidTrigger
from scaler.triggers import PrefillTrigger, TriggerSpec

_DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "http": 80, "https": 443}
_LISTED = 200  # characters of a flag's value repeated in a message


@dataclass(frozen=True)
class Admission:
    namespaces: frozenset[str] = frozenset()  # empty: every namespace
    allowed_sources: tuple[str, ...] = ()  # shell-style patterns of `scheme://host:port`; empty: any address
    connections_only: bool = False  # only named connection profiles, no address in a trigger

    def check_namespace(self, namespace: str) -> None:
        if self.namespaces and namespace not in self.namespaces:
            shown = namespace if len(namespace) <= 64 else namespace[:63] + "…"
            listed = _listed(sorted(self.namespaces))
            raise Forbidden(f"namespace {shown!r} is not served by this scaler (--namespaces {listed})")

    def check_sources(self, spec: TriggerSpec) -> None:
        for key, address, profile_key in _addresses(spec):
            if self.connections_only:
                alternative = f"; use {profile_key}" if profile_key else ""
                raise InvalidTrigger(
                    f"key {key!r}: this scaler only reaches sources through named connection profiles"
                    f" (--connections-only){alternative}"
                )
            if self.allowed_sources and not any(fnmatchcase(address, p) for p in self.allowed_sources):
                listed = _listed(self.allowed_sources)
                raise InvalidTrigger(f"key {key!r}: {address} is not an allowed source (--allowed-sources {listed})")


def origin(url: str) -> str:
    """`scheme://host:port` of a URL the trigger schema has accepted: lower case, the port always written."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{parts.scheme.lower()}://{host}:{port}"


def _addresses(spec: TriggerSpec) -> Iterator[tuple[str, str, str | None]]:
    """(metadata key, origin, the profile key to use instead) for each address the trigger names."""
    if isinstance(spec, PrefillTrigger):
        for server in spec.nats_server or ():
            yield "natsServer", origin(server), "natsConnection"
        if spec.nats_server_monitoring_endpoint is not None:
            yield "natsServerMonitoringEndpoint", origin(spec.jsz_url), None
    if spec.prometheus_address is not None:  # decode, and prefill on engine or router metrics
        yield "prometheusAddress", origin(spec.prometheus_address), "prometheusConnection"


def _listed(values: tuple[str, ...] | list[str]) -> str:
    text = ",".join(values)
    return text if len(text) <= _LISTED else text[: _LISTED - 1] + "…"
