"""One policy over one trace: the cluster, its autoscaler and simulated time, from the first arrival until the
last request has finished. No real sleeps: the loop jumps from event to event and steps decode in ticks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scaler.simulate import oracle
from scaler.simulate.cluster import DECODE, PREFILL, Cluster, Record
from scaler.simulate.exporters import Scraper
from scaler.simulate.policies import (
    Controller,
    DynamoLoadController,
    KedaController,
    KedaLagMetric,
    KedaMemoryMetric,
    OracleController,
    PdScalerController,
    Policy,
    RoleMetric,
    Settings,
    StaticController,
)
from scaler.simulate.profile import Profile
from scaler.simulate.sources import SimClock
from scaler.simulate.trace import Request

# A run still going this long after the last arrival has a role that cannot serve (e.g. no replica at all).
MAX_DRAIN_S = 48 * 3600.0


class SimulationStuck(RuntimeError):
    """Requests could not all be served."""


Progress = Callable[[float], None]  # fraction of the trace's span simulated so far


@dataclass(frozen=True)
class Config:
    startup_delay: float = 120.0
    tick: float = 0.05
    scrape_interval: float = 15.0  # Prometheus scrape interval of the decode pods' exporters
    sample_interval: float = 5.0  # timeline resolution, for the plot


@dataclass(frozen=True)
class Sample:
    """The cluster at one moment, for the plot."""

    t: float
    lag: int
    prefill: int  # replicas (the scale subresource)
    decode: int


@dataclass
class Run:
    policy: str
    records: list[Record]
    completed: int  # finishes counted by the decode pool
    gpu_seconds: dict[str, float]  # over [0, horizon]
    horizon: float  # the last arrival
    timeline: list[Sample]


def controller_for(
    policy: Policy, cluster: Cluster, clock: SimClock, scraper: Scraper, settings: Settings, plan: oracle.Plan | None
) -> Controller:
    if policy.kind == "pd-scaler":
        return PdScalerController(cluster, clock, scraper, policy, settings)
    if policy.kind == "keda-builtin":
        metrics: dict[str, RoleMetric] = {PREFILL: KedaLagMetric(cluster), DECODE: KedaMemoryMetric(scraper)}
        specs = {PREFILL: settings.prefill, DECODE: settings.decode}
        return KedaController(cluster, metrics, specs, settings.hpa_sync)
    if policy.kind == "dynamo-load":
        return DynamoLoadController(cluster, settings)
    if policy.kind == "static":
        return StaticController(cluster, policy.static)
    assert plan is not None, policy.kind
    return OracleController(cluster, plan)


async def simulate(
    requests: Sequence[Request],
    profile: Profile,
    policy: Policy,
    settings: Settings,
    config: Config = Config(),
    progress: Progress | None = None,
) -> Run:
    plan = None
    startup = config.startup_delay
    if policy.kind == "oracle":
        plan = oracle.plan(requests, profile, settings.ttft_slack, settings.itl, config.tick, settings.oracle_window)
        startup = 0.0
    cluster = Cluster(requests, profile, startup)
    clock = SimClock()
    scraper = Scraper(cluster, config.scrape_interval)
    controller = controller_for(policy, cluster, clock, scraper, settings, plan)
    try:
        cluster.preload(*controller.initial())
        scraper.scrape(0.0)
        timeline = await _loop(cluster, controller, clock, scraper, config, progress)
    except SimulationStuck as exc:
        raise SimulationStuck(f"{policy.name}: {exc}") from None
    finally:
        await controller.close()
    cluster.finish_accounting()
    return Run(policy.name, cluster.records, cluster.completed, dict(cluster.gpu_seconds), cluster.horizon, timeline)


async def _loop(
    cluster: Cluster,
    controller: Controller,
    clock: SimClock,
    scraper: Scraper,
    config: Config,
    progress: Progress | None,
) -> list[Sample]:
    dt, horizon = config.tick, cluster.horizon
    scrape_every = max(1, round(config.scrape_interval / dt))
    sample_every = max(1, round(config.sample_interval / dt))
    report_every = max(1, round(horizon / dt / 100))
    timeline = [_sample(cluster, 0.0)]

    async def advance(until: float) -> None:
        while cluster.advance(until):
            clock.now = cluster.now
            await controller.push(cluster.now)
            cluster.woken = False

    tick = 0
    while True:
        start, end = tick * dt, (tick + 1) * dt
        while controller.next_time < end:
            now = controller.next_time
            await advance(now)
            clock.now = now
            await controller.act(now)
        await advance(end)
        cluster.decode_tick(start, dt)
        clock.now = end
        if cluster.woken:
            await controller.push(end)
            cluster.woken = False
        tick += 1
        if tick % scrape_every == 0:
            scraper.scrape(end)
        if tick % sample_every == 0:
            timeline.append(_sample(cluster, end))
        if progress is not None and tick % report_every == 0:
            progress(min(1.0, end / horizon) if horizon > 0 else 1.0)
        if cluster.done and end >= horizon:
            return timeline
        if end > horizon + MAX_DRAIN_S:
            raise SimulationStuck(
                f"{cluster.completed} of {len(cluster.records)} requests finished {MAX_DRAIN_S / 3600:g} h after the"
                " last arrival: a role cannot serve"
            )


def _sample(cluster: Cluster, t: float) -> Sample:
    return Sample(
        t=t,
        lag=cluster.prefill_lag(),
        prefill=cluster.replicas(PREFILL),
        decode=cluster.replicas(DECODE),
    )


async def compare(
    requests: Sequence[Request],
    profile: Profile,
    policies: Sequence[Policy],
    settings: Settings,
    config: Config = Config(),
    progress: Callable[[str, float], None] | None = None,
) -> list[Run]:
    """Each policy over the same trace, one after the other."""
    runs = []
    for policy in policies:
        report = None if progress is None else functools.partial(progress, policy.name)
        runs.append(await simulate(requests, profile, policy, settings, config, report))
    return runs
