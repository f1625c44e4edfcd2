"""The one exception family the scaler raises; `service` maps each onto a gRPC status code."""

from __future__ import annotations

import grpc

# A status message travels in an HTTP/2 trailer: clients refuse trailers over 8-16 kB, and a caller's input
# must never come back whole. Every message is cut to this many UTF-8 bytes.
MAX_MESSAGE_BYTES = 1000
_CUT = "… (truncated)"


def bounded(message: str) -> str:
    if len(message) * 4 <= MAX_MESSAGE_BYTES:  # the usual case: no encoding needed to know it fits
        return message
    encoded = message.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[: MAX_MESSAGE_BYTES - len(_CUT.encode())].decode(errors="ignore") + _CUT


class ScalerError(Exception):
    """An answer KEDA should see as a gRPC error with this message (at most MAX_MESSAGE_BYTES)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message


class InvalidTrigger(ScalerError):
    """The trigger metadata is wrong: the message names the key, the value and what is accepted."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class SourceUnavailable(ScalerError):
    """A source is down, failing or stale: the message names it."""

    code = grpc.StatusCode.UNAVAILABLE


class NotFound(ScalerError):
    """A named stream, consumer, ScaledObject or adapter does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class Exhausted(ScalerError):
    """A limit of the scaler (e.g. its live sources) is reached: the message names it and its flag."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Forbidden(ScalerError):
    """This scaler does not serve the call (e.g. a namespace outside `--namespaces`)."""

    code = grpc.StatusCode.PERMISSION_DENIED
