"""Policies in the simulator: the real engine through simulated sources, the other autoscalers, the oracle, the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from scaler.cli import main
from scaler.deployment import load_deployment, load_profile, override, parse_startup
from scaler.engine import Engine, Ref
from scaler.errors import InvalidTrigger, SourceUnavailable
from scaler.metrics import Metrics
from scaler.simulate import oracle
from scaler.simulate.autoscaling import ScaledObjectSpec
from scaler.simulate.cli import ProgressBar
from scaler.simulate.cluster import DECODE, PREFILL, Cluster
from scaler.simulate.exporters import Scraper
from scaler.simulate.policies import (
    DynamoLoadController,
    Policy,
    Settings,
    parse_policy,
    pd_scaler_metadata,
)
from scaler.simulate.simulation import Config, simulate
from scaler.simulate.slo import Slo
from scaler.simulate.sources import NAMESPACE, SimClock, SimSources
from scaler.simulate.trace import Request
from tests.test_simulate_model import deployment_of, flat_profile, run_policy

PROFILE = load_profile("qwen3-32b-h200-tp2")


def test_policy_names() -> None:
    assert parse_policy("pd-scaler") == Policy("pd-scaler", "pd-scaler")
    assert parse_policy("pd-scaler").decode_metric == "kv-cache"
    assert parse_policy("pd-scaler:gpu-memory").decode_metric == "gpu-memory"
    assert parse_policy("pd-scaler:kv-cache@0.35").decode_threshold == "0.35"
    assert parse_policy(" static:2x1 ").static == (2, 1)
    assert parse_policy("keda-builtin+lagThreshold=10").options == (("lagThreshold", "10"),)
    assert parse_policy("pd-scaler:lag").capacity is False
    assert parse_policy("pd-scaler").capacity is True
    lag = pd_scaler_metadata(parse_policy("pd-scaler:lag+lagThreshold=10"), Settings())
    assert lag[PREFILL]["lagThreshold"] == "10"
    for bad, message in [
        ("static:2x0", "P, D >= 1"),
        ("static:0x1", "P, D >= 1"),
        ("static:2", "static:PxD"),
        ("pd-scaler:memory", "decode metric"),
        ("pd-scaler:lag@0.5", "pd-scaler:lag or pd-scaler:<decode metric>[@<threshold>]"),
        ("pd-scaler+lagThreshold=5", "lagThreshold only apply with policy threshold, not capacity"),
        ("keda", "unknown policy 'keda'"),
        ("keda-builtin+lag=3", "keda-builtin takes +lagThreshold= and +threshold=, not 'lag'"),
        ("dynamo-load+prefill_queue_up=x", "prefill_queue_up='x' is not a number"),
        ("pd-scaler+lagTreshold=3", "unknown key 'lagTreshold'"),
    ]:
        with pytest.raises((ValueError, InvalidTrigger), match=re.escape(message)):
            parse_policy(bad)


def test_pd_scaler_triggers_are_checked_by_the_real_schema() -> None:
    metadata = pd_scaler_metadata(
        parse_policy("pd-scaler:gpu-memory"), Settings(prefill_metadata={"lagThreshold": "8"})
    )
    assert metadata[PREFILL] == {"role": "prefill", "natsServer": "nats://sim:4222", "lagThreshold": "8"}
    assert metadata[DECODE] == {
        "role": "decode",
        "prometheusAddress": "http://sim:9090",
        "threshold": "0.8",
        "metric": "gpu-memory",
    }
    assert pd_scaler_metadata(parse_policy("pd-scaler:lag"), Settings())[DECODE]["engine"] == "vllm"
    with pytest.raises(InvalidTrigger, match="did you mean 'lagThreshold'"):
        pd_scaler_metadata(parse_policy("pd-scaler:lag"), Settings(prefill_metadata={"lagTreshold": "8"}))


def test_pd_scaler_is_the_capacity_policy_with_knobs_from_the_deployment() -> None:
    deployment = load_deployment("ack-dynamo-guide")
    metadata = pd_scaler_metadata(parse_policy("pd-scaler+ttft=2s"), Settings(), deployment=deployment)
    profile = deployment.profile
    # One replica prefills a 2,048-token chunk in the profile's time; 164 sequences step within 50 ms at 2k context.
    assert metadata[PREFILL] == {
        "role": "prefill",
        "natsServer": "nats://sim:4222",
        "policy": "capacity",
        "decodeScaledObject": "sim-decode",
        "prefillTokensPerSecond": f"{2048 / profile.prefill_seconds(2048):.0f}",
        "ttft": "2s",
        "startupDelay": "120s",
    }
    assert metadata[DECODE] == {
        "role": "decode",
        "prometheusAddress": "http://sim:9090",
        "policy": "capacity",
        "prefillScaledObject": "sim-prefill",
        "seats": str(profile.max_batch_within(0.05, 2048)),
        "startupDelay": "120s",
        "profile": "ack-dynamo-guide",  # its step times, as the README's decode ScaledObject gives them
    }
    # Start-ups drawn from 90..300 s: capacity is sure to serve only 300 s after it is ordered.
    drawn = override(deployment, parse_startup("90s..300s"), None)
    metadata = pd_scaler_metadata(parse_policy("pd-scaler"), Settings(), deployment=drawn)
    assert metadata[PREFILL]["startupDelay"] == metadata[DECODE]["startupDelay"] == "300s"


async def engine_over(cluster: Cluster) -> tuple[Engine, SimSources, SimClock]:
    clock = SimClock()
    clock.now = cluster.now
    scraper = Scraper(cluster)
    scraper.scrape(cluster.now)
    sources = SimSources(cluster, scraper, Metrics(), clock)
    return Engine(sources, sources.metrics, first_sample_wait=0.0, clock=clock), sources, clock


async def decide(engine: Engine, metadata: dict[str, str]) -> Any:
    ref = Ref(NAMESPACE, f"sim-{metadata['role']}", metadata)
    for source in engine.evaluator(ref).sources:
        await source.refresh()
    return await engine.decide(ref)


async def test_the_engine_reads_the_modelled_cluster_like_a_real_one() -> None:
    cluster = Cluster([Request(0.0, 1000, 50) for _ in range(40)], PROFILE, startup=60.0)
    cluster.preload(0, 2)
    cluster.scale(DECODE, 3)  # one decode pod still loading
    cluster.advance(1.0)
    cluster.decode_tick(1.0, 0.05)
    engine, sources, _ = await engine_over(cluster)
    lag = await decide(engine, {"role": "prefill", "natsServer": "nats://sim:4222", "lagThreshold": "5"})
    assert (lag.value, lag.target, lag.active) == (40.0, 5.0, True)
    memory = await decide(engine, {"role": "decode", "prometheusAddress": "http://sim:9090", "threshold": "0.8"})
    # Two engines up with 95 % of each GPU preallocated; the loading pod shows no memory used yet.
    assert memory.value == pytest.approx(2 * 0.95)
    assert memory.unmeasured == 0
    kv = await decide(engine, {"role": "decode", "prometheusAddress": "http://sim:9090", "metric": "kv-cache"})
    expected = sum(cluster.kv_fill(d) for d in cluster.decode if d.ready_at <= cluster.now)
    assert kv.value == pytest.approx(expected)
    assert kv.value > 0
    assert kv.unmeasured == 1  # the loading pod's engine exports nothing yet
    await sources.close()


async def test_a_stale_sample_is_an_error_not_a_number() -> None:
    cluster = Cluster([Request(0.0, 1000, 50)], PROFILE)
    cluster.preload(1, 1)
    engine, sources, clock = await engine_over(cluster)
    metadata = {"role": "prefill", "natsServer": "nats://sim:4222", "lagThreshold": "5"}
    await decide(engine, metadata)
    clock.now += 31.0
    with pytest.raises(SourceUnavailable, match="over maxStaleness 30s"):
        await engine.decide(Ref(NAMESPACE, "sim-prefill", metadata))
    await sources.close()


def test_pd_scaler_scales_prefill_on_lag_and_back_after_the_stabilization_window() -> None:
    # 20 minutes at ~3 replicas' worth of prefill, then a trickle.
    burst = [Request(i * 0.05, 4000, 20) for i in range(24_000)]
    trickle = [Request(1200.0 + i, 500, 20) for i in range(1200)]
    run = run_policy(burst + trickle, PROFILE, "pd-scaler", startup=60.0)
    prefill = {round(s.t): s.prefill for s in run.timeline}
    assert prefill[0] == 1
    assert max(v for t, v in prefill.items() if t < 1200) >= 3
    assert prefill[2395] == 1
    assert run.completed == len(run.records)


def test_a_warm_start_gives_every_autoscaled_policy_the_replicas_the_oracle_starts_with() -> None:
    # ~3 prefill replicas' worth of 4,000-token prompts from the first second: the oracle starts with them.
    requests = [Request(i * 0.05, 4000, 20) for i in range(6000)]
    warm = oracle.planned(requests, deployment_of(PROFILE, 60.0), Settings(), Config()).initial
    assert warm[0] >= 3
    for policy in ("pd-scaler", "keda-builtin", "dynamo-load", "oracle"):
        run = run_policy(requests, PROFILE, policy, startup=60.0, init=None, horizon=1.0)
        assert (run.timeline[0].prefill, run.timeline[0].decode) == warm, policy
    # A given start stays as given.
    run = run_policy(requests, PROFILE, "keda-builtin", startup=60.0, init=(2, 1), horizon=1.0)
    assert (run.timeline[0].prefill, run.timeline[0].decode) == (2, 1)


def test_scale_from_zero_on_push_is_immediate_and_polling_waits() -> None:
    requests = [Request(100.0 + i, 500, 10) for i in range(5)]
    settings = Settings(prefill=ScaledObjectSpec(min_replicas=0, cooldown_period=30.0))
    config = Config(warmup=0.0, init=(1, 1))
    starts = {}
    for policy in ("pd-scaler", "keda-builtin"):
        run = asyncio.run(
            simulate(requests, deployment_of(flat_profile(), 10.0), parse_policy(policy), settings, config)
        )
        starts[policy] = run.records[0].prefill_start
    # Prefill went to zero after the 30 s cooldown. Push: KEDA scales 0 → 1 at the arrival; polling: at the
    # next 30 s poll (at its phase). Then the start-up delay.
    assert starts["pd-scaler"] == pytest.approx(100.0 + 10.0)
    assert 100.0 + 10.0 < starts["keda-builtin"] <= 100.0 + 30.0 + 10.0


class FakeCluster:
    """What the planner reads and sets, and nothing else."""

    def __init__(self, lag: list[int], kv: float) -> None:
        self.lags, self.kv, self.counts = lag, kv, {PREFILL: 1, DECODE: 1}
        self.decode = [type("D", (), {"draining": False, "ready_at": 0.0})()]

    def prefill_lag(self) -> int:
        return self.lags.pop(0) if len(self.lags) > 1 else self.lags[0]

    def kv_fill(self, _: object) -> float:
        return self.kv

    def replicas(self, role: str) -> int:
        return self.counts[role]

    ready_replicas = replicas

    def scale(self, role: str, n: int) -> None:
        self.counts[role] = n


@pytest.mark.parametrize(
    ("lags", "kv", "expected"),
    [
        ([6] * 18, 0.95, (2, 2)),  # queue and KV above: one more of each
        ([0] * 18, 0.3, (1, 1)),  # below: at the minimum already
        ([40] + [6] * 16 + [1], 0.7, (1, 1)),  # the trend says the queue drains within three intervals
    ],
)
def test_dynamo_planner_rules(lags: list[int], kv: float, expected: tuple[int, int]) -> None:
    cluster: Any = FakeCluster(lags, kv)
    planner = DynamoLoadController(cluster, Settings())

    async def interval() -> None:
        while planner.next_time <= 180.0:
            await planner.act(planner.next_time)

    asyncio.run(interval())
    assert (cluster.counts[PREFILL], cluster.counts[DECODE]) == expected


def test_oracle_sizes_each_window_for_its_load() -> None:
    # 0.25 s of prefill every 0.1 s for the first two minutes (3 replicas), then every 1 s (1 replica).
    requests = [Request(i * 0.1, 100, 10) for i in range(1200)] + [Request(120.0 + i, 100, 10) for i in range(120)]
    plan = oracle.plan(requests, flat_profile(0.25), ttft_slack=1.0, itl=0.05, tick=0.05, window_s=60.0)
    assert plan.prefill == (3, 3, 1, 1)
    assert plan.decode == (1, 1, 1, 1)
    run = run_policy(requests, flat_profile(0.25), "oracle")
    assert all(Slo().met(r) for r in run.records)


def test_simulate_command_writes_the_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.jsonl"
    lines = [json.dumps({"timestamp": i * 200, "input_length": 2000, "output_length": 30}) for i in range(3000)]
    trace.write_text("\n".join(lines))
    out, png = tmp_path / "summary.json", tmp_path / "plot.png"
    argv = ["simulate", "--trace", str(trace), "--policy", "static:2x1,pd-scaler", "--load-scale", "2"]
    argv += ["--deployment", "h200-tp2"]
    argv += ["--window", "0:5m", "--json", str(out), "--plot", str(png), "--no-progress", "--seeds", "2"]
    argv += ["--warmup", "1m"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trace: trace.jsonl x2: 3,000 requests over 5.0 min (9.98/s), mean prompt 2,000 tokens" in printed
    assert "deployment: h200-tp2: qwen3-32b-h200-tp2, TP=2 in a 2-GPU pod, max_num_seqs 256" in printed
    assert "run: init warm, warm-up 60 s, tick 50 ms, request timeout 60 s, seeds 0..1" in printed
    assert printed.splitlines()[4].split() == [
        "policy", "SLO", "met", "TTFT", "p50/p90/p99", "s", "ITL", "p90", "ms", "GPU-h", "P", "GPU-h", "D",
        "GPU-h", "peak", "PxD", "dropped", "unfinished", "preempted", "GPU-h", "vs", "static:2x1",
    ]  # fmt: skip
    summary = json.loads(out.read_text())
    assert summary["trace"]["requests"] == 3000
    assert set(summary["policies"]) == {"static:2x1", "pd-scaler"}
    for result in summary["policies"].values():
        assert 0.0 <= result["slo_attainment"]["mean"] <= 1.0
        assert [run["seed"] for run in result["runs"]] == [0, 1]
    static = summary["policies"]["static:2x1"]
    assert static["slo_attainment"]["mean"] == 1.0
    # Three 2-GPU pods from the warm-up's end to the last finish, a second or so after the last arrival.
    assert 3 * 2 * (300 - 60) / 3600 < static["gpu_hours"]["mean"] < 3 * 2 * (302 - 60) / 3600
    settings = summary["settings"]
    assert settings["deployment"]["name"] == "h200-tp2"
    assert settings["deployment"]["gpus_per_replica"] == 2
    assert settings["simulation"]["warmup_s"] == 60.0
    assert settings["seeds"] == [0, 1]
    assert "pd-scaler vs static:2x1: SLO " in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "magic"], "unknown policy 'magic'"),
        (["--decode-metadata", "metric=kv-cache,threshold=2"], "key 'threshold': invalid value '2'"),
        (["--decode-replicas", "0:4"], "MIN must be at least 1"),
        (["--deployment", "nope"], "no deployment 'nope'"),
        (["--window", "2h:3h"], "no request in that window"),
    ],
)
def test_simulate_command_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--startup-delay", "5m..1m"], "write a duration (120s) or a range LOW..HIGH"),
        (["--init", "2"], "'2': write PxD"),
        (["--seeds", "0"], "'0': must be a whole number >= 1"),
    ],
)
def test_simulate_flags_are_checked(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["simulate", *argv])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_progress_bar_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, 2)
    bar("pd-scaler", 0.5)
    bar("oracle", 1.0)
    bar.close()
    assert stream.getvalue().split("\r")[1:3] == [
        "[1/2] pd-scaler                [###############...............]  50%",
        "[2/2] oracle                   [##############################] 100%",
    ]


def test_a_role_that_never_activates_is_reported_not_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scaler.simulate.simulation.MAX_DRAIN_S", 600.0)
    trace = tmp_path / "trace.jsonl"
    # One request at 0 (the first replica serves it), three after KEDA has scaled prefill to zero: a lag of 3 never
    # passes activationLagThreshold 10, so nothing wakes the role again.
    stamps = [0, 120_000, 120_001, 120_002]
    trace.write_text("\n".join(json.dumps({"timestamp": t, "input_length": 9, "output_length": 9}) for t in stamps))
    argv = ["simulate", "--trace", str(trace), "--policy", "pd-scaler:lag", "--prefill-replicas", "0:2"]
    argv += ["--cooldown-period", "1s", "--prefill-metadata", "activationLagThreshold=10", "--request-timeout", "1h"]
    assert main(argv) == 1
    assert (
        "pd-scaler:lag: 1 of 4 requests finished or dropped 0.166667 h after the last arrival"
        in capsys.readouterr().err
    )
