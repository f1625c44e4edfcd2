"""pd-scaler's own Prometheus metrics, on one registry per process (no globals)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scaler.render import Shared

if TYPE_CHECKING:
    from scaler.sources.base import Source

# Answers take well under a millisecond; the HPA path allows ~3 s in all.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
# KEDA keeps a stream open until the ScaledObject changes or a connection drops: seconds to days.
_STREAM_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0, 7 * 24 * 3600.0)


class _SourceCollector(Collector):
    """Reads the sources' state at scrape time, so ages are current and stopped sources disappear."""

    def __init__(self) -> None:
        self.pools: list[Iterable[Source[Any]]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "pd_scaler_source_sample_age_seconds",
            "Age of the newest sample of a source.",
            labels=["kind", "source"],
        )
        up = GaugeMetricFamily(
            "pd_scaler_source_up", "1 when the source's last refresh succeeded.", labels=["kind", "source"]
        )
        count = GaugeMetricFamily("pd_scaler_sources", "Running sources (background loops).", labels=["kind"])
        per_kind: dict[str, int] = {}
        for pool in self.pools:
            for source in pool:
                sample_age = source.age()
                if sample_age is not None:
                    age.add_metric([source.kind, source.name], sample_age)
                up.add_metric([source.kind, source.name], 1.0 if source.up else 0.0)
                per_kind[source.kind] = per_kind.get(source.kind, 0) + 1
        for kind, n in sorted(per_kind.items()):
            count.add_metric([kind], n)
        yield from (age, up, count)


@dataclass(frozen=True)
class ScaledObjectGauges:
    """One ScaledObject's gauges, looked up once rather than on every answer."""

    value: Gauge
    target: Gauge
    active: Gauge
    unmeasured: Gauge | None  # only for triggers that measure pods (not the JetStream lag nor Dynamo's router)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # What the default registry has: process_* (CPU, memory, file descriptors), python_gc_*, python_info.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        self.grpc_requests = Counter(
            "pd_scaler_grpc_requests",
            "gRPC calls answered, by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.grpc_latency = Histogram(
            "pd_scaler_grpc_request_duration_seconds",
            "Time to answer a gRPC call (streams: to open).",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_stream_duration = Histogram(
            "pd_scaler_grpc_stream_duration_seconds",
            "How long a stream (StreamIsActive, StreamMetricSpec) stayed open, observed when it ends.",
            ["method"],
            buckets=_STREAM_BUCKETS,
            registry=r,
        )
        labels = ["namespace", "scaledobject", "role"]
        self.so_value = Gauge(
            "pd_scaler_scaledobject_metric_value",
            "Last metric value answered (NaN after an error).",
            labels,
            registry=r,
        )
        self.so_target = Gauge("pd_scaler_scaledobject_metric_target", "Per-replica target.", labels, registry=r)
        self.so_active = Gauge("pd_scaler_scaledobject_active", "1 while the role is active.", labels, registry=r)
        self.so_unmeasured = Gauge(
            "pd_scaler_scaledobject_pods_without_series",
            "Pods of the role with no series of the decode signal.",
            labels,
            registry=r,
        )
        self.source_errors = Counter(
            "pd_scaler_source_refresh_errors", "Failed refreshes of a source.", ["kind", "source"], registry=r
        )
        self.source_refreshes = Counter(
            "pd_scaler_source_refreshes",
            "Refreshes of a source (requests to it).",
            ["kind", "source"],
            registry=r,
        )
        self.nats_reconnects = Counter(
            "pd_scaler_nats_reconnects", "Reconnections of a NATS connection.", ["connection"], registry=r
        )
        self._scaledobjects: dict[tuple[str, str, str], ScaledObjectGauges] = {}
        self._calls: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._sources = _SourceCollector()
        r.register(self._sources)
        self._page: Shared[bytes] = Shared()

    async def exposition(self) -> bytes:
        """The /metrics page, rendered in a worker thread; scrapes that overlap share one rendering.
        prometheus_client locks each metric, and collectors must only read (they run in that thread)."""
        return await self._page(generate_latest, self.registry)

    def watch_sources(self, pool: Iterable[Source[Any]]) -> None:
        self._sources.pools.append(pool)

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """Count one answered call and its time to answer."""
        children = self._calls.get((method, code))
        if children is None:
            children = self._calls[(method, code)] = (
                self.grpc_requests.labels(method, code),
                self.grpc_latency.labels(method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_stream(self, method: str, code: str, seconds: float) -> None:
        """Count one ended stream and how long it was open."""
        self.grpc_requests.labels(method, code).inc()
        self.grpc_stream_duration.labels(method).observe(seconds)

    def scaledobject(self, namespace: str, name: str, role: str, reads_pods: bool = False) -> ScaledObjectGauges:
        key = (namespace, name, role)
        gauges = self._scaledobjects.get(key)
        if gauges is None:
            gauges = self._scaledobjects[key] = ScaledObjectGauges(
                self.so_value.labels(*key),
                self.so_target.labels(*key),
                self.so_active.labels(*key),
                self.so_unmeasured.labels(*key) if reads_pods else None,
            )
        return gauges

    def forget_source(self, kind: str, name: str) -> None:
        for counter in (self.source_refreshes, self.source_errors):
            with contextlib.suppress(KeyError):
                counter.remove(kind, name)

    def forget_connection(self, label: str) -> None:
        with contextlib.suppress(KeyError):
            self.nats_reconnects.remove(label)

    def forget_scaledobject(self, namespace: str, name: str, role: str) -> None:
        self._scaledobjects.pop((namespace, name, role), None)
        for gauge in (self.so_value, self.so_target, self.so_active, self.so_unmeasured):
            with contextlib.suppress(KeyError):  # never answered with a value
                gauge.remove(namespace, name, role)
