"""The baseline: an ExternalScaler whose handlers do nothing, on the same grpc.aio stack as pd-scaler."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
SPEC = pb.GetMetricSpecResponse(metricSpecs=[pb.MetricSpec(metricName="m", targetSizeFloat=5, targetSize=5)])
VALUE = pb.GetMetricsResponse(metricValues=[pb.MetricValue(metricName="m", metricValueFloat=7, metricValue=7)])


class Empty(pb_grpc.ExternalScalerServicer):
    async def IsActive(self, request: pb.ScaledObjectRef, context: Context) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=True)

    async def StreamIsActive(self, request: pb.ScaledObjectRef, context: Context) -> AsyncIterator[pb.IsActiveResponse]:
        yield pb.IsActiveResponse(result=True)

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: Context) -> pb.GetMetricSpecResponse:
        return SPEC

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Context) -> pb.GetMetricsResponse:
        return VALUE


async def main(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(Empty(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
