"""The oracle: per window, the fewest replicas that meet the SLOs, knowing the future, with no start-up delay.

Prefill: the pool is a FIFO queue served by identical replicas, one request at a time. For each window in turn
(carrying over the replicas' busy times and the requests still queued), the fewest replicas with which every
request that starts its prefill in the window started within its budget, and every one still queued at the
window's end has not yet waited longer: the TTFT slack less its KV transfer, one decode tick and one decode step
at the ITL objective.

Decode: B* = the largest batch (up to max_num_seqs) whose step meets the ITL objective at the trace's mean
context (prompt + half the output). A request holds a decode seat from its arrival until its last token,
output·step(B*) after its KV arrives (as the prefill plan says); the window needs ceil(peak seats / B*)
replicas, and enough for the peak reserved KV.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scaler.simulate.profile import Profile
from scaler.simulate.trace import Request

# A replica count no window should need; reaching it means the SLO cannot be met (e.g. a budget below zero).
MAX_REPLICAS = 256


@dataclass(frozen=True)
class Plan:
    window_s: float
    prefill: tuple[int, ...]  # replicas per window
    decode: tuple[int, ...]


def plan(
    requests: Sequence[Request], profile: Profile, ttft_slack: float, itl: float, tick: float, window_s: float
) -> Plan:
    if not requests:
        return Plan(window_s, (1,), (1,))
    windows = math.floor(requests[-1].arrival / window_s) + 1
    prefill_s = [profile.prefill_seconds(r.prompt) for r in requests]
    transfer_s = [profile.kv_transfer_seconds(r.prompt) for r in requests]
    prefill, joins = _prefill(requests, prefill_s, transfer_s, ttft_slack - tick - itl, window_s, windows)
    return Plan(window_s, prefill, _decode(requests, profile, joins, itl, window_s, windows))


def _prefill(
    requests: Sequence[Request],
    prefill_s: Sequence[float],
    transfer_s: Sequence[float],
    slack: float,
    window_s: float,
    windows: int,
) -> tuple[tuple[int, ...], list[float]]:
    counts, joins = [], [0.0] * len(requests)
    free: list[float] = []  # busy-until of the replicas kept from the window before
    waiting: list[int] = []  # requests still queued when the window before ended
    arrived = 0
    for w in range(windows):
        # The last window's replicas serve whatever is still queued when the trace ends.
        start, end = w * window_s, (w + 1) * window_s if w + 1 < windows else math.inf
        first_new = arrived
        while arrived < len(requests) and requests[arrived].arrival < end:
            arrived += 1
        queue = waiting + list(range(first_new, arrived))
        carried = sorted(free)
        for n in range(1, MAX_REPLICAS + 1):
            servers = carried[:n] + [start] * max(0, n - len(carried))
            heapq.heapify(servers)
            ok, left = True, []
            for k in queue:
                r, budget = requests[k], slack - transfer_s[k]
                begin = max(r.arrival, servers[0])
                if begin >= end:  # starts under the next window's replicas: only its wait so far counts here
                    left.append(k)
                    ok = ok and end - r.arrival <= budget
                    continue
                heapq.heapreplace(servers, begin + prefill_s[k])
                joins[k] = begin + prefill_s[k] + transfer_s[k]
                ok = ok and begin - r.arrival <= budget
            if ok or n == MAX_REPLICAS:
                break
        counts.append(n)
        free, waiting = servers, left
    return tuple(counts), joins


def _decode(
    requests: Sequence[Request], profile: Profile, joins: Sequence[float], itl: float, window_s: float, windows: int
) -> tuple[int, ...]:
    context = sum(r.prompt + r.output / 2 for r in requests) / len(requests)
    batch = profile.max_batch_within(itl, context)
    step = profile.decode_step_seconds(batch, batch * context)
    # (time, Δseats, Δreserved KV): a request holds a seat and its KV from arrival (the decode worker takes it
    # before asking for its prefill) until its last token, output·step(B*) after its KV arrives.
    events: list[tuple[float, int, int]] = []
    for r, join in zip(requests, joins, strict=True):
        reserve = min(r.prompt + r.output, profile.kv_capacity)
        events += [(r.arrival, 1, reserve), (join + r.output * step, -1, -reserve)]
    events.sort()
    peak_seats, peak_kv = [0] * windows, [0] * windows
    seats = kv = current = 0
    for t, d_seats, d_kv in events:
        w = min(windows - 1, int(t // window_s))
        while current < w:  # a window starts with what is still running from before
            current += 1
            peak_seats[current], peak_kv[current] = seats, kv
        seats += d_seats
        kv += d_kv
        peak_seats[w] = max(peak_seats[w], seats)
        peak_kv[w] = max(peak_kv[w], kv)
    return tuple(
        max(1, math.ceil(peak_seats[w] / batch), math.ceil(peak_kv[w] / profile.kv_capacity)) for w in range(windows)
    )
