"""Reading answers from servers a trigger may point anywhere: every read is bounded, every message is safe to show.

- `get`: one HTTP GET with a byte cap (`Content-Length` checked first, the body streamed otherwise), no redirect
  followed (a redirect would carry our credentials to wherever it points), no compression (a small gzip body can
  inflate past any cap before a byte is counted).
- `get_json`: the same, parsed as JSON of bounded nesting.
- `count`: a number a source reports as a queue length, checked for range.
- `describe` / `short`: exception and remote text for a message: one line, truncated, no credentials in URLs.

Every failure is `BadAnswer`, whose text a source puts after its own name in a `SourceUnavailable`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import ssl
from array import array
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 64  # Prometheus and /jsz answers nest 6 deep
MAX_COUNT = 2**53  # beyond this a float (and KEDA's metric value) no longer holds every whole number
TEXT_LIMIT = 200  # characters of remote or exception text kept in a message
_CHUNK = 64 * 1024


class BadAnswer(Exception):
    """A request or its answer failed; the text names what, never a credential, and is short."""


def session(timeout: float, *, ssl_context: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    """A client session for `get`: total time bounded, plain (uncompressed) answers asked for. Credentials go in
    each request's headers, so they reach the URL asked for and nothing else."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        connector=aiohttp.TCPConnector(ssl=ssl_context),
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
    )


async def get(
    client: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """The status and body of one GET, or BadAnswer: not reachable, too slow, redirected, compressed, or larger than
    `max_bytes`. A body that would pass the cap is refused as soon as the cap is passed, not when it ends."""
    try:
        async with client.get(url, params=params, headers=headers, allow_redirects=False) as resp:
            if 300 <= resp.status < 400:
                where = _origin(resp.headers.get("Location", ""))
                raise BadAnswer(f"HTTP {resp.status} redirect to {where or 'nowhere'} not followed")
            encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise BadAnswer(f"compressed answer (Content-Encoding {short(encoding, 40)}) refused")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise BadAnswer(f"answer of {resp.content_length} bytes is over the limit of {max_bytes} bytes")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise BadAnswer(f"answer is over the limit of {max_bytes} bytes")
            return resp.status, bytes(body)
    except asyncio.TimeoutError:
        raise BadAnswer(f"no answer within {client.timeout.total:g}s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: yarl refusing the URL
        raise BadAnswer(describe(exc)) from None


async def get_json(
    client: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """`get`, then the body parsed as JSON. On the loop: the C parser holds the GIL throughout, so a worker thread
    would not shorten the pause (~50 ms per MB)."""
    status, body = await get(client, url, max_bytes=max_bytes, params=params, headers=headers)
    return status, parse_json(body)


def parse_json(body: bytes) -> Any:
    """JSON nested at most MAX_JSON_DEPTH deep, or BadAnswer. (NaN and Infinity parse as floats: the reader of a
    field rejects them by name, see `count`.)"""
    depth = _depth(body)
    if depth > MAX_JSON_DEPTH:
        raise BadAnswer(f"answer is JSON nested {depth} deep, over the limit of {MAX_JSON_DEPTH}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BadAnswer(f"answer is not JSON: {short(str(exc))}") from None


def count(value: Any, field: str) -> int:
    """A queue length a source reported: a whole number from 0 to 2^53, else BadAnswer naming `field`.

    Such a number becomes KEDA's metric value (int64 and float): a negative lag would scale down a busy role, and
    one past 2^53 cannot be represented; neither is a measurement."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer(f"{field} is not a number: {short(repr(value), 40)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise BadAnswer(f"{field} is not a whole number: {value!r}")
    if not 0 <= value <= MAX_COUNT:
        raise BadAnswer(f"{field} is out of range (0 to 2^53): {short(repr(value), 40)}")
    return int(value)


def measurement(value: float, field: str) -> float:
    """A value a source measured — requests, tokens, a fill, bytes of memory: never negative — finite and from 0
    to 2^53, else BadAnswer naming `field`. It is summed into KEDA's metric value, so a wrong one is no answer."""
    if not math.isfinite(value):
        raise BadAnswer(f"{field} is not a finite number: {value!r}")
    if not 0 <= value <= MAX_COUNT:
        raise BadAnswer(f"{field} is out of range (0 to 2^53): {short(repr(value), 40)}")
    return value


def series_name(name: str, labels: Mapping[str, str]) -> str:
    """`name{label="value",…}` as Prometheus writes it, shortened for a message."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    return short(f"{name}{{{inner}}}" if inner or not name else name, 120)


_USERINFO = re.compile(r"(?<=//)[^/\s@]*@")


def short(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text` on one line, at most `limit` characters, with any `user:password@` of a URL removed."""
    line = _USERINFO.sub("", " ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """An exception as `Type: message`, for a message anyone may read (see `short`)."""
    text = str(exc).strip()
    return short(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _origin(url: str) -> str:
    """scheme://host:port of a URL, nothing else (a redirect's target may carry credentials or a long path)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    if not parts.hostname:
        return "a path on the same server" if url else ""
    return short(f"{parts.scheme}://{parts.hostname}{port}", 100)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 opens, -1 (0xff as a signed byte) closes
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects, counted before parsing (the parser would recurse that deep)."""
    brackets = _STRING.sub(b"", body).translate(_SIGNS, _NOT_BRACKETS)
    return max(itertools.accumulate(array("b", brackets)), default=0)
