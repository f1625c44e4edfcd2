"""The production source provider: NATS (JetStream API or /jsz), Prometheus, the role's pods' /metrics, and the
Kubernetes API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from scaler.connections import Connections, NatsProfile, PrometheusProfile
from scaler.kube import RolePods, RoleSource, load_api_client
from scaler.metrics import Metrics
from scaler.sources import bounded
from scaler.sources.base import DEFAULT_MAX_SOURCES, Clock, LagSource, Source, SourcePool
from scaler.sources.jsz import JszSource
from scaler.sources.nats import JetStreamLagSource, NatsConnections
from scaler.sources.pods import PodScrapeSource
from scaler.sources.prometheus import PrometheusSource
from scaler.triggers import MAX_HISTORY_S, PrefillTrigger, TriggerSpec


class LiveSources:
    def __init__(
        self,
        connections: Connections,
        metrics: Metrics,
        refresh_interval: float = 1.0,
        idle_timeout: float = 300.0,
        kubeconfig: Path | None = None,
        kube_refresh_interval: float = 5.0,
        clock: Clock = time.monotonic,
        max_body_bytes: int = bounded.DEFAULT_MAX_BODY_BYTES,
        max_sources: int = DEFAULT_MAX_SOURCES,
    ) -> None:
        self.connections = connections
        self.max_body_bytes = max_body_bytes  # every HTTP answer read from a source
        self.metrics = metrics
        self.refresh_interval = refresh_interval
        self.kubeconfig = kubeconfig
        self.kube_refresh_interval = kube_refresh_interval
        self.clock = clock
        self.pool = SourcePool(metrics, idle_timeout, clock, max_sources=max_sources)
        self.nats = NatsConnections(metrics)
        self._kube: ApiClient | None = None

    def lag_source(self, spec: PrefillTrigger) -> LagSource[Any]:
        if spec.nats_server_monitoring_endpoint is not None:
            url, account = spec.jsz_url, spec.account or "$G"
            return self.pool.get(
                ("jsz", url, account),
                lambda: JszSource(url, account, self.refresh_interval, self.metrics, self.clock, self.max_body_bytes),
            )
        if spec.nats_connection is not None:
            label, profile = spec.nats_connection, self.connections.nats_profile(spec.nats_connection)
            conn_key: object = ("profile", label)
        else:
            assert spec.nats_server is not None  # the schema requires exactly one source
            label, profile, conn_key = ",".join(spec.nats_server), None, ("servers", spec.nats_server)
        servers = spec.nats_server
        source = self.pool.get(
            ("nats", conn_key, spec.stream, spec.consumer, spec.prompt_tokens_field, spec.mean_prompt_tokens),
            lambda: JetStreamLagSource(
                self.nats,
                conn_key,
                label,
                profile or NatsProfile.model_validate({"servers": servers}),
                spec.stream,
                spec.consumer,
                self.refresh_interval,
                self.metrics,
                self.clock,
                spec.prompt_tokens_field,
                spec.mean_prompt_tokens,
                MAX_HISTORY_S,
            ),
        )
        source.reads_backlog |= spec.capacity  # from its next refresh on, which runs after this returns
        return source

    def prometheus_source(self, spec: TriggerSpec, query: str) -> PrometheusSource:
        if spec.prometheus_connection is not None:
            label, profile = spec.prometheus_connection, self.connections.prometheus_profile(spec.prometheus_connection)
        else:
            assert spec.prometheus_address is not None  # the schema requires exactly one source
            label, profile = spec.prometheus_address, None
        return self.pool.get(
            ("prometheus", label, query),
            lambda: PrometheusSource(
                label,
                profile or PrometheusProfile.model_validate({"url": label}),
                query,
                self.refresh_interval,
                self.metrics,
                self.clock,
                self.max_body_bytes,
            ),
        )

    def role_source(self, namespace: str, scaledobject: str, spec: TriggerSpec) -> RoleSource:
        if self._kube is None:
            self._kube = load_api_client(self.kubeconfig)
        api = self._kube
        # ScaledObjects naming the same podSelector share one pod list; otherwise each has its own scale target.
        owner = None if spec.pod_selector is not None else scaledobject
        return self.pool.get(
            ("kubernetes", namespace, owner, spec.pod_selector),
            lambda: RoleSource(
                api, namespace, owner, self.kube_refresh_interval, self.metrics, self.clock,
                pod_selector=spec.pod_selector,
            ),
        )  # fmt: skip

    def scrape_source(self, role: Source[RolePods], spec: TriggerSpec) -> PodScrapeSource:
        # One scraper per pod set (named by its role source) and port/path, whatever reads it.
        port, path = spec.port, spec.metrics_path
        return self.pool.get(
            ("pods", role.name, port, path),
            lambda: PodScrapeSource(
                role, port, path, self.refresh_interval, self.metrics, self.clock,
                role_max_age=max(spec.max_staleness, 3 * role.interval), max_bytes=self.max_body_bytes,
            ),
        )  # fmt: skip

    async def close(self) -> None:
        await self.pool.close()
        if self._kube is not None:
            self._kube.close()  # type: ignore[no-untyped-call]
            self._kube = None
