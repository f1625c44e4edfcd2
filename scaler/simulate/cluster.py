"""The modelled PD cluster: a prefill pool pulling from a queue, KV transfer, a decode pool with continuous batching.

Time is simulated. Prefill is event-exact: replicas pull requests one at a time from a FIFO queue the way
Dynamo's prefill workers share the `worker-group` consumer (a message is acked on receipt, so the consumer's lag is
the number not yet delivered). Decode advances in fixed ticks: within a tick each replica's step time is constant
(from the profile at its batch and total context), and every sequence moves one token per step, so finishes and
first tokens fall at exact fractional steps without iterating over sequences. See docs/simulate.md.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence

from scaler.simulate.profile import Profile
from scaler.simulate.trace import Request

PREFILL, DECODE = "prefill", "decode"
ROLES = (PREFILL, DECODE)

_PREFILL_DONE, _KV_ARRIVED, _READY = 0, 1, 2
_NAN = float("nan")


class Record:
    """One request's way through the cluster (times in simulated seconds; NaN until it happens)."""

    __slots__ = (
        "admitted",
        "arrival",
        "decode",
        "finish",
        "first_token",
        "id",
        "output",
        "prefill_end",
        "prefill_s",
        "prefill_start",
        "prompt",
        "reserve",
        "s0",
        "transfer_s",
    )

    def __init__(self, id: int, request: Request, prefill_s: float, transfer_s: float, reserve: int) -> None:
        self.id = id
        self.arrival = request.arrival
        self.prompt = request.prompt
        self.output = request.output
        self.prefill_s = prefill_s  # unloaded prefill time of this prompt
        self.transfer_s = transfer_s
        self.reserve = reserve  # KV tokens held on the decode replica from admission to finish
        self.decode: DecodeReplica | None = None
        self.admitted = self.prefill_start = self.prefill_end = _NAN
        self.first_token = self.finish = _NAN
        self.s0 = 0.0  # the decode replica's step count when the sequence joined

    @property
    def ttft(self) -> float:
        return self.first_token - self.arrival

    @property
    def itl(self) -> float:
        """Mean time between output tokens (NaN for a single-token answer)."""
        return (self.finish - self.first_token) / (self.output - 1) if self.output > 1 else _NAN


class Replica:
    __slots__ = ("created", "draining", "index", "name", "ready_at")

    def __init__(self, role: str, index: int, created: float, ready_at: float) -> None:
        self.index = index
        self.name = f"sim-{role}-{index}"
        self.created = created
        self.ready_at = ready_at
        self.draining = False  # removed: takes no new work, stops once what it holds is done


class PrefillReplica(Replica):
    __slots__ = ("busy",)

    def __init__(self, index: int, created: float, ready_at: float) -> None:
        super().__init__(PREFILL, index, created, ready_at)
        self.busy: Record | None = None


class DecodeReplica(Replica):
    __slots__ = (
        "assigned",
        "base",
        "busy_s",
        "finishing",
        "first_tokens",
        "joining",
        "pending_prompt",
        "reserved",
        "running",
        "steps",
    )

    def __init__(self, index: int, created: float, ready_at: float) -> None:
        super().__init__(DECODE, index, created, ready_at)
        self.steps = 0.0  # decode steps done so far (fractional: ticks are not aligned with steps)
        self.running = 0
        self.base = 0.0  # Σ (prompt - s0) over running sequences: their total context is base + running·steps
        self.finishing: list[tuple[float, int]] = []  # (step at which the sequence ends, record id)
        self.first_tokens: list[tuple[float, int]] = []
        self.joining: deque[Record] = deque()  # KV arrived, joining at the next step
        self.assigned = 0  # requests routed here and not finished: in prefill, transferring, joining, running
        self.reserved = 0  # KV tokens reserved by the assigned requests
        self.pending_prompt = 0  # prompt tokens of assigned requests not yet running (their blocks are allocated)
        self.busy_s = 0.0  # time spent stepping, for GPU utilisation

    def kv_used_tokens(self, block_size: int) -> float:
        """KV in use as the engine counts it: whole blocks (half a block of rounding per sequence on average)."""
        return self.base + self.running * self.steps + self.pending_prompt + self.assigned * block_size / 2


class Cluster:
    def __init__(self, requests: Sequence[Request], profile: Profile, startup_delay: float = 120.0) -> None:
        self.profile = profile
        self.startup_delay = startup_delay  # a new replica serves this long after it is created
        self.now = 0.0
        prefill_s: dict[int, float] = {}
        self.records = []
        for i, r in enumerate(requests):
            if r.prompt not in prefill_s:
                prefill_s[r.prompt] = profile.prefill_seconds(r.prompt)
            # A request longer than a whole replica's KV is admitted alone (a real engine would refuse it).
            reserve = min(r.prompt + r.output, profile.kv_capacity)
            self.records.append(
                Record(i, r, prefill_s[r.prompt], profile.kv_transfer_seconds(r.prompt), reserve)
            )  # fmt: skip
        self.horizon = requests[-1].arrival if requests else 0.0  # GPU time is counted over [0, horizon]
        self.completed = 0
        self._next_arrival = 0
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.prefill_queue: deque[Record] = deque()
        self.decode_waiting: deque[Record] = deque()  # no decode replica has KV room for them yet
        self.prefill: list[PrefillReplica] = []
        self.decode: list[DecodeReplica] = []
        self._idle_prefill: deque[PrefillReplica] = deque()
        self._count = {PREFILL: 0, DECODE: 0}
        self.gpu_seconds = {PREFILL: 0.0, DECODE: 0.0}
        # Set `watch_empty_prefill` to learn (`woken`) the moment work is queued for a prefill role at zero
        # replicas: a push-activated scaler reacts then rather than at its next poll.
        self.watch_empty_prefill = False
        self.woken = False

    def preload(self, prefill: int, decode: int) -> None:
        """Replicas already serving when the trace starts."""
        for _ in range(prefill):
            self._add(PREFILL, -math.inf)
        for _ in range(decode):
            self._add(DECODE, -math.inf)

    # -- what autoscalers see --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.completed == len(self.records)

    def prefill_lag(self) -> int:
        """The consumer's lag: requests published and not yet delivered to a prefill worker."""
        return len(self.prefill_queue)

    def replicas(self, role: str) -> int:
        """The role's replica count (the scale subresource): not removed, ready or starting."""
        pool = self.prefill if role == PREFILL else self.decode
        return sum(1 for r in pool if not r.draining)

    def ready_replicas(self, role: str) -> int:
        pool = self.prefill if role == PREFILL else self.decode
        return sum(1 for r in pool if not r.draining and r.ready_at <= self.now)

    def kv_fill(self, replica: DecodeReplica) -> float:
        return min(1.0, replica.kv_used_tokens(self.profile.block_size) / self.profile.kv_capacity)

    # -- scaling ----------------------------------------------------------------------------------------

    def scale(self, role: str, replicas: int) -> None:
        """Set the role's replica count now: new replicas start (ready after the start-up delay); removed ones
        (those still starting first, then the newest) take no more work and stop once what they hold is done."""
        pool: list[PrefillReplica] | list[DecodeReplica] = self.prefill if role == PREFILL else self.decode
        live = [r for r in pool if not r.draining]
        for _ in range(replicas - len(live)):
            self._add(role, self.now)
        if replicas < len(live):
            doomed = sorted(live, key=lambda r: (r.ready_at <= self.now, -r.index))
            for r in doomed[: len(live) - replicas]:
                self._remove(r)

    def _add(self, role: str, now: float) -> None:
        index = self._count[role]
        self._count[role] += 1
        ready_at = now + self.startup_delay if now > -math.inf else -math.inf
        created = max(now, 0.0)
        if role == PREFILL:
            p = PrefillReplica(index, created, ready_at)
            self.prefill.append(p)
            if ready_at > -math.inf:
                self._push(ready_at, _READY, p)
            else:
                self._idle_prefill.append(p)
        else:
            d = DecodeReplica(index, created, ready_at)
            self.decode.append(d)
            if ready_at > -math.inf:
                self._push(ready_at, _READY, d)

    def _remove(self, r: Replica) -> None:
        r.draining = True
        if isinstance(r, PrefillReplica):
            if r.busy is None:
                if r in self._idle_prefill:
                    self._idle_prefill.remove(r)
                self._stop(r, self.now)
        elif isinstance(r, DecodeReplica) and r.assigned == 0:
            self._stop(r, self.now)

    def _stop(self, r: Replica, now: float) -> None:
        role = PREFILL if isinstance(r, PrefillReplica) else DECODE
        self.gpu_seconds[role] += self.profile.gpus * _overlap(r.created, now, self.horizon)
        if isinstance(r, PrefillReplica):
            self.prefill.remove(r)
        elif isinstance(r, DecodeReplica):
            self.decode.remove(r)

    def finish_accounting(self) -> None:
        """Count the GPU time of replicas still running at the end."""
        for role, pool in ((PREFILL, self.prefill), (DECODE, self.decode)):
            for r in pool:
                self.gpu_seconds[role] += self.profile.gpus * _overlap(r.created, math.inf, self.horizon)

    # -- events ----------------------------------------------------------------------------------------

    def _push(self, t: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, payload))

    def advance(self, until: float) -> bool:
        """Handle arrivals and events before `until`. Stops early, returning True, when `woken` (at `self.now`)."""
        records, events = self.records, self._events
        n = len(records)
        while not self.woken:
            ta = records[self._next_arrival].arrival if self._next_arrival < n else math.inf
            te = events[0][0] if events else math.inf
            if ta <= te:
                if ta >= until:
                    break
                self.now = ta
                self._next_arrival += 1
                self._arrive(records[self._next_arrival - 1])
            else:
                if te >= until:
                    break
                t, _, kind, payload = heapq.heappop(events)
                self.now = t
                if kind == _PREFILL_DONE:
                    assert isinstance(payload, PrefillReplica)
                    self._prefill_done(payload, t)
                elif kind == _KV_ARRIVED:
                    assert isinstance(payload, Record)
                    assert payload.decode is not None
                    payload.decode.joining.append(payload)
                elif isinstance(payload, PrefillReplica):
                    if not payload.draining:
                        self._prefill_idle(payload, t)
                elif isinstance(payload, DecodeReplica):
                    self._admit_waiting(t)
        if self.woken:
            return True
        self.now = until
        return False

    def _arrive(self, rec: Record) -> None:
        if self.decode_waiting or not self._route(rec):
            self.decode_waiting.append(rec)
        else:
            self._publish(rec, self.now)

    def _route(self, rec: Record) -> bool:
        """Assign the least loaded decode replica that has a free seat (max_num_seqs counts the requests it is
        prefilling remotely too) and KV room, as the router and the decode engine's scheduler do; reserve the
        request's KV. A request nobody can take waits, before its prefill, with no KV allocated."""
        best: DecodeReplica | None = None
        capacity, seats, now = self.profile.kv_capacity, self.profile.max_num_seqs, self.now
        for d in self.decode:
            if d.draining or d.ready_at > now or d.assigned >= seats or d.reserved + rec.reserve > capacity:
                continue
            if best is None or (d.assigned, d.reserved) < (best.assigned, best.reserved):
                best = d
        if best is None:
            return False
        rec.decode = best
        best.assigned += 1
        best.reserved += rec.reserve
        best.pending_prompt += rec.prompt
        return True

    def _admit_waiting(self, t: float) -> None:
        while self.decode_waiting and self._route(self.decode_waiting[0]):
            self._publish(self.decode_waiting.popleft(), t)

    def _publish(self, rec: Record, t: float) -> None:
        """The decode worker publishes the remote-prefill request to the queue."""
        rec.admitted = t
        if self._idle_prefill:
            self._start_prefill(self._idle_prefill.popleft(), rec, t)
            return
        self.prefill_queue.append(rec)
        if self.watch_empty_prefill and not any(not p.draining for p in self.prefill):
            self.woken = True

    def _start_prefill(self, p: PrefillReplica, rec: Record, t: float) -> None:
        p.busy = rec
        rec.prefill_start = t
        self._push(t + rec.prefill_s, _PREFILL_DONE, p)

    def _prefill_done(self, p: PrefillReplica, t: float) -> None:
        rec = p.busy
        assert rec is not None
        p.busy = None
        rec.prefill_end = t
        self._push(t + rec.transfer_s, _KV_ARRIVED, rec)
        if p.draining:
            self._stop(p, t)
        else:
            self._prefill_idle(p, t)

    def _prefill_idle(self, p: PrefillReplica, t: float) -> None:
        if self.prefill_queue:
            self._start_prefill(p, self.prefill_queue.popleft(), t)
        else:
            self._idle_prefill.append(p)

    # -- decode ----------------------------------------------------------------------------------------

    def decode_tick(self, start: float, dt: float) -> None:
        """Advance every decode replica over [start, start + dt); sequences whose KV arrived join at the end."""
        records, step_seconds = self.records, self.profile.decode_step_seconds
        end_time = start + dt
        freed = False
        drained = []
        for d in self.decode:
            if d.running:
                tau = step_seconds(d.running, d.base + d.running * d.steps)
                steps = d.steps
                end = steps + dt / tau
                firsts = d.first_tokens
                while firsts and firsts[0][0] <= end:
                    s, i = heapq.heappop(firsts)
                    records[i].first_token = start + (s - steps) * tau
                heap = d.finishing
                while heap and heap[0][0] <= end:
                    s, i = heapq.heappop(heap)
                    rec = records[i]
                    rec.finish = start + (s - steps) * tau
                    d.running -= 1
                    d.base -= rec.prompt - rec.s0
                    d.assigned -= 1
                    d.reserved -= rec.reserve
                    self.completed += 1
                    freed = True
                d.steps = end
                d.busy_s += dt
            while d.joining:
                rec = d.joining.popleft()
                rec.s0 = d.steps
                d.running += 1
                d.base += rec.prompt - d.steps
                d.pending_prompt -= rec.prompt
                heapq.heappush(d.first_tokens, (d.steps + 1, rec.id))
                heapq.heappush(d.finishing, (d.steps + rec.output, rec.id))
            if d.draining and d.assigned == 0:
                drained.append(d)
        for d in drained:
            self._stop(d, end_time)
        self.now = end_time
        if freed and self.decode_waiting:
            self._admit_waiting(end_time)


def _overlap(start: float, stop: float, horizon: float) -> float:
    return max(0.0, min(stop, horizon) - max(start, 0.0))
