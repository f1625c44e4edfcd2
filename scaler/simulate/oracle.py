"""The oracle: the replicas each role needs, knowing the future, under the constraints every policy has —
`maxReplicaCount` per role, the start-up delay, the same cluster.

1. Need per window (`--oracle-window`). Prefill: the pool is a FIFO queue served by identical replicas, one
   request at a time. For each window in turn (carrying over the replicas' busy times and the requests still
   queued), the fewest replicas, up to maxReplicaCount, with which every request that starts its prefill in the
   window waited at most its budget, and every one still queued at the window's end has not yet waited longer.
   The budget is what the SLO allowance leaves for queueing: the TTFT slack less one decode tick (a sequence
   joins at a step boundary) and one step at the ITL objective (the first token of a loaded batch). Where even
   maxReplicaCount misses a budget, the window gets the cap: every request's prefill runs anyway (a dropped
   request's too), so a replica held back would only push that work onto the requests behind.
   Decode, from each request's prefill start and KV arrival under that prefill plan (capped, so a request may
   wait long): B* = the largest batch (up to max_num_seqs) whose step meets the ITL objective at the trace's mean
   context (prompt + half the output); a request runs from its KV's arrival until its last token, output·step(B*)
   later, and holds a sequence slot and at most prompt + output tokens of KV from its prefill start until then.
   The window needs enough replicas for its peak running sequences at B* each, its peak slots at max_num_seqs
   each and its peak KV, up to maxReplicaCount. A request whose KV would come later than the request timeout
   (prefill capped) is dropped whatever decode does: it is left out.
2. Replicas, not windows: the k-th replica of a role is needed while a window needs at least k. It is created
   the longest start-up delay before it is needed (so it is ready whatever the draw), and kept through a gap in
   its need no longer than that delay (starting it again would bill as much). Replicas needed before the first
   start-up delay has passed are running at the start, as a static deployment's are.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scaler.profile import Profile
from scaler.simulate.cluster import DECODE, PREFILL
from scaler.simulate.trace import Request

if TYPE_CHECKING:
    from scaler.deployment import Deployment
    from scaler.simulate.policies import Context, Settings
    from scaler.simulate.simulation import Config


@dataclass(frozen=True)
class Plan:
    window_s: float
    prefill: tuple[int, ...]  # replicas needed per window
    decode: tuple[int, ...]


@dataclass(frozen=True)
class Schedule:
    initial: tuple[int, int]  # running at the start
    changes: tuple[tuple[float, str, int], ...]  # (time, role, replicas), in time order
    plan: Plan


def schedule(ctx: Context) -> Schedule:
    """The schedule for the run's requests."""
    return planned(ctx.requests, ctx.deployment, ctx.settings, ctx.config)


def planned(requests: Sequence[Request], deployment: Deployment, settings: Settings, config: Config) -> Schedule:
    need = plan(
        requests,
        deployment.profile,
        settings.ttft_slack,
        settings.itl,
        config.tick,
        settings.oracle_window,
        (settings.prefill.max_replicas, settings.decode.max_replicas),
        config.request_timeout,
    )
    return order(need, deployment.startup.high)


def order(need: Plan, startup: float) -> Schedule:
    """When to create and remove each role's replicas so that every window has what it needs, ready."""
    initial: list[int] = []
    changes: list[tuple[float, str, int]] = []
    for role, counts in ((PREFILL, need.prefill), (DECODE, need.decode)):
        boundaries: list[tuple[float, int]] = []  # (time, +1 / -1)
        for level in range(1, max(counts, default=0) + 1):
            for start, stop in _alive(counts, level, need.window_s, startup):
                boundaries += [(start, 1), (stop, -1)]
        boundaries.sort()
        count = sum(1 for t, d in boundaries if d > 0 and t <= 0) - sum(1 for t, d in boundaries if d < 0 and t <= 0)
        initial.append(max(1, count))
        for t, d in boundaries:
            if t <= 0:
                continue
            count += d
            if changes and changes[-1][0] == t and changes[-1][1] == role:
                changes[-1] = (t, role, max(1, count))
            else:
                changes.append((t, role, max(1, count)))
    changes.sort(key=lambda c: c[0])
    deduped: list[tuple[float, str, int]] = []
    current = {PREFILL: initial[0], DECODE: initial[1]}
    for t, role, n in changes:
        if n != current[role]:
            deduped.append((t, role, n))
            current[role] = n
    return Schedule((initial[0], initial[1]), tuple(deduped), need)


def _alive(counts: Sequence[int], level: int, window_s: float, startup: float) -> list[tuple[float, float]]:
    """The spans during which the `level`-th replica exists: created `startup` before it is needed, kept through
    gaps no longer than `startup`; the last lives on (it serves the drain)."""
    spans: list[tuple[float, float]] = []
    w = 0
    while w < len(counts):
        if counts[w] < level:
            w += 1
            continue
        first = w
        while w < len(counts) and counts[w] >= level:
            w += 1
        start, stop = first * window_s, (w * window_s if w < len(counts) else math.inf)
        if spans and start - spans[-1][1] <= startup:
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((start, stop))
    return [(start - startup if start > 0 else -math.inf, stop) for start, stop in spans]


def plan(
    requests: Sequence[Request],
    profile: Profile,
    ttft_slack: float,
    itl: float,
    tick: float,
    window_s: float,
    caps: tuple[int, int] = (256, 256),
    timeout: float = math.inf,
) -> Plan:
    if not requests:
        return Plan(window_s, (1,), (1,))
    windows = math.floor(requests[-1].arrival / window_s) + 1
    prefill_s = [profile.prefill_seconds(r.prompt) for r in requests]
    transfer_s = [profile.kv_transfer_seconds(r.prompt) for r in requests]
    prefill, begins, joins = _prefill(
        requests, prefill_s, transfer_s, ttft_slack - tick - itl, window_s, windows, caps[0]
    )
    decode = _decode(requests, profile, begins, joins, itl, window_s, windows, caps[1], timeout)
    return Plan(window_s, prefill, decode)


def _prefill(
    requests: Sequence[Request],
    prefill_s: Sequence[float],
    transfer_s: Sequence[float],
    budget: float,
    window_s: float,
    windows: int,
    cap: int,
) -> tuple[tuple[int, ...], list[float], list[float]]:
    """Replicas per window, and each request's prefill start and KV arrival under that plan."""
    counts, begins, joins = [], [0.0] * len(requests), [0.0] * len(requests)
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
        for n in range(1, cap + 1):
            servers = carried[:n] + [start] * max(0, n - len(carried))
            heapq.heapify(servers)
            ok, left = True, []
            for k in queue:
                r = requests[k]
                begin = max(r.arrival, servers[0])
                if begin >= end:  # starts under the next window's replicas: only its wait so far counts here
                    left.append(k)
                    ok = ok and end - r.arrival <= budget
                    continue
                heapq.heapreplace(servers, begin + prefill_s[k])
                begins[k] = begin
                joins[k] = begin + prefill_s[k] + transfer_s[k]
                ok = ok and begin - r.arrival <= budget
            if ok:
                break
        counts.append(n)
        free, waiting = servers, left
    return tuple(counts), begins, joins


def _decode(
    requests: Sequence[Request],
    profile: Profile,
    begins: Sequence[float],
    joins: Sequence[float],
    itl: float,
    window_s: float,
    windows: int,
    cap: int,
    timeout: float,
) -> tuple[int, ...]:
    context = sum(r.prompt + r.output / 2 for r in requests) / len(requests)
    batch = profile.max_batch_within(itl, context)
    step = profile.decode_step_seconds(batch, batch * context)
    # (time, Δrunning, Δseats, ΔKV). A request runs from its KV's arrival until its last token, output·step(B*)
    # later: at most B* running per replica keeps the ITL objective. It holds a sequence slot (max_num_seqs per
    # replica) and at most prompt + output tokens of KV from its admission until then; admission may be as late
    # as its prefill start in the plan without delaying it (the engine admits first come first served, so every
    # request admitted before it started its prefill before it too), and no later.
    events: list[tuple[float, int, int, int]] = []
    for r, begin, join in zip(requests, begins, joins, strict=True):
        if join - r.arrival > timeout:
            continue
        kv, end = r.prompt + r.output, join + r.output * step
        events += [(begin, 0, 1, kv), (join, 1, 0, 0), (end, -1, -1, -kv)]
    events.sort()
    peak_running, peak_seats, peak_kv = [0] * windows, [0] * windows, [0] * windows
    running = seats = kv = current = 0
    for t, d_running, d_seats, d_kv in events:
        w = min(windows - 1, int(t // window_s))
        while current < w:  # a window starts with what is still running from before
            current += 1
            peak_running[current], peak_seats[current], peak_kv[current] = running, seats, kv
        running += d_running
        seats += d_seats
        kv += d_kv
        peak_running[w] = max(peak_running[w], running)
        peak_seats[w] = max(peak_seats[w], seats)
        peak_kv[w] = max(peak_kv[w], kv)
    return tuple(
        min(
            cap,
            max(
                1,
                math.ceil(peak_running[w] / batch),
                math.ceil(peak_seats[w] / profile.max_num_seqs),
                math.ceil(peak_kv[w] / profile.kv_capacity),
            ),
        )
        for w in range(windows)
    )
