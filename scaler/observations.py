"""What sources measure and what the policy decides: plain data, shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsumerLag:
    """A JetStream consumer's backlog as the server reports it."""

    pending: int  # stored, not yet delivered to any worker
    ack_pending: int  # delivered, not yet acknowledged

    @property
    def total(self) -> int:
        return self.pending + self.ack_pending


@dataclass(frozen=True)
class Decision:
    """One answer for KEDA: the role's total, the per-replica target and whether the role is active."""

    metric_name: str
    value: float
    target: float
    active: bool
    reason: str
    unmeasured: int = 0  # pods of the role without a series (decode)
