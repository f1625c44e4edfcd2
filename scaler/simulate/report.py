"""SLO attainment, latency percentiles and GPU-hours per run; their means and 95 % intervals over replications;
paired differences between policies; the comparison table and the JSON summary."""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from scaler.profile import Profile
from scaler.simulate.cluster import DECODE, PREFILL
from scaler.simulate.simulation import Run
from scaler.simulate.slo import Slo, feasible


@dataclass(frozen=True)
class Summary:
    """One run's figures, over the measured requests: arrived after the warm-up and feasible."""

    policy: str
    seed: int
    slo_attainment: float
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    itl_p50: float
    itl_p90: float
    itl_p99: float
    gpu_hours_prefill: float
    gpu_hours_decode: float
    gpu_hours: float
    peak_prefill: float
    peak_decode: float
    measured: float
    infeasible: float
    dropped: float
    unfinished: float
    preemptions: float


FIGURES = [f.name for f in fields(Summary) if f.name not in ("policy", "seed")]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) over sorted values; NaN when empty."""
    if not ordered:
        return math.nan
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(run: Run, slo: Slo, profile: Profile) -> Summary:
    ttfts, itls = [], []
    met = measured = infeasible = dropped = unfinished = 0
    for r in run.records:
        if r.arrival < run.start:
            continue
        if not feasible(r, profile, slo):
            infeasible += 1
            continue
        measured += 1
        if r.dropped_at == r.dropped_at:
            dropped += 1
        elif r.finish != r.finish:
            unfinished += 1  # still running at the horizon: a miss
        else:
            ttfts.append(r.ttft)
            if r.output > 1:
                itls.append(r.itl)
            met += slo.met(r)
    ttfts.sort()
    itls.sort()
    after = [s for s in run.timeline if s.t >= run.start] or run.timeline
    gpu_p, gpu_d = run.gpu_seconds[PREFILL] / 3600, run.gpu_seconds[DECODE] / 3600
    return Summary(
        policy=run.policy,
        seed=run.seed,
        slo_attainment=met / measured if measured else math.nan,
        ttft_p50=percentile(ttfts, 0.5),
        ttft_p90=percentile(ttfts, 0.9),
        ttft_p99=percentile(ttfts, 0.99),
        itl_p50=percentile(itls, 0.5),
        itl_p90=percentile(itls, 0.9),
        itl_p99=percentile(itls, 0.99),
        gpu_hours_prefill=gpu_p,
        gpu_hours_decode=gpu_d,
        gpu_hours=gpu_p + gpu_d,
        peak_prefill=max(s.prefill for s in after),
        peak_decode=max(s.decode for s in after),
        measured=measured,
        infeasible=infeasible,
        dropped=dropped,
        unfinished=unfinished,
        preemptions=run.preemptions,
    )


# -- replications ---------------------------------------------------------------------------------------------

# Student's t, two-sided 95 %, by degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df


@dataclass(frozen=True)
class Stat:
    """A mean over replications and its 95 % confidence interval (Student's t); no interval from one run."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return cls(math.nan, math.nan, math.nan, 0)
        mean = statistics.fmean(values)
        if len(values) < 2:
            return cls(mean, math.nan, math.nan, len(values))
        half = t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        return cls(mean, mean - half, mean + half, len(values))

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def json(self, digits: int = 4) -> dict[str, Any]:
        def r(v: float) -> float | None:
            return None if math.isnan(v) else round(v, digits)

        return {"mean": r(self.mean), "ci95": None if math.isnan(self.low) else [r(self.low), r(self.high)]}


@dataclass(frozen=True)
class Aggregate:
    policy: str
    runs: tuple[Summary, ...]  # one per seed, in seed order

    def stat(self, figure: str) -> Stat:
        return Stat.of([getattr(s, figure) for s in self.runs])


def aggregate(summaries: Sequence[Summary]) -> list[Aggregate]:
    """Group one summary per (policy, seed) by policy, keeping the policies' order."""
    by: dict[str, list[Summary]] = {}
    for s in summaries:
        by.setdefault(s.policy, []).append(s)
    return [Aggregate(p, tuple(sorted(runs, key=lambda s: s.seed))) for p, runs in by.items()]


def _paired(a: Aggregate, b: Aggregate, figure: str, op: Callable[[float, float], float]) -> Stat:
    """op(a, b) on `figure`, paired by seed (both saw the same arrivals, start-up draws and phases)."""
    bs = {s.seed: getattr(s, figure) for s in b.runs}
    return Stat.of([op(getattr(s, figure), bs[s.seed]) for s in a.runs if s.seed in bs])


def difference(a: Aggregate, b: Aggregate, figure: str) -> Stat:
    """a - b on `figure`, paired by seed."""
    return _paired(a, b, figure, operator.sub)


def ratio(a: Aggregate, b: Aggregate, figure: str) -> Stat:
    """a / b on `figure`, paired by seed; NaN for a seed where b is 0."""
    return _paired(a, b, figure, lambda x, y: x / y if y else math.nan)


# -- output ---------------------------------------------------------------------------------------------------


def _cell(stat: Stat, fmt: Callable[[float], str], half: Callable[[float], str] | None = None) -> str:
    if math.isnan(stat.mean):
        return "-"
    if stat.n < 2:
        return fmt(stat.mean)
    return f"{fmt(stat.mean)} ±{(half or fmt)(stat.half_width)}"


def table(aggregates: Sequence[Aggregate], baseline: str | None = None) -> str:
    """The comparison table: means over the seeds, ± the half-width of their 95 % interval."""
    base = next((a for a in aggregates if a.policy == baseline), None)
    head = ["policy", "SLO met", "TTFT p50/p90/p99 s", "ITL p90 ms", "GPU-h P", "GPU-h D", "GPU-h", "peak PxD"]
    head += ["dropped", "unfinished", "preempted"]
    if base is not None:
        head.append(f"GPU-h vs {base.policy}")
    rows = [head]
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    for a in aggregates:
        s = a.stat
        ttft = " / ".join(f"{s(f).mean:.2f}" for f in ("ttft_p50", "ttft_p90", "ttft_p99"))
        row = [
            a.policy,
            _cell(s("slo_attainment"), pct),
            ttft,
            _cell(s("itl_p90"), lambda v: f"{v * 1e3:.0f}"),
            _cell(s("gpu_hours_prefill"), lambda v: f"{v:.1f}"),
            _cell(s("gpu_hours_decode"), lambda v: f"{v:.1f}"),
            _cell(s("gpu_hours"), lambda v: f"{v:.2f}"),
            f"{max(r.peak_prefill for r in a.runs):.0f}x{max(r.peak_decode for r in a.runs):.0f}",
            f"{s('dropped').mean:.0f}",
            f"{s('unfinished').mean:.0f}",
            f"{s('preemptions').mean:.0f}",
        ]
        if base is not None:
            ratio = base.stat("gpu_hours").mean
            row.append(f"{s('gpu_hours').mean / ratio:.2f}x" if ratio else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def comparisons(aggregates: Sequence[Aggregate], baseline: str) -> list[str]:
    """Each policy against `baseline`, paired by seed: the differences and whether they can be told apart."""
    base = next((a for a in aggregates if a.policy == baseline), None)
    if base is None:
        return []
    out = []
    for a in aggregates:
        if a is base:
            continue
        slo, gpu = difference(a, base, "slo_attainment"), difference(a, base, "gpu_hours")
        if slo.n < 2:
            out.append(
                f"{a.policy} vs {baseline}: SLO {slo.mean * 100:+.1f} pp, GPU-h {gpu.mean:+.2f}"
                " (one seed: run --seeds N for intervals)"
            )
            continue
        parts = []
        for label, d, scale, unit in (("SLO", slo, 100, " pp"), ("GPU-h", gpu, 1, "")):
            verdict = "" if d.excludes_zero() else ", not distinguishable"
            parts.append(f"{label} {d.mean * scale:+.2f}{unit} [{d.low * scale:+.2f}, {d.high * scale:+.2f}]{verdict}")
        out.append(f"{a.policy} vs {baseline}: " + "; ".join(parts))
    return out


def json_policies(aggregates: Sequence[Aggregate]) -> dict[str, Any]:
    return {
        a.policy: {
            **{figure: a.stat(figure).json() for figure in FIGURES},
            "runs": [{"seed": s.seed, **{f: _round(getattr(s, f)) for f in FIGURES}} for s in a.runs],
        }
        for a in aggregates
    }


def _round(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 5)
