"""What sources measure and what the policy decides: plain data, shared by every layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConsumerLag:
    """A JetStream consumer's backlog as the server reports it."""

    pending: int  # stored, not yet delivered to any worker
    ack_pending: int  # delivered, not yet acknowledged

    @property
    def total(self) -> int:
        return self.pending + self.ack_pending


@dataclass(frozen=True)
class RoleSignal:
    """One signal measured over a role: each pod's value, and which pods have none and why.

    Values are in the signal's unit (requests, tokens, a fraction of a GPU, of a KV pool or of the seats); the
    role's total is their sum. Keys are pod names, or for the Dynamo frontend's counts `worker <id>` and `router
    queue`."""

    source: str  # the query or the scrape that measured it: named in errors
    values: Mapping[str, float]
    unmeasured: Mapping[str, str] = field(default_factory=dict)  # pod → why it has no value

    @property
    def total(self) -> float:
        return sum(self.values.values())


@dataclass(frozen=True)
class Decision:
    """One answer for KEDA: the role's total, the per-replica target and whether the role is active."""

    metric_name: str
    value: float
    target: float
    active: bool
    reason: str
    unmeasured: int = 0  # pods of the role without a value


@dataclass(frozen=True)
class QueueSample:
    """One point of a prefill queue's history: what had arrived by `t`, and what was still waiting then.

    `arrived_*` are cumulative since the source started (rates are differences between samples); `backlog_*` is
    the messages after the consumer's ack floor and their prompt tokens, `backlog_note` how those were reckoned
    where they are not exact. `waiting` is the part of the backlog not yet delivered to any worker: while some
    wait, no worker has room for more (the rest of the backlog is being worked on)."""

    t: float
    arrived: int
    arrived_tokens: float
    backlog: int
    backlog_tokens: float
    backlog_note: str = ""
    waiting: int = 0


@dataclass(frozen=True)
class PrefillHistory:
    """A prefill queue's recent samples, oldest first (a bounded ring buffer's snapshot; never empty)."""

    samples: tuple[QueueSample, ...]
    # The capacity policy's forecasts from these samples, by their arguments: the samples never change, so every
    # ScaledObject reading this snapshot of its source shares one forecast per sample, not one per call.
    forecasts: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def last(self) -> QueueSample:
        return self.samples[-1]


@dataclass(frozen=True)
class ReadySpan:
    """`ready` replicas of a role were seen at every observation from `since` to `until` (source clock time)."""

    since: float
    until: float
    ready: int


@dataclass(frozen=True)
class ReplicaHistory:
    """A role's ready replicas over time, oldest first. Between two spans the role was not observed, or its count
    changed: nothing is known there."""

    spans: tuple[ReadySpan, ...]


@dataclass(frozen=True)
class DecodeLoad:
    """One decode replica's load: sequences it runs and holds waiting, and its KV-cache fill (0 to 1)."""

    running: float
    waiting: float
    kv_fill: float


@dataclass(frozen=True)
class RoleLoads:
    """The decode role's pods and the load of each that has series (the others are unmeasured)."""

    pods: tuple[str, ...]
    loads: Mapping[str, DecodeLoad]

    @property
    def waiting(self) -> float:
        return sum(load.waiting for load in self.loads.values())
