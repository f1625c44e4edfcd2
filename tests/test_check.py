"""`pd-scaler check`: the shipped examples pass; each mistake a user makes is found, named by file, document and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BROKEN = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-scaledobject}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: prefill-typo, namespace: llm}
spec:
  scaleTargetRef: {apiVersion: workloads.x-k8s.io/v1alpha1, kind: RoleBasedGroupScalingAdapter, name: dynamo-pd-prefill}
  minReplicaCount: 1
  triggers:
    - type: external-push
      metadata: {scalerAddress: "pd-scaler.keda:9090", role: prefill, natsServer: "nats://nats:4222", lagTreshold: "5"}
    - type: cpu
      metadata: {value: "60"}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: value-metric, namespace: llm}
spec:
  scaleTargetRef: {kind: RoleBasedGroupScalingAdapter, name: dynamo-pd-decoder}
  minReplicaCount: 1
  triggers:
    - type: external
      metricType: Value
      metadata: {scalerAddress: "pd-scaler.keda:9090", role: prefill, natsServer: "nats://nats:4222"}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: decode-on-deployment, namespace: llm}
spec:
  scaleTargetRef: {name: sglang-decode}
  triggers:
    - type: external
      metadata: {scalerAddress: "pd-scaler.keda:9090", role: decode, prometheusAddress: "http://prom:9090"}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: prefill-from-zero, namespace: llm}
spec:
  scaleTargetRef: {kind: RoleBasedGroupScalingAdapter, name: dynamo-pd-prefill}
  minReplicaCount: 0
  triggers:
    - type: external
      metadata: {role: prefill, natsServer: "nats://nats:4222"}
"""


def pd_scaler_check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler", "check", *map(str, files)], capture_output=True, text=True, check=False
    )


def test_the_shipped_examples_pass() -> None:
    examples = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))
    assert examples
    result = pd_scaler_check(*examples)
    assert result.returncode == 0, result.stdout
    assert f"{len(examples)} files checked: 0 errors, 0 warnings" in result.stdout


def test_each_mistake_is_reported_with_file_document_and_key(tmp_path: Path) -> None:
    manifest = tmp_path / "scaledobjects.yaml"
    manifest.write_text(BROKEN)
    result = pd_scaler_check(manifest, tmp_path / "missing.yaml")
    assert result.returncode == 1
    f, llm = str(manifest), "ScaledObject llm"
    assert result.stdout.splitlines() == [
        f"{f}:2: {llm}/prefill-typo triggers[0]: metadata: error: unknown key 'lagTreshold' (did you mean "
        "'lagThreshold'?); prefill triggers accept: account, activationLagThreshold, activationThreshold, consumer, "
        "engine, lagThreshold, maxStaleness, metric, metricsPath, metricsPort, natsConnection, natsServer, "
        "natsServerMonitoringEndpoint, podSelector, prometheusAddress, prometheusConnection, role, scrape, "
        "seriesSelector, stream, threshold, useHttps",
        f"{f}:3: {llm}/value-metric triggers[0]: metricType: error: pd-scaler reports a total over the role with a "
        "per-replica target, which needs AverageValue (desired = ceil(total / target)); Value multiplies by the "
        "current replicas and overshoots",
        f"{f}:3: {llm}/value-metric triggers[0]: metadata.role: warning: role is 'prefill' but the target adapter "
        "'dynamo-pd-decoder' looks like the decode role's",
        f"{f}:4: {llm}/decode-on-deployment triggers[0]: spec.scaleTargetRef.kind: error: decode finds its pods "
        "through a RoleBasedGroupScalingAdapter; with a Deployment target set metadata.podSelector",
        f"{f}:4: {llm}/decode-on-deployment triggers[0]: spec.minReplicaCount: warning: decode measures its running "
        "pods: at 0 replicas there is nothing to measure and nothing wakes the role; set minReplicaCount to 1 or more",
        f"{f}:5: {llm}/prefill-from-zero triggers[0]: metadata.scalerAddress: error: KEDA needs scalerAddress: the "
        "pd-scaler Service, host:port",
        f"{f}:5: {llm}/prefill-from-zero triggers[0]: type: warning: this role can scale to zero: use external-push, "
        "so the first queued request wakes it at once instead of at the next pollingInterval",
        f"{tmp_path / 'missing.yaml'}:0: file: -: error: cannot read: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'missing.yaml'}'",
        "2 files checked: 5 errors, 3 warnings",
    ]
