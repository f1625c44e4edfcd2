"""Durations as users write them (`30s`, `1m30s`, `250ms`, or bare seconds)."""

from __future__ import annotations

import argparse
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError naming the accepted forms (not the text: callers quote it, shortened)."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError("not a duration; use a number of seconds or units ms, s, m, h (e.g. 30s, 1m30s)") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError("not a duration: it must be finite and not negative")
    return seconds


def duration_arg(text: str) -> float:
    """`parse_duration` as an argparse type: a bad value becomes argparse's usage error."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text.strip()!r} is {exc}") from None
