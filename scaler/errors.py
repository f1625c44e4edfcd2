"""The one exception family the scaler raises; `service` maps each onto a gRPC status code."""

from __future__ import annotations

import grpc


class ScalerError(Exception):
    """An answer KEDA should see as a gRPC error with this message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
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


class Forbidden(ScalerError):
    """This scaler does not serve the call (e.g. a namespace outside `--namespaces`)."""

    code = grpc.StatusCode.PERMISSION_DENIED
