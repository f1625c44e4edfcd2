"""KEDA and the HPA v2 controller, emulated: pure functions of the times and values they are given.

Follows the Kubernetes sources (pkg/controller/podautoscaler: replica_calculator.go, horizontal.go) and KEDA's
scale executor, for one external metric per ScaledObject:
- HPA every sync period: AverageValue → ceil(value / target) unless value / (target·replicas) is within the
  tolerance of 1; Value → ceil(ready pods · value / target) unless value / target is within it; then either the
  `behavior` rules (stabilization windows, then rate policies over their periods) or, with no behavior (KEDA's
  default), the legacy rules (5-minute downscale stabilization, at most max(2·replicas, 4) up), then min/max.
- KEDA every pollingInterval (and at once for `external-push`): an active trigger on a role at zero scales it to
  max(minReplicaCount, 1); a trigger inactive for cooldownPeriod scales it to zero when minReplicaCount is 0.
  While the role has replicas, the HPA alone sets their number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["AverageValue", "Value"]
SelectPolicy = Literal["Max", "Min", "Disabled"]

SYNC_PERIOD = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
LEGACY_DOWNSCALE_WINDOW = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization


@dataclass(frozen=True)
class ScalingPolicy:
    type: Literal["Pods", "Percent"]
    value: int
    period_s: float


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_s: float
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = "Max"


# What the API server fills in for a `behavior` that leaves a direction out.
DEFAULT_SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15.0), ScalingPolicy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN = ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15.0),))


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


def replicas_for_metric(
    replicas: int, value: float, target: float, metric_type: MetricType, ready: int, tolerance: float = TOLERANCE
) -> int:
    """The HPA's proposal from one external metric (before stabilization, rate limits and min/max)."""
    if metric_type == "AverageValue":
        ratio = value / (target * replicas)
        return replicas if abs(1.0 - ratio) <= tolerance else math.ceil(value / target)
    ratio = value / target
    if replicas == 0:
        return math.ceil(ratio)
    return replicas if abs(1.0 - ratio) <= tolerance else math.ceil(ratio * ready)


@dataclass
class HPA:
    """One HorizontalPodAutoscaler: its recommendation history and scale events."""

    min_replicas: int
    max_replicas: int
    behavior: Behavior | None = None  # None: the legacy rules KEDA gets when `advanced.behavior` is not set
    tolerance: float = TOLERANCE
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _synced: bool = False
    _up_events: list[tuple[float, int]] = field(default_factory=list)
    _down_events: list[tuple[float, int]] = field(default_factory=list)

    def reconcile(
        self, now: float, replicas: int, value: float | None, target: float, metric_type: MetricType, ready: int
    ) -> int:
        """The replica count after one sync; `value` None means the metric could not be read (no change)."""
        if not self._synced:
            # The HPA controller's recordInitialRecommendation: the replicas it finds count as its first
            # recommendation, so it does not scale down within the stabilization window of its start.
            self._synced = True
            self._recommendations.append((now, replicas))
        if replicas == 0 and self.min_replicas != 0:
            return 0  # scaled to zero by KEDA: the HPA stands aside
        if replicas > self.max_replicas:
            desired = self.max_replicas
        elif replicas < self.min_replicas:
            desired = self.min_replicas
        elif value is None:
            return replicas
        else:
            proposal = replicas_for_metric(replicas, value, target, metric_type, ready, self.tolerance)
            if self.behavior is None:
                desired = self._legacy(now, replicas, proposal)
            else:
                desired = self._with_behavior(now, replicas, proposal, self.behavior)
        if desired != replicas:
            events = self._up_events if desired > replicas else self._down_events
            events.append((now, abs(desired - replicas)))
        return desired

    def _legacy(self, now: float, replicas: int, proposal: int) -> int:
        cutoff = now - LEGACY_DOWNSCALE_WINDOW
        recommendation = max([proposal, *(r for t, r in self._recommendations if t >= cutoff)])
        self._record(now, proposal, cutoff)
        upper = min(self.max_replicas, max(2 * replicas, 4))
        return max(self.min_replicas, min(recommendation, upper))

    def _with_behavior(self, now: float, replicas: int, proposal: int, behavior: Behavior) -> int:
        up_cutoff = now - behavior.scale_up.stabilization_window_s
        down_cutoff = now - behavior.scale_down.stabilization_window_s
        # Scale up only as far as every recommendation in the up window allows; down only to the highest in
        # the down window.
        up = min([proposal, *(r for t, r in self._recommendations if t > up_cutoff)])
        down = max([proposal, *(r for t, r in self._recommendations if t > down_cutoff)])
        self._record(now, proposal, min(up_cutoff, down_cutoff))
        desired = min(max(replicas, up), down)
        if desired > replicas:
            limit = max(replicas, self._up_limit(now, replicas, behavior.scale_up))
            return min(desired, limit, self.max_replicas)
        if desired < replicas:
            limit = min(replicas, self._down_limit(now, replicas, behavior.scale_down))
            return max(desired, limit, self.min_replicas)
        return desired

    def _record(self, now: float, proposal: int, cutoff: float) -> None:
        self._recommendations = [(t, r) for t, r in self._recommendations if t >= cutoff]
        self._recommendations.append((now, proposal))

    def _period_start(self, now: float, replicas: int, period: float) -> int:
        added = sum(n for t, n in self._up_events if t > now - period)
        removed = sum(n for t, n in self._down_events if t > now - period)
        return replicas - added + removed

    def _up_limit(self, now: float, replicas: int, rules: ScalingRules) -> int:
        if rules.select_policy == "Disabled":
            return replicas
        proposals = []
        for p in rules.policies:
            start = self._period_start(now, replicas, p.period_s)
            proposals.append(start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100)))
        return (min if rules.select_policy == "Min" else max)(proposals)

    def _down_limit(self, now: float, replicas: int, rules: ScalingRules) -> int:
        if rules.select_policy == "Disabled":
            return replicas
        proposals = []
        for p in rules.policies:
            start = self._period_start(now, replicas, p.period_s)
            proposals.append(start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100)))
        # The policy allowing the biggest change ("Max") is the lowest count when scaling down.
        return (max if rules.select_policy == "Min" else min)(proposals)


@dataclass(frozen=True)
class ScaledObjectSpec:
    """What one KEDA ScaledObject (one trigger) says about scaling."""

    min_replicas: int = 1  # minReplicaCount (the ACK guide's 1; KEDA's default is 0)
    max_replicas: int = 6  # maxReplicaCount (the ACK guide's 6)
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    metric_type: MetricType = "AverageValue"
    behavior: Behavior | None = None
    push: bool = False  # `type: external-push`: activation is streamed, not polled


@dataclass
class ScaledObject:
    """KEDA's scale loop for one ScaledObject, with the HPA it owns."""

    spec: ScaledObjectSpec
    last_active: float = 0.0
    hpa: HPA = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = HPA(max(1, self.spec.min_replicas), self.spec.max_replicas, self.spec.behavior)

    def activity(self, now: float, replicas: int, active: bool | None) -> int:
        """KEDA's answer to IsActive (None: the call failed, nothing changes): the new replica count."""
        if active:
            self.last_active = now
            if replicas == 0:
                return max(1, self.spec.min_replicas)
        elif (
            active is False
            and replicas > 0
            and self.spec.min_replicas == 0
            and now - self.last_active >= self.spec.cooldown_period
        ):
            return 0
        return replicas

    def sync(self, now: float, replicas: int, ready: int, value: float | None, target: float) -> int:
        return self.hpa.reconcile(now, replicas, value, target, self.spec.metric_type, ready)
