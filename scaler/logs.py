"""Log set-up: one line per event, as text (`key=value` fields) or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from typing import Any


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_time(record), record.levelname, record.getMessage()]
        parts += [
            f"{k}={json.dumps(v) if isinstance(v, str) and (' ' in v or not v) else v}"
            for k, v in _fields(record).items()
        ]
        line = " ".join(str(p) for p in parts)
        return line + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class LibraryRateLimit(logging.Filter):
    """At most `burst` lines per `window` seconds for each message a library logs (by logger and message start).

    A flood of connections makes libraries log one line each (asyncio: "socket.accept() out of system resource",
    with a traceback, per attempt): thousands of lines a second that say one thing. The first line after a quiet
    window counts those dropped before it. pd-scaler's own lines are one per state change and never dropped."""

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, lines passed, lines dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "pd_scaler" or record.name.startswith("pd_scaler."):
            return True
        now = self.clock()
        key = (record.name, str(record.msg)[:80])
        seen = self._seen.get(key)
        if seen is None or now - seen[0] > self.window:
            if len(self._seen) > 1000:
                self._seen.clear()  # bounded: different messages are few; forget them all at worst
            dropped = int(seen[2]) if seen else 0
            self._seen[key] = [now, 1, 0]
            if dropped:
                record.fields = {**_fields(record), "similar_lines_dropped": dropped}
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        return False


def configure(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(LibraryRateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries: warnings only; their debug output is not ours to show
    logging.getLogger("pd_scaler").setLevel(level.upper())


class Once:
    """Says yes once per key (remembering the last `limit` keys) and at most `burst` times in a row, then `rate`
    times per second: a log line per distinct event that a flood of distinct events cannot turn into a flood."""

    def __init__(
        self, limit: int = 4096, rate: float = 1.0, burst: float = 20.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.rate, self.burst, self.clock = limit, rate, burst, clock
        self.suppressed = 0  # new keys refused by the rate limit since the last yes
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._tokens = burst
        self._at = clock()

    def __call__(self, key: Hashable) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self.suppressed += 1
            return False  # not remembered: it may be logged once the rate allows
        self._tokens -= 1
        self._seen[key] = None
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True
