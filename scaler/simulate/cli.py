"""`pd-scaler simulate`: replay a request trace through the modelled PD cluster under each policy, and compare;
`pd-scaler simulate frontier`: sweep each policy's main knob and compare the fronts.

The I/O of the simulator lives here: reading traces, deployments and profiles, the progress bar, writing JSON
and PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from scaler.deployment import (
    Deployment,
    StartupDelay,
    bundled_data,
    bundled_deployments,
    load_deployment,
    override,
    parse_startup,
)
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
from scaler.simulate.cluster import ROUTERS
from scaler.simulate.policies import DEFAULT_POLICIES, Policy, Settings, parse_policy, pd_scaler_metadata, usage
from scaler.simulate.report import aggregate, comparisons, json_policies, summarize, table
from scaler.simulate.simulation import Config, Run, SimulationStuck, compare, init_text, rng
from scaler.simulate.slo import Slo

BUNDLED_TRACES = ("azure_llm_2023_conv.csv", "azure_llm_2023_code.csv")
BUNDLED_TRACE = BUNDLED_TRACES[0]
DEFAULT_DEPLOYMENT = "ack-dynamo-guide"
BASELINE = "static:2x1"  # the guides' 2P1D


def load_trace(path: Path | None, fmt: str = "auto") -> tuple[str, list[traces.Request]]:
    """The trace's name and requests: a file, or a bundled trace by file name (the conversation trace when None)."""
    if path is None or (str(path) in BUNDLED_TRACES and not path.exists()):
        bundled = BUNDLED_TRACE if path is None else str(path)
        return f"{bundled} (bundled)", traces.parse_azure((bundled_data() / bundled).read_text())
    text = path.read_text()
    if fmt == "auto":
        fmt = "mooncake" if path.suffix in (".jsonl", ".json") or text.lstrip().startswith("{") else "azure"
    parse = traces.parse_mooncake if fmt == "mooncake" else traces.parse_azure
    return path.name, parse(text)


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


def _startup(text: str) -> StartupDelay:
    try:
        return parse_startup(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shape(text: str) -> tuple[int, int]:
    p, sep, d = text.partition("x")
    if not (sep and p.isdigit() and d.isdigit() and int(p) >= 0 and int(d) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: write PxD, e.g. 2x1 (D >= 1)")
    return int(p), int(d)


def _init(text: str) -> tuple[int, int] | None:
    return None if text == "warm" else _shape(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= 1")
    return int(text)


def _scales(text: str) -> list[float]:
    return [_positive(s) for s in text.split(",") if s.strip()]


def _common(p: argparse.ArgumentParser, frontier: bool) -> None:
    w = p.add_argument_group("workload")
    if frontier:
        w.add_argument(
            "--trace",
            type=Path,
            action="append",
            metavar="FILE",
            help=f"trace file or bundled trace, repeat for several (default: {' and '.join(BUNDLED_TRACES)})",
        )
        w.add_argument(
            "--load-scales", type=_scales, default=[1.0], metavar="K,...", help="load multipliers (default 1)"
        )
    else:
        w.add_argument(
            "--trace", type=Path, metavar="FILE", help=f"trace file or bundled trace (default {BUNDLED_TRACE})"
        )
        w.add_argument(
            "--load-scale",
            type=_positive,
            default=1.0,
            metavar="K",
            help="K times the load on the same timeline: each request copied K times over the next second",
        )
    w.add_argument("--trace-format", choices=("auto", "azure", "mooncake"), default="auto")
    w.add_argument("--window", type=_window, metavar="START:END", help="only this part of the trace, e.g. 10m:40m")
    c = p.add_argument_group("cluster")
    c.add_argument(
        "--deployment",
        default=DEFAULT_DEPLOYMENT,
        help=f"bundled deployment ({', '.join(bundled_deployments())}) or a YAML/JSON file (default %(default)s)",
    )
    c.add_argument(
        "--startup-delay",
        type=_startup,
        metavar="DURATION[..DURATION]",
        help="new replica to ready: fixed (120s) or drawn per replica (90s..300s) (default: the deployment's)",
    )
    c.add_argument("--max-num-seqs", type=_count, metavar="N", help="decode engines' max_num_seqs (the deployment's)")
    c.add_argument("--router", choices=ROUTERS, default="round-robin", help="decode router (default %(default)s)")
    c.add_argument(
        "--init",
        type=_init,
        default=None,
        metavar="PxD|warm",
        help="ready replicas of the autoscaled policies at the start (warm: those the oracle starts with)",
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
    c.add_argument(
        "--request-timeout",
        type=duration_arg,
        metavar="DURATION",
        default=60.0,
        help="a request whose KV has not reached decode this long after arrival fails (DYNAMO_RP_TIMEOUT, 60s)",
    )
    a = p.add_argument_group("policies and autoscaling")
    if not frontier:
        a.add_argument(
            "--policy",
            default=",".join(DEFAULT_POLICIES),
            help=f"comma-separated: {', '.join(usage())} (default %(default)s)",
        )
        a.add_argument("--baseline", help=f"policy to compare against (default {BASELINE}, if run)")
    else:
        a.add_argument("--policy", help="comma-separated policy kinds to sweep (default: every kind with a knob)")
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
    s = p.add_argument_group("measurement and output")
    s.add_argument(
        "--ttft-slo",
        type=duration_arg,
        metavar="DURATION",
        default=1.0,
        help="TTFT above the request's own prefill, KV transfer and first step (1s)",
    )
    s.add_argument(
        "--itl-slo", type=duration_arg, metavar="DURATION", default=0.05, help="mean inter-token latency (50ms)"
    )
    s.add_argument(
        "--warmup",
        type=duration_arg,
        metavar="DURATION",
        default=300.0,
        help="simulated but left out of SLO and GPU-hours (default 5m)",
    )
    s.add_argument(
        "--horizon",
        type=duration_arg,
        metavar="DURATION",
        help="stop here; requests not finished count as misses (default: when the last request has finished)",
    )
    s.add_argument(
        "--seeds", type=_count, default=3 if frontier else 1, metavar="N", help="replications with independent jitter"
    )
    s.add_argument("--seed", type=int, default=0, help="the first replication's seed (default 0)")
    s.add_argument("--json", type=Path, metavar="FILE", help="write the results and every setting as JSON")
    s.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="write a PNG (frontier: SLO against GPU-hours; else arrivals, lag, replicas, TTFT over time)",
    )
    s.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    if frontier:
        s.add_argument("--workers", type=_count, default=2, metavar="N", help="processes (default 2)")


def add_parser(commands: Any) -> None:
    """Register `simulate` (and `simulate frontier`) on the top-level parser's subcommands."""
    p: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="replay a request trace through a modelled PD cluster and compare scaling policies",
        description=(
            "Replay a request trace through a modelled prefill/decode cluster, autoscaled by each policy in turn "
            "(pd-scaler's real engine behind an emulation of KEDA + HPA, and the alternatives), and report TTFT, "
            "ITL, SLO attainment and GPU-hours, with 95%% intervals over --seeds replications. "
            "`simulate frontier` sweeps each policy's main knob. See docs/simulate.md."
        ),
    )
    _common(p, frontier=False)
    sub = p.add_subparsers(dest="simulate_command", metavar="{frontier}")
    f = sub.add_parser(
        "frontier",
        help="sweep each policy's main knob: SLO against GPU-hours, Pareto fronts, which front dominates",
        description="Sweep each policy's main knob over the traces and loads given, with replications; report "
        "each policy's SLO-vs-GPU-hours points and Pareto front, the oracle, and which front dominates which.",
    )
    _common(f, frontier=True)
    # Imported here: both import this module first.
    from scaler.cli import _bool, _EnvDefaults
    from scaler.simulate.frontier import STATIC_REFERENCE

    flags = _EnvDefaults(f)
    flags.add(
        "--static-search",
        True,
        "search every PxD up to maxReplicaCount for the static configuration with the fewest GPU-hours whose SLO "
        "attainment is within a point of --static-reference's",
        type=_bool,
        nargs="?",
        const=True,
    )
    flags.add(
        "--static-reference",
        STATIC_REFERENCE,
        "the policy the static search matches: one this frontier runs (a swept variant, or oracle)",
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


def config_from(args: argparse.Namespace, seed: int) -> Config:
    return Config(
        tick=args.tick,
        scrape_interval=args.scrape_interval,
        warmup=args.warmup,
        horizon=args.horizon,
        request_timeout=args.request_timeout,
        init=args.init,
        router=args.router,
        seed=seed,
    )


def deployment_from(args: argparse.Namespace) -> Deployment:
    return override(load_deployment(args.deployment), args.startup_delay, args.max_num_seqs)


def workload(
    recorded: Sequence[traces.Request], window: tuple[float, float] | None, scale: float, seed: int
) -> list[traces.Request]:
    """The requests one replication sees: the window, then the load scaled with this seed's jitter."""
    requests = traces.window(recorded, *window) if window is not None else list(recorded)
    return traces.scale_load(requests, scale, rng(seed, "arrivals"))


def recorded_settings(
    args: argparse.Namespace, deployment: Deployment, settings: Settings, seeds: Sequence[int]
) -> dict[str, Any]:
    """Every setting that shaped the run: enough to run it again from the JSON alone."""
    config = config_from(args, seeds[0]).settings()
    return {
        "deployment": deployment.settings(),
        "simulation": config,
        "autoscaling": settings.describe(),
        "slo": {"ttft_slack_s": args.ttft_slo, "itl_s": args.itl_slo},
        "seeds": list(seeds),
        "window": list(args.window) if args.window else None,
    }


def _fail(exc: Exception) -> int:
    message = exc.message if isinstance(exc, InvalidTrigger) else str(exc)
    print(f"pd-scaler simulate: {message}", file=sys.stderr)
    return 2


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
    if getattr(args, "simulate_command", None) == "frontier":
        from scaler.simulate.frontier import run as run_frontier  # it builds on this module

        return run_frontier(args)
    try:
        policies = [parse_policy(p) for p in args.policy.split(",") if p.strip()]
        settings = checked_settings(args, policies)
        name, recorded = load_trace(args.trace, args.trace_format)
        if args.window is not None and not traces.window(recorded, *args.window):
            raise ValueError("the trace has no request in that window")
        deployment = deployment_from(args)
    except (ValueError, OSError, InvalidTrigger) as exc:
        return _fail(exc)
    seeds = list(range(args.seed, args.seed + args.seeds))
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(sys.stderr, len(policies) * len(seeds)) if show else None
    slo = Slo(args.ttft_slo, args.itl_slo)
    started = time.monotonic()
    summaries, first_runs = [], []
    try:
        for seed in seeds:
            requests = workload(recorded, args.window, args.load_scale, seed)
            runs = asyncio.run(compare(requests, deployment, policies, settings, config_from(args, seed), bar))
            summaries += [summarize(r, slo, deployment.profile) for r in runs]
            if seed == seeds[0]:
                first_runs = runs
    except SimulationStuck as exc:
        print(f"pd-scaler simulate: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    aggregates = aggregate(summaries)
    baseline = args.baseline or (BASELINE if any(p.name == BASELINE for p in policies) else None)
    stats = traces.stats(workload(recorded, args.window, args.load_scale, seeds[0]))
    print(header(name, args.load_scale, stats, deployment, config_from(args, seeds[0]), slo, seeds))
    print(table(aggregates, baseline))
    lines = comparisons(aggregates, baseline) if baseline else []
    if lines:
        print("\ndifferences, paired by seed (95 % interval):")
        print("\n".join(f"  {line}" for line in lines))
    print(f"({len(policies)} policies x {len(seeds)} seeds simulated in {time.monotonic() - started:.1f} s)")
    if args.json is not None:
        summary = {
            "trace": trace_json(name, stats, args.load_scale),
            "settings": recorded_settings(args, deployment, settings, seeds),
            "policies": json_policies(aggregates),
            "comparisons": lines,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot is not None:
        write_plot(args.plot, first_runs, f"{name} x{args.load_scale:g} on {deployment.name} (seed {seeds[0]})")
    return 0


def checked_settings(args: argparse.Namespace, policies: Sequence[Policy]) -> Settings:
    if args.decode_replicas[0] < 1:
        raise ValueError("--decode-replicas: MIN must be at least 1 (requests enter the cluster at decode)")
    settings = settings_from(args)
    for policy in policies:
        if policy.kind == "pd-scaler":
            pd_scaler_metadata(policy, settings)
    return settings


def trace_json(name: str, stats: traces.TraceStats, load_scale: float) -> dict[str, Any]:
    return {
        "name": name,
        "load_scale": load_scale,
        "requests": stats.requests,
        "duration_s": round(stats.duration_s, 3),
        "rate_per_s": round(stats.rate_per_s, 3),
        "mean_prompt_tokens": round(stats.mean_prompt, 1),
        "mean_output_tokens": round(stats.mean_output, 1),
    }


def header(
    name: str,
    scale: float,
    stats: traces.TraceStats,
    deployment: Deployment,
    config: Config,
    slo: Slo,
    seeds: Sequence[int],
) -> str:
    p = deployment.profile
    seeds_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]} (mean ±95 % interval)"
    return (
        f"trace: {name} x{scale:g}: {stats.requests:,} requests over {stats.duration_s / 60:.1f} min "
        f"({stats.rate_per_s:.2f}/s), mean prompt {stats.mean_prompt:,.0f} tokens, mean output "
        f"{stats.mean_output:,.0f}\n"
        f"deployment: {deployment.name}: {p.name}, TP={p.tp} in a {p.gpus}-GPU pod, max_num_seqs {p.max_num_seqs}, "
        f"block {p.block_size}, {p.kv_capacity:,} KV tokens, start-up {deployment.startup}; router {config.router}\n"
        f"run: init {init_text(config.init)}, warm-up {config.warmup:g} s, tick {config.tick * 1000:g} ms, "
        f"request timeout {config.request_timeout:g} s, {seeds_text}\n"
        f"SLO: TTFT <= own prefill + KV transfer + first step + {slo.ttft_slack:g} s and ITL <= "
        f"{slo.itl * 1000:g} ms"
    )


def write_plot(path: Path, runs: Sequence[Run], title: str) -> None:
    from scaler.simulate.plot import figure  # matplotlib is an optional extra: import it only when asked

    figure(runs, title).savefig(path, dpi=110)
