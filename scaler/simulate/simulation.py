"""One policy over one trace: the cluster, its autoscaler and simulated time, from the first arrival until the
last request has finished (or `horizon`). No real sleeps: the loop jumps from event to event and steps decode in
ticks. Every random draw (start-up delays, the phases of the periodic loops) comes from the run's seed."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scaler.deployment import Deployment
from scaler.simulate import oracle
from scaler.simulate.cluster import DECODE, PREFILL, Cluster, Record, billed_seconds
from scaler.simulate.exporters import Scraper
from scaler.simulate.policies import Context, Controller, Policy, Settings, kind_of
from scaler.simulate.sources import SimClock
from scaler.simulate.trace import Request

# A run still going this long after the last arrival has a role that cannot serve (e.g. no replica at all).
MAX_DRAIN_S = 48 * 3600.0


class SimulationStuck(RuntimeError):
    """Requests could not all be served."""


Progress = Callable[[float], None]  # fraction of the trace's span simulated so far


@dataclass(frozen=True)
class Config:
    """How the world is simulated (the same for every policy of a comparison)."""

    tick: float = 0.05
    scrape_interval: float = 15.0  # Prometheus scrape interval of the decode pods' exporters
    sample_interval: float = 5.0  # timeline resolution, for the plot
    warmup: float = 300.0  # simulated, left out of SLO and GPU-hours
    horizon: float | None = None  # stop here (default: when the last request has finished)
    request_timeout: float = 60.0  # DYNAMO_RP_TIMEOUT
    # Ready replicas when the trace starts; None: warm, those the oracle starts with (`warm_start`).
    init: tuple[int, int] | None = None
    router: str = "round-robin"
    seed: int = 0

    def settings(self) -> dict[str, object]:
        return {
            "tick_s": self.tick,
            "scrape_interval_s": self.scrape_interval,
            "warmup_s": self.warmup,
            "horizon_s": self.horizon,
            "request_timeout_s": self.request_timeout,
            "init": init_text(self.init),
            "router": self.router,
        }


def init_text(init: tuple[int, int] | None) -> str:
    return "warm" if init is None else f"{init[0]}x{init[1]}"


def warm_start(requests: Sequence[Request], deployment: Deployment, settings: Settings, config: Config) -> Config:
    """`config` with a warm start where it asks for one: every autoscaled policy starts with the replicas the oracle
    starts with, those the trace's first start-up delay needs, as static configurations start with theirs. A cold
    start would be measured too: replicas ordered at the start serve only a start-up delay later, as late as the
    warm-up's end with a drawn start-up, and the backlog of a load sized for more than the start's replicas drains
    into the measured time."""
    if config.init is not None:
        return config
    return dataclasses.replace(config, init=oracle.planned(requests, deployment, settings, config).initial)


def rng(seed: int, stream: str) -> random.Random:
    """An independent random stream of the run's seed: the same draws whatever else the run does."""
    return random.Random(f"{seed}:{stream}")


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
    dropped: int  # failed at the request timeout
    gpu_seconds: dict[str, float]  # over [warmup, end]
    start: float  # the warmup's end: what is measured starts here
    end: float  # the last finish, or the horizon
    horizon: float  # the last arrival
    timeline: list[Sample]
    preemptions: int
    seed: int

    @property
    def unfinished(self) -> int:
        return len(self.records) - self.completed - self.dropped


async def simulate(
    requests: Sequence[Request],
    deployment: Deployment,
    policy: Policy,
    settings: Settings,
    config: Config = Config(),
    progress: Progress | None = None,
) -> Run:
    config = warm_start(requests, deployment, settings, config)
    cluster = Cluster(
        requests,
        deployment.profile,
        deployment.startup,
        rng(config.seed, "startup"),
        config.request_timeout,
        config.router,
    )
    clock = SimClock()
    phases = rng(config.seed, "phases")
    scraper = Scraper(cluster, config.scrape_interval)
    context = Context(cluster, clock, scraper, settings, config, deployment, requests, phases)
    controller = kind_of(policy).controller(policy, context)
    try:
        cluster.preload(*controller.initial())
        scraper.scrape(0.0)
        timeline = await _loop(cluster, controller, clock, scraper, config, phases, progress)
    except SimulationStuck as exc:
        raise SimulationStuck(f"{policy.name}: {exc}") from None
    finally:
        await controller.close()
    ends = (r.finish if r.finish == r.finish else r.dropped_at for r in cluster.records)
    start, end = _measured(requests, config, [t for t in ends if t == t])
    return Run(
        policy=policy.name,
        records=cluster.records,
        completed=cluster.completed,
        dropped=cluster.dropped,
        gpu_seconds={role: cluster.gpu_seconds(role, start, end) for role in (PREFILL, DECODE)},
        start=start,
        end=end,
        horizon=requests[-1].arrival if requests else 0.0,
        timeline=timeline,
        preemptions=sum(d.preemptions for d in cluster.decode) + cluster.stopped_preemptions,
        seed=config.seed,
    )


def _measured(requests: Sequence[Request], config: Config, ends: Sequence[float]) -> tuple[float, float]:
    """What GPU-hours are counted over: from the warm-up's end to the horizon, or else to the last arrival or the
    last finish or drop (`ends`), whichever is later."""
    end = config.horizon if config.horizon is not None else max((requests[-1].arrival if requests else 0.0, *ends))
    return min(config.warmup, end), end


def least_gpu_hours(requests: Sequence[Request], deployment: Deployment, config: Config, replicas: int) -> float:
    """The fewest GPU-hours a run with `replicas` replicas throughout (a static configuration's) can be billed:
    those up to the last arrival, before any request has finished; exact with a horizon."""
    start, end = _measured(requests, config, ())
    return billed_seconds(deployment.profile.gpus, [(0.0, math.inf)] * replicas, start, end) / 3600


async def _loop(
    cluster: Cluster,
    controller: Controller,
    clock: SimClock,
    scraper: Scraper,
    config: Config,
    phases: random.Random,
    progress: Progress | None,
) -> list[Sample]:
    dt = config.tick
    last_arrival = cluster.records[-1].arrival if cluster.records else 0.0
    stop = math.inf if config.horizon is None else config.horizon
    scrape_every = max(1, round(config.scrape_interval / dt))
    scrape_phase = phases.randrange(scrape_every)  # Prometheus's scrape offset
    sample_every = max(1, round(config.sample_interval / dt))
    report_every = max(1, round(last_arrival / dt / 100))
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
        if tick % scrape_every == scrape_phase:
            scraper.scrape(end)
        if tick % sample_every == 0:
            timeline.append(_sample(cluster, end))
        if progress is not None and tick % report_every == 0:
            progress(min(1.0, end / last_arrival) if last_arrival > 0 else 1.0)
        if (cluster.done and end >= last_arrival) or end >= stop - 1e-9:
            return timeline
        if end > last_arrival + MAX_DRAIN_S:
            raise SimulationStuck(
                f"{cluster.completed + cluster.dropped} of {len(cluster.records)} requests finished or dropped"
                f" {MAX_DRAIN_S / 3600:g} h after the last arrival: a role cannot serve"
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
    deployment: Deployment,
    policies: Sequence[Policy],
    settings: Settings,
    config: Config = Config(),
    progress: Callable[[str, float], None] | None = None,
) -> list[Run]:
    """Each policy over the same trace, one after the other."""
    config = warm_start(requests, deployment, settings, config)
    runs = []
    for policy in policies:
        report = None if progress is None else functools.partial(progress, policy.name)
        runs.append(await simulate(requests, deployment, policy, settings, config, report))
    return runs
