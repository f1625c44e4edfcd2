"""A prefill queue's sample history, kept by its source in bounded ring buffers.

Arrivals are counted as they are published (with each request's prompt tokens). The backlog's tokens are read from
its messages by the source (`backlog.py`); where they cannot be, they are those of the newest `backlog` arrivals,
since a work queue hands messages out in order. One sample per second is kept for
`span` seconds: the policy reads rates and forecasts off it, and every reader of the source sees the same history.
"""

from __future__ import annotations

import re
from array import array
from collections import deque
from functools import lru_cache

from scaler.observations import PrefillHistory, QueueSample, ReadySpan, ReplicaHistory

RESOLUTION = 1.0  # seconds between kept samples (the newest one is always current)
# Prompt sizes remembered for the backlog where its messages cannot be read (as many as the backlog reader
# remembers); older backlog counts at the mean. 128 KiB a source, in one array.
TRACKED_ARRIVALS = 1 << 14
MAX_PAYLOAD = 1 << 20  # bytes of a request searched for its prompt tokens; bigger ones count at the mean


class QueueHistory:
    def __init__(self, span: float, mean_prompt_tokens: float) -> None:
        self.span = span
        self.mean = mean_prompt_tokens
        self.arrived = 0
        self.arrived_tokens = 0.0
        # A ring: arrived_tokens after each of the last TRACKED_ARRIVALS arrivals, the oldest at _next when full.
        self._after = array("d", bytes(8 * TRACKED_ARRIVALS))
        self._tracked = 0
        self._next = 0
        self._before_tracked = 0.0  # arrived_tokens before the oldest tracked arrival
        self._samples: deque[QueueSample] = deque()
        self._snapshot: PrefillHistory | None = None

    def arrival(self, tokens: float) -> None:
        if self._tracked == TRACKED_ARRIVALS:
            self._before_tracked = self._after[self._next]  # the oldest, about to be overwritten
        else:
            self._tracked += 1
        self.arrived += 1
        self.arrived_tokens += tokens
        self._after[self._next] = self.arrived_tokens
        self._next = (self._next + 1) % TRACKED_ARRIVALS

    def backlog_tokens(self, backlog: int) -> float:
        """Prompt tokens of the newest `backlog` arrivals; those not seen (queued before we subscribed, or beyond
        what is tracked) count at the mean."""
        known = min(backlog, self._tracked)
        if known == 0:
            seen = 0.0
        elif known == self._tracked:
            seen = self.arrived_tokens - self._before_tracked
        else:  # arrived_tokens before the known-th newest arrival: after the (known + 1)-th newest
            seen = self.arrived_tokens - self._after[(self._next - known - 1) % TRACKED_ARRIVALS]
        return seen + (backlog - known) * self.mean

    def record(self, t: float, backlog: int, tokens: float | None = None, note: str = "", *, waiting: int) -> None:
        """A sample: the backlog's prompt tokens as given, or else estimated from the newest arrivals; `waiting` of
        the backlog not yet delivered to a worker."""
        if tokens is None:
            tokens = self.backlog_tokens(backlog)
        sample = QueueSample(t, self.arrived, self.arrived_tokens, backlog, tokens, note, waiting)
        samples = self._samples
        if len(samples) >= 2 and samples[-1].t - samples[-2].t < RESOLUTION:
            samples[-1] = sample  # the newest is always current; older ones are a second apart at least
        else:
            samples.append(sample)
        while len(samples) > 2 and samples[1].t <= t - self.span:
            samples.popleft()
        self._snapshot = None

    def snapshot(self) -> PrefillHistory:
        """The samples as the policy reads them (the same object until the next `record`)."""
        if self._snapshot is None:
            self._snapshot = PrefillHistory(tuple(self._samples))
        return self._snapshot

    def __bool__(self) -> bool:
        return bool(self._samples)


class ReadyHistory:
    """A role's ready replicas as its source observes them, as spans of equal counts over the last `span` seconds.
    A failed observation ends the current span: what happened until the next one is unknown."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._spans: deque[ReadySpan] = deque()
        self._open = False  # the newest span may be extended: nothing failed since it was observed
        self._snapshot: ReplicaHistory | None = None

    def observe(self, t: float, ready: int) -> None:
        spans = self._spans
        if self._open and spans and spans[-1].ready == ready:
            spans[-1] = ReadySpan(spans[-1].since, t, ready)
        else:
            spans.append(ReadySpan(t, t, ready))
        self._open = True
        while spans[0].until <= t - self.span:  # the newest span ends at t: it stays
            spans.popleft()
        self._snapshot = None

    def unobserved(self) -> None:
        self._open = False

    def snapshot(self) -> ReplicaHistory:
        """The spans as the policy reads them (the same object until the next observation)."""
        if self._snapshot is None:
            self._snapshot = ReplicaHistory(tuple(self._spans))
        return self._snapshot


@lru_cache(maxsize=64)
def _field_pattern(field: str) -> re.Pattern[bytes]:
    return re.compile(rb'"' + re.escape(field.encode()) + rb'"\s*:\s*\[')


_NOT_BLANK = re.compile(rb"\S")


def prompt_tokens(payload: bytes, field: str) -> int | None:
    """The length of the JSON list `field` in a request (e.g. Dynamo's `prompt_token_ids`), counted without
    decoding the payload; None if it is not there or the payload is over MAX_PAYLOAD bytes."""
    if len(payload) > MAX_PAYLOAD:
        return None
    start = _field_pattern(field).search(payload)
    if start is None:
        return None
    end = payload.find(b"]", start.end())
    if end < 0:
        return None
    if _NOT_BLANK.search(payload, start.end(), end) is None:
        return 0
    return payload.count(b",", start.end(), end) + 1
