"""What each ScaledObject was answered lately, for `/status` and `pd-scaler explain`: bounded, in memory.

Per ScaledObject: its role and policy, a fixed-size ring of (time, value, target) over the last hour, the last
few decisions with their reasons, and the last error. At most `limit` ScaledObjects are kept (the least recently
asked about are forgotten first), so callers who invent names cannot grow it.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from scaler.errors import ScalerError
from scaler.observations import Decision

HISTORY_SECONDS = 3600.0
HISTORY_POINTS = 120  # one per 30 s (KEDA's default polling interval) over the last hour
RECENT_DECISIONS = 10


class Ring:
    """The last `size` points of (time, value, target), at most one per `spacing`-second slot of the clock: within
    a slot the latest point replaces the previous one. Fixed memory: three arrays of doubles."""

    def __init__(self, size: int = HISTORY_POINTS, spacing: float = HISTORY_SECONDS / HISTORY_POINTS) -> None:
        self.spacing = spacing
        self._columns = tuple(array("d", [math.nan]) * size for _ in range(3))
        self._next = 0
        self._count = 0

    def add(self, at: float, value: float, target: float) -> None:
        size = len(self._columns[0])
        last = (self._next - 1) % size
        if self._count and self.slot(at) == self.slot(self._columns[0][last]):
            slot = last
        else:
            slot, self._next, self._count = self._next, (self._next + 1) % size, min(self._count + 1, size)
        for column, x in zip(self._columns, (at, value, target), strict=True):
            column[slot] = x

    def slot(self, at: float) -> int:
        return math.floor(at / self.spacing)

    def points(self) -> list[tuple[float, float, float]]:
        """Oldest first; a NaN value is an error answered at that time."""
        size = len(self._columns[0])
        slots = [(self._next - self._count + i) % size for i in range(self._count)]
        times, values, targets = self._columns
        return [(times[i], values[i], targets[i]) for i in slots]


@dataclass(frozen=True)
class Answer:
    """One answer: a decision (value, target, active, reason) or an error (code, message)."""

    at: float
    value: float = math.nan
    target: float = math.nan
    active: bool = False
    reason: str = ""
    error_code: str = ""
    error: str = ""

    @property
    def replicas(self) -> int | None:
        """What KEDA's AverageValue makes of it: ceil(value / target)."""
        if self.error or not self.target > 0:
            return None
        return math.ceil(self.value / self.target)


@dataclass
class ScaledObjectStatus:
    namespace: str
    name: str
    role: str = ""
    policy: str = ""
    metric_name: str = ""
    last: Answer | None = None
    last_error: Answer | None = None
    history: Ring = field(default_factory=Ring)
    recent: deque[Answer] = field(default_factory=lambda: deque(maxlen=RECENT_DECISIONS))
    decision: Decision | None = field(default=None, repr=False)  # the one `last` records, while it does

    @property
    def active(self) -> bool:
        """As KEDA counts it: an error is not active."""
        return self.last is not None and not self.last.error and self.last.active

    def _remember(self, answer: Answer) -> None:
        # The recent list keeps one answer per history slot, and every change of outcome.
        previous = self.recent[-1] if self.recent else None
        if (
            previous is not None
            and self.history.slot(answer.at) == self.history.slot(previous.at)
            and (previous.active, previous.error) == (answer.active, answer.error)
        ):
            self.recent[-1] = answer
        else:
            self.recent.append(answer)
        self.last = answer


class StatusBoard:
    def __init__(self, limit: int = 2000) -> None:
        self.limit = limit
        self._objects: OrderedDict[tuple[str, str], ScaledObjectStatus] = OrderedDict()

    def _entry(self, namespace: str, name: str) -> ScaledObjectStatus:
        key = (namespace, name)
        entry = self._objects.get(key)
        if entry is None:
            entry = self._objects[key] = ScaledObjectStatus(namespace, name)
            while len(self._objects) > self.limit:
                self._objects.popitem(last=False)
        else:
            self._objects.move_to_end(key)
        return entry

    def decided(self, namespace: str, name: str, role: str, policy: str, decision: Decision, at: float) -> None:
        entry = self._entry(namespace, name)
        last = entry.last
        if decision is entry.decision and last is not None and entry.history.slot(at) == entry.history.slot(last.at):
            return  # the same decision (same samples) answered again within a slot: already on record
        entry.decision = decision
        if entry.metric_name != decision.metric_name:  # another trigger: its history is not this one's
            entry.history, entry.recent = Ring(), deque(maxlen=RECENT_DECISIONS)
            entry.metric_name = decision.metric_name
        entry.role, entry.policy = role, policy
        entry.history.add(at, decision.value, decision.target)
        entry._remember(Answer(at, decision.value, decision.target, decision.active, decision.reason))

    def failed(self, namespace: str, name: str, error: ScalerError, at: float) -> None:
        """Record an error answer."""
        entry = self._entry(namespace, name)
        answer = Answer(at, error_code=error.code.name, error=error.message)
        entry.decision = None
        if entry.metric_name:
            entry.history.add(at, math.nan, math.nan)
        entry.last_error = answer
        entry._remember(answer)

    def get(self, namespace: str, name: str) -> ScaledObjectStatus | None:
        return self._objects.get((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        self._objects.pop((namespace, name), None)

    def __iter__(self) -> Iterator[ScaledObjectStatus]:
        return iter(sorted(self._objects.values(), key=lambda e: (e.namespace, e.name)))

    def __len__(self) -> int:
        return len(self._objects)
