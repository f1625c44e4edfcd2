"""pd-scaler's own Prometheus metrics, on one registry per process (no globals)."""

from __future__ import annotations

import bisect
import contextlib
import itertools
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _CallCollector(Collector):
    """gRPC calls by method and code, and unary calls' time to answer. Every call of KEDA's goes through here,
    so it is tallied in plain numbers (no lock, no child lookup: two list updates) and turned into
    pd_scaler_grpc_requests_total and the pd_scaler_grpc_request_duration_seconds histogram when scraped.
    Methods and codes are gRPC's and ours: a bounded set of keys."""

    def __init__(self) -> None:
        # (method, code) -> [sum of seconds, count per latency bucket..., count over the last bound]
        self._unary: dict[tuple[str, str], list[float]] = {}
        self._streams: dict[tuple[str, str], int] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        row = self._unary.get((method, code))
        if row is None:
            row = self._unary[(method, code)] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        row[0] += seconds
        row[bisect.bisect_left(_LATENCY_BUCKETS, seconds) + 1] += 1  # le: a time equal to a bound is in its bucket

    def count_stream(self, method: str, code: str) -> None:
        self._streams[(method, code)] = self._streams.get((method, code), 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        # Runs in the scrape's worker thread: each copy below is one step under the GIL, and a histogram's count
        # is the sum of its own buckets' copy, so the two always agree.
        unary = [(key, row.copy()) for key, row in list(self._unary.items())]
        requests = CounterMetricFamily(
            "pd_scaler_grpc_requests", "gRPC calls answered, by method and status code.", labels=["method", "code"]
        )
        for (method, code), row in unary:
            requests.add_metric([method, code], sum(row[1:]))
        for (method, code), n in list(self._streams.items()):
            requests.add_metric([method, code], n)
        latency = HistogramMetricFamily(
            "pd_scaler_grpc_request_duration_seconds",
            "Time to answer a gRPC call (unary calls; streams are timed when they end).",
            labels=["method"],
        )
        per_method: dict[str, list[float]] = {}
        for (method, _), row in unary:
            total = per_method.setdefault(method, [0.0] * len(row))
            for i, x in enumerate(row):
                total[i] += x
        bounds = [*(floatToGoString(b) for b in _LATENCY_BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]
        for method, row in sorted(per_method.items()):
            cumulative = list(itertools.accumulate(row[1:]))
            latency.add_metric([method], list(zip(bounds, cumulative, strict=True)), sum_value=row[0])
        yield requests
        yield latency


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
        self._calls = _CallCollector()
        r.register(self._calls)
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
        self._calls.observe(method, code, seconds)

    def observe_stream(self, method: str, code: str, seconds: float) -> None:
        """Count one ended stream and how long it was open."""
        self._calls.count_stream(method, code)
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
