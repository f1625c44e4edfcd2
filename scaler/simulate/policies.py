"""Scaling policies under comparison, each as a controller acting on the modelled cluster at simulated time.

Policies are named `kind[:arg][+key=value...]` and looked up in a registry other modules add to (`register`):
- `pd-scaler`: the real engine and its capacity policy (scaler.engine, scaler.capacity) through simulated
  sources, behind an emulated KEDA + HPA per role, decode coupled to prefill. The prefill trigger is
  `external-push`. Its knobs come from the deployment (`capacity_metadata`); `+key=value` sets a trigger key.
- `pd-scaler:lag`, `pd-scaler:<decode metric>[@<threshold>]`: the same engine with the threshold policy: prefill
  lag against `lagThreshold` 5, decode `<metric>` (kv-cache by default) against its threshold (`+lagThreshold=10`
  on prefill; decode keys on decode).
- `keda-builtin`: the ACK guide's set-up: KEDA's nats-jetstream scaler (lag = pending + ack-pending, lagThreshold
  5) for prefill; KEDA's prometheus scaler for decode on a query summing each decode pod's GPU memory fraction
  (threshold 0.8; its regex on pod names also matches pods being removed). `+lagThreshold=`, `+threshold=`.
- `dynamo-load`: Dynamo's load-based planner (REFERENCE §5): ±1 replica per role per adjustment interval.
  `+prefill_queue_up=` and the other PlannerSettings fields.
- `static:PxD`: fixed replicas.
- `oracle`: scaler.simulate.oracle's schedule.
Each kind also says which variants a frontier sweeps (its main knob).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from scaler.deployment import DECODE_CONTEXT, Deployment, bundled_deployments, prefill_tokens_per_second, replica
from scaler.engine import Engine, Ref
from scaler.errors import ScalerError
from scaler.metrics import Metrics
from scaler.simulate import oracle
from scaler.simulate.autoscaling import SYNC_PERIOD, ScaledObject, ScaledObjectSpec
from scaler.simulate.cluster import DECODE, PREFILL, ROLES, Cluster
from scaler.simulate.exporters import Scraper
from scaler.simulate.sources import NAMESPACE, SimClock, SimSources
from scaler.simulate.trace import Request
from scaler.sources.base import Source
from scaler.triggers import METRICS, DecodeTrigger, PrefillTrigger, parse

if TYPE_CHECKING:
    from scaler.simulate.simulation import Config

PD_SCALER_PREFILL = {"role": "prefill", "natsServer": "nats://sim:4222", "lagThreshold": "5"}
# With --prefill-metadata metric=engine-queue or prefill-tokens: the engines' or Dynamo's router's counts instead.
PD_SCALER_PREFILL_SIGNAL = {"role": "prefill", "prometheusAddress": "http://sim:9090"}
PD_SCALER_DECODE = {"role": "decode", "prometheusAddress": "http://sim:9090", "threshold": "0.8"}
LAG = "lag"  # pd-scaler:lag, the threshold policy with its default decode metric
CAPACITY_PREFILL = {
    "role": "prefill",
    "natsServer": "nats://sim:4222",
    "policy": "capacity",
    "decodeScaledObject": "sim-decode",
}
CAPACITY_DECODE = {
    "role": "decode",
    "prometheusAddress": "http://sim:9090",
    "policy": "capacity",
    "prefillScaledObject": "sim-prefill",
}
# The profile is read for the capacity knobs at one prefill chunk, and for decode where a trigger's `profile` is.
KEDA_LAG_THRESHOLD = 5.0  # the ACK guide's lagThreshold
KEDA_MEMORY_THRESHOLD = 0.8
# `+key=value` options go to the prefill trigger for keys only it has; keys both have (metric, threshold, ...)
# go to decode, as before prefill had engine metrics (the prefill ones are set with --prefill-metadata).
_PREFILL_KEYS = frozenset(f.alias or n for n, f in PrefillTrigger.model_fields.items()) - frozenset(
    f.alias or n for n, f in DecodeTrigger.model_fields.items()
)
_PREFILL_FIELDS = frozenset(f.alias or n for n, f in PrefillTrigger.model_fields.items())
_DECODE_FIELDS = frozenset(f.alias or n for n, f in DecodeTrigger.model_fields.items())


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

    def describe(self) -> dict[str, Any]:
        """What shaped the run, for the report and the JSON."""

        def spec(s: ScaledObjectSpec) -> dict[str, Any]:
            out = dataclasses.asdict(s)
            out.pop("push")
            return out

        return {
            "prefill": spec(self.prefill),
            "decode": spec(self.decode),
            "prefill_metadata": dict(self.prefill_metadata),
            "decode_metadata": dict(self.decode_metadata),
            "refresh_interval_s": self.refresh_interval,
            "kube_refresh_interval_s": self.kube_refresh_interval,
            "hpa_sync_s": self.hpa_sync,
            "planner": dataclasses.asdict(self.planner),
            "oracle_window_s": self.oracle_window,
        }


@dataclass(frozen=True)
class Policy:
    name: str  # as given
    kind: str  # the registry's key: pd-scaler, keda-builtin, dynamo-load, static, oracle, ...
    arg: str = ""  # after `:`
    options: tuple[tuple[str, str], ...] = ()  # `+key=value`, in order

    @property
    def capacity(self) -> bool:  # pd-scaler
        return not self.arg

    @property
    def decode_metric(self) -> str:  # pd-scaler
        metric = self.arg.partition("@")[0]
        return "kv-cache" if metric in ("", LAG) else metric

    @property
    def decode_threshold(self) -> str | None:  # pd-scaler
        return self.arg.partition("@")[2] or None

    @property
    def static(self) -> tuple[int, int]:
        p, _, d = self.arg.partition("x")
        return int(p), int(d)


@dataclass
class Context:
    """What a controller may use: the cluster it acts on and the world around it."""

    cluster: Cluster
    clock: SimClock
    scraper: Scraper
    settings: Settings
    config: Config
    deployment: Deployment
    requests: Sequence[Request]
    phases: random.Random  # offsets of periodic loops, from the run's seed

    @property
    def init(self) -> tuple[int, int]:
        """The autoscaled policies' replicas at the start (a warm start is resolved before the run)."""
        assert self.config.init is not None, "simulation.warm_start resolves the start"
        return self.config.init


@dataclass(frozen=True)
class PolicyKind:
    """One kind of policy: how its name is checked, the controller that runs it, and what a frontier sweeps."""

    name: str
    usage: str
    controller: Callable[[Policy, Context], Controller]
    check: Callable[[Policy], None] = lambda policy: None  # ValueError naming the problem
    knob: str = ""  # what `sweep` varies
    sweep: Callable[[Settings], Sequence[str]] = lambda settings: ()  # the policies of its frontier


REGISTRY: dict[str, PolicyKind] = {}


def register(kind: PolicyKind) -> None:
    """Add (or replace) a kind of policy: `--policy`, the frontier and the report know it from then on."""
    REGISTRY[kind.name] = kind


def usage() -> list[str]:
    return [k.usage for k in REGISTRY.values()]


def parse_policy(text: str) -> Policy:
    name = text.strip()
    head, *extra = name.split("+")
    kind, _, arg = head.partition(":")
    options = []
    for item in extra:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise ValueError(f"policy {name!r}: write +key=value after the policy")
        options.append((key, value))
    if kind not in REGISTRY:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(usage())}")
    policy = Policy(name, kind, arg, tuple(options))
    REGISTRY[kind].check(policy)
    return policy


def kind_of(policy: Policy) -> PolicyKind:
    return REGISTRY[policy.kind]


def _check_pd_scaler(policy: Policy) -> None:
    metric, at, threshold = policy.arg.partition("@")
    if (metric and metric not in (*METRICS, LAG)) or (at and (not threshold or metric == LAG)):
        raise ValueError(
            f"policy {policy.name!r}: write pd-scaler, pd-scaler:lag or pd-scaler:<decode metric>[@<threshold>],"
            f" metric one of {', '.join(METRICS)}"
        )
    pd_scaler_metadata(policy, Settings())


def _check_static(policy: Policy) -> None:
    match = re.fullmatch(r"(\d+)x(\d+)", policy.arg)
    if not match or int(match[1]) < 1 or int(match[2]) < 1 or policy.options:
        raise ValueError(f"policy {policy.name!r}: write static:PxD with P, D >= 1, e.g. static:2x1")


def _check_plain(policy: Policy) -> None:
    if policy.arg:
        raise ValueError(f"unknown policy {policy.name!r}; known: {', '.join(usage())}")


def _check_keda(policy: Policy) -> None:
    _check_plain(policy)
    _keda_thresholds(policy)


def _check_planner(policy: Policy) -> None:
    _check_plain(policy)
    _planner(policy, PlannerSettings())


def _keda_thresholds(policy: Policy) -> tuple[float, float]:
    values = {"lagThreshold": KEDA_LAG_THRESHOLD, "threshold": KEDA_MEMORY_THRESHOLD}
    for key, value in policy.options:
        if key not in values:
            raise ValueError(f"policy {policy.name!r}: keda-builtin takes +lagThreshold= and +threshold=, not {key!r}")
        values[key] = _positive_number(policy, key, value)
    return values["lagThreshold"], values["threshold"]


def _planner(policy: Policy, base: PlannerSettings) -> PlannerSettings:
    fields = {f.name: f.type for f in dataclasses.fields(PlannerSettings)}
    changes: dict[str, Any] = {}
    for key, value in policy.options:
        if key not in fields:
            raise ValueError(f"policy {policy.name!r}: dynamo-load takes +{'=, +'.join(fields)}=, not {key!r}")
        number = _positive_number(policy, key, value)
        changes[key] = int(number) if fields[key] in (int, "int") else number
    return dataclasses.replace(base, **changes)


def _positive_number(policy: Policy, key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise ValueError(f"policy {policy.name!r}: {key}={value!r} is not a number >= 0")
    return number


def capacity_metadata(deployment: Deployment, settings: Settings) -> dict[str, dict[str, str]]:
    """The capacity triggers' knobs as a user would set them for this deployment: one replica's prefill throughput
    (a full chunk, from its profile), its decode seats within the ITL SLO, the TTFT SLO and the start-up delay
    (the slow end of a drawn range: capacity is sure to serve only that long after it is ordered), and the decode
    replica's profile where the deployment is a bundled one."""
    p = deployment.profile
    startup = f"{deployment.startup.high:g}s"
    return {
        PREFILL: {
            "prefillTokensPerSecond": f"{prefill_tokens_per_second(p):.0f}",
            "ttft": f"{settings.ttft_slack:g}s",
            "startupDelay": startup,
        },
        DECODE: {"seats": str(p.max_batch_within(settings.itl, DECODE_CONTEXT)), "startupDelay": startup}
        # The replica's profile by name, as the README's ScaledObject gives it, where the deployment is a bundled one
        # (its step times slow the batch's growth); a deployment file has no name a trigger may give.
        | ({"profile": deployment.name} if _bundled_replica(deployment) else {}),
    }


def _bundled_replica(deployment: Deployment) -> bool:
    return deployment.name in bundled_deployments() and replica(deployment.name).spec == deployment.profile.spec


def pd_scaler_metadata(
    policy: Policy, settings: Settings, max_num_seqs: int = 256, deployment: Deployment | None = None
) -> dict[str, dict[str, str]]:
    """The two triggers' metadata as in the ScaledObjects, checked by the real schema (InvalidTrigger if wrong).
    `max_num_seqs`: the modelled engine's, which a `seats` trigger repeats as its users would; `deployment`: where
    the capacity policy's knobs come from."""
    if policy.capacity:
        knobs = capacity_metadata(deployment, settings) if deployment else {PREFILL: {}, DECODE: {}}
        prefill = {**CAPACITY_PREFILL, **knobs[PREFILL], **settings.prefill_metadata}
        decode = {**CAPACITY_DECODE, **knobs[DECODE], **settings.decode_metadata}
        for key, value in policy.options:
            if key in _DECODE_FIELDS:
                decode[key] = value
            if key in _PREFILL_FIELDS or key not in _DECODE_FIELDS:  # an unknown key gets the prefill schema's error
                prefill[key] = value
        for metadata in (prefill, decode):
            parse(metadata)
        return {PREFILL: prefill, DECODE: decode}
    queue_lag = settings.prefill_metadata.get("metric", "queue-lag") == "queue-lag"
    prefill = {**(PD_SCALER_PREFILL if queue_lag else PD_SCALER_PREFILL_SIGNAL), **settings.prefill_metadata}
    metric = settings.decode_metadata.get("metric", policy.decode_metric)
    engine = {"engine": "vllm"} if metric in ("kv-cache", "seats") else {}
    seats = {"maxNumSeqs": str(max_num_seqs)} if metric == "seats" else {}
    decode = {**PD_SCALER_DECODE, "metric": metric, **engine, **seats}
    decode |= settings.decode_metadata
    if policy.decode_threshold is not None:
        decode["threshold"] = policy.decode_threshold
    for key, value in policy.options:
        (prefill if key in _PREFILL_KEYS else decode)[key] = value
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

    def __init__(self, cluster: Cluster, threshold: float = KEDA_LAG_THRESHOLD) -> None:
        self.cluster, self.threshold = cluster, threshold

    async def measure(self) -> Measurement | None:
        lag = float(self.cluster.prefill_lag())
        return Measurement(lag, self.threshold, lag > 0)


class KedaMemoryMetric:
    """KEDA's prometheus scaler on Σ per-pod GPU memory fraction; an empty result counts as 0 (ignoreNullValues)."""

    def __init__(self, scraper: Scraper, threshold: float = KEDA_MEMORY_THRESHOLD) -> None:
        self.scraper, self.threshold = scraper, threshold

    async def measure(self) -> Measurement | None:
        value = sum(s.memory_fraction for s in self.scraper.samples)
        return Measurement(value, self.threshold, value > 0)


class KedaController(Controller):
    """One KEDA ScaledObject (and its HPA) per role: HPA syncs every `hpa_sync`, KEDA polls every pollingInterval,
    each loop at its own phase."""

    def __init__(
        self,
        cluster: Cluster,
        metrics: Mapping[str, RoleMetric],
        specs: Mapping[str, ScaledObjectSpec],
        hpa_sync: float,
        init: tuple[int, int],
        phases: random.Random,
    ) -> None:
        super().__init__(cluster)
        self.metrics = metrics
        self.specs = specs
        self.hpa_sync = hpa_sync
        self.init = init
        self.scaled = {role: ScaledObject(specs[role]) for role in ROLES}
        self._schedule: list[tuple[float, int, str, str]] = []
        for i, role in enumerate(ROLES):
            self._at(phases.uniform(0, hpa_sync), i, role, "sync")
            self._at(phases.uniform(0, specs[role].polling_interval), len(ROLES) + i, role, "poll")
        cluster.watch_empty_prefill = specs[PREFILL].push
        self.next_time = self._schedule[0][0]

    def _at(self, t: float, order: int, role: str, what: str) -> None:
        heapq.heappush(self._schedule, (t, order, role, what))

    def initial(self) -> tuple[int, int]:
        return self.init

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


def _keda_builtin(policy: Policy, ctx: Context) -> Controller:
    lag, memory = _keda_thresholds(policy)
    metrics: dict[str, RoleMetric] = {
        PREFILL: KedaLagMetric(ctx.cluster, lag),
        DECODE: KedaMemoryMetric(ctx.scraper, memory),
    }
    specs = {PREFILL: ctx.settings.prefill, DECODE: ctx.settings.decode}
    return KedaController(ctx.cluster, metrics, specs, ctx.settings.hpa_sync, ctx.init, ctx.phases)


class PdScalerController(KedaController):
    """KEDA + HPA asking the real engine, whose sources are refreshed at their intervals in simulated time."""

    def __init__(self, policy: Policy, ctx: Context) -> None:
        cluster, settings = ctx.cluster, ctx.settings
        metadata = pd_scaler_metadata(policy, settings, cluster.profile.max_num_seqs, ctx.deployment)
        self.sources = SimSources(
            cluster, ctx.scraper, Metrics(), ctx.clock, settings.refresh_interval, settings.kube_refresh_interval
        )
        self.engine = Engine(self.sources, self.sources.metrics, first_sample_wait=0.0, clock=ctx.clock)
        refs = {role: Ref(NAMESPACE, f"sim-{role}", metadata[role]) for role in ROLES}
        metrics = {role: EngineMetric(self.engine, refs[role]) for role in ROLES}
        specs = {PREFILL: dataclasses.replace(settings.prefill, push=True), DECODE: settings.decode}
        # The sources exist once the engine has been asked about the trigger (GetMetricSpec does that first). Each
        # refreshes first at its own phase, as the background loops of a process started at any moment would.
        self._refresh: list[tuple[float, int, Source[Any]]] = []
        for role in ROLES:
            for source in self.engine.evaluator(refs[role]).sources:
                if all(source is not s for _, _, s in self._refresh):
                    self._refresh.append((ctx.phases.uniform(0, source.interval), len(self._refresh), source))
        heapq.heapify(self._refresh)
        super().__init__(cluster, metrics, specs, settings.hpa_sync, ctx.init, ctx.phases)
        self.next_time = min(self._schedule[0][0], self._refresh[0][0])

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
    """Fixed replicas, running from the start (a static deployment is simply there)."""

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

    def __init__(
        self,
        cluster: Cluster,
        settings: Settings,
        planner: PlannerSettings | None = None,
        init: tuple[int, int] = (1, 1),
        phase: float = 0.0,
    ) -> None:
        super().__init__(cluster)
        self.s = planner or settings.planner
        self.min = {PREFILL: max(1, settings.prefill.min_replicas), DECODE: max(1, settings.decode.min_replicas)}
        self.max = {PREFILL: settings.prefill.max_replicas, DECODE: settings.decode.max_replicas}
        self.init = init
        self.next_time = phase + self.s.sample_interval
        self._next_adjustment = phase + self.s.adjustment_interval
        self._queue: list[float] = []
        self._kv: list[float] = []
        self._grace = 0
        self._workers = self._serving()

    def initial(self) -> tuple[int, int]:
        return self.init

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
    """Applies the oracle's schedule: replica counts per role at the times it set them."""

    def __init__(self, cluster: Cluster, schedule: oracle.Schedule) -> None:
        super().__init__(cluster)
        self.schedule = schedule
        self._next = 0
        self.next_time = schedule.changes[0][0] if schedule.changes else float("inf")

    def initial(self) -> tuple[int, int]:
        return self.schedule.initial

    async def act(self, now: float) -> None:
        changes = self.schedule.changes
        while self._next < len(changes) and changes[self._next][0] <= now:
            _, role, replicas = changes[self._next]
            self.cluster.scale(role, replicas)
            self._next += 1
        self.next_time = changes[self._next][0] if self._next < len(changes) else float("inf")


# -- the registry ----------------------------------------------------------------------------------------------

LAG_SWEEP = ("2", "5", "10", "20")


TTFT_SWEEP = ("0.5s", "1s", "2s")


def _pd_scaler_sweep(settings: Settings) -> list[str]:
    """The capacity policy's one knob per role besides the SLOs it is judged on: the TTFT SLO it provisions for
    (the default, 1 s, is the judged SLO)."""
    return ["pd-scaler" if ttft == "1s" else f"pd-scaler+ttft={ttft}" for ttft in TTFT_SWEEP]


def _pd_scaler_lag_sweep(settings: Settings) -> list[str]:
    return [f"pd-scaler:lag+lagThreshold={lag}" for lag in LAG_SWEEP] + ["pd-scaler:kv-cache@0.5"]


def _static_sweep(settings: Settings) -> list[str]:
    """A grid spanning each role's replica range: five prefill counts by three decode counts."""
    most_p, most_d = settings.prefill.max_replicas, settings.decode.max_replicas
    prefill = sorted({max(1, round(most_p * f)) for f in (0.2, 0.35, 0.5, 0.7, 1.0)})
    decode = sorted({max(1, round(most_d * f)) for f in (0.15, 0.3, 0.5)})
    return [f"static:{p}x{d}" for p in prefill for d in decode]


def _planner_sweep(settings: Settings) -> list[str]:
    pairs = (("1", "0.6"), ("2.5", "0.75"), ("5", "0.9"), ("10", "0.95"))
    return [f"dynamo-load+prefill_queue_up={q}+decode_kv_up={kv}" for q, kv in pairs]


register(
    PolicyKind(
        "pd-scaler",
        "pd-scaler[:lag|:<decode metric>[@<threshold>]][+<trigger key>=<value>]",
        PdScalerController,
        _check_pd_scaler,
        "capacity policy: the TTFT it provisions for",
        _pd_scaler_sweep,
    )
)
register(
    PolicyKind(
        "pd-scaler:lag",  # the threshold policy's own front; its names are pd-scaler:... policies
        "pd-scaler:lag",
        PdScalerController,
        _check_pd_scaler,
        "threshold policy: prefill lagThreshold; decode kv-cache threshold",
        _pd_scaler_lag_sweep,
    )
)
register(
    PolicyKind(
        "keda-builtin",
        "keda-builtin[+lagThreshold=N][+threshold=X]",
        _keda_builtin,
        _check_keda,
        "lagThreshold",
        lambda settings: [f"keda-builtin+lagThreshold={lag}" for lag in LAG_SWEEP],
    )
)
register(
    PolicyKind(
        "dynamo-load",
        "dynamo-load[+<planner setting>=<value>]",
        lambda policy, ctx: DynamoLoadController(
            ctx.cluster,
            ctx.settings,
            _planner(policy, ctx.settings.planner),
            ctx.init,
            ctx.phases.uniform(0, ctx.settings.planner.sample_interval),
        ),
        _check_planner,
        "prefill queue and decode KV thresholds (scale-up)",
        _planner_sweep,
    )
)
register(
    PolicyKind(
        "static",
        "static:PxD",
        lambda policy, ctx: StaticController(ctx.cluster, policy.static),
        _check_static,
        "the P x D grid",
        _static_sweep,
    )
)


register(
    PolicyKind(
        "oracle",
        "oracle",
        lambda policy, ctx: OracleController(ctx.cluster, oracle.schedule(ctx)),
        _check_plain,
    )
)

DEFAULT_POLICIES = ("pd-scaler", "pd-scaler:lag", "keda-builtin", "dynamo-load", "static:2x1", "oracle")
