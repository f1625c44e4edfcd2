"""`/status` as data (JSON) and as a page (HTML with inline SVG charts: no script, no external asset, so it works in
an air-gapped cluster). Every name on the page comes from a caller or a source, so every one is escaped."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from html import escape
from typing import Any

from scaler.sources.base import Source
from scaler.status import HISTORY_SECONDS, Answer, ScaledObjectStatus


class Clocks:
    """Turns the engine's clock readings into ages and UTC times."""

    def __init__(self, now: float, wall_now: float) -> None:
        self.now, self.wall_now = now, wall_now

    def age(self, at: float) -> float:
        return round(max(0.0, self.now - at), 3)

    def iso(self, at: float) -> str:
        wall = self.wall_now - (self.now - at)
        return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def _when(at: float, clocks: Clocks) -> dict[str, Any]:
    return {"at": clocks.iso(at), "age_s": clocks.age(at)}


def answer_json(answer: Answer, clocks: Clocks) -> dict[str, Any]:
    if answer.error:
        return {**_when(answer.at, clocks), "code": answer.error_code, "error": answer.error}
    return {
        **_when(answer.at, clocks),
        "value": answer.value,
        "target": answer.target,
        "replicas": answer.replicas,
        "active": answer.active,
        "reason": answer.reason,
    }


def scaledobject_json(entry: ScaledObjectStatus, clocks: Clocks, detail: bool = False) -> dict[str, Any]:
    """One ScaledObject; `detail` adds its history and recent decisions (`pd-scaler explain`)."""
    last, error = entry.last, entry.last_error
    decided = last is not None and not last.error
    out: dict[str, Any] = {
        "namespace": entry.namespace,
        "name": entry.name,
        "active": entry.active,
        "role": entry.role or None,
        "policy": entry.policy or None,
        "metric": entry.metric_name or None,
        "value": last.value if decided and last else None,
        "target": last.target if decided and last else None,
        "replicas": last.replicas if decided and last else None,
        "reason": last.reason if decided and last else None,
        "answered": None if last is None else answer_json(last, clocks),
        "last_error": None if error is None else answer_json(error, clocks),
    }
    if detail:
        out["history"] = [[clocks.age(t), _number(v), _number(g)] for t, v, g in entry.history.points()]
        out["decisions"] = [answer_json(a, clocks) for a in reversed(entry.recent)]
    return out


def source_json(source: Source[Any], clocks: Clocks) -> dict[str, Any]:
    error = source.last_error
    return {
        "kind": source.kind,
        "name": source.name,
        "up": source.up,
        "sample_age_s": source.age(),
        "watching_streams": source.users,
        "refreshes": source.refreshes,
        "last_error": None if error is None else {**_when(error[0], clocks), "error": error[1]},
    }


def page_json(scaledobjects: Iterable[ScaledObjectStatus], sources: Iterable[Source[Any]], clocks: Clocks) -> str:
    """The whole board as JSON text (rendered where the HTML page is: off the loop)."""
    body = {
        "sources": [source_json(s, clocks) for s in sources],
        "scaledobjects": [scaledobject_json(e, clocks) for e in scaledobjects],
    }
    return json.dumps(body)


# -- the page ---------------------------------------------------------------------------------------------------------

CHART_W, CHART_H = 260, 64
TARGET = 'stroke="#8250df" stroke-width="1.5" stroke-dasharray="4 3"'

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.5em 0 .5em}
.meta{color:#57606a;margin:.2em 0 1em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:.45em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.name{font-weight:600;white-space:nowrap}.sub{color:#57606a;font-size:.85em}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.idle{color:#57606a}
tr.failing td{background:#fff5f5}
.err{color:#cf222e;font-family:ui-monospace,monospace;font-size:.85em;word-break:break-word}
.reason{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-word}
svg{display:block}.legend{font-size:.8em;color:#57606a}
"""


NONE = "&ndash;"  # an empty cell


def _fmt(x: float | None) -> str:
    return NONE if x is None or math.isnan(x) else f"{x:.4g}"


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def chart(points: list[tuple[float, float, float]], clocks: Clocks, title: str) -> str:
    """Value (solid) against target (dashed) over the last hour; a red tick at the bottom marks an error."""
    recent = [(clocks.now - t, v, g) for t, v, g in points if clocks.now - t <= HISTORY_SECONDS]
    finite = [x for _, v, g in recent for x in (v, g) if not math.isnan(x)]
    top = max(finite, default=1.0) * 1.15 or 1.0
    pad = 2

    def xy(age: float, y: float) -> str:
        x = (CHART_W - 4) * (1 - age / HISTORY_SECONDS)
        return f"{x:.1f},{CHART_H - pad - (CHART_H - 2 * pad) * y / top:.1f}"

    def lines(column: int, style: str) -> list[str]:
        """Polylines through the finite points of a column, broken at errors."""
        out: list[str] = []
        run: list[str] = []
        for point in [*recent, (0.0, math.nan, math.nan)]:
            if math.isnan(point[column]):
                if run:
                    out.append(f'<polyline points="{" ".join(run)}" fill="none" {style}/>')
                run = []
            else:
                run.append(xy(point[0], point[column]))
        return out

    # The newest answer, marked: a dot for the value, and a faint line across for its target (a reference, as a
    # threshold line on a dashboard).
    newest = next(((age, v, g) for age, v, g in reversed(recent) if not math.isnan(v)), None)
    marks = []
    if newest is not None:
        marks.append(
            f'<polyline points="{xy(HISTORY_SECONDS, newest[2])} {xy(0.0, newest[2])}" fill="none" '
            'stroke="#8250df" stroke-opacity="0.35" stroke-width="1" stroke-dasharray="2 3"/>'
        )
        x, y = xy(newest[0], newest[1]).split(",")
        marks.append(f'<circle cx="{x}" cy="{y}" r="3" fill="#0969da"/>')

    errors = [
        f'<line x1="{x}" y1="{CHART_H - 6}" x2="{x}" y2="{CHART_H}" stroke="#cf222e" stroke-width="2"/>'
        for x in (xy(age, 0.0).split(",")[0] for age, v, _ in recent if math.isnan(v))
    ]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" '
        f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<rect width="{CHART_W}" height="{CHART_H}" fill="#f6f8fa"/>',
        *lines(2, TARGET),
        *lines(1, 'stroke="#0969da" stroke-width="2" stroke-linecap="round"'),
        *marks,
        *errors,
        f'<text x="3" y="11" font-size="10" fill="#57606a">{_fmt(top / 1.15)}</text>',
        f'<text x="3" y="{CHART_H - 4}" font-size="10" fill="#57606a">-1h</text>',
        "</svg>",
    ]
    return "".join(parts)


def _scaledobject_row(entry: ScaledObjectStatus, clocks: Clocks) -> str:
    last, error = entry.last, entry.last_error
    failing = last is not None and bool(last.error)
    decided = last is not None and not last.error
    if failing:
        activity = '<span class="bad">error</span>'
    elif entry.active:
        activity = '<span class="ok">active</span>'
    else:
        activity = '<span class="idle">inactive</span>'
    name = f"{entry.namespace}/{entry.name}"
    value = (
        f"{_fmt(last.value)} / {_fmt(last.target)}"
        if decided and last
        else (f"{NONE} / {_fmt(_last_target(entry))}" if entry.metric_name else NONE)
    )
    replicas = str(last.replicas) if decided and last and last.replicas is not None else NONE
    reason = (
        f'<span class="reason">{escape(last.reason)}</span><div class="sub">{_ago(clocks.age(last.at))}</div>'
        if decided and last
        else NONE
    )
    error_cell = (
        f'<span class="err">{escape(error.error_code)}: {escape(error.error)}</span>'
        f'<div class="sub">{_ago(clocks.age(error.at))} · {clocks.iso(error.at)}</div>'
        if error
        else '<span class="idle">none</span>'
    )
    svg = chart(entry.history.points(), clocks, f"{name}: value against target, last hour") if entry.metric_name else ""
    return (
        f'<tr class="{"failing" if failing else ""}" id="{escape(name)}">'
        f'<td><div class="name">{escape(name)}</div><div class="sub">{escape(entry.metric_name or "no trigger parsed")}'
        f"</div></td>"
        f"<td>{escape(entry.role) or NONE}</td><td>{escape(entry.policy) or NONE}</td>"
        f'<td class="num">{value}</td><td>{svg}</td><td class="num">{replicas}</td><td>{activity}</td>'
        f"<td>{reason}</td><td>{error_cell}</td></tr>"
    )


def _last_target(entry: ScaledObjectStatus) -> float | None:
    targets = [g for _, _, g in entry.history.points() if not math.isnan(g)]
    return targets[-1] if targets else None


def _source_row(source: Source[Any], clocks: Clocks) -> str:
    health = '<span class="ok">up</span>' if source.up else '<span class="bad">down</span>'
    age = source.age()
    error = source.last_error
    error_cell = (
        f'<span class="err">{escape(error[1])}</span><div class="sub">{_ago(clocks.age(error[0]))}</div>'
        if error
        else '<span class="idle">none</span>'
    )
    return (
        f"<tr><td>{escape(source.kind)}</td><td>{escape(source.name)}</td><td>{health}</td>"
        f'<td class="num">{NONE if age is None else f"{age:.1f}s"}</td><td class="num">{source.refreshes}</td>'
        f'<td class="num">{source.users}</td><td>{error_cell}</td></tr>'
    )


def page(scaledobjects: Iterable[ScaledObjectStatus], sources: Iterable[Source[Any]], clocks: Clocks) -> str:
    objects, running = list(scaledobjects), list(sources)
    failing = sum(1 for e in objects if e.last is not None and e.last.error)
    so_rows = "".join(_scaledobject_row(e, clocks) for e in objects) or (
        '<tr><td colspan="9" class="idle">No ScaledObject has asked yet.</td></tr>'
    )
    source_rows = "".join(_source_row(s, clocks) for s in running) or (
        '<tr><td colspan="7" class="idle">No source is running.</td></tr>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="15"><meta name="viewport" content="width=device-width">'
        f"<title>pd-scaler status</title><style>{STYLE}</style></head><body>"
        f'<h1>pd-scaler</h1><p class="meta">{clocks.iso(clocks.now)} · {len(objects)} ScaledObjects '
        f"({failing} failing) · {len(running)} sources · this page reloads every 15 s</p>"
        "<h2>ScaledObjects</h2>"
        '<p class="legend">Chart: the value (solid) against the per-replica target (dashed) over the last hour; a red '
        "tick is an error. Replicas: what KEDA's AverageValue makes of it, ceil(value / target).</p>"
        "<table><thead><tr><th>ScaledObject</th><th>role</th><th>policy</th><th>value / target</th>"
        "<th>last hour</th><th>replicas</th><th>activity</th><th>last decision</th><th>last error</th></tr></thead>"
        f"<tbody>{so_rows}</tbody></table>"
        "<h2>Sources</h2><table><thead><tr><th>kind</th><th>source</th><th>health</th><th>sample age</th>"
        "<th>refreshes</th><th>streams</th><th>last error</th></tr></thead>"
        f"<tbody>{source_rows}</tbody></table></body></html>"
    )
