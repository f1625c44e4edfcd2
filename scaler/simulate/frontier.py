"""`pd-scaler simulate frontier`: each policy kind's main knob swept over traces and loads, with replications.

Per workload (trace x load) and policy kind: the SLO-vs-GPU-hours point of every variant (mean and 95 % interval
over the seeds), the kind's Pareto front (no other variant of the kind has a higher mean SLO for fewer mean
GPU-hours), the oracle's point, and which front dominates which. Point a dominates point b when, paired by seed,
a is not worse on either figure by more than the interval allows and is better on at least one with an interval
that excludes zero; a front dominates another when each of the other's points is dominated by one of its own.
Runs are spread over worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import math
import multiprocessing
import pickle
import statistics
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from scaler.deployment import Deployment
from scaler.errors import InvalidTrigger
from scaler.simulate import cli
from scaler.simulate import trace as traces
from scaler.simulate.policies import REGISTRY, Settings, parse_policy
from scaler.simulate.report import Aggregate, Stat, Summary, difference, json_policies, ratio, summarize
from scaler.simulate.simulation import Config, SimulationStuck, init_text, least_gpu_hours, simulate, warm_start
from scaler.simulate.slo import Slo

ORACLE = "oracle"
STATIC_REFERENCE = "pd-scaler"  # the policy the cheapest static configuration is found for, by default
WITHIN = 0.01  # ... meeting its SLO attainment within a point


@dataclass(frozen=True)
class Workload:
    trace: str  # a path, or a bundled trace's file name
    scale: float

    @property
    def label(self) -> str:
        return f"{Path(self.trace).name} x{self.scale:g}"


@dataclass(frozen=True)
class Task:
    workload: Workload
    policy: str
    seed: int
    settings: Settings
    config: Config
    deployment: Deployment
    slo: Slo
    window: tuple[float, float] | None
    trace_format: str


_TRACES: dict[tuple[str, str], list[traces.Request]] = {}
# A worker runs many policies of one workload and seed: their warm start (the oracle's plan) is made once. Keyed by
# the whole task but its policy; bounded by the workloads x seeds of one frontier.
_WARM: dict[bytes, Config] = {}


def _run(task: Task) -> Summary:
    key = (task.workload.trace, task.trace_format)
    if key not in _TRACES:
        _TRACES[key] = cli.load_trace(Path(task.workload.trace), task.trace_format)[1]
    requests = cli.workload(_TRACES[key], task.window, task.workload.scale, task.seed)
    policy = parse_policy(task.policy)
    config = task.config
    if config.init is None:
        same = pickle.dumps(dataclasses.replace(task, policy=""))
        if same not in _WARM:
            _WARM[same] = warm_start(requests, task.deployment, task.settings, config)
        config = _WARM[same]
    run = asyncio.run(simulate(requests, task.deployment, policy, task.settings, config))
    return summarize(run, task.slo, task.deployment.profile)


def dominates(a: Aggregate, b: Aggregate) -> bool:
    """a dominates b: paired by seed, a's mean is at least as good on both SLO and GPU-hours, and better on at
    least one with a 95 % interval that excludes zero (on one seed, strictly better by the values alone)."""
    slo, gpu = difference(a, b, "slo_attainment"), difference(a, b, "gpu_hours")
    if not (slo.mean >= 0 and gpu.mean <= 0):
        return False
    if slo.n < 2:
        return slo.mean > 0 or gpu.mean < 0
    return slo.low > 0 or gpu.high < 0


def pareto(points: Sequence[Aggregate]) -> list[Aggregate]:
    """The points no other point beats on both mean SLO and mean GPU-hours, by GPU-hours."""

    def means(a: Aggregate) -> tuple[float, float]:
        return a.stat("slo_attainment").mean, a.stat("gpu_hours").mean

    front = []
    for a in points:
        slo, gpu = means(a)
        if not any(
            (s >= slo and g <= gpu and (s > slo or g < gpu)) for s, g in (means(b) for b in points if b is not a)
        ):
            front.append(a)
    return sorted(front, key=lambda a: means(a)[1])


def front_verdict(name_a: str, front_a: Sequence[Aggregate], name_b: str, front_b: Sequence[Aggregate]) -> str:
    a_wins = all(any(dominates(a, b) for a in front_a) for b in front_b)
    b_wins = all(any(dominates(b, a) for b in front_b) for a in front_a)
    if a_wins and not b_wins:
        return f"{name_a} dominates {name_b}"
    if b_wins and not a_wins:
        return f"{name_b} dominates {name_a}"
    return f"{name_a} and {name_b}: neither front dominates (they cross, or differ within the intervals)"


def _stat_text(s: Stat, fmt: str, scale: float = 1.0) -> str:
    if math.isnan(s.mean):
        return "-"
    if s.n < 2:
        return format(s.mean * scale, fmt)
    return f"{format(s.mean * scale, fmt)} ±{format(s.half_width * scale, fmt)}"


Shape = tuple[int, int]  # prefill x decode replicas of a static configuration
Point = tuple[float, float]  # its mean SLO attainment and mean GPU-hours


def static_name(shape: Shape) -> str:
    return f"static:{shape[0]}x{shape[1]}"


def cheapest_static(
    most: Shape, target: float, least_gpu_hours: Callable[[Shape], float], known: Mapping[Shape, Point]
) -> Generator[Shape, Point, dict[Shape, Point]]:
    """Search for the static configuration with the fewest mean GPU-hours whose mean SLO attainment is at least
    `target`, over every P x D up to `most`: yields each configuration it needs simulated, is sent its point, and
    returns every point it saw (`known`, from the sweep, included); `best` picks the answer from them.

    It assumes that more replicas of either role never lower SLO attainment (with the same seeds), so the least
    P meeting the target does not fall as D falls: a staircase walked from the most decode replicas down, by
    bisection at each D between the least P not known to miss and the most P whose GPU-hours could still beat the
    best found (`least_gpu_hours`, what a configuration is billed up to the last arrival, bounds them from below).
    A configuration that meets the target and could be cheaper is simulated for its GPU-hours."""
    points = dict(known)

    def meets(shape: Shape) -> bool:
        return points[shape][0] >= target

    def implied(p: int, d: int) -> bool | None:
        """Whether (p, d) meets the target, if the points seen decide it by monotonicity."""
        if any(meets(s) and s[0] <= p and s[1] <= d for s in points):
            return True
        if any(not meets(s) and s[0] >= p and s[1] >= d for s in points):
            return False
        return None

    def beaten(shape: Shape) -> bool:
        """No configuration with these replicas can be cheaper than the best found."""
        found = best(points, target)
        return found is not None and least_gpu_hours(shape) > points[found][1]

    def decide(p: int, d: int) -> Generator[Shape, Point, bool]:
        """Whether (p, d) meets the target: implied by the points seen, or simulated."""
        verdict = implied(p, d)
        if verdict is None:
            points[p, d] = yield p, d
            verdict = meets((p, d))
        return verdict

    low = 1  # every P below misses at this D
    for d in range(most[1], 0, -1):
        high = most[0]
        while high >= low and beaten((high, d)):
            high -= 1
        if high < low:
            continue
        if not (yield from decide(high, d)):
            low = high + 1
            continue
        top = high  # the least P known to meet at this D
        while low < top:
            mid = (low + top) // 2
            low, top = (low, mid) if (yield from decide(mid, d)) else (mid + 1, top)
        for p in range(top, high + 1):  # they all meet: those that could be cheaper need their GPU-hours
            if beaten((p, d)):
                break
            if (p, d) not in points:
                points[p, d] = yield p, d
    return points


def best(points: Mapping[Shape, Point], target: float) -> Shape | None:
    """The configuration with the fewest mean GPU-hours among those meeting `target` (ties: fewer prefill)."""
    meeting = [(gpu, shape) for shape, (slo, gpu) in points.items() if slo >= target]
    return min(meeting)[1] if meeting else None


def _key(task: Task) -> tuple[Workload, str, int]:
    return task.workload, task.policy, task.seed


class Runs:
    """Every run of a frontier, through one pool of workers: each (workload, policy, seed) is simulated once and
    kept (a policy's name and a seed determine its run), so the static search reuses what the sweep ran."""

    def __init__(self, pool: Pool, show: bool) -> None:
        self.pool, self.show = pool, show
        self.summaries: dict[tuple[Workload, str, int], Summary] = {}
        self.planned = 0

    def run(self, tasks: Sequence[Task]) -> None:
        todo = list({_key(t): t for t in tasks if _key(t) not in self.summaries}.values())
        todo.sort(key=lambda t: -t.workload.scale)  # the longest first, so the workers finish together
        self.planned += len(todo)
        for task, summary in zip(todo, self.pool.imap(_run, todo), strict=True):
            self.summaries[_key(task)] = summary
            if self.show:
                sys.stderr.write(f"\r{len(self.summaries)}/{self.planned} runs")
                sys.stderr.flush()

    def aggregate(self, workload: Workload, policy: str, seeds: Sequence[int]) -> Aggregate:
        return Aggregate(policy, tuple(self.summaries[workload, policy, seed] for seed in seeds))


@dataclass
class StaticSearch:
    """One workload's search for the cheapest static configuration within a point of the reference."""

    workload: Workload
    reference: Aggregate
    target: float
    steps: Generator[Shape, Point, dict[Shape, Point]]
    grid: frozenset[Shape]
    asked: Shape | None = None
    points: dict[Shape, Point] | None = None

    def advance(self, point: Point | None) -> None:
        try:
            self.asked = next(self.steps) if point is None else self.steps.send(point)
        except StopIteration as done:
            self.asked, self.points = None, done.value


def run(args: argparse.Namespace) -> int:
    try:
        kinds = [k.strip() for k in (args.policy or "").split(",") if k.strip()] or [
            name for name, kind in REGISTRY.items() if name != ORACLE and kind.knob
        ]
        unknown = [k for k in kinds if k not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown policy kind {unknown[0]!r}; known: {', '.join(REGISTRY)}")
        settings = cli.checked_settings(args, [])
        deployment = cli.deployment_from(args)
        paths = [str(p) for p in (args.trace or [Path(t) for t in cli.BUNDLED_TRACES])]
        recorded = {path: cli.load_trace(Path(path), args.trace_format)[1] for path in paths}
        reference = _static_reference(args)
    except (ValueError, OSError, InvalidTrigger) as exc:
        return cli._fail(exc)
    seeds = list(range(args.seed, args.seed + args.seeds))
    slo = Slo(args.ttft_slo, args.itl_slo)
    workloads = [Workload(p, s) for p in paths for s in args.load_scales]
    tasks, variants, scaled = [], {}, {}
    for w in workloads:
        scaled[w] = _scaled(settings, args, w.scale)
        names: dict[str, list[str]] = {k: list(REGISTRY[k].sweep(scaled[w])) for k in kinds}
        names[ORACLE] = [ORACLE]
        variants[w] = names
        for kind_names in names.values():
            for name in kind_names:
                parse_policy(name)
                tasks += [_task(args, w, name, seed, scaled[w], deployment, slo) for seed in seeds]
    missing = [w for w in workloads if not any(reference in n for n in variants[w].values())]
    if reference is not None and missing:
        if args.static_reference != STATIC_REFERENCE:
            runs_there = ", ".join(n for kind_names in variants[missing[0]].values() for n in kind_names)
            return cli._fail(
                ValueError(
                    f"--static-reference {reference!r}: not a policy this frontier runs at {missing[0].label} "
                    f"({runs_there})"
                )
            )
        reference = None  # the default reference's kind is not swept: nothing to search for
    started = time.monotonic()
    show = sys.stderr.isatty() if args.progress is None else args.progress
    searches: dict[Workload, StaticSearch] = {}
    try:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            runs = Runs(pool, show)
            runs.run(tasks)
            swept_runs, swept_at = len(runs.summaries), time.monotonic()
            if reference is not None:
                searches = _search_statics(args, runs, workloads, reference, seeds, scaled, deployment, slo, recorded)
    except SimulationStuck as exc:
        print(f"pd-scaler simulate: {exc}", file=sys.stderr)
        return 1
    if show:
        sys.stderr.write("\r" + " " * 30 + "\r")
    elapsed = time.monotonic() - started
    search_s = time.monotonic() - swept_at
    report: dict[str, Any] = {"settings": {}, "workloads": {}, "elapsed_s": round(elapsed, 1)}
    if reference is not None:
        report["static_search_s"] = round(search_s, 1)
    report["settings"] = cli.recorded_settings(args, deployment, settings, seeds) | {
        "load_scales": args.load_scales,
        "traces": paths,
        "kinds": {k: REGISTRY[k].knob for k in kinds},
        "max_replicas_at_scale": {f"{s:g}": _max_replicas(args, s) for s in args.load_scales},
        "static_search": None if reference is None else {"reference": reference, "within": WITHIN},
    }
    searched = len(runs.summaries) - swept_runs
    print(
        f"frontier: {len(runs.summaries)} runs ({len(seeds)} seeds"
        + (
            f"; the static search: {searched // len(seeds)} configurations in {search_s:.0f} s"
            if reference is not None
            else ""
        )
        + f") in {elapsed:.0f} s on {args.workers} workers; "
        f"deployment {deployment.name}, start-up {deployment.startup}, init {init_text(args.init)}, "
        f"warm-up {args.warmup:g} s"
    )
    plotted = []
    for w in workloads:
        aggregates = {n: runs.aggregate(w, n, seeds) for kind_names in variants[w].values() for n in kind_names}
        fronts = {k: pareto([aggregates[n] for n in variants[w][k]]) for k in kinds}
        oracle = aggregates[ORACLE]
        most = _max_replicas(args, w.scale)
        print(f"\n## {w.label} (maxReplicaCount {most[0]} prefill, {most[1]} decode)")
        rows = [("policy", "SLO met", "GPU-h", "on front")]
        for k in [*kinds, ORACLE]:
            for n in variants[w][k]:
                a = aggregates[n]
                on = "*" if k == ORACLE or a in fronts.get(k, []) else ""
                rows.append(
                    (
                        n,
                        _stat_text(a.stat("slo_attainment"), ".1f", 100) + " %",
                        _stat_text(a.stat("gpu_hours"), ".2f"),
                        on,
                    )
                )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for j, r in enumerate(rows):
            print(
                "  ".join(
                    c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in enumerate(zip(r, widths, strict=True))
                )
            )
            if j == 0:
                print("  ".join("-" * wd for wd in widths))
        verdicts = []
        for i, first in enumerate(kinds):
            for second in kinds[i + 1 :]:
                verdicts.append(front_verdict(first, fronts[first], second, fronts[second]))
        oracle_beaten = [
            n for k in kinds for n in variants[w][k] if dominates(aggregates[n], oracle)
        ]  # a sanity check: nothing should beat the oracle
        print("\n".join(f"  {v}" for v in verdicts))
        if oracle_beaten:
            print(f"  note: {', '.join(oracle_beaten)} dominate(s) the oracle")
        report["workloads"][w.label] = {
            "trace": w.trace,
            "load_scale": w.scale,
            "policies": json_policies(list(aggregates.values())),
            "fronts": {k: [a.policy for a in fronts[k]] for k in kinds},
            "oracle": ORACLE,
            "verdicts": verdicts,
            "oracle_dominated_by": oracle_beaten,
        }
        cheapest = None
        if w in searches:
            text, found = _static_result(searches[w], runs, seeds, most)
            print(f"  {text}")
            report["workloads"][w.label]["cheapest_static"] = found
            cheapest = None if found["policy"] is None else runs.aggregate(w, found["policy"], seeds)
        plotted.append((w.label, kinds, variants[w], aggregates, fronts, cheapest))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        from scaler.simulate.plot import frontier_figure

        frontier_figure(plotted).savefig(args.plot, dpi=110)
    return 0


def _point(a: Aggregate) -> Point:
    return a.stat("slo_attainment").mean, a.stat("gpu_hours").mean


def _slo_text(a: Aggregate) -> str:
    return _stat_text(a.stat("slo_attainment"), ".1f", 100) + " %"


def _static_result(search: StaticSearch, runs: Runs, seeds: Sequence[int], most: Shape) -> tuple[str, dict[str, Any]]:
    """The search's answer as a line of text and as JSON."""
    assert search.points is not None
    ref, w = search.reference, search.workload
    points = search.points
    found = best(points, search.target)
    # None found: the configuration with the highest SLO attainment seen (the most replicas, by monotonicity).
    shown = found or max(points, key=lambda shape: (points[shape][0], -points[shape][1]))
    a = runs.aggregate(w, static_name(shown), seeds)
    point_text = f"{a.policy} {_slo_text(a)} at {_stat_text(a.stat('gpu_hours'), '.2f')} GPU-h"
    gpu_ratio = ratio(ref, a, "gpu_hours")
    searched = sorted(set(search.points) - search.grid)
    scope = (
        f"{len(searched)} configurations simulated, {len(search.grid)} from the sweep, of {most[0]}x{most[1]}; "
        "assumes more replicas of either role never lower SLO attainment"
    )
    within = f"within {WITHIN * 100:g} point of {ref.policy} ({_slo_text(ref)})"
    if found is None:
        text = f"no static configuration up to {most[0]}x{most[1]} is {within}; the best: {point_text} ({scope})"
    else:
        interval = "" if gpu_ratio.n < 2 else f" (±{gpu_ratio.half_width:.2f})"
        text = (
            f"cheapest static {within}: {point_text}; {ref.policy} uses {gpu_ratio.mean:.2f}x{interval} its "
            f"GPU-hours ({scope})"
        )
    return text, {
        "reference": ref.policy,
        "reference_slo_attainment": ref.stat("slo_attainment").json(),
        "target": round(search.target, 6),
        "policy": None if found is None else a.policy,
        "best": a.policy,
        "slo_attainment": a.stat("slo_attainment").json(),
        "gpu_hours": a.stat("gpu_hours").json(),
        "reference_gpu_hours_ratio": gpu_ratio.json(),
        "simulated": [static_name(shape) for shape in searched],
        "from_sweep": [static_name(shape) for shape in sorted(search.grid)],
        "assumes": "more replicas of either role never lower SLO attainment (same seeds)",
    }


def _task(
    args: argparse.Namespace,
    w: Workload,
    policy: str,
    seed: int,
    settings: Settings,
    deployment: Deployment,
    slo: Slo,
) -> Task:
    return Task(w, policy, seed, settings, cli.config_from(args, seed), deployment, slo, args.window, args.trace_format)


def _static_reference(args: argparse.Namespace) -> str | None:
    """The policy whose SLO the static search matches, checked; None with the search off."""
    if not args.static_search:
        return None
    try:
        return parse_policy(args.static_reference).name
    except ValueError as exc:
        raise ValueError(f"--static-reference: {exc}") from None


def _least_static_gpu_hours(
    replications: Sequence[tuple[Sequence[traces.Request], Config]], deployment: Deployment, shape: Shape
) -> float:
    """The fewest mean GPU-hours a static configuration can be billed over these replications."""
    return statistics.fmean(least_gpu_hours(r, deployment, config, sum(shape)) for r, config in replications)


def _search_statics(
    args: argparse.Namespace,
    runs: Runs,
    workloads: Sequence[Workload],
    reference: str,
    seeds: Sequence[int],
    scaled: Mapping[Workload, Settings],
    deployment: Deployment,
    slo: Slo,
    recorded: Mapping[str, Sequence[traces.Request]],
) -> dict[Workload, StaticSearch]:
    """Every workload's search, side by side: each step's runs (a configuration's seeds, for every workload still
    searching) go to the pool together."""
    searches = {}
    for w in workloads:
        ref = runs.aggregate(w, reference, seeds)
        target = ref.stat("slo_attainment").mean - WITHIN
        replications = [
            (cli.workload(recorded[w.trace], args.window, w.scale, s), cli.config_from(args, s)) for s in seeds
        ]
        floor = functools.partial(_least_static_gpu_hours, replications, deployment)
        swept = {parse_policy(name) for (run_w, name, _) in runs.summaries if run_w == w}
        grid = {p.static: _point(runs.aggregate(w, p.name, seeds)) for p in swept if p.kind == "static"}
        most = _max_replicas(args, w.scale)
        searches[w] = StaticSearch(w, ref, target, cheapest_static(most, target, floor, grid), frozenset(grid))
        searches[w].advance(None)
    while asking := [s for s in searches.values() if s.asked is not None]:
        runs.run(
            [
                _task(args, s.workload, static_name(s.asked), seed, scaled[s.workload], deployment, slo)
                for s in asking
                if s.asked is not None
                for seed in seeds
            ]
        )
        for s in asking:
            assert s.asked is not None
            s.advance(_point(runs.aggregate(s.workload, static_name(s.asked), seeds)))
    return searches


def _max_replicas(args: argparse.Namespace, scale: float) -> tuple[int, int]:
    """maxReplicaCount per role at this load: the flags' at x1; 1.6 per unit of load above it (16 at x10), so that
    the busiest minutes are not capped for every policy alike."""
    return (
        max(args.prefill_replicas[1], math.ceil(1.6 * scale)),
        max(args.decode_replicas[1], math.ceil(1.6 * scale)),
    )


def _scaled(settings: Settings, args: argparse.Namespace, scale: float) -> Settings:
    prefill, decode = _max_replicas(args, scale)
    return dataclasses.replace(
        settings,
        prefill=dataclasses.replace(settings.prefill, max_replicas=prefill),
        decode=dataclasses.replace(settings.decode, max_replicas=decode),
    )
