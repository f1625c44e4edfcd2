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
import json
import math
import multiprocessing
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaler.deployment import Deployment
from scaler.errors import InvalidTrigger
from scaler.simulate import cli
from scaler.simulate import trace as traces
from scaler.simulate.policies import REGISTRY, Settings, parse_policy
from scaler.simulate.report import Aggregate, Stat, Summary, aggregate, difference, json_policies, summarize
from scaler.simulate.simulation import Config, SimulationStuck, init_text, simulate, warm_start
from scaler.simulate.slo import Slo

ORACLE = "oracle"


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
        for path in paths:
            cli.load_trace(Path(path), args.trace_format)
    except (ValueError, OSError, InvalidTrigger) as exc:
        return cli._fail(exc)
    seeds = list(range(args.seed, args.seed + args.seeds))
    slo = Slo(args.ttft_slo, args.itl_slo)
    workloads = [Workload(p, s) for p in paths for s in args.load_scales]
    tasks, variants = [], {}
    for w in workloads:
        w_settings = _scaled(settings, args, w.scale)
        names: dict[str, list[str]] = {k: list(REGISTRY[k].sweep(w_settings)) for k in kinds}
        names[ORACLE] = [ORACLE]
        variants[w] = names
        for kind_names in names.values():
            for name in kind_names:
                parse_policy(name)
                for seed in seeds:
                    config = cli.config_from(args, seed)
                    tasks.append(
                        Task(w, name, seed, w_settings, config, deployment, slo, args.window, args.trace_format)
                    )
    tasks.sort(key=lambda t: -t.workload.scale)  # the longest first, so the workers finish together
    started = time.monotonic()
    show = sys.stderr.isatty() if args.progress is None else args.progress
    results: list[Summary] = []
    try:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            for i, summary in enumerate(pool.imap(_run, tasks)):
                results.append(summary)
                if show:
                    sys.stderr.write(f"\r{i + 1}/{len(tasks)} runs")
                    sys.stderr.flush()
    except SimulationStuck as exc:
        print(f"pd-scaler simulate: {exc}", file=sys.stderr)
        return 1
    if show:
        sys.stderr.write("\r" + " " * 30 + "\r")
    elapsed = time.monotonic() - started
    by_workload: dict[Workload, list[Summary]] = {}
    for task, summary in zip(tasks, results, strict=True):
        by_workload.setdefault(task.workload, []).append(summary)
    report: dict[str, Any] = {"settings": {}, "workloads": {}, "elapsed_s": round(elapsed, 1)}
    report["settings"] = cli.recorded_settings(args, deployment, settings, seeds) | {
        "load_scales": args.load_scales,
        "traces": paths,
        "kinds": {k: REGISTRY[k].knob for k in kinds},
        "max_replicas_at_scale": {f"{s:g}": _max_replicas(args, s) for s in args.load_scales},
    }
    print(
        f"frontier: {len(tasks)} runs ({len(seeds)} seeds) in {elapsed:.0f} s on {args.workers} workers; "
        f"deployment {deployment.name}, start-up {deployment.startup}, init {init_text(args.init)}, "
        f"warm-up {args.warmup:g} s"
    )
    plotted = []
    for w in workloads:
        aggregates = {a.policy: a for a in aggregate(by_workload[w])}
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
        plotted.append((w.label, kinds, variants[w], aggregates, fronts))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        from scaler.simulate.plot import frontier_figure

        frontier_figure(plotted).savefig(args.plot, dpi=110)
    return 0


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
