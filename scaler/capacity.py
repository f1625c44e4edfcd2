"""The capacity policy: each role's demand against one replica's capacity, in one unit. Pure: no clock, no I/O.

KEDA's `AverageValue` turns value and target into `ceil(demand / capacity)` replicas, so the value is the role's
demand and the target is what one replica sustains within the SLO:

- prefill, in prompt tokens per second: the arrival rate forecast over the start-up delay (capacity ordered now
  serves a start-up delay later), with queueing head-room for the TTFT SLO, plus the backlog's tokens to drain by
  the time capacity ordered now serves; against one replica's prefill throughput.
- decode, in sequences: what the role holds (running + waiting, or its KV cache's worth of sequences if that is
  more), its running batch grown to the busiest prefill deliveries within the burst memory (the waiting, mostly
  the prefill backlog, held as they are, up to what a prefill role meeting its TTFT SLO has in flight); against
  the sequences one
  replica runs within the ITL SLO (its seats), its KV cache counted full at 90 %. Optional bounds keep decode
  within `minDecodePerPrefill`..`maxDecodePerPrefill` replicas per prefill replica, the lower one given or
  derived from the prompt/output mix (`decodePerPrefill: auto`).

With `refineCapacity`, one prefill replica's capacity is measured where the queue shows it: the prompt tokens the
role took off the queue per second and per ready replica, over a stretch of at least a window during which requests
waited undelivered at every sample (no worker had room, so that rate is what the replicas sustain) and the ready
replicas stayed the same. The newest such stretch in the history sets the target; without one, the configured
figure does and the reason says why.

Rates come from a source's sample history, never from state kept between calls, so two scaler replicas reading
the same sources reach the same answer. Scale-down is held by the burst term: the prefill forecast is at least
the busiest quarter-window of the last ten minutes (bursts shorter than a start-up delay can only be met by capacity
already there, and they recur), so replicas go only once that long a stretch fits fewer.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scaler.errors import SourceUnavailable
from scaler.observations import Decision, DecodeLoad, PrefillHistory, QueueSample, ReplicaHistory

# Prefill provisions for the busiest half-window seen this long ago (at least a start-up delay): a burst shorter
# than the start-up delay is over before capacity ordered for it arrives, so only capacity kept since the last
# one serves the next.
BURST_MEMORY = 600.0
FORECASTS_KEPT = 64  # on one history snapshot: one per trigger settings and count reading it


@dataclass(frozen=True)
class PrefillSettings:
    tokens_per_second: float  # prompt tokens one replica prefills per second (its profile)
    ttft: float = 1.0  # SLO: seconds a prompt may wait beyond its own prefill
    startup_delay: float = 120.0  # seconds from ordering a replica to its serving
    window: float = 60.0  # rates are measured over this many seconds
    burst_memory: float = BURST_MEMORY


@dataclass(frozen=True)
class DecodeSettings:
    seats: float  # sequences one replica runs within the ITL SLO
    startup_delay: float = 120.0
    window: float = 60.0
    burst_memory: float = BURST_MEMORY
    min_per_prefill: float | None = None  # bounds on decode replicas per prefill replica
    max_per_prefill: float | None = None
    # `decodePerPrefill: auto`: the lower bound derived from the prompt/output mix instead (mean output tokens
    # given, mean prompt tokens measured from the prefill arrivals), at this ITL.
    output_tokens: float | None = None
    itl: float = 0.05
    # A replica's KV cache counts as full at this fill: engines preempt sequences when it runs out, and the running
    # ones grow a token per step, so a replica at 100 % already holds more than it can serve.
    kv_target: float = 0.9
    # Seconds one decode step takes at a batch of that many sequences per replica (from `profile`): a batch that
    # grows steps slower, so each sequence stays longer. None: steps taken as equally long.
    step: Callable[[int], float] | None = None


@dataclass(frozen=True)
class Forecast:
    """Arrivals expected over the start-up delay, per second, and how they were reckoned."""

    now: float  # rate over the last window
    trend: float  # now + slope over the start-up delay (0 at least)
    peak: float  # the busiest quarter-window within the burst memory
    recent: float  # rate over the last quarter-window
    span: float  # seconds of history the rates are taken from

    @property
    def rate(self) -> float:
        return max(self.trend, self.peak)


@dataclass(frozen=True)
class Held:
    """What the prefill decision takes from the decode role (`decodeScaledObject`): the requests its engines hold
    waiting, or why that is not known (then `waiting` is None)."""

    waiting: float | None
    unavailable: str = ""


@dataclass(frozen=True)
class PrefillDemand:
    """The prefill role's demand in prompt tokens per second, in parts."""

    tokens: Forecast
    headroom: float  # queueing head-room factor for the TTFT SLO (1 + mean prefill time / ttft)
    backlog: int
    backlog_tokens: float
    drain: float  # (backlog + held) tokens / (start-up delay + ttft)
    held: float = 0.0  # requests decode holds before publishing their prefill (with `decodeScaledObject`)
    held_tokens: float = 0.0

    @property
    def value(self) -> float:
        return self.tokens.rate * self.headroom + self.drain


def _time(sample: QueueSample) -> float:
    return sample.t


def _at(samples: Sequence[QueueSample], t: float) -> QueueSample:
    """The newest sample taken at or before `t` (the oldest one if the history starts later)."""
    return samples[max(0, bisect.bisect_right(samples, t, key=_time) - 1)]


# What a rate counts: cumulative per sample, so a rate is a difference between two samples over their time apart.
Count = Callable[[QueueSample], float]


def prompt_tokens(s: QueueSample) -> float:
    """Prompt tokens arrived on the queue."""
    return s.arrived_tokens


def delivered(s: QueueSample) -> float:
    """Requests taken off the queue by the prefill workers: arrived and no longer in the backlog."""
    return float(s.arrived - s.backlog)


def _between(a: QueueSample, b: QueueSample, count: Count) -> float:
    if b.t <= a.t:
        return 0.0
    return (count(b) - count(a)) / (b.t - a.t)


def _rate(samples: Sequence[QueueSample], start: float, end: float, count: Count) -> float:
    return _between(_at(samples, start), _at(samples, end), count)


def _busiest(samples: Sequence[QueueSample], since: float, length: float, count: Count) -> float:
    """The highest rate over any `length` seconds that start at `since` or later: every sample ends one (from the
    newest sample at or before its start). Sliding, not in buckets fixed to the moment of asking, so the same
    history gives the same peak whenever it is read."""
    peak, earliest = 0.0, max(since, samples[0].t)
    i = max(0, bisect.bisect_right(samples, earliest, key=_time) - 1)
    for b in samples[bisect.bisect_left(samples, earliest + length, key=_time) :]:  # older ones end no such span
        start = b.t - length
        while i + 1 < len(samples) and samples[i + 1].t <= start:
            i += 1
        peak = max(peak, _between(samples[i], b, count))
    return peak


def forecast(
    history: PrefillHistory, startup_delay: float, window: float, memory: float, count: Count = prompt_tokens
) -> Forecast:
    """Arrivals per second to provision for a start-up delay ahead: the current rate extended along its trend
    (slope between the last two windows; over a shorter history, between its two halves once each is a
    quarter-window, so a scaler just started, or a load ramping from the start, is not read as flat), or the
    busiest quarter-window within the last `memory` seconds (at least a start-up delay), whichever is higher.

    Made once per history and arguments (the peak scans the burst memory's samples), and kept on the history."""
    key = (startup_delay, window, memory, count)
    made = history.forecasts.get(key)
    if isinstance(made, Forecast):
        return made
    made = _forecast(history.samples, startup_delay, window, memory, count)
    if len(history.forecasts) >= FORECASTS_KEPT:  # the keys are triggers' settings: bounded like all they set
        history.forecasts.clear()
    history.forecasts[key] = made
    return made


def _forecast(
    samples: Sequence[QueueSample], startup_delay: float, window: float, memory: float, count: Count
) -> Forecast:
    now = samples[-1].t
    span = now - samples[0].t
    current = _rate(samples, now - window, now, count)
    trend = current
    half = min(window, span / 2)
    if half >= window / 4:
        last = _rate(samples, now - half, now, count)
        previous = _rate(samples, now - 2 * half, now - half, count)
        trend = max(0.0, last + (last - previous) / half * startup_delay)  # last == current once half == window
    bucket = window / 4
    lookback = max(startup_delay, memory)
    recent = _rate(samples, now - bucket, now, count)
    peak = _busiest(samples, now - lookback, bucket, count)
    return Forecast(now=current, trend=trend, peak=peak, recent=recent, span=min(span, max(window, lookback)))


def _mean_prompt(history: PrefillHistory, memory: float) -> float | None:
    """Prompt tokens per request over the last `memory` seconds' arrivals (those the forecast provisions for),
    else over the backlog's; None with neither."""
    last = history.last
    first = _at(history.samples, last.t - memory)
    if last.arrived > first.arrived:
        return (last.arrived_tokens - first.arrived_tokens) / (last.arrived - first.arrived)
    if last.backlog > 0:
        return last.backlog_tokens / last.backlog
    return None


def prefill_demand(history: PrefillHistory, settings: PrefillSettings, decode_waiting: float = 0.0) -> PrefillDemand:
    """With `decode_waiting` (the requests decode's engines hold waiting), those not yet published count as backlog:
    a decode engine publishes a request's remote prefill only once it has a seat and KV blocks for it, so while
    decode is full the queue sees less than arrives, and the held requests reach prefill together as soon as new
    decode replicas admit them (a start-up delay from now, when capacity ordered now serves)."""
    tokens = forecast(history, settings.startup_delay, settings.window, settings.burst_memory, prompt_tokens)
    last = history.last
    # The mean prompt's prefill time sets the queueing head-room an M/G/c-like pool needs to keep the wait within
    # the TTFT SLO (utilisation ttft / (ttft + service time)); over the burst memory, as the peak is.
    mean_prompt = _mean_prompt(history, max(settings.startup_delay, settings.burst_memory)) or 0.0
    headroom = 1.0 + mean_prompt / settings.tokens_per_second / settings.ttft
    # Decode's waiting also counts the published requests whose KV has not arrived: the queue's backlog (and the
    # few being prefilled or transferred, counted as held: at most one per busy prefill worker).
    held = max(0.0, decode_waiting - last.backlog)
    held_tokens = held * mean_prompt
    return PrefillDemand(
        tokens=tokens,
        headroom=headroom,
        backlog=last.backlog,
        backlog_tokens=last.backlog_tokens,
        # Capacity ordered now serves a start-up delay from now: the backlog must be gone by then (plus the SLO),
        # not within the SLO from now, which would order replicas that arrive after the backlog has drained.
        drain=(last.backlog_tokens + held_tokens) / (settings.startup_delay + settings.ttft),
        held=held,
        held_tokens=held_tokens,
    )


@dataclass(frozen=True)
class Replicas:
    """The prefill role's ready replicas over time (`refineCapacity`), or why they are not known."""

    history: ReplicaHistory | None
    unavailable: str = ""  # why there is no history (then it is None)


@dataclass(frozen=True)
class Measured:
    """Prompt tokens per second one ready replica took off the queue while requests waited."""

    tokens_per_second: float
    span: float  # seconds measured over
    replicas: int
    ago: float  # seconds from the end of the stretch measured to the newest sample


def _ready_at(history: ReplicaHistory, t: float, i: int) -> tuple[int | None, int]:
    """The ready replicas at `t` (None: not observed, or changing) and the index of the span to start the next,
    later, look-up from. After the newest span the count is taken to hold: its source is read within its
    staleness bound."""
    spans = history.spans
    while i < len(spans) and spans[i].until < t:
        i += 1
    if i == len(spans):
        return (spans[-1].ready if spans else None), i
    return (spans[i].ready if spans[i].since <= t else None), i


def measure(history: PrefillHistory, replicas: ReplicaHistory, window: float) -> Measured | str:
    """One ready replica's delivery rate over the last `window` seconds of the newest stretch in which requests
    waited undelivered at every sample and the same replicas were ready throughout; or why there is none.

    No clamp against the configured figure: a rate measured while requests wait is what the replicas delivered.
    One lowered by a limit outside them (decode back-pressure, a stalled worker) asks for more replicas, but so
    does the growing backlog with any target, and `maxReplicaCount` bounds both; one above the profile is real
    (prefix-cache hits, a faster GPU) and is measured again, lower, as soon as the queue backs up."""
    samples = history.samples
    runs: list[tuple[int, int, int | None]] = []  # (first, last index, ready) of each stretch with requests waiting
    j = 0
    for i, s in enumerate(samples):
        ready, j = _ready_at(replicas, s.t, j)
        if s.waiting <= 0:
            continue
        if runs and runs[-1][1] == i - 1 and runs[-1][2] == ready:
            runs[-1] = (runs[-1][0], i, ready)
        else:
            runs.append((i, i, ready))
    now = samples[-1].t
    for first, last, ready in reversed(runs):
        end = samples[last]
        if not ready or end.t - samples[first].t < window:
            continue
        start = _at(samples[first : last + 1], end.t - window)
        span = end.t - start.t
        delivered = (end.arrived_tokens - end.backlog_tokens) - (start.arrived_tokens - start.backlog_tokens)
        if delivered <= 0:
            return f"nothing was delivered over {span:g}s with requests waiting and {ready} ready replicas"
        return Measured(delivered / span / ready, span, ready, now - end.t)
    return _unmeasured(samples, runs, window)


def _unmeasured(samples: Sequence[QueueSample], runs: list[tuple[int, int, int | None]], window: float) -> str:
    """Why no stretch qualified: no request waited, none waited long enough, or the replicas were not steady."""
    seen = f"over the last {samples[-1].t - samples[0].t:g}s"
    if not runs:
        return f"no request waited {seen} (the workers kept up: their rate is not their capacity)"
    # Stretches with requests waiting, whatever the replicas did: the longest says which condition failed.
    busy: list[tuple[int, int, list[int | None]]] = []
    for first, last, ready in runs:
        if busy and busy[-1][1] == first - 1:
            busy[-1] = (busy[-1][0], last, [*busy[-1][2], ready])
        else:
            busy.append((first, last, [ready]))
    first, last, counts = max(busy, key=lambda b: samples[b[1]].t - samples[b[0]].t)
    longest = samples[last].t - samples[first].t
    if longest < window:
        return f"requests waited for at most {longest:g}s at a time {seen}, under the {window:g}s window"
    seen_counts = [c for c in counts if c is not None]
    if len(set(seen_counts)) > 1:  # a count changes between two observations: unknown in between, as well
        changes = " -> ".join(str(c) for c in seen_counts)
        return f"the ready replicas changed ({changes}) within the {longest:g}s requests waited"
    if None in counts:
        return f"the ready replicas were not observed throughout the {longest:g}s requests waited"
    return f"no replica was ready during the {longest:g}s requests waited"


def decide_prefill(
    metric_name: str,
    history: PrefillHistory,
    settings: PrefillSettings,
    activation: float = 0.0,
    replicas: Replicas | None = None,
    decode: Held | None = None,
) -> Decision:
    """The prefill decision; with `replicas` (`refineCapacity`), against the measured capacity where there is one;
    with `decode` (`decodeScaledObject`), counting the requests decode holds unpublished as backlog."""
    configured = settings.tokens_per_second
    refined, per_replica = "", f"{configured:g}"
    if replicas is not None:
        m = (
            measure(history, replicas.history, settings.window)
            if replicas.history is not None
            else f"ready replicas unknown: {replicas.unavailable}"
        )
        if isinstance(m, Measured):
            settings = dataclasses.replace(settings, tokens_per_second=m.tokens_per_second)
            per_replica = f"{m.tokens_per_second:.0f}"
            refined = (
                f"; capacity measured {m.tokens_per_second:.0f} tokens/s per replica over {m.span:g}s busy with "
                f"{m.replicas} ready replicas, {m.ago:g}s ago; configured {configured:g}"
            )
        else:
            refined = f"; capacity configured {configured:g} tokens/s per replica, not measured: {m}"
    waiting = decode.waiting if decode is not None else None
    d = prefill_demand(history, settings, waiting or 0.0)
    held = uncoupled = ""
    if waiting is not None:
        held = f" + {d.held:g} requests held at decode ({waiting:g} waiting there less the backlog) / "
        held += f"{d.held_tokens:.0f} tokens"
    elif decode is not None:
        uncoupled = f"; decode not coupled: {decode.unavailable}"
    value = d.value
    active = value > activation
    f = d.tokens
    reason = (
        f"demand {value:.0f} prompt tokens/s against {per_replica} per replica "
        f"(~ {math.ceil(value / settings.tokens_per_second - 1e-9)} replicas): arrivals {f.rate:.0f} tokens/s "
        f"forecast over the {settings.startup_delay:g}s start-up delay (now {f.now:.0f}, trend {f.trend:.0f}, "
        f"peak {f.peak:.0f} over {f.span:g}s of history) x {d.headroom:.3f} TTFT head-room + backlog "
        f"{d.backlog} messages / {d.backlog_tokens:.0f} tokens"
        + (f" ({history.last.backlog_note})" if history.last.backlog_note else "")
        + held
        + f" drained within {settings.startup_delay + settings.ttft:g}s"
        + uncoupled
        + refined
    )
    return Decision(metric_name, value, settings.tokens_per_second, active, reason)


@dataclass(frozen=True)
class Coupling:
    """What the decode decision takes from the prefill role: its history and its decision, or why not."""

    history: PrefillHistory | None
    decision: Decision | None
    unavailable: str = ""  # why there is no prefill data (then history and decision are None)
    ttft: float = 1.0  # the prefill trigger's TTFT SLO


def decide_decode(
    metric_name: str,
    pods: Sequence[str],
    loads: Mapping[str, DecodeLoad],
    settings: DecodeSettings,
    prefill: Coupling | None = None,
    activation: float = 0.0,
) -> Decision:
    """Sequences the role must hold a start-up delay from now, against one replica's seats.

    Pods without load series are left out and counted as unmeasured; if none has one, that is an error."""
    measured = [loads[p] for p in pods if p in loads]
    missing = [p for p in pods if p not in loads]
    if pods and not measured:
        raise SourceUnavailable(
            f"no load series (running, waiting, KV-cache fill) for any of the decode role's {len(pods)} pods "
            f"({', '.join(pods)}); check that the engines' metrics are scraped and carry the pods' names"
        )
    seats = settings.seats
    running = sum(load.running for load in measured)
    waiting = sum(load.waiting for load in measured)
    held = running + waiting
    kv = sum(load.kv_fill for load in measured) / settings.kv_target * seats
    # Seats per sequence held: 1, or more where the KV cache fills before the seats do.
    per_sequence = max(1.0, kv / held) if held else 1.0
    parts = [f"runs {running:g} and holds {waiting:g} waiting sequences (KV cache worth {kv:.1f})"]
    value = max(held, kv)
    if prefill is None:
        pass
    elif prefill.history is None:
        parts.append(f"prefill not coupled: {prefill.unavailable}")
    else:
        # The batch holds sequences in proportion to the rate they enter decode (Little's law: running = rate x
        # time in decode), so it grows to the busiest rate prefill has delivered at lately. Decode admits a
        # request before its remote prefill: the waiting ones are the prefill backlog (their KV is counted) or
        # wait for a seat, and either way are held now, not grown with the arrivals.
        growth = decode_growth(prefill.history, settings)
        slower = _slower(running, growth, len(measured), settings)
        counted = waiting
        in_flight = _in_flight(prefill, settings)
        if in_flight is not None and waiting > in_flight:
            counted = in_flight
        value = (running * growth * slower + counted) * per_sequence
        parts.append(f"running x {growth:.3f} to the busiest prefill deliveries within the burst memory")
        if slower > 1.0:
            parts.append(f"x {slower:.3f} for its slower steps")
        if counted < waiting:
            parts.append(
                f"waiting counted up to {counted:.1f}, the requests prefill has in flight meeting its demand within "
                f"its {prefill.ttft:g}s TTFT SLO (the rest wait on prefill, not on decode)"
            )
    if (
        prefill is not None
        and prefill.history is not None
        and prefill.decision is not None
        and prefill.decision.target > 0
    ):
        lo, lo_name = settings.min_per_prefill, f"minDecodePerPrefill {settings.min_per_prefill or 0:g}"
        if settings.output_tokens is not None:
            lo = mix_ratio(prefill.history, prefill.decision, settings, settings.output_tokens)
            lo_name = f"decodePerPrefill auto {lo or 0:.3f} ({settings.output_tokens:g}-token answers at "
            lo_name += f"{settings.itl * 1000:g} ms a token)"
            if lo is None:
                parts.append("decodePerPrefill auto not applied (no prompts to measure the mix from)")
        value, bound = _bound(value, prefill.decision, settings, lo, lo_name)
        if bound:
            parts.append(bound)
    elif prefill is not None and (settings.min_per_prefill or settings.max_per_prefill or settings.output_tokens):
        parts.append("decode:prefill bounds not applied (no prefill decision)")
    replicas = math.ceil(value / seats - 1e-9)
    reason = f"demand {value:.1f} sequences against {seats:g} seats per replica (~ {replicas} replicas): " + "; ".join(
        parts
    )
    if missing:
        reason += f"; no load series for {', '.join(missing)}"
    return Decision(metric_name, value, seats, value > activation, reason, unmeasured=len(missing))


def _in_flight(prefill: Coupling, settings: DecodeSettings) -> float | None:
    """Requests a prefill role serving its demand within its TTFT SLO has published and not yet delivered to decode
    (Little's law: its request rate x (TTFT SLO + the mean prompt's prefill)). Decode's engines admit a request, and
    hold its seat and KV, before its remote prefill: beyond these, the waiting wait on prefill, and more decode
    seats would only move them from decode's queue into prefill's. None without a prefill decision or prompts."""
    if prefill.history is None or prefill.decision is None or prefill.decision.target <= 0:
        return None
    prompt = _mean_prompt(prefill.history, max(settings.startup_delay, settings.burst_memory))
    if not prompt:
        return None
    return prefill.decision.value / prompt * (prefill.ttft + prompt / prefill.decision.target)


def _slower(running: float, growth: float, pods: int, settings: DecodeSettings) -> float:
    """How much longer a sequence stays when the batch grows `growth` fold (Little's law with the step time of the
    batch it runs in): the step at the grown batch per replica (up to the seats) over the step now."""
    if settings.step is None or running <= 0 or growth <= 1.0:
        return 1.0
    now = max(1, round(running / max(1, pods)))
    grown = max(now, min(round(settings.seats), round(running * growth / max(1, pods))))
    return settings.step(grown) / settings.step(now)


def decode_growth(history: PrefillHistory, settings: DecodeSettings) -> float:
    """How much the decode batch grows by the time capacity ordered now serves: the busiest quarter-window of the
    requests entering decode within the burst memory (or the last window's rate, if higher) over the rate that
    filled the batch now, the busier of the last quarter-window and the last window. A request enters the batch
    when its KV arrives, so at the rate the prefill workers take requests off the queue, not the rate they are
    published: a prefill role held at its `maxReplicaCount` feeds decode no faster than it prefills, whatever
    arrives. A sequence stays in decode for seconds (its output at one step each): at a burst's start the batch
    holds the last quarter-window's entries (against the window's average the burst would be counted twice, in the
    batch and in the growth); after it, the batch still drains the burst's sequences, which the window counts.

    Not along the arrivals' trend, as prefill is: a prefill role behind the arrivals builds a queue every later
    request waits behind, so it takes the trend's head-room; a decode engine over its seats takes up to its
    `max_num_seqs` at longer steps and catches up as the batch turns over in seconds. In `simulate frontier` the
    trend's extrapolation (3x the new rate - 2x the old a window after a step) bought decode no SLO for its
    GPU-hours."""
    entering = forecast(history, settings.startup_delay, settings.window, settings.burst_memory, delivered)
    recent = max(entering.recent, entering.now)
    return max(1.0, max(entering.peak, entering.now) / recent) if recent > 0 else 1.0


def mix_ratio(history: PrefillHistory, prefill: Decision, settings: DecodeSettings, output: float) -> float | None:
    """Decode replicas per prefill replica the prompt/output mix needs (None without prompts to measure). A prompt
    of P tokens takes P / T of a prefill replica's second (T its tokens per second); its answer of `output` tokens
    holds one of a decode replica's seats for that many steps of at most the ITL (Little's law), so the roles'
    replicas stand as output x itl / seats to P / T."""
    prompt = _mean_prompt(history, max(settings.startup_delay, settings.burst_memory))
    if not prompt:
        return None
    return output * settings.itl * prefill.target / (prompt * settings.seats)


def _bound(
    value: float, prefill: Decision, settings: DecodeSettings, lo: float | None, lo_name: str
) -> tuple[float, str]:
    hi = settings.max_per_prefill
    if lo is None and hi is None:
        return value, ""
    p = math.ceil(prefill.value / prefill.target - 1e-9)
    d = math.ceil(value / settings.seats - 1e-9)
    if lo is not None and d < math.ceil(lo * p - 1e-9):
        bounded = math.ceil(lo * p - 1e-9)
        return bounded * settings.seats, f"raised to {bounded} replicas by {lo_name} x {p} prefill"
    if hi is not None and p > 0 and d > math.floor(hi * p + 1e-9):
        bounded = max(1, math.floor(hi * p + 1e-9))
        return bounded * settings.seats, f"capped at {bounded} replicas by maxDecodePerPrefill {hi:g} x {p} prefill"
    return value, f"within the decode:prefill bounds for {p} prefill replicas"
