"""Scaling policies compared on both Azure LLM inference traces (2023), at their recorded rate and at 10x.

Runs `pd-scaler simulate`'s model (Qwen3-32B on 2 x H200 per replica, 120 s start-up) for every policy and prints
one table per trace and load, with GPU-hours as a ratio to the guides' static 2P1D measured in the same run.
At the recorded rate the ACK guide's maxReplicaCount of 6 is kept; at 10x it is raised to 16 per role, or the
busiest minutes (the oracle needs up to 17 prefill replicas) would be capped for every policy alike. The kv-cache
variant at 0.3 is there because a seat-bound H200 TP=2 decode replica (256 sequences) shows a KV fill of 0.4 to
0.5, so the default 0.8 never fires on this profile. Above the recorded rate a second table runs the KEDA policies
again with an HPA behavior that removes at most one replica a minute (the default removes them all at once once
the 5-minute window has passed, and a drained queue asks for the minimum).

    python bench/simulate.py [--traces DIR] [--load-scales 1,10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from scaler.simulate import trace as traces
from scaler.simulate.autoscaling import Behavior, ScaledObjectSpec, ScalingPolicy, ScalingRules
from scaler.simulate.cli import BASELINE, DEFAULT_PROFILE, header, load_profile, load_trace
from scaler.simulate.policies import Settings, parse_policy
from scaler.simulate.report import Slo, summarize, table
from scaler.simulate.simulation import Config, compare

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
CODE_TRACE = "azure_llm_2023_code.csv"
CONFIG, SLO = Config(), Slo()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces", help="has the code trace")
    parser.add_argument("--load-scales", default="1,10")
    args = parser.parse_args()
    workloads: list[tuple[Path | None, str]] = [(None, "conversation (bundled)")]
    code = args.traces / CODE_TRACE
    if code.is_file():
        workloads.append((code, "code"))
    else:
        print(
            f"note: {code} not found, the code trace is skipped (AzurePublicDataset, "
            "data/AzureLLMInferenceTrace_code.csv)",
            file=sys.stderr,
        )
    profile = load_profile(DEFAULT_PROFILE)
    for path, label in workloads:
        name, recorded = load_trace(path)
        for scale in (float(s) for s in args.load_scales.split(",")):
            requests = traces.scale_load(recorded, scale)
            most = MAX_REPLICAS.get(scale, 16)
            print(f"\n## {label} trace x{scale:g} (maxReplicaCount {most} per role)")
            print(header(name, scale, traces.stats(requests), profile, CONFIG, SLO))
            spec = ScaledObjectSpec(max_replicas=most)
            print(compared(requests, POLICIES, Settings(prefill=spec, decode=spec)))
            if scale > 1:
                print(f"\n### the same x{scale:g}, HPA behavior scaleDown: at most 1 pod per 60 s")
                spec = ScaledObjectSpec(max_replicas=most, behavior=GENTLE)
                print(compared(requests, (*GENTLE_POLICIES, BASELINE), Settings(prefill=spec, decode=spec)))
    return 0


def compared(requests: list[traces.Request], policies: tuple[str, ...], settings: Settings) -> str:
    """The table for `policies` over `requests`, with the time the simulation took."""
    started = time.monotonic()
    runs = asyncio.run(
        compare(requests, load_profile(DEFAULT_PROFILE), [parse_policy(p) for p in policies], settings, CONFIG)
    )
    elapsed = time.monotonic() - started
    return (
        table([summarize(r, SLO) for r in runs], BASELINE)
        + f"\n({len(runs)} policies, {len(requests):,} requests each, simulated in {elapsed:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
