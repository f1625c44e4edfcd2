"""The committed gRPC stubs are exactly what `make proto` generates from protos/externalscaler.proto."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scaler.proto import externalscaler_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
GENERATED = (
    "externalscaler_pb2.py",
    "externalscaler_pb2.pyi",
    "externalscaler_pb2_grpc.py",
    "externalscaler_pb2_grpc.pyi",
)


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    (tmp_path / "protos").mkdir()
    shutil.copy(ROOT / "protos" / "externalscaler.proto", tmp_path / "protos")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The same command as `make proto`.
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iscaler/proto=protos", "--python_out=.", "--grpc_python_out=.",
         "--mypy_out=.", "--mypy_grpc_out=.", "scaler/proto/externalscaler.proto"],
        cwd=tmp_path, env=env, check=True,
    )  # fmt: skip
    for name in GENERATED:
        fresh = (tmp_path / "scaler" / "proto" / name).read_text()
        assert fresh == (ROOT / "scaler" / "proto" / name).read_text(), f"{name} is stale: run `make proto`"


def test_wire_names_and_numbers_are_keda_s() -> None:
    fields = {
        message.name: [(f.name, f.number) for f in message.fields]
        for message in pb.DESCRIPTOR.message_types_by_name.values()
    }
    assert fields == {
        "ScaledObjectRef": [("name", 1), ("namespace", 2), ("scalerMetadata", 3)],
        "IsActiveResponse": [("result", 1)],
        "GetMetricSpecResponse": [("metricSpecs", 1)],
        "MetricSpec": [("metricName", 1), ("targetSize", 2), ("targetSizeFloat", 3)],
        "GetMetricsRequest": [("scaledObjectRef", 1), ("metricName", 2)],
        "GetMetricsResponse": [("metricValues", 1)],
        "MetricValue": [("metricName", 1), ("metricValue", 2), ("metricValueFloat", 3)],
    }
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    assert [(m.name, m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods] == [
        ("IsActive", "ScaledObjectRef", "IsActiveResponse", False),
        ("StreamIsActive", "ScaledObjectRef", "IsActiveResponse", True),
        ("GetMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", False),
        ("GetMetrics", "GetMetricsRequest", "GetMetricsResponse", False),
        ("StreamMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", True),  # KEDA ≥ 2.21, optional
    ]
