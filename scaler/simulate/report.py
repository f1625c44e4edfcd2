"""Latency percentiles, SLO attainment and GPU-hours per policy; the comparison table and the JSON summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaler.simulate.cluster import DECODE, PREFILL
from scaler.simulate.simulation import Run
from scaler.simulate.trace import TraceStats


@dataclass(frozen=True)
class Slo:
    """A request meets the SLO when its TTFT is at most `ttft_slack` above its prompt's own unloaded prefill time
    (so a long prompt is not a miss by construction) and its mean inter-token latency is at most `itl`."""

    ttft_slack: float = 1.0
    itl: float = 0.05


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p90: float
    p99: float


@dataclass(frozen=True)
class Summary:
    policy: str
    slo_attainment: float
    ttft: Percentiles
    itl: Percentiles
    gpu_hours_prefill: float
    gpu_hours_decode: float
    peak_prefill: int
    peak_decode: int

    @property
    def gpu_hours(self) -> float:
        return self.gpu_hours_prefill + self.gpu_hours_decode


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) over sorted values; NaN when empty."""
    if not ordered:
        return math.nan
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _percentiles(values: list[float]) -> Percentiles:
    values.sort()
    return Percentiles(percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99))


def summarize(run: Run, slo: Slo) -> Summary:
    ttfts, itls, met = [], [], 0
    for r in run.records:
        ttft, itl = r.ttft, r.itl
        ttfts.append(ttft)
        if r.output > 1:
            itls.append(itl)
        if ttft <= r.prefill_s + slo.ttft_slack and (r.output <= 1 or itl <= slo.itl):
            met += 1
    n = len(run.records)
    return Summary(
        policy=run.policy,
        slo_attainment=met / n if n else math.nan,
        ttft=_percentiles(ttfts),
        itl=_percentiles(itls),
        gpu_hours_prefill=run.gpu_seconds[PREFILL] / 3600,
        gpu_hours_decode=run.gpu_seconds[DECODE] / 3600,
        peak_prefill=max((s.prefill for s in run.timeline), default=0),
        peak_decode=max((s.decode for s in run.timeline), default=0),
    )


def table(summaries: Sequence[Summary], baseline: str | None = None) -> str:
    """The comparison table; with `baseline`, GPU-hours also as a ratio to that policy's."""
    base = next((s for s in summaries if s.policy == baseline), None)
    head = ["policy", "SLO met", "TTFT p50/p90/p99 s", "ITL p50/p90/p99 ms", "GPU-h P", "GPU-h D", "GPU-h", "peak PxD"]
    if base is not None:
        head.append(f"GPU-h vs {base.policy}")
    rows = [head]
    for s in summaries:
        row = [
            s.policy,
            f"{s.slo_attainment:.1%}",
            f"{s.ttft.p50:.2f} / {s.ttft.p90:.2f} / {s.ttft.p99:.2f}",
            f"{s.itl.p50 * 1e3:.0f} / {s.itl.p90 * 1e3:.0f} / {s.itl.p99 * 1e3:.0f}",
            f"{s.gpu_hours_prefill:.1f}",
            f"{s.gpu_hours_decode:.1f}",
            f"{s.gpu_hours:.1f}",
            f"{s.peak_prefill}x{s.peak_decode}",
        ]
        if base is not None:
            row.append(f"{s.gpu_hours / base.gpu_hours:.2f}x" if base.gpu_hours else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def json_summary(trace: str, stats: TraceStats, load_scale: float, summaries: Sequence[Summary]) -> dict[str, Any]:
    return {
        "trace": {
            "name": trace,
            "load_scale": load_scale,
            "requests": stats.requests,
            "duration_s": round(stats.duration_s, 3),
            "rate_per_s": round(stats.rate_per_s, 3),
            "mean_prompt_tokens": round(stats.mean_prompt, 1),
            "mean_output_tokens": round(stats.mean_output, 1),
        },
        "policies": {
            s.policy: {
                "slo_attainment": round(s.slo_attainment, 4),
                "gpu_hours": {
                    "prefill": round(s.gpu_hours_prefill, 3),
                    "decode": round(s.gpu_hours_decode, 3),
                    "total": round(s.gpu_hours, 3),
                },
                "ttft_s": _json_percentiles(s.ttft),
                "itl_s": _json_percentiles(s.itl),
                "peak_replicas": {"prefill": s.peak_prefill, "decode": s.peak_decode},
            }
            for s in summaries
        },
    }


def _json_percentiles(p: Percentiles) -> dict[str, float | None]:
    return {k: None if math.isnan(v) else round(v, 4) for k, v in (("p50", p.p50), ("p90", p.p90), ("p99", p.p99))}
