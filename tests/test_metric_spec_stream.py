"""StreamMetricSpec (KEDA ≥ 2.21) against a client generated from KEDA's own proto, as KEDA's is."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from scaler import engine
from scaler.observations import ConsumerLag, Decision
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from scaler.triggers import PrefillTrigger
from tests.conftest import prefill_ref
from tests.servers import NatsServer
from tests.test_prefill import lag_becomes, publish

KEDA_PROTO = Path(__file__).resolve().parent / "keda" / "externalscaler.proto"
METRIC = "prefill-lag-dynamo-prefill-queue-worker-group"

# KEDA's client in its own process: its generated messages share KEDA's proto package with ours, and one process
# holds one definition of each. Prints each streamed GetMetricSpecResponse as a JSON line.
CLIENT = """
import json, sys
import grpc
sys.path.insert(0, sys.argv[1])
import externalscaler_pb2 as pb, externalscaler_pb2_grpc as pb_grpc
ref = pb.ScaledObjectRef(**json.loads(sys.argv[3]))
with grpc.insecure_channel(sys.argv[2]) as channel:
    for response in pb_grpc.ExternalScalerStub(channel).StreamMetricSpec(ref):
        specs = [[s.metricName, s.targetSizeFloat, s.targetSize] for s in response.metricSpecs]
        print(json.dumps(specs), flush=True)
"""


def keda_client(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{KEDA_PROTO.parent}", f"--python_out={out}",
         f"--grpc_python_out={out}", str(KEDA_PROTO)],
        check=True,
    )  # fmt: skip
    return out


async def test_the_spec_is_sent_on_open_and_again_on_each_target_change(
    tmp_path: Path,
    scaler: Server,
    stub: pb_grpc.ExternalScalerStub,
    js: JetStreamContext,
    nats_server: NatsServer,
    monkeypatch: pytest.MonkeyPatch,
):
    # A policy that learns its target (as a capacity policy does), driven by the test.
    learned: list[float] = []
    lag_policy = engine.decide_prefill

    def learning_policy(spec: PrefillTrigger, lag: ConsumerLag) -> Decision:
        decision = lag_policy(spec, lag)
        return dataclasses.replace(decision, target=learned[-1]) if learned else decision

    monkeypatch.setattr(engine, "decide_prefill", learning_policy)
    ref = prefill_ref(nats_server, lagThreshold="2.5")
    fields: dict[str, Any] = {"name": ref.name, "namespace": ref.namespace, "scalerMetadata": dict(ref.scalerMetadata)}
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(keda_client(tmp_path)), f"127.0.0.1:{scaler.grpc_port}", json.dumps(fields),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdout is not None

    async def streamed() -> list[list[object]]:
        line = await asyncio.wait_for(client.stdout.readline(), 10)  # type: ignore[union-attr]
        assert line, "the stream ended"
        return json.loads(line)  # type: ignore[no-any-return]

    async def target() -> tuple[float, int]:
        spec = (await stub.GetMetricSpec(ref)).metricSpecs[0]
        return spec.targetSizeFloat, spec.targetSize

    try:
        assert await streamed() == [[METRIC, 2.5, 3]]  # on open, before any change

        learned.append(40.0)
        await publish(js, 1)  # a new sample: the policy decides again
        assert await streamed() == [[METRIC, 40.0, 40]]
        assert await target() == (40.0, 40)  # GetMetricSpec answers the latest streamed target

        await publish(js, 1)  # same target: nothing is sent
        await lag_becomes(stub, ref, 2.0)
        learned.append(12.4)
        await publish(js, 1)
        assert await streamed() == [[METRIC, 12.4, 12]]
        assert await target() == (12.4, 12)
    finally:
        client.kill()
        await client.wait()
