"""The gRPC servicer KEDA talks to: thin translation between protobuf and the engine.

Every ScalerError becomes its gRPC status here, in one place; calls are counted and timed by method and code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from scaler.engine import Engine, Ref
from scaler.errors import InvalidTrigger, ScalerError, SourceUnavailable
from scaler.metrics import Metrics
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.triggers import MAX_KEYS, check_size

log = logging.getLogger("pd_scaler.service")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


# Kubernetes' own limits: a DNS subdomain name and a DNS label namespace.
MAX_NAME_LENGTH, MAX_NAMESPACE_LENGTH = 253, 63
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _ref(request: pb.ScaledObjectRef) -> Ref:
    """The call's ScaledObject, its size checked before anything is copied or parsed."""
    if len(request.name) > MAX_NAME_LENGTH:
        raise InvalidTrigger(f"the ScaledObject name is {len(request.name)} characters long; at most {MAX_NAME_LENGTH}")
    if len(request.namespace) > MAX_NAMESPACE_LENGTH:
        raise InvalidTrigger(
            f"the namespace is {len(request.namespace)} characters long; at most {MAX_NAMESPACE_LENGTH}"
        )
    if len(request.scalerMetadata) > MAX_KEYS:  # before copying it
        check_size(request.scalerMetadata)
    given = request.scalerMetadata
    metadata = {key: given[key] for key in given}  # the fastest copy of a protobuf map
    check_size(metadata)
    return Ref(namespace=request.namespace, name=request.name, metadata=metadata)


class _Refs:
    """The Ref of each request already seen, by its bytes: KEDA asks about the same few ScaledObjects again and
    again, and serializing a request costs a tenth of copying and checking its map. Bounded in entries and in
    the size of a request it keeps; emptied when full (a caller who invents requests only loses the shortcut)."""

    def __init__(self, limit: int, max_request_bytes: int = 2048) -> None:
        self.limit, self.max_request_bytes = limit, max_request_bytes
        self._refs: dict[bytes, Ref] = {}

    def __call__(self, request: pb.ScaledObjectRef) -> Ref:
        key = request.SerializeToString()
        ref = self._refs.get(key)
        if ref is None:
            ref = _ref(request)  # raises before anything is kept
            if len(key) <= self.max_request_bytes:
                if len(self._refs) >= self.limit:
                    self._refs.clear()
                self._refs[key] = ref
        return ref

    def __len__(self) -> int:
        return len(self._refs)


def _int64(value: float) -> int:
    """The deprecated int64 fields, for KEDA < 2.17: rounded half up (2.5 → 3), not to even, within int64."""
    if math.isnan(value):
        raise SourceUnavailable("the metric value is not a number")
    return max(_INT64_MIN, min(_INT64_MAX, math.floor(max(-(2.0**63), min(2.0**63, value)) + 0.5)))


def _status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ScalerError):
        return exc.code, exc.message
    log.exception("unexpected error answering a call")
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._ref = _Refs(engine.max_scaledobjects)

    async def _answer(
        self, method: str, handler: Callable[[Req], Awaitable[Resp]], request: Req, context: Context
    ) -> Resp:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except asyncio.CancelledError:  # the caller went away
            self.metrics.observe_call(method, "CANCELLED", time.perf_counter() - started)
            raise
        except Exception as exc:
            code, message = _status(exc)
            self.metrics.observe_call(method, code.name, time.perf_counter() - started)
            await context.abort(code, message)
            raise  # unreachable: abort raises
        self.metrics.observe_call(method, "OK", time.perf_counter() - started)
        return response

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: Context) -> pb.GetMetricSpecResponse:
        return await self._answer("GetMetricSpec", self._metric_spec, request, context)

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Context) -> pb.GetMetricsResponse:
        return await self._answer("GetMetrics", self._metrics, request, context)

    async def IsActive(self, request: pb.ScaledObjectRef, context: Context) -> pb.IsActiveResponse:
        return await self._answer("IsActive", self._is_active, request, context)

    async def _metric_spec(self, request: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        return _spec_response(*self.engine.metric_spec(self._ref(request)))

    async def _metrics(self, request: pb.GetMetricsRequest) -> pb.GetMetricsResponse:
        d = await self.engine.decide(self._ref(request.scaledObjectRef))
        return _metrics_response(d.metric_name, d.value)

    async def _is_active(self, request: pb.ScaledObjectRef) -> pb.IsActiveResponse:
        return _ACTIVE[(await self.engine.decide(self._ref(request))).active]

    # grpc.aio tells a stream handler by its being an async generator function, hence the re-yields.
    async def StreamIsActive(self, request: pb.ScaledObjectRef, context: Context) -> AsyncIterator[pb.IsActiveResponse]:
        def answers(ref: Ref) -> AsyncIterator[pb.IsActiveResponse]:
            return (_ACTIVE[True] async for _ in self.engine.activations(ref))

        async for answer in self._stream("StreamIsActive", request, answers, context):
            yield answer

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        def answers(ref: Ref) -> AsyncIterator[pb.GetMetricSpecResponse]:
            return (_spec_response(*spec) async for spec in self.engine.metric_specs(ref))

        async for answer in self._stream("StreamMetricSpec", request, answers, context):
            yield answer

    async def _stream(
        self,
        method: str,
        request: pb.ScaledObjectRef,
        answers: Callable[[Ref], AsyncIterator[Resp]],
        context: Context,
    ) -> AsyncIterator[Resp]:
        # Counted and timed when the stream ends: its lifetime is KEDA's choice (CANCELLED: KEDA closed it).
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            async for answer in answers(self._ref(request)):
                yield answer
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code, message = _status(exc)
            await context.abort(code, message)
        finally:
            self.metrics.observe_stream(method, code.name, time.perf_counter() - started)


# Responses are immutable once built (grpc only serializes them): the same answer is built once, not per call.
_ACTIVE = {active: pb.IsActiveResponse(result=active) for active in (False, True)}
_RESPONSES = 4096  # distinct (metric, value) answers kept


@functools.lru_cache(maxsize=_RESPONSES)
def _metrics_response(name: str, value: float) -> pb.GetMetricsResponse:
    metric = pb.MetricValue(metricName=name, metricValueFloat=value, metricValue=_int64(value))
    return pb.GetMetricsResponse(metricValues=[metric])


@functools.lru_cache(maxsize=_RESPONSES)
def _spec_response(name: str, target: float) -> pb.GetMetricSpecResponse:
    # int64 fields for KEDA < 2.17, which ignores the float ones.
    spec = pb.MetricSpec(metricName=name, targetSizeFloat=target, targetSize=_int64(target))
    return pb.GetMetricSpecResponse(metricSpecs=[spec])
