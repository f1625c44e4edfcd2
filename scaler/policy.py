"""The scaling math: observations and a trigger spec in, a Decision out. Pure: no clock, no I/O."""

from __future__ import annotations

from scaler.observations import ConsumerLag, Decision
from scaler.triggers import PrefillTrigger


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
