"""Scaling policies under comparison, each as a controller acting on the modelled cluster at simulated time.

- `pd-scaler[:<decode metric>[@<threshold>]]`: the real engine and policy (scaler.engine) through simulated
  sources, behind an emulated KEDA + HPA per role. The prefill trigger is `external-push`.
- `keda-builtin`: the ACK guide's set-up: KEDA's nats-jetstream scaler (lag = pending + ack-pending, lagThreshold
  5) for prefill; KEDA's prometheus scaler for decode on a query summing each decode pod's GPU memory fraction
  (threshold 0.8; its regex on pod names also matches pods being removed).
- `dynamo-load`: Dynamo's load-based planner (REFERENCE §5): ±1 replica per role per adjustment interval.
- `static:PxD`: fixed replicas.
- `oracle`: scaler.simulate.oracle's plan, applied with no start-up delay.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scaler.engine import Engine, Ref
from scaler.errors import ScalerError
from scaler.metrics import Metrics
from scaler.simulate import oracle
from scaler.simulate.autoscaling import SYNC_PERIOD, ScaledObject, ScaledObjectSpec
from scaler.simulate.cluster import DECODE, PREFILL, ROLES, Cluster
from scaler.simulate.exporters import Scraper
from scaler.simulate.sources import NAMESPACE, SimClock, SimSources
from scaler.sources.base import Source
from scaler.triggers import METRICS, parse

POLICIES = ("pd-scaler[:<decode metric>[@<threshold>]]", "keda-builtin", "dynamo-load", "static:PxD", "oracle")
DEFAULT_POLICIES = ("pd-scaler", "pd-scaler:gpu-memory", "keda-builtin", "dynamo-load", "static:2x1", "oracle")

PD_SCALER_PREFILL = {"role": "prefill", "natsServer": "nats://sim:4222", "lagThreshold": "5"}
PD_SCALER_DECODE = {"role": "decode", "prometheusAddress": "http://sim:9090", "threshold": "0.8"}
KEDA_LAG_THRESHOLD = 5.0  # the ACK guide's lagThreshold
KEDA_MEMORY_THRESHOLD = 0.8


@dataclass(frozen=True)
class PlannerSettings:
    """Dynamo's load-based planner (its defaults as in REFERENCE §5)."""

    adjustment_interval: float = 180.0
    sample_interval: float = 10.0
    prefill_queue_up: float = 5.0
    prefill_queue_down: float = 0.2
    decode_kv_up: float = 0.9
    decode_kv_down: float = 0.5
    decode_grace_intervals: int = 3  # no decode removal for this many intervals after adding one
    trend_intervals: int = 3  # prefill is added only if last + this · trend stays above the threshold


@dataclass(frozen=True)
class Settings:
    """Everything about the autoscalers that is not the policy's name."""

    prefill: ScaledObjectSpec = field(default_factory=ScaledObjectSpec)
    decode: ScaledObjectSpec = field(default_factory=ScaledObjectSpec)
    prefill_metadata: Mapping[str, str] = field(default_factory=dict)  # pd-scaler: overrides of its triggers
    decode_metadata: Mapping[str, str] = field(default_factory=dict)
    refresh_interval: float = 1.0  # pd-scaler's --refresh-interval
    kube_refresh_interval: float = 5.0
    hpa_sync: float = SYNC_PERIOD
    planner: PlannerSettings = PlannerSettings()
    oracle_window: float = 15.0
    ttft_slack: float = 1.0
    itl: float = 0.05


@dataclass(frozen=True)
class Policy:
    name: str  # as given
    kind: str  # pd-scaler, keda-builtin, dynamo-load, static, oracle
    decode_metric: str = "kv-cache"  # pd-scaler
    decode_threshold: str | None = None  # pd-scaler: overrides the decode trigger's threshold
    static: tuple[int, int] = (1, 1)


def parse_policy(text: str) -> Policy:
    name = text.strip()
    kind, _, arg = name.partition(":")
    if kind == "pd-scaler":
        metric, at, threshold = arg.partition("@")
        if (metric and metric not in METRICS) or (at and not threshold):
            raise ValueError(
                f"policy {name!r}: write pd-scaler[:<decode metric>[@<threshold>]], metric one of {', '.join(METRICS)}"
            )
        return Policy(name, kind, decode_metric=metric or "kv-cache", decode_threshold=threshold or None)
    if kind == "static":
        match = re.fullmatch(r"(\d+)x(\d+)", arg)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise ValueError(f"policy {name!r}: write static:PxD with P, D >= 1, e.g. static:2x1")
        return Policy(name, kind, static=(int(match[1]), int(match[2])))
    if kind in ("keda-builtin", "dynamo-load", "oracle") and not arg:
        return Policy(name, kind)
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


def pd_scaler_metadata(policy: Policy, settings: Settings) -> dict[str, dict[str, str]]:
    """The two triggers' metadata as in the ScaledObjects, checked by the real schema (InvalidTrigger if wrong)."""
    prefill = {**PD_SCALER_PREFILL, **settings.prefill_metadata}
    metric = settings.decode_metadata.get("metric", policy.decode_metric)
    decode = {**PD_SCALER_DECODE, "metric": metric, **({"engine": "vllm"} if metric == "kv-cache" else {})}
    decode |= settings.decode_metadata
    if policy.decode_threshold is not None:
        decode["threshold"] = policy.decode_threshold
    for metadata in (prefill, decode):
        parse(metadata)
    return {PREFILL: prefill, DECODE: decode}


class Controller:
    """Acts on the cluster at the times it asks for (`next_time`)."""

    next_time: float = float("inf")

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def initial(self) -> tuple[int, int]:
        """Prefill and decode replicas serving when the trace starts."""
        raise NotImplementedError

    async def act(self, now: float) -> None:
        """Called at `next_time`."""

    async def push(self, now: float) -> None:
        """Called when work is queued for a prefill role at zero replicas (if the cluster watches for it)."""

    async def close(self) -> None:
        """Release what the controller opened."""


# -- KEDA + HPA ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    value: float
    target: float
    active: bool


class RoleMetric(Protocol):
    async def measure(self) -> Measurement | None:
        """What the trigger answers now; None when it fails (KEDA shows `<unknown>`, the HPA holds)."""


class EngineMetric:
    """pd-scaler: the engine's decision for one ScaledObject, from the simulated sources."""

    def __init__(self, engine: Engine, ref: Ref) -> None:
        self.engine, self.ref = engine, ref

    async def measure(self) -> Measurement | None:
        try:
            decision = await self.engine.decide(self.ref)
        except ScalerError:
            return None
        return Measurement(decision.value, decision.target, decision.active)


class KedaLagMetric:
    """KEDA's nats-jetstream scaler: it reads /jsz when asked."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def measure(self) -> Measurement | None:
        lag = float(self.cluster.prefill_lag())
        return Measurement(lag, KEDA_LAG_THRESHOLD, lag > 0)


class KedaMemoryMetric:
    """KEDA's prometheus scaler on Σ per-pod GPU memory fraction; an empty result counts as 0 (ignoreNullValues)."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper

    async def measure(self) -> Measurement | None:
        value = sum(s.memory_fraction for s in self.scraper.samples)
        return Measurement(value, KEDA_MEMORY_THRESHOLD, value > 0)


class KedaController(Controller):
    """One KEDA ScaledObject (and its HPA) per role: HPA syncs every `hpa_sync`, KEDA polls every pollingInterval."""

    def __init__(
        self,
        cluster: Cluster,
        metrics: Mapping[str, RoleMetric],
        specs: Mapping[str, ScaledObjectSpec],
        hpa_sync: float,
    ) -> None:
        super().__init__(cluster)
        self.metrics = metrics
        self.specs = specs
        self.hpa_sync = hpa_sync
        self.scaled = {role: ScaledObject(specs[role]) for role in ROLES}
        self._schedule: list[tuple[float, int, str, str]] = []
        for i, role in enumerate(ROLES):
            self._at(hpa_sync, i, role, "sync")
            self._at(specs[role].polling_interval, len(ROLES) + i, role, "poll")
        cluster.watch_empty_prefill = specs[PREFILL].push
        self.next_time = self._schedule[0][0]

    def _at(self, t: float, order: int, role: str, what: str) -> None:
        heapq.heappush(self._schedule, (t, order, role, what))

    def initial(self) -> tuple[int, int]:
        return max(1, self.specs[PREFILL].min_replicas), max(1, self.specs[DECODE].min_replicas)

    async def act(self, now: float) -> None:
        t, order, role, what = heapq.heappop(self._schedule)
        await self._do(now, role, what)
        period = self.hpa_sync if what == "sync" else self.specs[role].polling_interval
        self._at(t + period, order, role, what)
        self.next_time = self._schedule[0][0]

    async def _do(self, now: float, role: str, what: str) -> None:
        measurement = await self.metrics[role].measure()
        replicas = self.cluster.replicas(role)
        scaled = self.scaled[role]
        if what == "sync":
            ready = self.cluster.ready_replicas(role)
            if measurement is None:  # `<unknown>` in the HPA: it holds (the target does not matter then)
                desired = scaled.sync(now, replicas, ready, None, 1.0)
            else:
                desired = scaled.sync(now, replicas, ready, measurement.value, measurement.target)
        else:
            desired = scaled.activity(now, replicas, measurement.active if measurement else None)
        if desired != replicas:
            self.cluster.scale(role, desired)

    async def push(self, now: float) -> None:
        await self._do(now, PREFILL, "poll")


class PdScalerController(KedaController):
    """KEDA + HPA asking the real engine, whose sources are refreshed at their intervals in simulated time."""

    def __init__(self, cluster: Cluster, clock: SimClock, scraper: Scraper, policy: Policy, settings: Settings) -> None:
        metadata = pd_scaler_metadata(policy, settings)
        self.sources = SimSources(
            cluster, scraper, Metrics(), clock, settings.refresh_interval, settings.kube_refresh_interval
        )
        self.engine = Engine(self.sources, self.sources.metrics, first_sample_wait=0.0, clock=clock)
        refs = {role: Ref(NAMESPACE, f"sim-{role}", metadata[role]) for role in ROLES}
        metrics = {role: EngineMetric(self.engine, refs[role]) for role in ROLES}
        specs = {PREFILL: dataclasses.replace(settings.prefill, push=True), DECODE: settings.decode}
        # The sources exist once the engine has been asked about the trigger (GetMetricSpec does that first).
        self._refresh: list[tuple[float, int, Source[Any]]] = []
        for role in ROLES:
            for source in self.engine.evaluator(refs[role]).sources:
                if all(source is not s for _, _, s in self._refresh):
                    self._refresh.append((0.0, len(self._refresh), source))
        heapq.heapify(self._refresh)
        super().__init__(cluster, metrics, specs, settings.hpa_sync)
        self.next_time = 0.0

    async def act(self, now: float) -> None:
        # The sources' background loops, run at simulated time: refresh first, then answer KEDA.
        while self._refresh and self._refresh[0][0] <= now:
            _, order, source = heapq.heappop(self._refresh)
            await source.refresh()
            heapq.heappush(self._refresh, (now + source.interval, order, source))
        if self._schedule[0][0] <= now:
            await super().act(now)
        self.next_time = min(self._schedule[0][0], self._refresh[0][0])

    async def push(self, now: float) -> None:
        # The arrivals subscription wakes the lag source at once (Source.refresh_soon).
        for _, _, source in self._refresh:
            if source.kind == "nats":
                await source.refresh()
        await super().push(now)

    async def close(self) -> None:
        await self.engine.close()


# -- the others ------------------------------------------------------------------------------------------------


class StaticController(Controller):
    def __init__(self, cluster: Cluster, replicas: tuple[int, int]) -> None:
        super().__init__(cluster)
        self.replicas = replicas

    def initial(self) -> tuple[int, int]:
        return self.replicas


class DynamoLoadController(Controller):
    """Every sample interval: prefill queue size and each decode worker's KV-cache fill. Every adjustment
    interval, from their means: remove a prefill worker below the low queue threshold, a decode worker below the
    low KV threshold (not within the grace intervals after adding one); add a prefill worker above the high queue
    threshold if the trend does not bring it back under within `trend_intervals`, a decode worker above the high
    KV threshold. Nothing changes in an interval during which the number of serving workers changed."""

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        super().__init__(cluster)
        self.s = settings.planner
        self.min = {PREFILL: max(1, settings.prefill.min_replicas), DECODE: max(1, settings.decode.min_replicas)}
        self.max = {PREFILL: settings.prefill.max_replicas, DECODE: settings.decode.max_replicas}
        self.next_time = self.s.sample_interval
        self._next_adjustment = self.s.adjustment_interval
        self._queue: list[float] = []
        self._kv: list[float] = []
        self._grace = 0
        self._workers = self._serving()

    def initial(self) -> tuple[int, int]:
        return self.min[PREFILL], self.min[DECODE]

    def _serving(self) -> tuple[int, int]:
        return self.cluster.ready_replicas(PREFILL), self.cluster.ready_replicas(DECODE)

    async def act(self, now: float) -> None:
        cluster = self.cluster
        self._queue.append(float(cluster.prefill_lag()))
        self._kv += [cluster.kv_fill(d) for d in cluster.decode if not d.draining and d.ready_at <= now]
        if now + 1e-9 >= self._next_adjustment:
            if self._serving() == self._workers:
                self._adjust()
            self._queue, self._kv = [], []
            self._workers = self._serving()
            self._next_adjustment += self.s.adjustment_interval
        self.next_time = now + self.s.sample_interval

    def _adjust(self) -> None:
        s, cluster = self.s, self.cluster
        queue = sum(self._queue) / len(self._queue) if self._queue else 0.0
        kv = sum(self._kv) / len(self._kv) if self._kv else 0.0
        prefill, decode = cluster.replicas(PREFILL), cluster.replicas(DECODE)
        if queue < s.prefill_queue_down and prefill > self.min[PREFILL]:
            prefill -= 1
        if kv < s.decode_kv_down and decode > self.min[DECODE] and self._grace == 0:
            decode -= 1
        if queue > s.prefill_queue_up and prefill < self.max[PREFILL]:
            projected = self._queue[-1] + (self._queue[-1] - self._queue[0]) * s.trend_intervals
            if projected > s.prefill_queue_up:
                prefill += 1
        if kv > s.decode_kv_up and decode < self.max[DECODE]:
            decode += 1
            self._grace = s.decode_grace_intervals
        if self._grace:  # as the planner does: an adjustment made counts as the first interval of the grace
            self._grace -= 1
        cluster.scale(PREFILL, prefill)
        cluster.scale(DECODE, decode)


class OracleController(Controller):
    def __init__(self, cluster: Cluster, plan: oracle.Plan) -> None:
        super().__init__(cluster)
        self.plan = plan
        self._window = 0
        self.next_time = plan.window_s if len(plan.prefill) > 1 else float("inf")

    def initial(self) -> tuple[int, int]:
        return self.plan.prefill[0], self.plan.decode[0]

    async def act(self, now: float) -> None:
        self._window += 1
        self.cluster.scale(PREFILL, self.plan.prefill[self._window])
        self.cluster.scale(DECODE, self.plan.decode[self._window])
        more = self._window + 1 < len(self.plan.prefill)
        self.next_time = (self._window + 1) * self.plan.window_s if more else float("inf")
