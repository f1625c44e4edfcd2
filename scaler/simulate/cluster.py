"""The modelled PD cluster: a prefill pool pulling from a queue, KV transfer, decode engines with continuous
batching, paged KV and preemption.

Time is simulated. Prefill is event-exact: replicas pull requests one at a time from a FIFO queue the way
Dynamo's prefill workers share the `worker-group` consumer (a message is acked on receipt, so the consumer's lag is
the number not yet delivered). Decode follows vLLM's scheduler: the router (round-robin, as the ACK guide sets
Dynamo's) sends each request to a decode engine; the engine admits from its own FIFO waiting queue while it has a
free sequence slot (`max_num_seqs`) and blocks for the prompt, then asks for the remote prefill; KV grows block by
block as tokens are produced; when blocks run out the newest running sequence is preempted and later recomputed
(vLLM's default). Decode advances in fixed ticks: within a tick each engine's step time is constant (from the
profile at its batch and total context), and every sequence moves one token per step, so finishes and first
tokens fall at exact fractional steps without iterating over sequences. See docs/simulate.md.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence

from scaler.deployment import StartupDelay
from scaler.profile import Profile
from scaler.simulate.trace import Request

PREFILL, DECODE = "prefill", "decode"
ROLES = (PREFILL, DECODE)
ROUTERS = ("round-robin", "least-loaded")

_PREFILL_DONE, _KV_ARRIVED, _READY = 0, 1, 2
_NAN = float("nan")

# Where a request is.
NEW, UNROUTED, WAITING, REMOTE, JOINING, RUNNING, DONE, DROPPED = range(8)


def billed_seconds(gpus: int, lifetimes: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """GPU time billed within [start, end] for replicas living over (created, stopped) each."""
    return gpus * sum(max(0.0, min(stop, end) - max(created, start)) for created, stop in lifetimes)


class Record:
    """One request's way through the cluster (times in simulated seconds; NaN until it happens)."""

    __slots__ = (
        "admitted",
        "alloc",
        "arrival",
        "ctx0",
        "decode",
        "dropped_at",
        "finish",
        "first_step_s",
        "first_token",
        "gen",
        "generated",
        "id",
        "kv_arrived",
        "output",
        "preemptions",
        "prefill_end",
        "prefill_s",
        "prefill_start",
        "prompt",
        "s0",
        "state",
        "transfer_s",
    )

    def __init__(self, id: int, request: Request, prefill_s: float, transfer_s: float, first_step_s: float) -> None:
        self.id = id
        self.arrival = request.arrival
        self.prompt = request.prompt
        self.output = request.output
        self.prefill_s = prefill_s  # unloaded prefill time of this prompt
        self.transfer_s = transfer_s
        self.first_step_s = first_step_s  # one decode step alone at this prompt
        self.decode: DecodeReplica | None = None
        self.admitted = self.prefill_start = self.prefill_end = self.kv_arrived = _NAN
        self.first_token = self.finish = self.dropped_at = _NAN
        self.state = NEW
        self.alloc = 0  # KV tokens (whole blocks) allocated at admission, until the sequence runs
        self.s0 = 0.0  # the decode engine's step count when the sequence (last) joined
        self.ctx0 = 0  # its context then
        self.generated = 0  # output tokens produced before its last preemption
        self.preemptions = 0
        self.gen = 0  # bumped at each preemption: older step events of this sequence are void

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
    """One vLLM engine: its waiting queue, the requests it admitted (awaiting KV or recomputing), the running batch."""

    __slots__ = (
        "base",
        "busy_s",
        "debt",
        "finishing",
        "first_tokens",
        "joining",
        "n_waiting",
        "order",
        "owed",
        "paid",
        "preemptions",
        "recomputing",
        "remote",
        "remote_tokens",
        "running",
        "steps",
        "waiting",
    )

    def __init__(self, index: int, created: float, ready_at: float) -> None:
        super().__init__(DECODE, index, created, ready_at)
        self.waiting: deque[Record] = deque()  # routed here, no blocks yet (preempted ones at the front)
        self.n_waiting = 0  # of them, not dropped
        self.remote = 0  # admitted, not yet running: awaiting their KV, or recomputing after a preemption
        self.remote_tokens = 0  # the blocks allocated to those, in tokens
        self.joining: deque[Record] = deque()  # KV arrived, joining at the next step
        # Preempted sequences being prefilled again on this engine, with the `owed` prefill seconds at which each
        # is done; `debt` is what is left to compute, `paid` what has been.
        self.recomputing: deque[tuple[float, Record]] = deque()
        self.owed = self.paid = self.debt = 0.0
        self.steps = 0.0  # decode steps done so far (fractional: ticks are not aligned with steps)
        self.running = 0
        self.base = 0.0  # Σ (context at join - s0) over running sequences: their total context is base + running·steps
        self.order: list[Record] = []  # running sequences in the order they joined (finished ones dropped lazily)
        self.finishing: list[tuple[float, int, int]] = []  # (step at which the sequence ends, record id, gen)
        self.first_tokens: list[tuple[float, int, int]] = []
        self.preemptions = 0
        self.busy_s = 0.0  # time spent computing, for GPU utilisation

    @property
    def seats(self) -> int:
        return self.running + self.remote

    def kv_used_tokens(self, block_size: int) -> float:
        """KV in use as the engine counts it: whole blocks — exact for admitted requests, and for running
        sequences their tokens plus half a block of rounding each (the expected partial last block)."""
        return self.base + self.running * (self.steps + block_size / 2) + self.remote_tokens

    def has_work(self) -> bool:
        return bool(self.seats or self.n_waiting)


class Cluster:
    def __init__(
        self,
        requests: Sequence[Request],
        profile: Profile,
        startup: StartupDelay | float = 120.0,
        rng: random.Random | None = None,
        request_timeout: float = math.inf,
        router: str = "round-robin",
    ) -> None:
        if router not in ROUTERS:
            raise ValueError(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
        self.profile = profile
        self.startup = startup if isinstance(startup, StartupDelay) else StartupDelay(startup, startup)
        self.rng = rng or random.Random(0)
        self.request_timeout = request_timeout  # a request whose KV has not arrived this long after it did is dropped
        self.router = router
        self._chunk_s = profile.prefill_seconds(profile.spec.max_num_batched_tokens)  # one chunk of prefill
        self.now = 0.0
        cache: dict[int, tuple[float, float, float]] = {}
        self.records = []
        for i, r in enumerate(requests):
            if r.prompt not in cache:
                cache[r.prompt] = (
                    profile.prefill_seconds(r.prompt),
                    profile.kv_transfer_seconds(r.prompt),
                    profile.decode_step_seconds(1, r.prompt),
                )
            self.records.append(Record(i, r, *cache[r.prompt]))
        self.completed = 0
        self.dropped = 0
        self.stopped_preemptions = 0  # of decode engines that have stopped
        self._next_arrival = 0
        self._next_deadline = 0
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.prefill_queue: deque[Record] = deque()
        self.published: list[Record] = []  # every remote-prefill request published to the queue, in that order
        self.unrouted: deque[Record] = deque()  # no decode engine is up to take them
        self.prefill: list[PrefillReplica] = []
        self.decode: list[DecodeReplica] = []
        self._idle_prefill: deque[PrefillReplica] = deque()
        self._eligible: list[DecodeReplica] | None = None
        self._rr = 0
        self._count = {PREFILL: 0, DECODE: 0}
        self.lifetimes: dict[str, list[tuple[float, float]]] = {PREFILL: [], DECODE: []}  # (created, stopped)
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

    # -- what autoscalers and exporters see ------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.completed + self.dropped == len(self.records)

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
        """vllm:kv_cache_usage_perc: blocks in use over the blocks the engine has."""
        return min(1.0, replica.kv_used_tokens(self.profile.block_size) / self.profile.kv_capacity)

    def gpu_seconds(self, role: str, start: float, end: float) -> float:
        """GPU time the role was billed within [start, end]: every replica from creation until it stopped."""
        pool = self.prefill if role == PREFILL else self.decode
        return billed_seconds(
            self.profile.gpus, [*self.lifetimes[role], *((r.created, math.inf) for r in pool)], start, end
        )

    # -- scaling ----------------------------------------------------------------------------------------

    def scale(self, role: str, replicas: int) -> None:
        """Set the role's replica count now: new replicas start (ready after a start-up delay drawn for each);
        removed ones (those still starting first, then the newest) take no more work and stop once what they hold
        is done."""
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
        preloaded = now == -math.inf
        ready_at = -math.inf if preloaded else now + self.startup.draw(self.rng)
        created = 0.0 if preloaded else now
        if role == PREFILL:
            p = PrefillReplica(index, created, ready_at)
            self.prefill.append(p)
            if preloaded:
                self._idle_prefill.append(p)
            else:
                self._push(ready_at, _READY, p)
        else:
            d = DecodeReplica(index, created, ready_at)
            self.decode.append(d)
            self._eligible = None
            if not preloaded:
                self._push(ready_at, _READY, d)

    def _remove(self, r: Replica) -> None:
        r.draining = True
        if isinstance(r, PrefillReplica):
            if r.busy is None:
                if r in self._idle_prefill:
                    self._idle_prefill.remove(r)
                self._stop(r, self.now)
        elif isinstance(r, DecodeReplica):
            self._eligible = None
            if not r.has_work():
                self._stop(r, self.now)

    def _stop(self, r: Replica, now: float) -> None:
        if isinstance(r, PrefillReplica):
            self.prefill.remove(r)
            self.lifetimes[PREFILL].append((r.created, now))
        elif isinstance(r, DecodeReplica):
            self.decode.remove(r)
            self.lifetimes[DECODE].append((r.created, now))
            self.stopped_preemptions += r.preemptions

    # -- events ----------------------------------------------------------------------------------------

    def _push(self, t: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, payload))

    def advance(self, until: float) -> bool:
        """Handle arrivals, deadlines and events before `until`. Stops early, returning True, when `woken` (at
        `self.now`)."""
        records, events, timeout = self.records, self._events, self.request_timeout
        n = len(records)
        while not self.woken:
            ta = records[self._next_arrival].arrival if self._next_arrival < n else math.inf
            # Deadlines come in arrival order: arrival + timeout.
            td = (
                records[self._next_deadline].arrival + timeout if self._next_deadline < self._next_arrival else math.inf
            )
            te = events[0][0] if events else math.inf
            t = min(ta, td, te)
            if t >= until:
                break
            self.now = t
            if t == ta:
                self._next_arrival += 1
                self._arrive(records[self._next_arrival - 1])
            elif t == td:
                self._next_deadline += 1
                self._deadline(records[self._next_deadline - 1])
            else:
                _, _, kind, payload = heapq.heappop(events)
                if kind == _PREFILL_DONE:
                    assert isinstance(payload, PrefillReplica)
                    self._prefill_done(payload, t)
                elif kind == _KV_ARRIVED:
                    assert isinstance(payload, Record)
                    self._kv_arrived(payload, t)
                elif isinstance(payload, PrefillReplica):
                    if not payload.draining:
                        self._prefill_idle(payload, t)
                elif isinstance(payload, DecodeReplica):
                    self._eligible = None
                    while self.unrouted and self._route(self.unrouted[0]):
                        self.unrouted.popleft()
        if self.woken:
            return True
        self.now = until
        return False

    def _arrive(self, rec: Record) -> None:
        if self.unrouted or not self._route(rec):
            rec.state = UNROUTED
            self.unrouted.append(rec)

    def _pick(self) -> DecodeReplica | None:
        if self._eligible is None:
            now = self.now
            self._eligible = [d for d in self.decode if not d.draining and d.ready_at <= now]
        eligible = self._eligible
        if not eligible:
            return None
        if self.router == "round-robin":
            self._rr += 1
            return eligible[(self._rr - 1) % len(eligible)]
        block = self.profile.block_size
        return min(eligible, key=lambda d: (d.seats + d.n_waiting, d.kv_used_tokens(block)))

    def _route(self, rec: Record) -> bool:
        """The router's choice of decode engine; the request joins that engine's waiting queue."""
        d = self._pick()
        if d is None:
            return False
        rec.decode = d
        rec.state = WAITING
        d.waiting.append(rec)
        d.n_waiting += 1
        self._admit(d, self.now)
        return True

    def _admit(self, d: DecodeReplica, t: float) -> None:
        """The engine's scheduler, first come first served: while the head of the waiting queue finds a free
        sequence slot and blocks for its prompt, allocate them. A new request then asks for its remote prefill; a
        preempted one is prefilled again on this engine (prompt and the tokens it had produced)."""
        profile = self.profile
        block, capacity, seats = profile.block_size, profile.kv_capacity, profile.max_num_seqs
        while d.waiting:
            rec = d.waiting[0]
            if rec.state != WAITING:  # dropped while waiting
                d.waiting.popleft()
                continue
            if d.seats >= seats:
                break
            tokens = rec.prompt + rec.generated
            alloc = -(-tokens // block) * block
            if d.kv_used_tokens(block) + alloc > capacity:
                break
            d.waiting.popleft()
            d.n_waiting -= 1
            d.remote += 1
            d.remote_tokens += alloc
            rec.alloc = alloc
            if rec.preemptions == 0:
                rec.state = REMOTE
                self._publish(rec, t)
            else:
                rec.state = JOINING
                seconds = profile.prefill_seconds(tokens)
                d.owed += seconds
                d.debt += seconds
                d.recomputing.append((d.owed, rec))

    def _deadline(self, rec: Record) -> None:
        """DYNAMO_RP_TIMEOUT: a request whose KV has not reached its decode engine in time fails. Its blocks are
        freed; a remote-prefill message already published stays in the queue and is still prefilled."""
        state, d = rec.state, rec.decode
        if state not in (UNROUTED, WAITING, REMOTE):
            return
        if state == UNROUTED:
            self.unrouted.remove(rec)
        elif state == WAITING:
            assert d is not None
            d.n_waiting -= 1
        else:
            assert d is not None
            d.remote -= 1
            d.remote_tokens -= rec.alloc
        rec.state = DROPPED
        rec.dropped_at = self.now
        self.dropped += 1
        if d is not None:
            self._admit(d, self.now)
            self._stop_if_drained(d, self.now)

    def _publish(self, rec: Record, t: float) -> None:
        """The decode worker publishes the remote-prefill request to the queue."""
        rec.admitted = t
        self.published.append(rec)
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

    def _kv_arrived(self, rec: Record, t: float) -> None:
        if rec.state != REMOTE:  # dropped: the transfer has nowhere to go
            return
        assert rec.decode is not None
        rec.kv_arrived = t
        rec.state = JOINING
        rec.decode.joining.append(rec)

    def _prefill_idle(self, p: PrefillReplica, t: float) -> None:
        if self.prefill_queue:
            self._start_prefill(p, self.prefill_queue.popleft(), t)
        else:
            self._idle_prefill.append(p)

    def _stop_if_drained(self, d: DecodeReplica, t: float) -> None:
        if d.draining and not d.has_work() and d in self.decode:
            self._stop(d, t)

    # -- decode ----------------------------------------------------------------------------------------

    def decode_tick(self, start: float, dt: float) -> None:
        """Advance every decode engine over [start, start + dt): steps, then preemptions if its blocks ran out,
        then the sequences whose KV arrived (or whose recompute ended) join, then admissions."""
        end = start + dt
        for d in list(self.decode):
            if d.running or d.debt > 0:
                self._steps(d, start, end)
            if d.running:
                self._preempt_if_full(d)
            if d.joining or d.recomputing:
                self._join(d, end)
            if d.waiting:
                self._admit(d, end)
            if d.draining and not d.has_work():
                self._stop(d, end)
        self.now = end

    def _steps(self, d: DecodeReplica, start: float, end: float) -> None:
        """Steps over [start, end). A recompute is chunked prefill, as in vLLM: while one is owed, every step
        also prefills a chunk of `max_num_batched_tokens` and takes that much longer; with no sequence running
        the engine only prefills."""
        if not d.running:
            pay = min(d.debt, end - start)
            d.debt -= pay
            d.paid += pay
            d.busy_s += pay
            return
        records, profile = self.records, self.profile
        tau = profile.decode_step_seconds(d.running, d.base + d.running * d.steps)
        segments = []  # (time, step, step time) where the step time changes
        t, steps = start, d.steps
        if d.debt > 0:
            chunk = self._chunk_s
            slow = tau + chunk
            n = min((end - t) / slow, d.debt / chunk)
            segments.append((t, steps, slow))
            paid = min(d.debt, n * chunk)
            d.debt -= paid
            d.paid += paid
            if d.debt < 1e-12:
                d.debt = 0.0
            t += n * slow
            steps += n
        if t < end:
            segments.append((t, steps, tau))
            steps += (end - t) / tau
        last = steps

        def at(s: float) -> float:
            t0, s0, step_s = segments[0]
            for seg in segments[1:]:
                if seg[1] <= s:
                    t0, s0, step_s = seg
            return t0 + (s - s0) * step_s

        firsts = d.first_tokens
        while firsts and firsts[0][0] <= last:
            s, i, gen = heapq.heappop(firsts)
            if records[i].gen == gen:
                records[i].first_token = at(s)
        heap = d.finishing
        while heap and heap[0][0] <= last:
            s, i, gen = heapq.heappop(heap)
            rec = records[i]
            if rec.gen != gen:
                continue
            rec.finish = at(s)
            rec.state = DONE
            d.running -= 1
            d.base -= rec.ctx0 - rec.s0
            self.completed += 1
        d.steps = last
        d.busy_s += end - start
        if len(d.order) > 2 * d.running + 64:
            d.order = [r for r in d.order if r.state == RUNNING and r.decode is d]

    def _preempt_if_full(self, d: DecodeReplica) -> None:
        """Out of blocks: preempt the newest running sequence (vLLM's `self.running.pop()`), free its blocks and put
        it first in the waiting queue, to be recomputed; until the rest fits."""
        block, capacity = self.profile.block_size, self.profile.kv_capacity
        while d.running > 1 and d.kv_used_tokens(block) > capacity:
            rec = d.order.pop()
            if rec.state != RUNNING or rec.decode is not d:
                continue
            rec.generated += min(rec.output - rec.generated - 1, math.floor(d.steps - rec.s0))
            d.running -= 1
            d.base -= rec.ctx0 - rec.s0
            rec.gen += 1
            rec.preemptions += 1
            rec.state = WAITING
            d.preemptions += 1
            d.waiting.appendleft(rec)
            d.n_waiting += 1

    def _join(self, d: DecodeReplica, end: float) -> None:
        ready = list(d.joining)
        d.joining.clear()
        while d.recomputing and d.recomputing[0][0] <= d.paid + 1e-9:
            ready.append(d.recomputing.popleft()[1])
        for rec in ready:
            rec.s0 = d.steps
            rec.ctx0 = rec.prompt + rec.generated
            d.running += 1
            d.base += rec.ctx0 - d.steps
            d.remote -= 1
            d.remote_tokens -= rec.alloc
            rec.state = RUNNING
            d.order.append(rec)
            if math.isnan(rec.first_token):
                heapq.heappush(d.first_tokens, (d.steps + 1, rec.id, rec.gen))
            heapq.heappush(d.finishing, (d.steps + rec.output - rec.generated, rec.id, rec.gen))
