"""The engine: for each call, the trigger's spec, its shared sources, and the policy's decision.

No network I/O happens here: sources refresh in the background and the engine reads their latest samples.
It also remembers what each ScaledObject was answered: for its series in /metrics (set when they change), its
/status entry, the latest target (GetMetricSpec, StreamMetricSpec) and its activity (flips are logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import grpc

from scaler import capacity, deployment, signals
from scaler.admission import Admission
from scaler.errors import ScalerError
from scaler.kube import RolePods, RolePodsSource, check_bound
from scaler.logs import Once
from scaler.metrics import Metrics
from scaler.observations import Decision, DecodeLoad, PrefillHistory, RoleLoads, RoleSignal
from scaler.policy import NO_SERIES, decide_prefill, decide_signal
from scaler.sources.base import Clock, LagSource, Source, SourcePool
from scaler.sources.pods import PodScrape, PodScrapeSource
from scaler.status import StatusBoard
from scaler.targets import Targets
from scaler.triggers import KEDA_KEYS, DecodeTrigger, PrefillTrigger, TriggerSpec, parse

log = logging.getLogger("pd_scaler.engine")

EvaluatorKey = tuple[str, str, frozenset[tuple[str, str]]]
SeriesKey = tuple[str, str, str]  # namespace, ScaledObject, role: the labels of its series in /metrics

# ScaledObjects (and trigger variants) kept: evaluators, activity and per-ScaledObject series. More still work;
# the least recently asked are forgotten and rebuilt when asked again.
DEFAULT_MAX_SCALEDOBJECTS = 5000
_FAILED = object()  # the last answer was an error: the value gauge says NaN
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Ref:
    """Which ScaledObject asks, and its trigger's metadata."""

    namespace: str
    name: str
    metadata: Mapping[str, str]
    # What identifies its evaluator. KEDA's own keys (scalerAddress, enableTLS, …) do not change the trigger.
    key: EvaluatorKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = self.metadata.items()
        if not KEDA_KEYS.isdisjoint(self.metadata):
            items = {(k, v) for k, v in items if k not in KEDA_KEYS}  # type: ignore[assignment]
        object.__setattr__(self, "key", (self.namespace, self.name, frozenset(items)))


class SourceProvider(Protocol):
    """Where the engine's sources come from: `scaler.sources.live` in production, simulated ones in
    `scaler.simulate`. Sources for the same thing must be shared (kept in `pool`)."""

    pool: SourcePool

    def lag_source(self, spec: PrefillTrigger) -> LagSource[Any]: ...

    def prometheus_source(self, spec: TriggerSpec, query: str) -> Source[tuple[signals.Series, ...]]: ...

    def role_source(self, namespace: str, scaledobject: str, spec: TriggerSpec) -> RolePodsSource: ...

    def scrape_source(self, role: Source[RolePods], spec: TriggerSpec) -> PodScrapeSource: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Evaluator:
    """What one spec reads, and how its decision is made from the latest samples."""

    spec: TriggerSpec
    sources: tuple[Source[Any], ...]
    decide: Callable[[], Decision]
    policy: str  # shown on /status and by `pd-scaler explain`
    history: Callable[[], PrefillHistory] | None = None  # a capacity prefill's queue history, for coupling
    loads: Callable[[], RoleLoads] | None = None  # a capacity decode's pods and loads, for coupling


class _Memo(Generic[V]):
    """The last result, kept while the samples it was made from are the same objects: the policy runs once
    per sample, not once per call."""

    def __init__(self) -> None:
        self._inputs: tuple[object, ...] = ()
        self._result: V | None = None

    def __call__(self, inputs: tuple[object, ...], compute: Callable[[], V]) -> V:
        # map(operator.is_) rather than a generator: this runs on every call.
        same = len(inputs) == len(self._inputs) and all(map(operator.is_, inputs, self._inputs))
        if not same or self._result is None:
            self._result, self._inputs = compute(), inputs
        return self._result


class Engine:
    def __init__(
        self,
        sources: SourceProvider,
        metrics: Metrics,
        first_sample_wait: float = 2.0,
        clock: Clock = time.monotonic,
        admission: Admission | None = None,
        max_scaledobjects: int = DEFAULT_MAX_SCALEDOBJECTS,
    ) -> None:
        self.sources = sources
        self.admission = admission or Admission()
        self.metrics = metrics
        self.first_sample_wait = first_sample_wait
        self.clock = clock
        self.max_scaledobjects = max_scaledobjects
        self._evaluators: OrderedDict[EvaluatorKey, Evaluator] = OrderedDict()  # least recently asked first
        self.targets: Targets[EvaluatorKey] = Targets(limit=max_scaledobjects)  # one per evaluator at most
        self._by_object: dict[tuple[str, str], Evaluator] = {}  # the latest evaluator of each ScaledObject
        self.status = StatusBoard()
        self._log_once = Once(clock=clock)
        self._evaluators_generation = -1
        self._values: _PerSample[tuple[signals.Signal, tuple[signals.Matcher, ...]], signals.Values]
        self._values = _PerSample(max_scaledobjects)
        self._prefill_decisions: _PerSample[tuple[object, str, capacity.PrefillSettings], Decision]
        self._prefill_decisions = _PerSample(max_scaledobjects)
        self.closing = False
        self._seen: OrderedDict[SeriesKey, _Seen] = OrderedDict()  # least recently answered first

    # -- the three questions KEDA asks ------------------------------------------------------------------

    def metric_spec(self, ref: Ref) -> tuple[str, float]:
        """Metric name and per-replica target: the latest target a decision gave, else the trigger's.
        Starts the sources, so GetMetrics finds a sample."""
        spec = self.evaluator(ref).spec
        return spec.metric_name, self.targets.get(ref.key, spec.target)

    async def decide(self, ref: Ref) -> Decision:
        ev = self.evaluator(ref)
        for source in ev.sources:
            if not source.is_settled:  # the usual case costs no coroutine on the request path
                await source.settled(self.first_sample_wait)
        return self._decide(ref, ev)

    async def activations(self, ref: Ref) -> AsyncIterator[bool]:
        """Yields True when the role is active on open, then on each inactive→active transition only."""
        sent = False
        async for decision in self._watch(ref, targets=False):
            if decision is None:
                continue  # the polling path reports errors; a stream only ever says "true"
            if decision.active and not sent:
                yield True
            sent = decision.active

    async def metric_specs(self, ref: Ref) -> AsyncIterator[tuple[str, float]]:
        """Yields the metric spec on open, then again whenever its target changes (KEDA's StreamMetricSpec)."""
        sent = None
        async for _ in self._watch(ref, targets=True):
            spec = self.metric_spec(ref)
            if spec != sent:
                yield spec
                sent = spec

    async def _watch(self, ref: Ref, targets: bool) -> AsyncIterator[Decision | None]:
        """The decision now (None: an error), then again after each update of its sources (and of any target)."""
        ev = self.evaluator(ref)
        for source in ev.sources:
            await source.settled(self.first_sample_wait)
        with contextlib.ExitStack() as stack:
            for source in ev.sources:
                stack.enter_context(source.in_use())
            while not self.closing:
                try:
                    decision: Decision | None = self._decide(ref, ev)
                except ScalerError:
                    decision = None
                yield decision
                waits = [s.next_update() for s in ev.sources]
                await _first([*waits, self.targets.changed()] if targets else waits)

    # -- wiring ----------------------------------------------------------------------------------------

    def evaluator(self, ref: Ref) -> Evaluator:
        # KEDA asks the same questions every few seconds: keep each ScaledObject's evaluator while the pool
        # keeps its sources (a stopped source must never be read again).
        pool = self.sources.pool
        if self._evaluators_generation != pool.generation:
            self._evaluators.clear()
            self._by_object.clear()
            self._prefill_decisions.clear()
            self._values.clear()
            self._evaluators_generation = pool.generation
        key = ref.key
        ev = self._evaluators.get(key)
        if ev is not None:
            self._evaluators.move_to_end(key)
            self._by_object[key[:2]] = ev
            return ev
        try:
            self.admission.check_namespace(ref.namespace)
            spec = parse(dict(key[2]))
            self.admission.check_sources(spec)
            with pool.adding():  # its sources start once it is whole, if they fit under the cap
                if isinstance(spec, PrefillTrigger) and spec.metric == "queue-lag":
                    ev = self._prefill(ref, spec)
                elif isinstance(spec, DecodeTrigger) and spec.capacity:
                    ev = self._decode_capacity(ref, spec)
                else:
                    ev = self._signal(ref, spec)
        except ScalerError as exc:
            self._failed(ref, exc)
            raise
        self._evaluators[key] = ev
        self._by_object[key[:2]] = ev
        if len(self._evaluators) > self.max_scaledobjects:
            old_key, old = self._evaluators.popitem(last=False)
            if self._by_object.get(old_key[:2]) is old:
                del self._by_object[old_key[:2]]
        return ev

    def _prefill(self, ref: Ref, spec: PrefillTrigger) -> Evaluator:
        source = self.sources.lag_source(spec)
        if not spec.capacity:
            memo: _Memo[Decision] = _Memo()

            def decide_lag() -> Decision:
                lag = source.lag(spec.stream, spec.consumer, spec.max_staleness)
                return memo((lag,), lambda: decide_prefill(spec, lag))

            return Evaluator(spec, (source,), decide_lag, policy="lag")
        settings = capacity.PrefillSettings(
            spec.replica_tokens_per_second, spec.ttft, spec.startup_delay, spec.window, spec.burst_memory
        )

        def history() -> PrefillHistory:
            return source.history(spec.stream, spec.consumer, spec.max_staleness)

        if spec.refine_capacity or spec.decode_scaled_object is not None:
            return self._coupled_prefill(ref, spec, source, settings, history)
        # ScaledObjects on one queue with the same settings share one decision per sample: the policy runs once per
        # refresh of the source, not once per call or per ScaledObject.
        key = (source, spec.metric_name, settings)

        def decide() -> Decision:
            h = history()
            return self._prefill_decisions.get(key, h, lambda: capacity.decide_prefill(spec.metric_name, h, settings))

        return Evaluator(spec, (source,), decide, "capacity (prompt tokens/s)", history)

    def _coupled_prefill(
        self,
        ref: Ref,
        spec: PrefillTrigger,
        source: LagSource[Any],
        settings: capacity.PrefillSettings,
        history: Callable[[], PrefillHistory],
    ) -> Evaluator:
        """The capacity prefill decision with what it reads beyond its queue: with `refineCapacity`, its ready
        replicas (found as decode's pods are), to measure one replica's capacity; with `decodeScaledObject`, the
        requests decode holds. Without them the configured capacity is used, or no request is counted held, and the
        reason says why."""
        role = self.sources.role_source(ref.namespace, ref.name, spec) if spec.refine_capacity else None
        role_max_age = max(spec.max_staleness, 3 * role.interval) if role is not None else 0.0
        decode = spec.decode_scaled_object
        memo: _Memo[Decision] = _Memo()

        def decide() -> Decision:
            h = history()
            replicas = None
            if role is not None:
                try:
                    replicas = capacity.Replicas(role.ready_history(role_max_age))
                except ScalerError as exc:
                    replicas = capacity.Replicas(None, exc.message)
            loads = self._decode_loads(ref.namespace, decode) if decode is not None else None

            def run() -> Decision:
                held = None
                if loads is not None:
                    held = capacity.Held(loads.waiting) if isinstance(loads, RoleLoads) else capacity.Held(None, loads)
                return capacity.decide_prefill(spec.metric_name, h, settings, replicas=replicas, decode=held)

            inputs = (h, replicas and replicas.history, replicas and replicas.unavailable, loads)
            return memo(inputs, run)

        sources = (source, role) if role is not None else (source,)
        policy = "capacity (prompt tokens/s" + (", refineCapacity)" if role is not None else ")")
        return Evaluator(spec, sources, decide, policy, history)

    def _signal(self, ref: Ref, spec: TriggerSpec) -> Evaluator:
        """Engine and DCGM signals: series from Prometheus or from the pods, made into one value per pod."""
        sig, matchers = spec.signal, spec.matchers
        # The Dynamo frontend's counts are per router worker, not per pod: through Prometheus no pods are needed.
        role = self.sources.role_source(ref.namespace, ref.name, spec) if spec.reads_pods else None
        data: Source[Any]
        if spec.scrape == "pods":
            assert role is not None
            data = scraper = self.sources.scrape_source(role, spec)
            scraper.want(sig.names)
        else:
            data = self.sources.prometheus_source(spec, sig.query(matchers))
        # The role's pods change slowly; they are re-listed every role interval, so allow a few of those.
        role_max_age = max(spec.max_staleness, 3 * role.interval) if role is not None else 0.0
        seat_limit = float(spec.max_num_seqs) if isinstance(spec, DecodeTrigger) and spec.max_num_seqs else None

        def decide() -> Decision:
            pods = check_bound(role.read(role_max_age)) if role is not None else None
            sample = data.read(spec.max_staleness)
            series, failed = (sample.series, sample.failed) if isinstance(sample, PodScrape) else (sample, {})
            values = self._signal_values(series, sig, matchers)
            obs = _observe(sig, values, pods, failed, data.name, seat_limit)
            return decide_signal(spec, obs, pods.pods if pods is not None and not sig.per_worker else None)

        sources = (role, data) if role is not None else (data,)
        return Evaluator(spec, sources, decide, policy=f"{spec.metric} per {'worker' if sig.per_worker else 'pod'}")

    def _decode_capacity(self, ref: Ref, spec: DecodeTrigger) -> Evaluator:
        """Sequences held and KV-cache fill per pod (the seats and kv-cache signals of the same engines, read in
        one query or one scrape), coupled to the prefill ScaledObject it names."""
        seats, kv = spec.signal, signals.signal("decode", "kv-cache", spec.engine)
        running = dataclasses.replace(seats, parts=seats.parts[:1])  # the batch alone: seats' first part
        matchers = spec.matchers
        role = self.sources.role_source(ref.namespace, ref.name, spec)
        data: Source[Any]
        if spec.scrape == "pods":
            data = scraper = self.sources.scrape_source(role, spec)
            scraper.want(seats.names + kv.names)
        else:
            data = self.sources.prometheus_source(spec, signals.union_query((seats, kv), matchers))
        role_max_age = max(spec.max_staleness, 3 * role.interval)
        settings = capacity.DecodeSettings(
            spec.replica_seats,
            spec.startup_delay,
            spec.window,
            spec.burst_memory,
            spec.min_decode_per_prefill,
            spec.max_decode_per_prefill,
            output_tokens=spec.mean_output_tokens,
            itl=spec.itl,
            step=deployment.decode_step(deployment.replica(spec.profile)) if spec.profile else None,
        )
        observed: _Memo[RoleLoads] = _Memo()
        memo: _Memo[Decision] = _Memo()

        def loads() -> RoleLoads:
            pods = check_bound(role.read(role_max_age))
            sample = data.read(spec.max_staleness)
            series = sample.series if isinstance(sample, PodScrape) else sample

            def run() -> RoleLoads:
                held = self._signal_values(series, seats, matchers).values
                batch = self._signal_values(series, running, matchers).values
                fill = self._signal_values(series, kv, matchers).values

                def load(key: signals.PodKey, sequences: float) -> DecodeLoad:
                    in_batch = batch.get(key, 0.0)  # the waiting are the sequences held beyond the batch
                    return DecodeLoad(in_batch, sequences - in_batch, fill.get(key, 0.0))

                by_pod = {pod: load((ns, pod), v) for (ns, pod), v in held.items() if ns == pods.namespace}
                return RoleLoads(tuple(pods.pods), by_pod)

            return observed((pods, series), run)

        def decide() -> Decision:
            role_loads = loads()
            coupling = self._coupling(ref.namespace, spec.prefill_scaled_object)
            inputs = (role_loads, coupling.history if coupling else None, coupling.decision if coupling else None)
            return memo(
                inputs,
                lambda: capacity.decide_decode(spec.metric_name, role_loads.pods, role_loads.loads, settings, coupling),
            )

        return Evaluator(spec, (role, data), decide, "capacity (sequences)", loads=loads)

    def _other_role(self, namespace: str, name: str, role: str) -> Evaluator | str:
        """The capacity evaluator of the other role's ScaledObject a coupled trigger names, or why there is none
        (interned: the same reason is the same object, so a decision made with it is kept while it holds)."""
        ev = self._by_object.get((namespace, name))
        if ev is None:
            return sys.intern(f"ScaledObject {namespace}/{name} has not been asked about here yet")
        if (ev.history if role == "prefill" else ev.loads) is None:
            return sys.intern(f"ScaledObject {namespace}/{name} is not a capacity {role} trigger")
        return ev

    def _decode_loads(self, namespace: str, decode: str) -> RoleLoads | str:
        """The decode role's loads for a coupled prefill trigger, or why there are none."""
        ev = self._other_role(namespace, decode, "decode")
        if isinstance(ev, str):
            return ev
        assert ev.loads is not None
        try:
            return ev.loads()
        except ScalerError as exc:
            return sys.intern(exc.message)

    def _coupling(self, namespace: str, prefill: str | None) -> capacity.Coupling | None:
        """The prefill role's history and decision for a coupled decode trigger, or why there are none."""
        if prefill is None:
            return None
        ev = self._other_role(namespace, prefill, "prefill")
        if isinstance(ev, str):
            return capacity.Coupling(None, None, ev)
        assert ev.history is not None
        assert isinstance(ev.spec, PrefillTrigger)  # it has a queue history: a capacity prefill trigger
        try:
            return capacity.Coupling(ev.history(), ev.decide(), ttft=ev.spec.ttft)
        except ScalerError as exc:
            return capacity.Coupling(None, None, exc.message)

    def _signal_values(
        self, series: tuple[signals.Series, ...], sig: signals.Signal, matchers: tuple[signals.Matcher, ...]
    ) -> signals.Values:
        """signals.evaluate, computed once per sample of a source rather than once per call."""
        return self._values.get((sig, matchers), series, lambda: signals.evaluate(sig, series, matchers))

    def _decide(self, ref: Ref, ev: Evaluator) -> Decision:
        labels = (ref.namespace, ref.name, ev.spec.role)
        seen = self._seen_now(labels)
        now = seen.at
        try:
            decision = ev.decide()
        except ScalerError as exc:
            # Only the value says "no answer"; target and activity keep the last real answer, if any.
            if seen.answer is not _FAILED:
                seen.answer = _FAILED
                self.metrics.so_value.labels(*labels).set(float("nan"))
            self._failed(ref, exc)
            raise
        self.status.decided(ref.namespace, ref.name, ev.spec.role, ev.policy, decision, now)
        self.targets.set(ref.key, decision.target)
        answer = (decision.value, decision.target, decision.active, decision.unmeasured)
        if answer != seen.answer:  # KEDA asks again and again; the gauges change far less often
            seen.answer = answer
            gauges = self.metrics.scaledobject(*labels, reads_pods=ev.spec.reads_pods)
            gauges.value.set(decision.value)
            gauges.target.set(decision.target)
            gauges.active.set(1.0 if decision.active else 0.0)
            if gauges.unmeasured is not None:
                gauges.unmeasured.set(decision.unmeasured)
        if seen.active != decision.active:
            seen.active = decision.active
            log.info(
                "activity changed",
                extra={
                    "fields": {
                        "namespace": ref.namespace,
                        "scaledobject": ref.name,
                        "role": ev.spec.role,
                        "active": decision.active,
                        "reason": decision.reason,
                    }
                },
            )
        return decision

    def _seen_now(self, labels: SeriesKey) -> _Seen:
        """Mark a ScaledObject answered now; past max_scaledobjects the least recently answered is forgotten."""
        seen = self._seen.get(labels)
        if seen is None:
            seen = self._seen[labels] = _Seen()
            if len(self._seen) > self.max_scaledobjects:
                self._forget(next(iter(self._seen)))
        else:
            self._seen.move_to_end(labels)
        seen.at = self.clock()
        return seen

    def _forget(self, labels: SeriesKey) -> None:
        """Drop a ScaledObject's activity and its series in /metrics."""
        del self._seen[labels]
        self.metrics.forget_scaledobject(*labels)

    def _failed(self, ref: Ref, exc: ScalerError) -> None:
        self.status.failed(ref.namespace, ref.name, exc, self.clock())
        # A trigger KEDA keeps asking about gets the same answer every few seconds: log each error once. A source
        # that fails logs itself ("source down"), so UNAVAILABLE is left to it.
        if exc.code != grpc.StatusCode.UNAVAILABLE and self._log_once((ref.namespace, ref.name, exc.message)):
            suppressed, self._log_once.suppressed = self._log_once.suppressed, 0
            fields: dict[str, object] = {
                "namespace": ref.namespace,
                "scaledobject": ref.name,
                "code": exc.code.name,
                "error": exc.message,
            }
            if suppressed:
                fields["suppressed"] = suppressed
            log.warning("trigger rejected", extra={"fields": fields})

    # -- lifecycle -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Background housekeeping: stop idle sources, forget ScaledObjects nobody asks about."""
        pool = self.sources.pool
        period = min(30.0, pool.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            await pool.reap()
            horizon = self.clock() - pool.idle_timeout
            forgotten = [labels for labels, seen in self._seen.items() if seen.at < horizon]
            for labels in forgotten:
                self._forget(labels)
            gone = {labels[:2] for labels in forgotten}
            gone |= {(e.namespace, e.name) for e in self.status if e.last is None or e.last.at < horizon}
            for namespace, name in gone:
                self.status.forget(namespace, name)
            for key in [k for k in self._evaluators if k[:2] in gone]:
                del self._evaluators[key]
            self._by_object = {k: ev for k, ev in self._by_object.items() if k not in gone}
            self.targets.forget_where(lambda key: key[:2] in gone)  # noqa: B023 (used at once)

    async def close(self) -> None:
        self.closing = True
        await self.sources.close()  # stopping a source wakes the streams watching it


class _PerSample(Generic[K, V]):
    """What was computed from a sample, kept while the sample is the same object: once per sample, not once per
    call. Keys come from callers' triggers, so past `limit` of them it starts over."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: dict[K, tuple[object, V]] = {}

    def get(self, key: K, sample: object, compute: Callable[[], V]) -> V:
        kept = self._kept.get(key)
        if kept is None or kept[0] is not sample:
            if kept is None and len(self._kept) >= self._limit:
                self._kept.clear()
            kept = self._kept[key] = (sample, compute())
        return kept[1]

    def clear(self) -> None:
        self._kept.clear()


class _Seen:
    """When a ScaledObject was last answered, the answer its gauges show, and whether it was last active."""

    __slots__ = ("active", "answer", "at")

    def __init__(self) -> None:
        self.at = 0.0
        self.answer: object = None
        self.active: bool | None = None  # kept through errors: a flip is logged against the last real answer


async def _first(waits: list[Coroutine[Any, Any, None]]) -> None:
    """Returns when the first of `waits` does; the others are cancelled."""
    if len(waits) == 1:
        await waits[0]  # the usual case (a prefill stream): no task
        return
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _observe(
    sig: signals.Signal,
    values: signals.Values,
    pods: RolePods | None,
    failed: Mapping[str, str],
    source: str,
    seat_limit: float | None,
) -> RoleSignal:
    """The observation the policy decides on: each of the role's pods' value (seats as a fraction of the pod's
    limit: the per-engine limit times its data-parallel engines), and why the others have none."""
    if pods is None or sig.per_worker:
        # Per router worker; with scrape: pods the pods are the frontends, and those not scraped are named.
        per = {name: v for (_, name), v in values.values.items()}
        return RoleSignal(source, per, dict(failed))
    per = {}
    for (namespace, pod), value in values.values.items():
        if namespace == pods.namespace:
            per[pod] = value / (seat_limit * values.engines.get((namespace, pod), 1)) if seat_limit else value
    measured = {pod: per[pod] for pod in pods.pods if pod in per}
    unmeasured = {pod: failed.get(pod, NO_SERIES) for pod in pods.pods if pod not in per}
    return RoleSignal(source, measured, unmeasured)
