"""The runs over time, as one figure: arrivals, queue lag, replicas per role, TTFT. Needs matplotlib (the
`simulate` extra); builds the figure only, the caller saves it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from scaler.simulate.report import Aggregate, percentile
from scaler.simulate.simulation import Run

BIN_S = 60.0  # TTFT and arrivals are shown per minute


def figure(runs: Sequence[Run], title: str) -> Figure:
    fig = Figure(figsize=(12, 11), layout="constrained")
    arrivals, lag, replicas, ttft = fig.subplots(4, 1, sharex=True)
    fig.suptitle(title)
    if runs:
        _arrivals(arrivals, runs[0])
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for run, color in zip(runs, colors, strict=True):
        minutes = [s.t / 60 for s in run.timeline]
        lag.plot(minutes, [s.lag for s in run.timeline], color=color, lw=1, label=run.policy)
        replicas.step(minutes, [s.prefill for s in run.timeline], where="post", color=color, lw=1.2, label=run.policy)
        replicas.step(minutes, [s.decode for s in run.timeline], where="post", color=color, lw=1.2, ls="--")
        centres, p90 = _ttft_p90(run)
        ttft.plot(centres, p90, color=color, lw=1, label=run.policy)
    lag.set_ylabel("prefill queue lag\n(requests)")
    replicas.set_ylabel("replicas\n(— prefill, -- decode)")
    ttft.set_ylabel("TTFT p90 per minute (s)")
    ttft.set_yscale("log")
    ttft.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ttft.set_xlabel("minutes from the first request")
    for ax in (lag, replicas, ttft):
        ax.grid(True, alpha=0.3)
    lag.legend(loc="upper right", fontsize="small")
    return fig


def _arrivals(ax: Axes, run: Run) -> None:
    bins = math.floor(run.horizon / BIN_S) + 1
    counts = [0] * bins
    for r in run.records:
        counts[min(bins - 1, int(r.arrival // BIN_S))] += 1
    ax.step([i * BIN_S / 60 for i in range(bins)], [c / BIN_S for c in counts], where="post", color="k", lw=1)
    ax.set_ylabel("arrivals\n(requests/s)")
    ax.grid(True, alpha=0.3)


def _ttft_p90(run: Run) -> tuple[list[float], list[float]]:
    bins: dict[int, list[float]] = {}
    for r in run.records:
        bins.setdefault(int(r.arrival // BIN_S), []).append(r.ttft)
    centres, values = [], []
    for b in sorted(bins):
        centres.append((b + 0.5) * BIN_S / 60)
        values.append(percentile(sorted(bins[b]), 0.9))
    return centres, values


def frontier_figure(workloads: Sequence[tuple[str, Sequence[str], Any, Any, Any, Any]]) -> Figure:
    """One panel per workload: every variant's mean SLO against mean GPU-hours with 95 % intervals, each kind's
    Pareto front as a line, the oracle as a star, the cheapest static configuration searched (if any) as a
    square."""
    n = len(workloads)
    fig = Figure(figsize=(7 * min(n, 2), 5.5 * math.ceil(n / 2)), layout="constrained")
    axes = fig.subplots(math.ceil(n / 2), min(n, 2), squeeze=False).flat
    for ax, (label, kinds, variants, aggregates, fronts, cheapest) in zip(axes, workloads, strict=False):
        for i, kind in enumerate(kinds):
            color = f"C{i % 10}"
            for name in variants[kind]:
                a = aggregates[name]
                slo, gpu = a.stat("slo_attainment"), a.stat("gpu_hours")
                ax.errorbar(
                    gpu.mean,
                    slo.mean * 100,
                    xerr=None if math.isnan(gpu.low) else gpu.half_width,
                    yerr=None if math.isnan(slo.low) else slo.half_width * 100,
                    fmt="o",
                    color=color,
                    ms=4,
                    alpha=0.6,
                )
            front = fronts[kind]
            ax.plot(
                [a.stat("gpu_hours").mean for a in front],
                [a.stat("slo_attainment").mean * 100 for a in front],
                color=color,
                lw=1.5,
                label=kind,
            )
        _mark(ax, aggregates["oracle"], "oracle", marker="*", ms=16)
        if cheapest is not None:
            _mark(ax, cheapest, f"cheapest {cheapest.policy} (searched)", marker="s", ms=11, mfc="none")
        ax.set_title(label)
        ax.set_xlabel("GPU-hours")
        ax.set_ylabel("SLO met (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def _mark(ax: Axes, a: Aggregate, label: str, **style: Any) -> None:
    """One policy's mean point, as a black marker."""
    ax.plot(a.stat("gpu_hours").mean, a.stat("slo_attainment").mean * 100, color="k", ls="none", label=label, **style)
