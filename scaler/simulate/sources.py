"""Simulated sources: the engine's `SourceProvider`, answering from the modelled cluster at simulated time.

The engine, policy and signal code are the production ones; only `fetch()` differs: the prefill consumer's lag is
the model's queue, Prometheus answers with the series the exporters would have had at the last scrape (shaped as
Prometheus returns them), and the role's pods are the modelled replicas of the role not being removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scaler import signals
from scaler.errors import InvalidTrigger
from scaler.kube import RolePods, RolePodsSource
from scaler.metrics import Metrics
from scaler.observations import ConsumerLag, PrefillHistory
from scaler.profile import Profile
from scaler.simulate import exporters
from scaler.simulate.cluster import Cluster
from scaler.simulate.exporters import RUNNING, WAITING, Scraper
from scaler.sources.base import LagSource, Source, SourcePool
from scaler.sources.history import QueueHistory
from scaler.sources.pods import PodScrapeSource
from scaler.triggers import ENGINES, MAX_HISTORY_S, METRICS, PrefillTrigger, TriggerSpec

NAMESPACE = "sim"
# The engine signals the modelled engines export (vLLM V1; Dynamo's frontend), besides every decode fraction.
SIGNALS = (("decode", "seats", "vllm"), ("prefill", "engine-queue", "vllm"), ("prefill", "prefill-tokens", "dynamo"))
ACTIVE_TOKENS, PENDING_TOKENS = signals.signal("prefill", "prefill-tokens", "dynamo").names


class SimClock:
    """Simulated time, as the engine's and the sources' clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimLagSource(LagSource[ConsumerLag]):
    """The consumer's lag, and the queue history the arrivals subscription keeps (each request's prompt tokens, as
    `prompt_token_ids` carries them)."""

    kind = "nats"

    def __init__(
        self, cluster: Cluster, name: str, interval: float, metrics: Metrics, clock: SimClock, mean_prompt: float
    ) -> None:
        super().__init__(name, interval, metrics, clock)
        self.cluster = cluster
        self.queue = QueueHistory(MAX_HISTORY_S, mean_prompt)
        self._seen = 0  # published requests counted so far

    async def fetch(self) -> ConsumerLag:
        # The arrivals subscription hears a request when a decode worker publishes it to the queue (on admitting
        # it), not when it reached the frontend: one held at a full decode engine has not arrived here yet.
        published, now = self.cluster.published, self.clock()
        while self._seen < len(published):
            self.queue.arrival(published[self._seen].prompt)
            self._seen += 1
        # Workers ack on receipt, so nothing stays delivered-but-unacknowledged.
        lag = ConsumerLag(pending=self.cluster.prefill_lag(), ack_pending=0)
        self.queue.record(now, lag.total, waiting=lag.pending)
        return lag

    def lag(self, stream: str, consumer: str, max_age: float) -> ConsumerLag:
        return self.read(max_age)

    def history(self, stream: str, consumer: str, max_age: float) -> PrefillHistory:
        self.read(max_age)
        return self.queue.snapshot()


class SimPrometheusSource(Source[tuple[signals.Series, ...]]):
    kind = "prometheus"

    def __init__(self, scraper: Scraper, query: str, interval: float, metrics: Metrics, clock: SimClock) -> None:
        super().__init__(f"prometheus sim {query}", interval, metrics, clock)
        self.scraper = scraper
        self._series = _series_for(query, scraper.cluster.profile)

    async def fetch(self) -> tuple[signals.Series, ...]:
        return self._series(self.scraper)


def _labels(pod: str, name: str, gpu: int | None = None) -> dict[str, str]:
    out = {"__name__": name, "pod": pod, "namespace": NAMESPACE}
    if gpu is not None:
        out |= {"gpu": str(gpu), "UUID": f"GPU-{pod}-{gpu}"}
    return out


def engine_series(scraper: Scraper, name: str) -> tuple[signals.Series, ...]:
    """One vLLM V1 series (exporters.VLLM: kv_cache_usage_perc, num_requests_running, num_requests_waiting,
    num_preemptions) per engine that is up, as Prometheus returns it after the last scrape."""
    return tuple(signals.Series(_labels(pod, name), value) for pod, value in scraper.vllm_series(name))


def _series_for(query: str, profile: Profile) -> Callable[[Scraper], tuple[signals.Series, ...]]:
    """How to answer `query` from the last scrape: the same series a real Prometheus would return for it."""
    loads = signals.union_query(
        (signals.signal("decode", "seats", "vllm"), signals.signal("decode", "kv-cache", "vllm"))
    )
    if query == loads:  # the capacity policy's decode load: sequences held and KV-cache fill
        names = (exporters.RUNNING, exporters.WAITING, exporters.KV_CACHE_USAGE)
        return lambda scraper: tuple(s for name in names for s in engine_series(scraper, name))
    kinds = {
        signals.query(metric, engine): (metric, engine) for metric in METRICS if metric != "seats" for engine in ENGINES
    }
    for role, metric, engine in SIGNALS:
        kinds[signals.signal(role, metric, engine).query()] = (metric, engine)
    if query not in kinds:
        raise ValueError(f"the simulator has no exporter for the query {query!r}")
    metric, engine = kinds[query]
    fb_mib, gpus, tp = profile.spec.gpu_memory_gib * 1024, profile.gpus, profile.tp

    def memory(scraper: Scraper) -> tuple[signals.Series, ...]:
        out = []
        for s in scraper.samples:
            for gpu in range(gpus):  # the GPUs past the engine's are requested and idle
                used = s.engine_memory_fraction * fb_mib if gpu < tp else 0.0
                out.append(signals.Series(_labels(s.pod, signals.FB_USED, gpu), used))
                out.append(signals.Series(_labels(s.pod, signals.FB_FREE, gpu), fb_mib - used))
                out.append(signals.Series(_labels(s.pod, signals.FB_RESERVED, gpu), 0.0))
        return tuple(out)

    def util(scraper: Scraper) -> tuple[signals.Series, ...]:
        return tuple(
            signals.Series(_labels(s.pod, signals.GPU_UTIL, gpu), s.gpu_util if gpu < tp else 0.0)
            for s in scraper.samples
            for gpu in range(gpus)
        )

    name = signals.KV_CACHE_NAMES[engine][0]

    def kv_cache(scraper: Scraper) -> tuple[signals.Series, ...]:
        return tuple(signals.Series(_labels(s.pod, name), s.kv_fill) for s in scraper.samples if s.ready)

    def seats(scraper: Scraper) -> tuple[signals.Series, ...]:
        return engine_series(scraper, RUNNING) + engine_series(scraper, WAITING)

    def engine_queue(scraper: Scraper) -> tuple[signals.Series, ...]:
        return tuple(signals.Series(_labels(pod, WAITING), n) for pod, n in scraper.prefill_waiting())

    def prefill_tokens(scraper: Scraper) -> tuple[signals.Series, ...]:
        frontend = {"pod": "sim-frontend-0", "namespace": NAMESPACE, "dynamo_namespace": NAMESPACE}
        pending = {**frontend, "__name__": PENDING_TOKENS, "worker_type": "prefill"}
        active = [
            {**frontend, "__name__": ACTIVE_TOKENS, "worker_type": "prefill", "worker_id": pod, "dp_rank": "0"}
            for pod, _ in scraper.prefill.active
        ]
        return (
            signals.Series(pending, float(sum(scraper.prefill.waiting))),
            *(signals.Series(labels, float(t)) for labels, (_, t) in zip(active, scraper.prefill.active, strict=True)),
        )

    series = {"gpu-memory": memory, "gpu-util": util, "kv-cache": kv_cache, "seats": seats}
    return {**series, "engine-queue": engine_queue, "prefill-tokens": prefill_tokens}[metric]


class SimRoleSource(RolePodsSource):
    kind = "kubernetes"

    def __init__(
        self, cluster: Cluster, scaledobject: str, role: str, interval: float, metrics: Metrics, clock: SimClock
    ) -> None:
        super().__init__(f"kubernetes sim scaledobject {NAMESPACE}/{scaledobject}", interval, metrics, clock)
        self.cluster = cluster
        self.scaledobject = scaledobject
        self.role = role

    async def fetch(self) -> RolePods:
        pool = self.cluster.prefill if self.role == "prefill" else self.cluster.decode
        live = sorted((r for r in pool if not r.draining), key=lambda r: r.name)
        pods = tuple(r.name for r in live)
        return RolePods(
            namespace=NAMESPACE,
            scaledobject=self.scaledobject,
            adapter=f"sim-{self.role}",
            rolebasedgroup="sim",
            role=self.role,
            phase="Bound",
            replicas=len(pods),
            selector=f"rbg.workloads.x-k8s.io/role-name={self.role}",
            pods=pods,
            ready=tuple(r.name for r in live if r.ready_at <= self.clock()),
        )


class SimSources:
    """The engine's SourceProvider over the modelled cluster. No background loops: the simulation refreshes
    each source at its interval in simulated time, as the loop would have."""

    def __init__(
        self,
        cluster: Cluster,
        scraper: Scraper,
        metrics: Metrics,
        clock: SimClock,
        refresh_interval: float = 1.0,
        kube_refresh_interval: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.scraper = scraper
        self.metrics = metrics
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.kube_refresh_interval = kube_refresh_interval
        self.pool = SourcePool(metrics, idle_timeout=math.inf, clock=clock, background=False)

    def lag_source(self, spec: PrefillTrigger) -> SimLagSource:
        name = f"nats sim {spec.stream}/{spec.consumer}"
        return self.pool.get(
            ("nats", spec.stream, spec.consumer),
            lambda: SimLagSource(
                self.cluster, name, self.refresh_interval, self.metrics, self.clock, spec.mean_prompt_tokens
            ),
        )

    def prometheus_source(self, spec: TriggerSpec, query: str) -> SimPrometheusSource:
        return self.pool.get(
            ("prometheus", query),
            lambda: SimPrometheusSource(self.scraper, query, self.refresh_interval, self.metrics, self.clock),
        )

    def role_source(self, namespace: str, scaledobject: str, spec: TriggerSpec) -> SimRoleSource:
        return self.pool.get(
            ("kubernetes", namespace, scaledobject),
            lambda: SimRoleSource(
                self.cluster, scaledobject, spec.role, self.kube_refresh_interval, self.metrics, self.clock
            ),
        )

    def scrape_source(self, role: Source[RolePods], spec: TriggerSpec) -> PodScrapeSource:
        raise InvalidTrigger("the simulator answers as Prometheus does: leave scrape at its default")

    async def close(self) -> None:
        await self.pool.close()
