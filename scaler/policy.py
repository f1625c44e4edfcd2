"""The scaling math: observations and a trigger spec in, a Decision out. Pure: no clock, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scaler.errors import SourceUnavailable
from scaler.observations import ConsumerLag, Decision
from scaler.triggers import DecodeTrigger, PrefillTrigger


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


def decide_decode(spec: DecodeTrigger, pods: Sequence[str], per_pod: Mapping[str, float]) -> Decision:
    """Sum over the role's pods of each pod's fraction, against a per-pod target (desired = ceil(sum / target)).

    Pods without a series are left out of the sum and named in the reason; if none has one, there is no
    measurement at all, and that is an error, never a zero.
    """
    measured = {pod: per_pod[pod] for pod in pods if pod in per_pod}
    missing = [pod for pod in pods if pod not in per_pod]
    if pods and not measured:
        raise SourceUnavailable(
            f"no {spec.metric} series for any of the role's {len(pods)} pods ({', '.join(pods)}); "
            "check that the exporter is scraped and that its series carry the pods' names"
        )
    value = sum(measured.values())
    active = value > spec.activation_threshold
    relation = ">" if active else "<="
    reason = (
        f"{spec.metric} sum {value:.3f} over {len(measured)} pods {relation} activation {spec.activation_threshold:g}"
    )
    if missing:
        reason += f"; no series for {', '.join(missing)}"
    if not pods:
        reason = "the role has no pods"
    return Decision(spec.metric_name, value, spec.threshold, active, reason, unmeasured=len(missing))
