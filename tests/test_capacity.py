"""The capacity policy as a pure function: exact decisions on hand-built sample histories."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scaler.capacity import (
    BURST_MEMORY,
    FORECASTS_KEPT,
    Coupling,
    DecodeSettings,
    Held,
    Measured,
    PrefillSettings,
    Replicas,
    decide_decode,
    decide_prefill,
    delivered,
    forecast,
    measure,
    prefill_demand,
)
from scaler.errors import SourceUnavailable
from scaler.observations import Decision, DecodeLoad, PrefillHistory, QueueSample, ReadySpan, ReplicaHistory
from scaler.sources.history import TRACKED_ARRIVALS, QueueHistory, ReadyHistory

PREFILL = PrefillSettings(tokens_per_second=8000.0, ttft=1.0, startup_delay=120.0, window=60.0)
DECODE = DecodeSettings(seats=100.0, startup_delay=120.0, window=60.0)


def history(
    phases: list[tuple[float, float]], end: float, prompt: int = 1000, backlog: tuple[int, ...] = ()
) -> PrefillHistory:
    """One sample a second from 0 to `end`; `phases` = (from time, messages per second) of `prompt` tokens each;
    the last sample's backlog holds prompts of the lengths given."""
    samples, arrived = [], 0.0
    for t in range(int(end) + 1):
        samples.append(QueueSample(float(t), int(arrived), arrived * prompt, 0, 0.0))
        rate = [r for start, r in phases if start <= t][-1]
        arrived += rate
    last = samples[-1]
    samples[-1] = QueueSample(last.t, last.arrived, last.arrived_tokens, len(backlog), float(sum(backlog)))
    return PrefillHistory(tuple(samples))


def replicas(d: Decision) -> int:
    return -int(-d.value // d.target)


def test_steady_load() -> None:
    # 2 prompts/s of 1,000 tokens: 2,000 tokens/s now, along the trend and at the peak; mean prefill time
    # 1000 / 8000 s gives 1 + 0.125 / 1 s of head-room.
    d = decide_prefill("m", history([(0, 2)], 300), PREFILL)
    assert (d.value, d.target, d.active) == (2250.0, 8000.0, True)
    assert replicas(d) == 1
    assert "arrivals 2000 tokens/s" in d.reason
    assert "x 1.125 TTFT head-room" in d.reason


def test_step_up_is_extended_over_the_start_up_delay() -> None:
    # From 2 to 8 prompts/s at t=270: the last minute averages 5,000 tokens/s, the one before 2,000; the slope
    # (3,000 per 60 s) over the 120 s start-up gives 11,000 tokens/s, above the 8,000 of the busiest quarter-window.
    d = decide_prefill("m", history([(0, 2), (270, 8)], 300), PREFILL)
    f = forecast(history([(0, 2), (270, 8)], 300), 120.0, 60.0, BURST_MEMORY)
    assert (f.now, f.trend, f.peak) == (5000.0, 11000.0, 8000.0)
    assert d.value == 11000.0 * 1.125
    assert replicas(d) == 2


def test_a_burst_shorter_than_the_start_up_delay_is_provisioned_for_until_it_is_ten_minutes_old() -> None:
    # 20 prompts/s for 30 s (t=200..230) on top of 2/s. At t=300 the trend points down (0), but the busiest
    # quarter-window (15 s at 20,000 tokens/s) still counts: the next burst will be over before capacity ordered
    # then arrives.
    burst = [(0, 2), (200, 20), (230, 2)]
    d = decide_prefill("m", history(burst, 300), PREFILL)
    assert d.value == 20000.0 * 1.125
    assert replicas(d) == 3
    # Once the burst is BURST_MEMORY old, only the steady load is left.
    assert decide_prefill("m", history(burst, 840), PREFILL).value == 2250.0


def test_the_peak_is_the_same_whenever_it_is_read() -> None:
    # A 5 s spike of 40 prompts/s (t=203..207) on 2/s: the busiest 15 s hold it whole, (5 x 40 + 10 x 2) / 15
    # prompts/s, whether asked at t=300 or a few seconds later (buckets fixed to the moment of asking would cut
    # it in two at some of those moments, and the decision would flicker).
    spike = [(0, 2), (203, 40), (208, 2)]
    peaks = [forecast(history(spike, end), 120.0, 60.0, BURST_MEMORY, delivered).peak for end in range(300, 316)]
    assert peaks == [pytest.approx(220 / 15)] * 16


def test_triggers_reading_one_history_share_its_forecasts_only_where_their_settings_agree() -> None:
    # Every ScaledObject on a queue reads the same snapshot of its history; the forecast is made once per snapshot
    # and settings, and a trigger with other settings (here a 5-minute burst memory, which no longer holds the
    # burst) gets its own, as from a history nobody else read.
    burst = [(0, 2), (200, 20), (230, 2)]
    shared = history(burst, 600)
    short = replace(PREFILL, burst_memory=300.0)
    first, other, again = (decide_prefill("m", shared, s) for s in (PREFILL, short, PREFILL))
    assert (first.value, other.value) == (20000.0 * 1.125, 2250.0)
    assert other == decide_prefill("m", history(burst, 600), short)
    assert again == first
    assert forecast(shared, 120.0, 60.0, BURST_MEMORY) is forecast(shared, 120.0, 60.0, BURST_MEMORY)
    assert forecast(shared, 120.0, 60.0, BURST_MEMORY, delivered).peak == 20.0  # another count: its own


def test_a_history_keeps_at_most_64_forecasts_whatever_settings_its_readers_set() -> None:
    # Trigger metadata sets the forecast's arguments; 100 ScaledObjects with 100 start-up delays on one queue keep
    # the snapshot's forecasts to FORECASTS_KEPT, and each still gets its own exact value.
    shared = history([(0, 2)], 300)
    for delay in range(1, 101):
        assert forecast(shared, float(delay), 60.0, BURST_MEMORY).rate == 2000.0
        assert len(shared.forecasts) <= FORECASTS_KEPT == 64
    assert len(shared.forecasts) == 100 - 64


def test_a_lull_after_a_burst_keeps_the_bursts_head_room() -> None:
    # 20 prompts/s of 1,000 tokens for 30 s, then nothing: no arrivals in the last window, but the burst provisioned
    # for brings its prompts' prefill time, so its head-room (1 + 0.125 / 1 s) stays with it.
    d = decide_prefill("m", history([(0, 2), (200, 20), (230, 0)], 300), PREFILL)
    assert d.value == 20000.0 * 1.125
    assert "now 0, trend 0, peak 20000" in d.reason


def test_decay_scales_down_only_as_the_busier_past_leaves_the_burst_memory() -> None:
    settings = PrefillSettings(tokens_per_second=4000.0, ttft=1.0, startup_delay=120.0, window=60.0)
    decay = [(0, 8), (200, 2)]
    held = decide_prefill("m", history(decay, 300), settings)
    assert held.value == 8000.0 * 1.25
    assert replicas(held) == 3
    # t=790: the quarter-window 190..205 (10 s at 8,000 + 5 s at 2,000) is the oldest within ten minutes.
    assert decide_prefill("m", history(decay, 790), settings).value == 6000.0 * 1.25
    down = decide_prefill("m", history(decay, 800), settings)
    assert down.value == 2000.0 * 1.25
    assert replicas(down) == 1


def test_backlog_is_counted_in_tokens_not_messages() -> None:
    # Three waiting prompts of 200, 30,000 and 800 tokens and no arrivals: 31,000 tokens to drain by the time
    # capacity ordered now serves (1 s start-up + 1 s SLO) need two 9,000 tokens/s replicas, where a lag of
    # 3 messages looks like nothing.
    settings = PrefillSettings(tokens_per_second=9000.0, ttft=1.0, startup_delay=1.0)
    d = decide_prefill("m", history([(0, 0)], 300, backlog=(200, 30_000, 800)), settings)
    assert (d.value, d.target) == (15500.0, 9000.0)
    assert replicas(d) == 2
    assert "backlog 3 messages / 31000 tokens drained within 2s" in d.reason


def test_a_young_history_has_a_trend_from_its_two_halves() -> None:
    # One minute of history, 2 prompts/s then 4/s from t=30: the halves' slope (2 per 30 s) over the 120 s
    # start-up gives 12 prompts/s, where waiting for two full windows would read 3/s (the minute's average) and
    # order capacity two minutes late.
    f = forecast(history([(0, 2), (30, 4)], 60), 120.0, 60.0, BURST_MEMORY, delivered)
    assert (f.now, f.trend, f.peak) == (3.0, 12.0, 4.0)
    assert decide_prefill("m", history([(0, 2), (30, 4)], 60), PREFILL).value == 12000.0 * 1.125


def test_an_idle_queue_is_inactive_and_a_new_source_answers_from_what_it_has() -> None:
    idle = decide_prefill("m", history([(0, 0)], 300), PREFILL)
    assert (idle.value, idle.active) == (0.0, False)
    # A source that has only 10 s of history: rates over those 10 s, no trend yet.
    young = decide_prefill("m", history([(0, 2)], 10), PREFILL)
    assert young.value == 2250.0
    single = PrefillHistory((QueueSample(5.0, 0, 0.0, 2, 3000.0),))
    assert decide_prefill("m", single, PREFILL).value == 3000.0 / 121.0


def loads(*pods: tuple[float, float, float]) -> dict[str, DecodeLoad]:
    return {f"d{i}": DecodeLoad(*p) for i, p in enumerate(pods)}


def test_decode_holds_running_and_waiting_or_its_kv_worth_whichever_is_more() -> None:
    pods = ["d0", "d1"]
    d = decide_decode("m", pods, loads((90, 10, 0.5), (60, 0, 0.7)), DECODE)
    assert (d.value, d.target) == (160.0, 100.0)
    # Long contexts: KV fill says more than the sequence count (a replica's KV counts as full at 90 %).
    d = decide_decode("m", pods, loads((40, 0, 0.95), (30, 0, 0.9)), DECODE)
    assert d.value == pytest.approx(185.0 / 0.9)
    assert replicas(d) == 3


def test_decode_grows_its_batch_to_the_busiest_prefill_deliveries_within_the_burst_memory() -> None:
    # Prefill takes 8 requests/s off the queue, 11/s for 30 s from t=200, 8/s again since t=230. At t=300 the batch
    # of 80 was filled at 8/s (the last window's rate; a sequence stays in decode for seconds): it is provisioned
    # for 11/s again, 11 / 8 fold.
    prefill = Coupling(history([(0, 8), (200, 11), (230, 8)], 300), None)
    d = decide_decode("m", ["d0"], loads((80, 0, 0.4)), DECODE, prefill)
    assert d.value == pytest.approx(80 * 11 / 8)
    assert replicas(d) == 2
    assert "running x 1.375 to the busiest prefill deliveries within the burst memory" in d.reason
    # The same arrivals on a prefill role that prefills 8/s at most: the 3/s more of the burst stay in its queue,
    # and enter decode no faster than 8/s. The batch is not grown for them.
    capped = [
        QueueSample(float(t), a, a * 1000.0, b, b * 1000.0)
        for t in range(301)
        for a, b in [(8 * t + 3 * min(max(t - 200, 0), 30), 3 * min(max(t - 200, 0), 30))]
    ]
    d = decide_decode("m", ["d0"], loads((80, 0, 0.4)), DECODE, Coupling(PrefillHistory(tuple(capped)), None))
    assert d.value == 80.0
    # Stepped up from 2 to 8/s at t=270: the batch already holds the 8/s, and is not grown along the step's trend
    # (11/s, as prefill forecasts it).
    stepped = Coupling(history([(0, 2), (270, 8)], 300), None)
    assert decide_decode("m", ["d0"], loads((80, 0, 0.4)), DECODE, stepped).value == 80.0
    # Waiting sequences (awaiting their remote prefill, or a seat) are held now, not grown with the arrivals.
    d = decide_decode("m", ["d0"], loads((80, 40, 0.4)), DECODE, prefill)
    assert d.value == pytest.approx(80 * 11 / 8 + 40)
    assert "runs 80 and holds 40 waiting sequences" in d.reason
    # Long contexts: each sequence held is worth KV / sequences seats (0.9 / 0.9 x 100 / 40 = 2.5).
    d = decide_decode("m", ["d0"], loads((40, 0, 0.9)), DECODE, prefill)
    assert d.value == pytest.approx(40 * 11 / 8 * 2.5)


def test_decode_counts_only_the_waiting_a_prefill_meeting_its_slo_has_in_flight() -> None:
    # Prefill's demand is 16,000 tokens/s of 1,000-token prompts: 16 requests/s, each published for at most its
    # 1 s TTFT SLO and 1000 / 8000 s of prefill, so 18 in flight. Decode's engines hold 500 waiting for their
    # remote prefill: the other 482 wait on prefill, and more decode seats would not serve them sooner.
    steady = history([(0, 2)], 300)
    prefill = Coupling(steady, Decision("p", 16000.0, 8000.0, True, ""), ttft=1.0)
    d = decide_decode("m", ["d0"], loads((40, 500, 0.5)), DECODE, prefill)
    assert d.value == pytest.approx(40 + 18)
    assert "waiting counted up to 18.0, the requests prefill has in flight meeting its demand within its 1s TTFT " in (
        d.reason
    )
    # Fewer waiting than that: all count. A longer TTFT SLO has more in flight.
    assert decide_decode("m", ["d0"], loads((40, 10, 0.1)), DECODE, prefill).value == pytest.approx(50)
    slack = Coupling(steady, Decision("p", 16000.0, 8000.0, True, ""), ttft=2.0)
    assert decide_decode("m", ["d0"], loads((40, 500, 0.5)), DECODE, slack).value == pytest.approx(40 + 34)
    # Without a prefill decision every waiting sequence counts.
    assert decide_decode("m", ["d0"], loads((40, 500, 0.5)), DECODE, Coupling(steady, None)).value == 540.0


def test_a_growing_batch_steps_slower_so_its_sequences_stay_longer() -> None:
    # The batch of 80 on one replica grows 11 / 8 fold, to 110 (within 200 seats); with steps of 20 ms + 0.1 ms a
    # sequence, each step takes 31 ms instead of 28, and every sequence stays that much longer (Little's law).
    prefill = Coupling(history([(0, 8), (200, 11), (230, 8)], 300), None)
    settings = DecodeSettings(seats=200.0, step=lambda batch: 0.020 + 0.0001 * batch)
    d = decide_decode("m", ["d0"], loads((80, 0, 0.1)), settings, prefill)
    assert d.value == pytest.approx(80 * 11 / 8 * 0.031 / 0.028)
    assert "x 1.107 for its slower steps" in d.reason
    # Beyond the seats the replicas are more, not the batch of each: the step is taken at the seats at most.
    d = decide_decode("m", ["d0"], loads((160, 0, 0.1)), settings, prefill)
    assert d.value == pytest.approx(160 * 11 / 8 * 0.040 / 0.036)


def test_a_burst_under_way_is_in_the_batch_already() -> None:
    # 2 prompts/s, 20/s from t=200; at t=215 the last quarter-window is all burst (20/s), the last minute
    # averages 6.5/s and its trend 15.5/s: the burst's 20/s is the forecast and also what filled the batch, so
    # the batch of 200 is not grown again (against the minute's average it would be 20 / 6.5 times).
    prefill = Coupling(history([(0, 2), (200, 20)], 215), None)
    f = forecast(history([(0, 2), (200, 20)], 215), 120.0, 60.0, BURST_MEMORY, delivered)
    assert (f.now, f.trend, f.peak, f.recent) == (6.5, 15.5, 20.0, 20.0)
    d = decide_decode("m", ["d0", "d1", "d2"], loads((100, 0, 0.2), (100, 0, 0.2), (0, 0, 0.0)), DECODE, prefill)
    assert d.value == 200.0
    # Just after it (t=250) the batch still drains the burst's sequences: it was filled at the window's 11/s, not
    # at the last quarter-window's 2/s, and grows to the burst's 20/s.
    prefill = Coupling(history([(0, 2), (200, 20), (230, 2)], 250), None)
    d = decide_decode("m", ["d0"], loads((60, 0, 0.1)), DECODE, prefill)
    assert d.value == pytest.approx(60 * 20 / 11)
    # Once it is over, the batch of 20 at 2/s is provisioned for the next one like it: 20 x 20 / 2.
    prefill = Coupling(history([(0, 2), (200, 20), (230, 2)], 300), None)
    d = decide_decode("m", ["d0"], loads((20, 0, 0.02)), DECODE, prefill)
    assert d.value == 200.0


def test_coupling_bounds_bind_and_do_not_bind() -> None:
    pods = ["d0", "d1"]
    steady = history([(0, 2)], 300)
    prefill_at_3 = Decision("p", 20000.0, 8000.0, True, "")  # 3 prefill replicas
    bounded = DecodeSettings(seats=100.0, min_per_prefill=1.0, max_per_prefill=2.0)
    # 350 sequences = 4 replicas: within 1..2 per prefill replica x 3.
    d = decide_decode("m", pods, loads((175, 0, 0.1), (175, 0, 0.1)), bounded, Coupling(steady, prefill_at_3))
    assert d.value == 350.0
    assert "within the decode:prefill bounds for 3 prefill replicas" in d.reason
    # 50 sequences would be 1 replica: raised to 3.
    d = decide_decode("m", pods, loads((25, 0, 0.1), (25, 0, 0.1)), bounded, Coupling(steady, prefill_at_3))
    assert (d.value, replicas(d)) == (300.0, 3)
    assert "raised to 3 replicas by minDecodePerPrefill 1 x 3 prefill" in d.reason
    # 750 sequences would be 8: capped at 6.
    d = decide_decode("m", pods, loads((375, 0, 0.1), (375, 0, 0.1)), bounded, Coupling(steady, prefill_at_3))
    assert (d.value, replicas(d)) == (600.0, 6)
    assert "capped at 6 replicas by maxDecodePerPrefill 2 x 3 prefill" in d.reason


def test_decode_per_prefill_auto_is_the_ratio_the_prompt_output_mix_needs() -> None:
    pods = ["d0", "d1"]
    prefill_at_3 = Decision("p", 20000.0, 8000.0, True, "")  # 3 prefill replicas of 8,000 tokens/s
    auto = DecodeSettings(seats=100.0, output_tokens=400.0, itl=0.05)
    # 2 prompts/s of 1,000 tokens take 0.25 prefill replicas; their 400-token answers at 50 ms a token hold
    # 2 x 400 x 0.05 = 40 sequences, 0.4 of a 100-seat replica: 1.6 decode per prefill, 5 for 3 prefill.
    steady = history([(0, 2)], 300)
    d = decide_decode("m", pods, loads((25, 0, 0.1), (25, 0, 0.1)), auto, Coupling(steady, prefill_at_3))
    assert (d.value, replicas(d)) == (500.0, 5)
    assert "raised to 5 replicas by decodePerPrefill auto 1.600 (400-token answers at 50 ms a token) x 3 prefill" in (
        d.reason
    )
    # Holding more than that: the bound does not bind.
    d = decide_decode("m", pods, loads((300, 0, 0.1), (300, 0, 0.1)), auto, Coupling(steady, prefill_at_3))
    assert (d.value, replicas(d)) == (600.0, 6)
    assert "within the decode:prefill bounds for 3 prefill replicas" in d.reason
    # Prompts four times as long need four times the prefill for the same answers: 0.4 decode per prefill.
    long_prompts = history([(0, 2)], 300, prompt=4000)
    d = decide_decode("m", pods, loads((25, 0, 0.1), (25, 0, 0.1)), auto, Coupling(long_prompts, prefill_at_3))
    assert (d.value, replicas(d)) == (200.0, 2)
    assert "decodePerPrefill auto 0.400" in d.reason
    # No arrivals in the window: the mix comes from the backlog's prompts, else the bound is not applied.
    waiting = history([(0, 0)], 300, backlog=(2000, 6000))
    d = decide_decode("m", pods, loads((25, 0, 0.1), (25, 0, 0.1)), auto, Coupling(waiting, prefill_at_3))
    assert (d.value, replicas(d)) == (200.0, 2)  # ratio 0.4 x 3 prefill
    idle = history([(0, 0)], 300)
    d = decide_decode("m", pods, loads((25, 0, 0.1), (25, 0, 0.1)), auto, Coupling(idle, prefill_at_3))
    assert d.value == 50.0
    assert "decodePerPrefill auto not applied (no prompts to measure the mix from)" in d.reason


def test_coupling_never_invents_data() -> None:
    bounded = DecodeSettings(seats=100.0, min_per_prefill=1.0)
    down = Coupling(None, None, "nats n stream=s consumer=c: newest sample is 31.0s old, over maxStaleness 30s")
    d = decide_decode("m", ["d0"], loads((25, 0, 0.1)), bounded, down)
    assert d.value == 25.0  # neither anticipation nor the bound
    assert "prefill not coupled: nats n stream=s consumer=c: newest sample is 31.0s old" in d.reason
    assert "decode:prefill bounds not applied (no prefill decision)" in d.reason
    auto = DecodeSettings(seats=100.0, output_tokens=400.0)
    d = decide_decode("m", ["d0"], loads((25, 0, 0.1)), auto, down)
    assert d.value == 25.0
    assert "decode:prefill bounds not applied (no prefill decision)" in d.reason


def test_requests_held_at_decode_count_as_backlog_and_an_unknown_decode_counts_none() -> None:
    # 2 prompts/s of 1,000 tokens, 3 of them in the queue (5,000 tokens). Decode's engines hold 10 waiting: the 3
    # published ones and 7 not yet published, counted at the mean prompt.
    steady = history([(0, 2)], 300, backlog=(1000, 1000, 3000))
    alone = decide_prefill("m", steady, PREFILL)
    assert alone.value == 2250.0 + 5000.0 / 121.0
    d = decide_prefill("m", steady, PREFILL, decode=Held(10.0))
    assert d.value == 2250.0 + (5000.0 + 7000.0) / 121.0
    assert "backlog 3 messages / 5000 tokens + 7 requests held at decode (10 waiting there less the backlog) / " in (
        d.reason
    )
    assert "7000 tokens drained within 121s" in d.reason
    # Decode holding fewer than the queue's backlog (the rest being prefilled): none held.
    assert decide_prefill("m", steady, PREFILL, decode=Held(2.0)).value == alone.value
    # Decode's sources down: nothing is counted held, and the reason says why.
    down = decide_prefill("m", steady, PREFILL, decode=Held(None, "prometheus p: connection refused"))
    assert down.value == alone.value
    assert down.reason.endswith("drained within 121s; decode not coupled: prometheus p: connection refused")


def test_a_stale_or_missing_decode_source_is_an_error() -> None:
    with pytest.raises(SourceUnavailable, match=r"no load series .* for any of the decode role's 2 pods"):
        decide_decode("m", ["d0", "d1"], {}, DECODE)
    d = decide_decode("m", ["d0", "d1"], {"d0": DecodeLoad(10, 0, 0.05)}, DECODE)
    assert (d.value, d.unmeasured) == (10.0, 1)
    assert "no load series for d1" in d.reason


def test_the_queue_history_is_bounded_one_sample_a_second_and_backlog_tokens_are_the_newest_arrivals() -> None:
    q = QueueHistory(span=10.0, mean_prompt_tokens=1000.0)
    for tokens in (200, 30_000, 800):
        q.arrival(tokens)
    # Two of the three are waiting (the newest two); two more were queued before the source saw them.
    assert q.backlog_tokens(2) == 30_800.0
    assert q.backlog_tokens(5) == 31_000.0 + 2 * 1000.0
    for t in (0.0, 0.4, 0.9, 1.0, 1.5, 2.2):
        q.record(t, 1, waiting=1)
    assert [s.t for s in q.snapshot().samples] == [0.0, 1.0, 2.2]  # the newest always current
    snapshot = q.snapshot()
    assert q.snapshot() is snapshot  # the policy's memo holds while nothing new was recorded
    for t in range(3, 40):
        q.record(float(t), 0, waiting=0)
    assert q.snapshot().samples[0].t == 29.0  # one sample at or before now - span, no more
    assert len(q.snapshot().samples) == 11


# -- refineCapacity: one replica's capacity measured from the queue while requests wait -------------------------


def busy(end: int, idle_at: tuple[int, ...] = (0,), delivered: float = 1800.0) -> PrefillHistory:
    """One sample a second from 0 to `end`: 3 prompts/s of 1,000 tokens arrive, `delivered` tokens/s are taken off
    the queue, so the backlog grows by the rest; at the `idle_at` seconds no request waits (ack on receipt: the
    backlog is all waiting)."""
    samples = []
    for t in range(end + 1):
        backlog_tokens = (3000.0 - delivered) * t
        waiting = 0 if t in idle_at else -int(-backlog_tokens // 1000)
        samples.append(QueueSample(float(t), 3 * t, 3000.0 * t, waiting, backlog_tokens, waiting=waiting))
    return PrefillHistory(tuple(samples))


def ready(*spans: tuple[float, float, int]) -> Replicas:
    return Replicas(ReplicaHistory(tuple(ReadySpan(*s) for s in spans)))


def test_capacity_is_measured_per_ready_replica_while_requests_wait() -> None:
    # Requests wait from t=1 to 90 with 2 ready replicas: over the last 60 s (30..90) the queue took
    # (3000 - 1200) x 90 - (3000 - 1200) x 30 = 108,000 tokens, 1,800 tokens/s, 900 per replica.
    h = busy(90)
    d = decide_prefill("m", h, PREFILL, replicas=ready((0.0, 90.0, 2)))
    assert d.target == 900.0
    assert d.value == prefill_demand(h, replace(PREFILL, tokens_per_second=900.0)).value  # head-room at 900 too
    assert d.reason.startswith("demand ")
    assert " against 900 per replica " in d.reason
    assert d.reason.endswith(
        "; capacity measured 900 tokens/s per replica over 60s busy with 2 ready replicas, 0s ago; configured 8000"
    )
    assert measure(h, ReplicaHistory((ReadySpan(0.0, 90.0, 2),)), 60.0) == Measured(900.0, 60.0, 2, 0.0)


def test_the_newest_busy_stretch_is_kept_while_the_queue_has_drained_since() -> None:
    # Waiting from 1 to 70, none since: measured over 10..70, 20 s before the newest sample.
    d = decide_prefill("m", busy(90, idle_at=(0, *range(71, 91))), PREFILL, replicas=ready((0.0, 90.0, 2)))
    assert d.target == 900.0
    assert "over 60s busy with 2 ready replicas, 20s ago; configured 8000" in d.reason


def test_an_idle_sample_within_the_window_leaves_the_configured_capacity() -> None:
    # Nothing waits at t=60: the stretches 1..59 and 61..90 are each under the 60 s window.
    d = decide_prefill("m", busy(90, idle_at=(0, 60)), PREFILL, replicas=ready((0.0, 90.0, 2)))
    assert d.target == 8000.0
    assert d.reason.endswith(
        "; capacity configured 8000 tokens/s per replica, not measured: requests waited for at most 58s at a time "
        "over the last 90s, under the 60s window"
    )


def test_no_request_waiting_leaves_the_configured_capacity() -> None:
    d = decide_prefill("m", busy(90, idle_at=tuple(range(91))), PREFILL, replicas=ready((0.0, 90.0, 2)))
    assert d.target == 8000.0
    assert d.reason.endswith(
        "not measured: no request waited over the last 90s (the workers kept up: their rate is not their capacity)"
    )


def test_a_history_shorter_than_the_window_leaves_the_configured_capacity() -> None:
    d = decide_prefill("m", busy(40), PREFILL, replicas=ready((0.0, 40.0, 2)))
    assert d.target == 8000.0
    assert d.reason.endswith(
        "not measured: requests waited for at most 39s at a time over the last 40s, under the 60s window"
    )


def test_ready_replicas_changing_within_the_window_leave_the_configured_capacity() -> None:
    d = decide_prefill("m", busy(90), PREFILL, replicas=ready((0.0, 50.0, 2), (51.0, 90.0, 3)))
    assert d.target == 8000.0
    assert d.reason.endswith("not measured: the ready replicas changed (2 -> 3) within the 89s requests waited")
    # Observed every 5 s: from 2 at 50 to 3 at 55, unknown in between, and still a change.
    d = decide_prefill("m", busy(90), PREFILL, replicas=ready((0.0, 50.0, 2), (55.0, 90.0, 3)))
    assert d.reason.endswith("not measured: the ready replicas changed (2 -> 3) within the 89s requests waited")
    # Not observed from 51 to 54 (the role's source failed, or the count changed between observations).
    d = decide_prefill("m", busy(90), PREFILL, replicas=ready((0.0, 50.0, 2), (55.0, 90.0, 2)))
    assert d.target == 8000.0
    assert d.reason.endswith("not measured: the ready replicas were not observed throughout the 89s requests waited")


def test_a_change_older_than_the_window_leaves_the_stretch_since_measurable() -> None:
    # 3 ready from t=21: over 30..90 the same 1,800 tokens/s make 600 per replica.
    d = decide_prefill("m", busy(90), PREFILL, replicas=ready((0.0, 20.0, 2), (21.0, 90.0, 3)))
    assert d.target == 600.0
    assert "over 60s busy with 3 ready replicas, 0s ago; configured 8000" in d.reason


def test_unknown_replicas_or_nothing_delivered_leave_the_configured_capacity() -> None:
    down = Replicas(None, "kubernetes scaledobject llm/p: no sample yet")
    d = decide_prefill("m", busy(90), PREFILL, replicas=down)
    assert d.target == 8000.0
    assert d.reason.endswith("not measured: ready replicas unknown: kubernetes scaledobject llm/p: no sample yet")
    d = decide_prefill("m", busy(90, delivered=0.0), PREFILL, replicas=ready((0.0, 90.0, 2)))
    assert d.target == 8000.0
    assert d.reason.endswith("not measured: nothing was delivered over 60s with requests waiting and 2 ready replicas")
    d = decide_prefill("m", busy(90), PREFILL, replicas=ready((0.0, 90.0, 0)))
    assert d.reason.endswith("not measured: no replica was ready during the 89s requests waited")


def test_without_refine_capacity_the_reason_says_nothing_of_it() -> None:
    d = decide_prefill("m", busy(90), PREFILL)
    assert d.target == 8000.0
    assert "capacity" not in d.reason


def test_the_ready_history_keeps_spans_of_equal_counts_and_breaks_them_where_unobserved() -> None:
    r = ReadyHistory(span=100.0)
    for t, n in ((0.0, 2), (5.0, 2), (10.0, 3), (15.0, 3)):
        r.observe(t, n)
    r.unobserved()
    r.observe(25.0, 3)
    assert r.snapshot().spans == (ReadySpan(0.0, 5.0, 2), ReadySpan(10.0, 15.0, 3), ReadySpan(25.0, 25.0, 3))
    assert r.snapshot() is r.snapshot()
    r.observe(120.0, 3)
    assert r.snapshot().spans == (ReadySpan(25.0, 120.0, 3),)  # older than the span: gone


def test_backlog_tokens_count_the_newest_tracked_arrivals_and_the_rest_at_the_mean() -> None:
    q = QueueHistory(span=10.0, mean_prompt_tokens=1000.0)
    for i in range(TRACKED_ARRIVALS + 10):  # the ring wraps: the 10 oldest are forgotten
        q.arrival(float(i))
    newest = TRACKED_ARRIVALS + 9
    assert q.backlog_tokens(1) == newest
    assert q.backlog_tokens(3) == 3 * newest - 3  # newest + (newest - 1) + (newest - 2)
    tracked = sum(range(10, TRACKED_ARRIVALS + 10))
    assert q.backlog_tokens(TRACKED_ARRIVALS) == tracked
    assert q.backlog_tokens(TRACKED_ARRIVALS + 5) == tracked + 5 * 1000.0
