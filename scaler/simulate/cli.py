"""`pd-scaler simulate`: replay a request trace through the modelled PD cluster under each policy, and compare.

The I/O of the simulator lives here: reading the trace and the profile, the progress bar, writing JSON and PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml

from scaler.durations import duration_arg
from scaler.errors import InvalidTrigger
from scaler.simulate import trace as traces
from scaler.simulate.autoscaling import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    ScaledObjectSpec,
    ScalingPolicy,
    ScalingRules,
)
from scaler.simulate.policies import DEFAULT_POLICIES, POLICIES, Settings, parse_policy, pd_scaler_metadata
from scaler.simulate.profile import Profile, parse_profile
from scaler.simulate.report import Slo, json_summary, summarize, table
from scaler.simulate.simulation import Config, Run, SimulationStuck, compare

BUNDLED_TRACE = "azure_llm_2023_conv.csv"
DEFAULT_PROFILE = "qwen3-32b-h200-tp2"
BASELINE = "static:2x1"  # the guides' 2P1D


def _data() -> Any:
    return resources.files("scaler.simulate") / "data"


def bundled_profiles() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _data().iterdir() if p.name.endswith(".yaml"))


def load_trace(path: Path | None, fmt: str = "auto") -> tuple[str, list[traces.Request]]:
    """The trace's name and requests; the bundled Azure conversation trace when `path` is None."""
    if path is None:
        return f"{BUNDLED_TRACE} (bundled)", traces.parse_azure((_data() / BUNDLED_TRACE).read_text())
    text = path.read_text()
    if fmt == "auto":
        fmt = "mooncake" if path.suffix in (".jsonl", ".json") or text.lstrip().startswith("{") else "azure"
    parse = traces.parse_mooncake if fmt == "mooncake" else traces.parse_azure
    return path.name, parse(text)


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name, or a YAML/JSON profile file."""
    if name_or_path in bundled_profiles():
        text = (_data() / f"{name_or_path}.yaml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"no profile {name_or_path!r}: give a file or one of {', '.join(bundled_profiles())}")
        text = path.read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"profile {name_or_path!r} is not a YAML/JSON mapping")
    return parse_profile(data)


# -- argument types -----------------------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number above 0")
    return value


def _window(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: write START:END, e.g. 10m:40m (END may be left out)")
    low, high = duration_arg(start or "0"), duration_arg(end) if end else float("inf")
    if high <= low:
        raise argparse.ArgumentTypeError(f"{text!r}: the window ends before it starts")
    return low, high


def _replicas(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        pair = (int(low), int(high))
    except ValueError:
        pair = (-1, -1)
    if not sep or pair[0] < 0 or pair[1] < max(1, pair[0]):
        raise argparse.ArgumentTypeError(f"{text!r}: write MIN:MAX, e.g. 1:6 (0 <= MIN <= MAX, MAX >= 1)")
    return pair


def _rate_policy(text: str) -> ScalingPolicy:
    kind, _, rest = text.partition(":")
    value, _, period = rest.partition(":")
    try:
        policy = ScalingPolicy(kind, int(value), duration_arg(period))  # type: ignore[arg-type]
    except (ValueError, argparse.ArgumentTypeError):
        policy = ScalingPolicy("Pods", 0, 0.0)
    if policy.type not in ("Pods", "Percent") or policy.value < 1 or policy.period_s <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: write Pods|Percent:VALUE:PERIOD, e.g. Pods:1:60s")
    return policy


def _metadata(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{item!r}: write key=value[,key=value...]")
        out[key.strip()] = value.strip()
    return out


def add_parser(commands: Any) -> None:
    """Register `simulate` on the top-level parser's subcommands."""
    p: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="replay a request trace through a modelled PD cluster and compare scaling policies",
        description=(
            "Replay a request trace through a modelled prefill/decode cluster, autoscaled by each policy in turn "
            "(pd-scaler's real engine behind an emulation of KEDA + HPA, and the alternatives), and report TTFT, "
            "ITL, SLO attainment and GPU-hours. See docs/simulate.md."
        ),
    )
    w = p.add_argument_group("workload")
    w.add_argument("--trace", type=Path, metavar="FILE", help=f"trace file (default: the bundled {BUNDLED_TRACE})")
    w.add_argument("--trace-format", choices=("auto", "azure", "mooncake"), default="auto")
    w.add_argument(
        "--load-scale",
        type=_positive,
        default=1.0,
        metavar="K",
        help="K times the load on the same timeline: each request copied K times over the next second",
    )
    w.add_argument("--window", type=_window, metavar="START:END", help="only this part of the trace, e.g. 10m:40m")
    c = p.add_argument_group("cluster")
    c.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help=f"bundled profile ({', '.join(bundled_profiles())}) or a YAML/JSON file (default %(default)s)",
    )
    c.add_argument(
        "--startup-delay",
        type=duration_arg,
        metavar="DURATION",
        default=120.0,
        help="new replica to ready (default 120s)",
    )
    c.add_argument(
        "--tick", type=duration_arg, metavar="DURATION", default=0.05, help="decode time step (default 50ms)"
    )
    c.add_argument(
        "--scrape-interval",
        type=duration_arg,
        metavar="DURATION",
        default=15.0,
        help="Prometheus scrape interval (default 15s)",
    )
    a = p.add_argument_group("policies and autoscaling")
    a.add_argument(
        "--policy",
        default=",".join(DEFAULT_POLICIES),
        help=f"comma-separated: {', '.join(POLICIES)} (default %(default)s)",
    )
    a.add_argument("--baseline", help=f"policy to give GPU-hours ratios against (default {BASELINE}, if run)")
    a.add_argument("--prefill-replicas", type=_replicas, default=(1, 6), metavar="MIN:MAX", help="default 1:6")
    a.add_argument("--decode-replicas", type=_replicas, default=(1, 6), metavar="MIN:MAX", help="default 1:6")
    a.add_argument(
        "--polling-interval",
        type=duration_arg,
        metavar="DURATION",
        default=30.0,
        help="KEDA pollingInterval (default 30s)",
    )
    a.add_argument(
        "--cooldown-period",
        type=duration_arg,
        metavar="DURATION",
        default=300.0,
        help="KEDA cooldownPeriod (default 5m)",
    )
    a.add_argument("--metric-type", choices=("AverageValue", "Value"), default="AverageValue")
    a.add_argument(
        "--scale-up-window",
        type=duration_arg,
        metavar="DURATION",
        help="set an HPA behavior with this scale-up stabilization window (default: no behavior, as KEDA without "
        "advanced.horizontalPodAutoscalerConfig)",
    )
    a.add_argument(
        "--scale-down-window",
        type=duration_arg,
        metavar="DURATION",
        help="HPA behavior: scale-down stabilization window",
    )
    for direction in ("up", "down"):
        a.add_argument(
            f"--scale-{direction}-policy",
            type=_rate_policy,
            action="append",
            metavar="TYPE:VALUE:PERIOD",
            help=f"HPA behavior: a scale-{direction} rate policy, e.g. Pods:1:60s (repeat for several; the one "
            "allowing the largest change applies)",
        )
    a.add_argument(
        "--prefill-metadata",
        type=_metadata,
        default={},
        metavar="K=V,...",
        help="pd-scaler prefill trigger keys, k=v,...",
    )
    a.add_argument(
        "--decode-metadata",
        type=_metadata,
        default={},
        metavar="K=V,...",
        help="pd-scaler decode trigger keys, k=v,...",
    )
    a.add_argument(
        "--refresh-interval", type=duration_arg, metavar="DURATION", default=1.0, help="pd-scaler --refresh-interval"
    )
    a.add_argument(
        "--oracle-window",
        type=duration_arg,
        metavar="DURATION",
        default=15.0,
        help="oracle: replicas set per window (15s)",
    )
    s = p.add_argument_group("SLO and output")
    s.add_argument(
        "--ttft-slo",
        type=duration_arg,
        metavar="DURATION",
        default=1.0,
        help="TTFT above the unloaded prefill time (1s)",
    )
    s.add_argument(
        "--itl-slo", type=duration_arg, metavar="DURATION", default=0.05, help="mean inter-token latency (50ms)"
    )
    s.add_argument("--json", type=Path, metavar="FILE", help="write the summary as JSON to this file")
    s.add_argument(
        "--plot", type=Path, metavar="FILE", help="write a PNG of arrivals, lag, replicas and TTFT over time"
    )
    s.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def _behavior(args: argparse.Namespace) -> Behavior | None:
    """An HPA `behavior` if any of its flags is given (what the API server leaves at its defaults, they keep)."""
    given = (args.scale_up_window, args.scale_down_window, args.scale_up_policy, args.scale_down_policy)
    if all(g is None for g in given):
        return None

    def rules(default: ScalingRules, window: float | None, policies: list[ScalingPolicy] | None) -> ScalingRules:
        return ScalingRules(
            default.stabilization_window_s if window is None else window,
            default.policies if policies is None else tuple(policies),
        )

    return Behavior(
        rules(DEFAULT_SCALE_UP, args.scale_up_window, args.scale_up_policy),
        rules(DEFAULT_SCALE_DOWN, args.scale_down_window, args.scale_down_policy),
    )


def settings_from(args: argparse.Namespace) -> Settings:
    behavior = _behavior(args)

    def spec(replicas: tuple[int, int]) -> ScaledObjectSpec:
        return ScaledObjectSpec(
            min_replicas=replicas[0],
            max_replicas=replicas[1],
            polling_interval=args.polling_interval,
            cooldown_period=args.cooldown_period,
            metric_type=args.metric_type,
            behavior=behavior,
        )

    return Settings(
        prefill=spec(args.prefill_replicas),
        decode=spec(args.decode_replicas),
        prefill_metadata=args.prefill_metadata,
        decode_metadata=args.decode_metadata,
        refresh_interval=args.refresh_interval,
        oracle_window=args.oracle_window,
        ttft_slack=args.ttft_slo,
        itl=args.itl_slo,
    )


class ProgressBar:
    """One line on stderr, redrawn in place: which policy, how far through the trace."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total, self.done = stream, total, 0
        self._current: str | None = None

    def __call__(self, policy: str, fraction: float) -> None:
        if policy != self._current:
            if self._current is not None:
                self.done += 1
            self._current = policy
        filled = round(fraction * 30)
        self.stream.write(
            f"\r[{self.done + 1}/{self.total}] {policy[:24]:<24} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * 72 + "\r")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    try:
        policies = [parse_policy(p) for p in args.policy.split(",") if p.strip()]
        if args.decode_replicas[0] < 1:
            raise ValueError("--decode-replicas: MIN must be at least 1 (requests enter the cluster at decode)")
        settings = settings_from(args)
        for policy in policies:
            if policy.kind == "pd-scaler":
                pd_scaler_metadata(policy, settings)
        name, requests = load_trace(args.trace, args.trace_format)
        if args.window is not None:
            requests = traces.window(requests, *args.window)
        requests = traces.scale_load(requests, args.load_scale)
        if not requests:
            raise ValueError("the trace has no request in that window")
        profile = load_profile(args.profile)
    except (ValueError, OSError, InvalidTrigger) as exc:
        message = exc.message if isinstance(exc, InvalidTrigger) else str(exc)
        print(f"pd-scaler simulate: {message}", file=sys.stderr)
        return 2
    config = Config(startup_delay=args.startup_delay, tick=args.tick, scrape_interval=args.scrape_interval)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(sys.stderr, len(policies)) if show else None
    started = time.monotonic()
    try:
        runs = asyncio.run(compare(requests, profile, policies, settings, config, bar))
    except SimulationStuck as exc:
        print(f"pd-scaler simulate: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    stats = traces.stats(requests)
    slo = Slo(args.ttft_slo, args.itl_slo)
    summaries = [summarize(r, slo) for r in runs]
    baseline = args.baseline or (BASELINE if any(p.name == BASELINE for p in policies) else None)
    print(header(name, args.load_scale, stats, profile, config, slo))
    print(table(summaries, baseline))
    print(f"({len(runs)} policies simulated in {time.monotonic() - started:.1f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(json_summary(name, stats, args.load_scale, summaries), indent=2) + "\n")
    if args.plot is not None:
        write_plot(args.plot, runs, f"{name} x{args.load_scale:g} on {profile.name}")
    return 0


def header(name: str, scale: float, stats: traces.TraceStats, profile: Profile, config: Config, slo: Slo) -> str:
    return (
        f"trace: {name} x{scale:g}: {stats.requests:,} requests over {stats.duration_s / 60:.1f} min "
        f"({stats.rate_per_s:.2f}/s), mean prompt {stats.mean_prompt:,.0f} tokens, mean output "
        f"{stats.mean_output:,.0f}\n"
        f"cluster: {profile.name} ({profile.gpus} GPUs per replica), start-up {config.startup_delay:g} s; "
        f"SLO: TTFT <= unloaded prefill + {slo.ttft_slack:g} s and ITL <= {slo.itl * 1000:g} ms"
    )


def write_plot(path: Path, runs: Sequence[Run], title: str) -> None:
    from scaler.simulate.plot import figure  # matplotlib is an optional extra: import it only when asked

    figure(runs, title).savefig(path, dpi=110)
