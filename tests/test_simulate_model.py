"""The simulator's cluster model: traces, profiles, queueing against theory, and request accounting."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

import pytest

from scaler.deployment import Deployment, StartupDelay, bundled_profiles, load_profile
from scaler.profile import Profile, parse_profile
from scaler.simulate import trace
from scaler.simulate.cli import load_trace
from scaler.simulate.cluster import DECODE, PREFILL, Cluster
from scaler.simulate.policies import Settings, parse_policy
from scaler.simulate.simulation import Config, Run, simulate
from scaler.simulate.trace import Request

DATA = Path(__file__).resolve().parent.parent / "scaler" / "simulate" / "data"


def flat_profile(prefill_s: float = 0.1, **overrides: Any) -> Profile:
    """A replica whose prefill takes `prefill_s` whatever the prompt, and whose decode step takes 10 ms."""
    spec: dict[str, Any] = {
        "name": "flat",
        "gpus_per_replica": 1,
        "gpu_memory_gib": 80,
        "kv_capacity_tokens": 1_000_000,
        "kv_bytes_per_token": 1000,
        "engine_overhead": 0,
        "kv_transfer": {"latency_s": 0, "gbit_per_s": 1000},
        "prefill": [{"tokens": 1, "seconds": prefill_s}, {"tokens": 1_000_000, "seconds": prefill_s}],
        "decode": [{"batch": 1, "context": 1, "step_seconds": 0.01}],
    }
    return parse_profile(spec | overrides)


def poisson(rate: float, n: int, prompt: int, output: int, seed: int = 0) -> list[Request]:
    rng, t, out = random.Random(seed), 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(Request(t, prompt, output))
    return out


def deployment_of(profile: Profile, startup: float = 120.0) -> Deployment:
    return Deployment(profile.name, profile, StartupDelay(startup, startup))


def run_policy(requests: list[Request], profile: Profile, policy: str, startup: float = 120.0, **config: Any) -> Run:
    """The model alone: nothing left out of the measurement, no timeout, unless asked."""
    config = {"warmup": 0.0, "request_timeout": math.inf, "init": (1, 1)} | config
    return asyncio.run(
        simulate(requests, deployment_of(profile, startup), parse_policy(policy), Settings(), Config(**config))
    )


# -- traces -------------------------------------------------------------------------------------------------------


def test_azure_trace_times_are_seconds_from_the_first_request_across_midnight() -> None:
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-11-16 23:59:59.5000000,100,10\r\n"
        "2023-11-17 00:00:01.2500000,200,20\r\n"
        "2023-11-16 23:59:59.7500001,300,30"
    )
    assert trace.parse_azure(text) == [
        Request(0.0, 100, 10),
        Request(pytest.approx(0.2500001), 300, 30),  # type: ignore[arg-type]
        Request(1.75, 200, 20),
    ]


def test_mooncake_trace_timestamps_are_milliseconds() -> None:
    text = '{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [1, 2]}\n\n'
    text += '{"timestamp": 30535, "input_length": 6472, "output_length": 26, "hash_ids": [3]}\n'
    assert trace.parse_mooncake(text) == [Request(0.0, 6955, 52), Request(pytest.approx(3.053), 6472, 26)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (trace.parse_azure, "time,prompt\n1,2", "not an Azure LLM trace"),
        (trace.parse_azure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 x,1,1", "line 2: cannot read"),
        (trace.parse_mooncake, '{"timestamp": 1}', "line 1: not a Mooncake record"),
        (trace.parse_mooncake, '{"timestamp": 1, "input_length": 0, "output_length": 3}', "at least one"),
    ],
)
def test_unreadable_traces_say_where(parse: Any, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_load_scale_copies_each_request_over_the_following_second() -> None:
    requests = [Request(0.0, 10, 1), Request(5.0, 20, 2)]
    assert trace.scale_load(requests, 4) == [
        Request(0.0, 10, 1),
        Request(0.25, 10, 1),
        Request(0.5, 10, 1),
        Request(0.75, 10, 1),
        Request(5.0, 20, 2),
        Request(5.25, 20, 2),
        Request(5.5, 20, 2),
        Request(5.75, 20, 2),
    ]
    thinned = trace.scale_load([Request(float(i), i + 1, 1) for i in range(10)], 0.5)
    assert [r.prompt for r in thinned] == [2, 4, 6, 8, 10]
    assert len(trace.scale_load(requests * 50, 2.5)) == 250


def test_window_keeps_its_requests_and_restarts_the_clock() -> None:
    requests = [Request(float(t), 1, 1) for t in range(10)]
    assert trace.window(requests, 3, 6) == [Request(0.0, 1, 1), Request(1.0, 1, 1), Request(2.0, 1, 1)]


def test_the_bundled_trace_is_the_azure_conversation_trace_with_its_attribution() -> None:
    name, requests = load_trace(None)
    stats = trace.stats(requests)
    assert (name, stats.requests) == ("azure_llm_2023_conv.csv (bundled)", 19366)
    assert (round(stats.rate_per_s, 2), round(stats.mean_prompt), round(stats.mean_output)) == (5.53, 1155, 211)
    notice = (DATA / "README.md").read_text()
    assert "Azure LLM inference trace 2023, Microsoft Azure (AzurePublicDataset), CC-BY 4.0. Patel et al." in notice
    assert '"Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.' in notice


# -- profiles -----------------------------------------------------------------------------------------------------


def test_bundled_profiles_keep_the_measured_points() -> None:
    assert bundled_profiles() == ["qwen3-32b-h100-tp1", "qwen3-32b-h200-tp1", "qwen3-32b-h200-tp2"]
    p = load_profile("qwen3-32b-h200-tp2")
    assert (p.gpus, p.kv_capacity, p.max_num_seqs) == (2, 796_800, 256)
    # Measured points come back exactly, with the 10 % engine overhead on top.
    assert p.prefill_seconds(1024) == pytest.approx(0.06251 * 1.1)
    assert p.prefill_seconds(2048) == pytest.approx(0.12785 * 1.1)
    assert p.decode_step_seconds(128, 128 * 2048) == pytest.approx(0.02351 * 1.1)
    assert p.decode_step_seconds(1, 8192) == pytest.approx(0.01798 * 1.1)


def test_profile_interpolates_between_points_and_holds_below_the_smallest() -> None:
    p = load_profile("qwen3-32b-h200-tp2")
    assert p.prefill_seconds(1536) == pytest.approx((0.06251 + 0.12785) / 2 * 1.1)
    assert p.prefill_seconds(10) == pytest.approx(0.03086 * 1.1)
    # Batch 96 at 2,048 context: halfway between batch 64 and 128.
    assert p.decode_step_seconds(96, 96 * 2048) == pytest.approx((0.01827 + 0.02351) / 2 * 1.1)
    # Mean context 1,280 at batch 64: halfway between the 512 and 2,048 rows.
    assert p.decode_step_seconds(64, 64 * 1280) == pytest.approx((0.01541 + 0.01827) / 2 * 1.1)


def test_chunked_prefill_adds_the_attention_to_earlier_chunks() -> None:
    p = load_profile("qwen3-32b-h200-tp2")  # chunks of 2,048 tokens
    k = (3.57594 - 2 * 1.39568) / (32768 * 16384)  # per token pair, from the two longest prompts
    chunk = 0.12785
    assert p.prefill_seconds(4096) == pytest.approx((2 * chunk + 2 * k * 2048 * 2048) * 1.1)
    assert p.prefill_seconds(5000) == pytest.approx(
        (2 * chunk + p.prefill_seconds(904) / 1.1 + 2 * k * (2048 * 2048 + 904 * 2 * 2048)) * 1.1
    )
    # Chunked, a 32k prompt costs about what one pass over it was measured at.
    assert p.prefill_seconds(32768) / 1.1 == pytest.approx(3.57594, rel=0.05)


def test_profile_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"invalid profile: kv_capacity_tokens: Input should be greater than 0"):
        flat_profile(kv_capacity_tokens=0)
    with pytest.raises(ValueError, match=r"decode: Field required"):
        parse_profile({k: v for k, v in flat_profile().spec.model_dump().items() if k != "decode"})


# -- the model against theory ---------------------------------------------------------------------------------------


def test_one_prefill_replica_queues_as_md1() -> None:
    """Poisson arrivals, a constant prompt (deterministic service) and one replica pulling from the queue: the mean
    wait before prefill is Pollaczek-Khinchine's rho·S / (2·(1 - rho))."""
    service, rate = 0.1, 7.0
    rho = rate * service
    run = run_policy(poisson(rate, 100_000, prompt=512, output=1), flat_profile(service), "static:1x1", tick=0.5)
    waits = [r.prefill_start - r.admitted for r in run.records]
    expected = rho * service / (2 * (1 - rho))
    assert sum(waits) / len(waits) == pytest.approx(expected, rel=0.05)


def test_md1_with_the_measured_profile() -> None:
    profile = load_profile("qwen3-32b-h200-tp2")
    service = profile.prefill_seconds(2048)
    rate = 0.6 / service
    run = run_policy(poisson(rate, 60_000, prompt=2048, output=1, seed=1), profile, "static:1x1", tick=0.5)
    waits = [r.prefill_start - r.admitted for r in run.records]
    assert sum(waits) / len(waits) == pytest.approx(0.6 * service / (2 * 0.4), rel=0.05)


def check_every_request_completed_once(run: Run) -> None:
    for r in run.records:
        assert r.arrival <= r.admitted <= r.prefill_start < r.prefill_end <= r.kv_arrived <= r.first_token <= r.finish
        assert r.finish < math.inf
    # Every record finished, and as many finishes as records: none lost, none served twice.
    assert run.completed == len(run.records)


@pytest.mark.parametrize("policy", ["pd-scaler", "pd-scaler:gpu-memory", "keda-builtin", "dynamo-load", "oracle"])
def test_every_request_completes_exactly_once_while_replicas_come_and_go(policy: str) -> None:
    # Bursts separated by quiet spells make every autoscaler add and remove replicas mid-work.
    requests = []
    for burst in range(4):
        requests += [Request(burst * 900 + i * 0.02, 3000, 200) for i in range(3000)]
    profile = load_profile("qwen3-32b-h200-tp2")
    run = run_policy(requests, profile, policy, startup=60.0)
    check_every_request_completed_once(run)
    assert len(run.records) == len(requests)
    assert max(s.prefill for s in run.timeline) > 1  # it did scale


def test_decode_admits_at_most_max_num_seqs_and_a_removed_replica_finishes_its_work() -> None:
    profile = flat_profile(0.001, max_num_seqs=4)
    cluster = Cluster([Request(0.0, 10, 100) for _ in range(10)], profile, startup=0.0)
    cluster.preload(1, 2)
    cluster.advance(0.001)
    # Five each (round-robin); four admitted each, one waiting at each engine.
    assert [(d.seats, d.n_waiting) for d in cluster.decode] == [(4, 1), (4, 1)]
    cluster.scale(DECODE, 1)  # the newest is removed; it keeps its three requests
    assert cluster.replicas(DECODE) == 1
    assert len(cluster.decode) == 2
    while not cluster.done:
        cluster.advance(cluster.now + 0.05)
        cluster.decode_tick(cluster.now, 0.05)
    assert len(cluster.decode) == 1
    assert sum(1 for r in cluster.records if r.decode is not None and r.decode.index == 1) == 5
    assert cluster.completed == 10


def test_gpu_hours_run_to_the_last_finish_and_leave_out_the_warmup() -> None:
    requests = [Request(0.0, 10, 1), Request(3600.0, 10, 100)]
    run = run_policy(requests, flat_profile(), "static:2x3", warmup=600.0)
    last = max(r.finish for r in run.records)
    assert last > 3601.0  # 100 tokens after the last arrival's prefill
    assert run.end == last
    assert run.gpu_seconds == {PREFILL: pytest.approx(2 * (last - 600)), DECODE: pytest.approx(3 * (last - 600))}


def test_a_new_replica_serves_after_the_startup_delay() -> None:
    cluster = Cluster([Request(0.0, 10, 1)], flat_profile(), startup=120.0)
    cluster.preload(0, 1)
    cluster.scale(PREFILL, 1)
    cluster.advance(119.9)
    assert (cluster.prefill_lag(), cluster.ready_replicas(PREFILL)) == (1, 0)
    cluster.advance(120.01)
    assert cluster.prefill_lag() == 0
    assert cluster.records[0].prefill_start == 120.0
