"""The runs over time, as one figure: arrivals, queue lag, replicas per role, TTFT. Needs matplotlib (the
`simulate` extra); builds the figure only, the caller saves it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from scaler.simulate.report import percentile
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
