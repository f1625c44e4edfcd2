"""Scaling policies compared on both Azure LLM inference traces (2023), at their recorded rate and at 10x.

Runs `pd-scaler simulate`'s model (the ACK guide's deployment: Qwen3-32B, a TP=1 engine in a 2 x H200 pod, 120 s
start-up) for every policy and prints one table per trace and load, with GPU-hours as a ratio to the guides'
static 2P1D measured in the same run, and the time the simulation took.
At the recorded rate the ACK guide's maxReplicaCount of 6 is kept; at 10x it is raised to 16 per role, or the
busiest minutes would be capped for every policy alike. Above the recorded rate a second table runs the KEDA
policies again with an HPA behavior that removes at most one replica a minute (the default removes them all at once once
the 5-minute window has passed, and a drained queue asks for the minimum).

    python bench/simulate.py [--load-scales 1,10] [--seeds N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from scaler.simulate import trace as traces
from scaler.simulate.autoscaling import Behavior, ScaledObjectSpec, ScalingPolicy, ScalingRules
from scaler.simulate.cli import BASELINE, BUNDLED_TRACES, DEFAULT_DEPLOYMENT, header, load_deployment, load_trace
from scaler.simulate.cli import workload as jittered
from scaler.simulate.policies import Settings, parse_policy
from scaler.simulate.report import aggregate, summarize, table
from scaler.simulate.simulation import Config, compare
from scaler.simulate.slo import Slo

ROOT = Path(__file__).resolve().parent.parent
POLICIES = (
    "pd-scaler",
    "pd-scaler:kv-cache@0.3",
    "pd-scaler:gpu-memory",
    "keda-builtin",
    "dynamo-load",
    "static:2x1",
    "oracle",
)
MAX_REPLICAS = {1.0: 6}  # the ACK guide's; 16 for higher loads
GENTLE = Behavior(scale_down=ScalingRules(300.0, (ScalingPolicy("Pods", 1, 60.0),)))
GENTLE_POLICIES = ("pd-scaler", "pd-scaler:kv-cache@0.3", "pd-scaler:gpu-memory", "keda-builtin")
SLO = Slo()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-scales", default="1,10")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    deployment = load_deployment(DEFAULT_DEPLOYMENT)
    seeds = list(range(args.seeds))
    for trace in BUNDLED_TRACES:
        name, recorded = load_trace(Path(trace))
        for scale in (float(s) for s in args.load_scales.split(",")):
            most = MAX_REPLICAS.get(scale, 16)
            print(f"\n## {name} x{scale:g} (maxReplicaCount {most} per role)")
            stats = traces.stats(jittered(recorded, None, scale, 0))
            print(header(name, scale, stats, deployment, Config(), SLO, seeds))
            spec = ScaledObjectSpec(max_replicas=most)
            print(compared(recorded, scale, POLICIES, Settings(prefill=spec, decode=spec), seeds))
            if scale > 1:
                print(f"\n### the same x{scale:g}, HPA behavior scaleDown: at most 1 pod per 60 s")
                spec = ScaledObjectSpec(max_replicas=most, behavior=GENTLE)
                print(
                    compared(recorded, scale, (*GENTLE_POLICIES, BASELINE), Settings(prefill=spec, decode=spec), seeds)
                )
    return 0


def compared(
    recorded: list[traces.Request], scale: float, policies: tuple[str, ...], settings: Settings, seeds: list[int]
) -> str:
    """The table for `policies` over the trace at `scale`, with the time the simulation took."""
    deployment = load_deployment(DEFAULT_DEPLOYMENT)
    started = time.monotonic()
    summaries = []
    for seed in seeds:
        requests = jittered(recorded, None, scale, seed)
        runs = asyncio.run(
            compare(requests, deployment, [parse_policy(p) for p in policies], settings, Config(seed=seed))
        )
        summaries += [summarize(r, SLO, deployment.profile) for r in runs]
    elapsed = time.monotonic() - started
    return (
        table(aggregate(summaries), BASELINE)
        + f"\n({len(policies)} policies x {len(seeds)} seeds, {len(requests):,} requests each, {elapsed:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
