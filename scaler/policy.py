"""The scaling math: observations and a trigger spec in, a Decision out. Pure: no clock, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from scaler.errors import SourceUnavailable
from scaler.observations import ConsumerLag, Decision, RoleSignal
from scaler.triggers import PrefillTrigger, TriggerSpec


def decide_prefill(spec: PrefillTrigger, lag: ConsumerLag) -> Decision:
    """Total lag over the role against a per-replica target (KEDA's AverageValue: desired = ceil(lag / target))."""
    value = float(lag.total)
    active = value > spec.activation_lag_threshold
    return Decision(
        metric_name=spec.metric_name,
        value=value,
        target=spec.lag_threshold,
        active=active,
        reason=(
            f"lag {lag.total} ({lag.pending} pending + {lag.ack_pending} ack-pending) "
            f"{'>' if active else '<='} activation {spec.activation_lag_threshold:g}"
        ),
    )


NO_SERIES = "no series"


def decide_signal(spec: TriggerSpec, obs: RoleSignal, pods: Sequence[str] | None) -> Decision:
    """The role's total of `obs` against a per-replica target (desired = ceil(total / target)).

    `pods`: the role's pods, or None for a signal not attributed to pods (the Dynamo frontend's per-worker
    counts). Pods without a value are left out of the sum and named in the reason; if no pod (or, without pods,
    no series at all) has one, there is no measurement, and that is an error, never a zero.
    """
    metric = spec.metric
    if pods is not None and pods and not obs.values:
        raise SourceUnavailable(
            f"no {metric} series for any of the role's {len(pods)} pods ({_pods_and_reasons(pods, obs)}) in "
            f"{obs.source}; check that the engine or exporter is scraped and that its series carry the pods' names"
        )
    if pods is None and not obs.values:
        not_scraped = "".join(f"; {pod}: {why}" for pod, why in obs.unmeasured.items())
        raise SourceUnavailable(
            f"no {metric} series in {obs.source}; check the engine setting and seriesSelector{not_scraped}"
        )
    value = obs.total
    active = value > spec.activation_threshold
    relation = ">" if active else "<="
    over = f"{len(obs.values)} pods" if pods is not None else f"{len(obs.values)} series"
    reason = f"{metric} sum {value:.3f} over {over} {relation} activation {spec.activation_threshold:g}"
    missing = [pod for pod in obs.unmeasured if obs.unmeasured[pod] == NO_SERIES]
    failed = [f"{pod} ({why})" for pod, why in obs.unmeasured.items() if why != NO_SERIES]
    if missing:
        reason += f"; no series for {', '.join(missing)}"
    if failed:
        reason += f"; left out: {', '.join(failed)}"
    if pods is not None and not pods:
        reason = "the role has no pods"
    return Decision(spec.metric_name, value, spec.target, active, reason, len(obs.unmeasured))


def _pods_and_reasons(pods: Sequence[str], obs: RoleSignal) -> str:
    return ", ".join(
        pod if obs.unmeasured.get(pod, NO_SERIES) == NO_SERIES else f"{pod}: {obs.unmeasured[pod]}" for pod in pods
    )
