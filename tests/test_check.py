"""`pd-scaler check`: the shipped examples pass; each mistake a user makes is found, named by file, line and key;
files and stdin alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaler.triggers import PrefillTrigger, parse
from tests.test_triggers import PREFILL_KEYS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "deploy" / "examples"

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
      metadata: {scalerAddress: "pd-scaler.keda:9090", role: prefill, natsServer: "nats://nats:4222", lag: "5"}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: decode-on-deployment, namespace: llm}
spec:
  scaleTargetRef: {name: sglang-decode}
  triggers:
    - type: external
      metadata: {scalerAddress: "pd-scaler.keda:9090", role: decode, prometheusAddress: "http://prom:9090",
                 metric: gpu-util}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: prefill-from-zero, namespace: llm}
spec:
  scaleTargetRef: {kind: RoleBasedGroupScalingAdapter, name: sglang-pd-prefill}
  minReplicaCount: 0
  triggers:
    - type: external
      metadata: {role: prefill, natsServer: "nats://nats:4222"}
"""

# The ScaledObject of the ACK guide "Configure Prefill scaling with KEDA" (Dynamo PD on RBG), as published.
ACK_GUIDE = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: dynamo-prefill-scaledobject
spec:
  pollingInterval: 30                 # For demo. Default: 30 seconds
  minReplicaCount: 1                  # For demo. Default: 0
  maxReplicaCount: 6                  # For demo. Default: 100
  scaleTargetRef:
    apiVersion: workloads.x-k8s.io/v1alpha1
    kind: RoleBasedGroupScalingAdapter
    name: dynamo-pd-prefill           # Specify the Prefill role in the RoleBasedGroup as the scaling target
  triggers:
    - type: nats-jetstream
      metadata:
        natsServerMonitoringEndpoint: "nats.default.svc.cluster.local:8222"  # NATS service endpoint
        account: "$G"                       # The default value when a NATS account is not set
        stream: "dynamo_prefill_queue"      # The name of the PrefillQueue in Dynamo
        consumer: "worker-group"            # The persistence name of the Consumer in Dynamo
        lagThreshold: "5"                   # The scaling threshold for the number of pending messages
        useHttps: "false"                   # Specifies whether to use the HTTPS protocol
"""
ACK_TRIGGER_LINES = (14, 21)  # the nats-jetstream trigger: lines 14 to 21, 1-based, inclusive
ACK_CONVERTED = """\
    - type: external-push
      metadata:
        scalerAddress: pd-scaler.keda.svc.cluster.local:9090
        role: prefill
        natsServerMonitoringEndpoint: nats.default.svc.cluster.local:8222
        account: $G
        stream: dynamo_prefill_queue
        consumer: worker-group
        lagThreshold: '5'
        useHttps: 'false'"""
ACK_WARNING = (
    "ScaledObject default/dynamo-prefill-scaledobject triggers[0]: type: warning: KEDA's built-in nats-jetstream "
    "scaler on a RoleBasedGroupScalingAdapter: pd-scaler never sees this trigger; for the prefill role use the "
    "pd-scaler trigger below"
)

KV_WARNING = (
    "metadata.threshold: warning: kv-cache threshold {t} is above where a decode replica runs out of sequence slots: "
    "with its 256 seats (vLLM's max_num_seqs) taken it shows about 0.45 KV-cache fill (the simulator's h200-tp2 "
    "deployment, 796,800 KV tokens, on the bundled Azure conversation trace; docs/simulate.md), and new requests "
    "queue for a seat without the fill rising, so the role never scales; use metric: seats, with maxNumSeqs the "
    "engine's sequence limit (vLLM --max-num-seqs, 256 by default), or a kv-cache threshold of 0.4 or less"
)
GPU_MEMORY_WARNING = (
    "metadata.metric: warning: {given}: engines that preallocate the KV cache (vLLM gpu-memory-utilization, SGLang "
    "mem-fraction-static, TensorRT-LLM) keep every decode pod near 0.95 whatever the load, above the threshold, so "
    "the HPA adds a replica after each start-up until maxReplicaCount ({max}) and keeps it there; use metric: "
    "seats, with maxNumSeqs the engine's sequence limit (vLLM --max-num-seqs, 256 by default) unless your engine "
    "allocates as it goes"
)


def pd_scaler_check(*files: Path | str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler", "check", *map(str, files)],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line containing `needle`."""
    [number] = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return number


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check_via(via: str, tmp_path: Path, name: str, text: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`pd-scaler check` of `text` as a file (`via` "file") or on stdin, and the name its findings show."""
    if via == "file":
        path = write(tmp_path, name, text)
        return pd_scaler_check(path), str(path)
    return pd_scaler_check("-", stdin=text), "<stdin>"


def trigger_lines(path: Path) -> dict[str, int]:
    """Each ScaledObject's name → the line of its first trigger, from PyYAML's own node marks."""
    lines = {}
    for node in yaml.compose_all(path.read_text()):
        doc = yaml.safe_load(yaml.serialize(node))
        if doc and doc["kind"] == "ScaledObject":
            [spec] = [v for k, v in node.value if k.value == "spec"]
            [triggers] = [v for k, v in spec.value if k.value == "triggers"]
            lines[doc["metadata"]["name"]] = triggers.value[0].start_mark.line + 1
    return lines


# The examples are alternatives: dynamo-pd-scaledobjects-mtls.yaml replaces dynamo-pd-scaledobjects.yaml.
PLAIN = sorted(p for p in EXAMPLES.glob("*.yaml") if "mtls" not in p.name)
MTLS = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name != "dynamo-pd-scaledobjects.yaml")


@pytest.mark.parametrize("files", [PLAIN, MTLS], ids=["plain", "mtls"])
def test_the_shipped_examples_pass(files: list[Path]) -> None:
    """Not a warning: every shipped decode trigger uses seats, the recommended decode signal."""
    result = pd_scaler_check(*files)
    assert result.returncode == 0, result.stdout
    scaled_objects = sum(len(trigger_lines(f)) for f in files if not f.name.endswith("-values.yaml"))
    assert scaled_objects == 6
    assert result.stdout.splitlines() == [
        f"{len(files)} files, {scaled_objects} ScaledObjects, {scaled_objects} triggers checked: 0 errors, 0 warnings"
    ]


def object_lines(path: Path) -> dict[str, int]:
    """Each ScaledObject's name → the line its document starts on, from PyYAML's own node marks."""
    lines = {}
    for node in yaml.compose_all(path.read_text()):
        doc = yaml.safe_load(yaml.serialize(node))
        if doc and doc["kind"] == "ScaledObject":
            lines[doc["metadata"]["name"]] = node.start_mark.line + 1
    return lines


def test_both_example_sets_together_target_each_adapter_twice() -> None:
    plain, mtls = EXAMPLES / "dynamo-pd-scaledobjects.yaml", EXAMPLES / "dynamo-pd-scaledobjects-mtls.yaml"
    result = pd_scaler_check(plain, mtls)
    assert result.returncode == 1
    first, second = object_lines(plain), object_lines(mtls)
    assert [line for line in result.stdout.splitlines() if ": error: " in line] == [
        f"{mtls}:{second[name]}: ScaledObject default/{name}: spec.scaleTargetRef: error: RoleBasedGroupScalingAdapter "
        f"{name} is already the target of ScaledObject default/{name} ({plain}:{first[name]}): KEDA refuses a second "
        "ScaledObject on one target, or their two HPAs fight over its replicas; keep one"
        for name in ("dynamo-pd-prefill", "dynamo-pd-decoder")
    ]


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_the_ack_guides_nats_jetstream_trigger_is_flagged_with_the_trigger_to_paste(tmp_path: Path, via: str) -> None:
    result, shown = check_via(via, tmp_path, "scaledobject.yaml", ACK_GUIDE)
    assert result.returncode == 0
    assert result.stdout == (
        f"{shown}:{ACK_TRIGGER_LINES[0]}: {ACK_WARNING}\n{ACK_CONVERTED}\n"
        "1 files, 1 ScaledObjects, 1 triggers checked: 0 errors, 1 warnings\n"
    )


def test_the_pasted_trigger_passes_and_reads_what_the_built_in_read(tmp_path: Path) -> None:
    lines = ACK_GUIDE.splitlines()
    start, end = ACK_TRIGGER_LINES
    converted = "\n".join([*lines[: start - 1], ACK_CONVERTED, *lines[end:]]) + "\n"
    result = pd_scaler_check("-", stdin=converted)
    assert result.stdout == "1 files, 1 ScaledObjects, 1 triggers checked: 0 errors, 0 warnings\n"
    assert result.returncode == 0
    [trigger] = yaml.safe_load(converted)["spec"]["triggers"]
    spec = parse(trigger["metadata"])
    assert isinstance(spec, PrefillTrigger)
    assert (spec.jsz_url, spec.account, spec.stream, spec.consumer, spec.lag_threshold) == (
        "http://nats.default.svc.cluster.local:8222",
        "$G",
        "dynamo_prefill_queue",
        "worker-group",
        5.0,
    )


def test_a_kubectl_list_with_the_built_in_and_pd_scaler_on_one_adapter(tmp_path: Path) -> None:
    # What `kubectl get scaledobjects -o yaml` prints once both are applied.
    ack = yaml.safe_load(ACK_GUIDE)
    ack["metadata"]["namespace"] = "default"
    ours = next(d for d in yaml.safe_load_all((EXAMPLES / "dynamo-pd-scaledobjects.yaml").read_text()) if d)
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [ack, ours]}, sort_keys=False)
    path = write(tmp_path, "cluster.yaml", listed)
    for result, shown in ((pd_scaler_check(path), str(path)), (pd_scaler_check("-", stdin=listed), "<stdin>")):
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        trigger_line = line_of(listed, "type: nats-jetstream")
        # Each item's line: the first key of its mapping (after the list's `- `).
        items = [n for n, line in enumerate(listed.splitlines(), start=1) if line == "- apiVersion: keda.sh/v1alpha1"]
        assert len(items) == 2
        assert lines[0].startswith(f"{shown}:{trigger_line}: {ACK_WARNING}")
        assert lines[-2] == (
            f"{shown}:{items[1]}: ScaledObject default/dynamo-pd-prefill: spec.scaleTargetRef: error: "
            "RoleBasedGroupScalingAdapter dynamo-pd-prefill is already the target of ScaledObject "
            f"default/dynamo-prefill-scaledobject ({shown}:{items[0]}): KEDA refuses a second ScaledObject on one "
            "target, or their two HPAs fight over its replicas; keep one"
        )
        assert lines[-1] == "1 files, 2 ScaledObjects, 2 triggers checked: 1 errors, 1 warnings"


def test_each_mistake_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    manifest = write(tmp_path, "scaledobjects.yaml", BROKEN)
    result = pd_scaler_check(manifest, tmp_path / "missing.yaml")
    assert result.returncode == 1
    f, llm = str(manifest), "ScaledObject llm"
    typo = line_of(BROKEN, "lagTreshold") - 1
    value = line_of(BROKEN, "metricType: Value") - 1
    deployment = line_of(BROKEN, "role: decode") - 1
    zero = line_of(BROKEN, "metadata: {role: prefill") - 1
    assert result.stdout.splitlines() == [
        f"{f}:{typo}: {llm}/prefill-typo triggers[0]: metadata: error: unknown key 'lagTreshold' (did you mean "
        "'lagThreshold'?); prefill triggers accept: " + PREFILL_KEYS,
        # Invalid metadata does not hide the object's other mistakes.
        f"{f}:{value}: {llm}/value-metric triggers[0]: metadata: error: unknown key 'lag'; prefill triggers "
        "accept: " + PREFILL_KEYS,
        f"{f}:{value}: {llm}/value-metric triggers[0]: metricType: error: pd-scaler reports a total over the role "
        "with a per-replica target, which needs AverageValue (desired = ceil(total / target)); Value multiplies by "
        "the current replicas and overshoots",
        f"{f}:{value}: {llm}/value-metric triggers[0]: metadata.role: warning: role is 'prefill' but the target "
        "adapter 'dynamo-pd-decoder' looks like the decode role's",
        f"{f}:{deployment}: {llm}/decode-on-deployment triggers[0]: spec.scaleTargetRef.kind: error: decode finds "
        "its pods through a RoleBasedGroupScalingAdapter; with a Deployment target set metadata.podSelector",
        f"{f}:{deployment}: {llm}/decode-on-deployment triggers[0]: spec.minReplicaCount: warning: decode measures "
        "its running pods: at 0 replicas there is nothing to measure and nothing wakes the role; set "
        "minReplicaCount to 1 or more",
        f"{f}:{zero}: {llm}/prefill-from-zero triggers[0]: metadata.scalerAddress: error: KEDA needs scalerAddress: "
        "the pd-scaler Service, host:port",
        f"{f}:{zero}: {llm}/prefill-from-zero triggers[0]: type: warning: this role can scale to zero: use "
        "external-push, so the first queued request wakes it at once instead of at the next pollingInterval",
        f"{tmp_path / 'missing.yaml'}:0: file: -: error: cannot read: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'missing.yaml'}'",
        "2 files, 4 ScaledObjects, 5 triggers checked: 6 errors, 3 warnings",
    ]
    # The same manifest on stdin: the same findings, named <stdin>.
    from_stdin = pd_scaler_check("-", stdin=BROKEN)
    assert from_stdin.returncode == 1
    assert from_stdin.stdout.splitlines() == [
        *(line.replace(f, "<stdin>") for line in result.stdout.splitlines()[:-2]),
        "1 files, 4 ScaledObjects, 5 triggers checked: 5 errors, 3 warnings",
    ]


DECODE = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: llm}}
spec:
  scaleTargetRef: {{apiVersion: workloads.x-k8s.io/v1alpha1, kind: RoleBasedGroupScalingAdapter, name: pd-decode}}
  minReplicaCount: 1
  {max}triggers:
    - type: external
      metadata:
        scalerAddress: pd-scaler.keda.svc.cluster.local:9090
        role: decode
        prometheusAddress: http://prometheus:9090
{extra}"""


@pytest.mark.parametrize(
    ("extra", "max_replicas", "expected"),
    [
        ("", "", GPU_MEMORY_WARNING.format(given="no metric, so gpu-memory (the default)", max=100)),
        (
            "        metric: gpu-memory\n",
            "maxReplicaCount: 8\n  ",
            GPU_MEMORY_WARNING.format(given="metric: gpu-memory", max=8),
        ),
        ("        metric: kv-cache\n", "", KV_WARNING.format(t="0.8")),  # the default threshold
        ('        metric: kv-cache\n        threshold: "0.6"\n', "", KV_WARNING.format(t="0.6")),
        ('        metric: kv-cache\n        engine: sglang\n        threshold: "0.4"\n', "", None),
        ('        metric: gpu-util\n        threshold: "0.8"\n', "", None),
    ],
    ids=["gpu-memory-default", "gpu-memory", "kv-cache-default", "kv-cache-0.6", "kv-cache-0.4", "gpu-util"],
)
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_decode_signals_that_do_not_follow_load_are_warned_about(
    tmp_path: Path, extra: str, max_replicas: str, expected: str | None, via: str
) -> None:
    text = DECODE.format(name="decode", max=max_replicas, extra=extra)
    result, shown = check_via(via, tmp_path, "decode.yaml", text)
    assert result.returncode == 0
    trigger = line_of(text, "- type: external")
    findings = [f"{shown}:{trigger}: ScaledObject llm/decode triggers[0]: {expected}"] if expected else []
    assert result.stdout.splitlines() == [
        *findings,
        f"1 files, 1 ScaledObjects, 1 triggers checked: 0 errors, {len(findings)} warnings",
    ]


BUILT_IN_PROMETHEUS = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {adapter}, namespace: default}}
spec:
  scaleTargetRef: {{apiVersion: workloads.x-k8s.io/v1alpha1, kind: RoleBasedGroupScalingAdapter, name: {adapter}}}
  minReplicaCount: 1
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://prometheus-operated.monitoring.svc:9090
      query: {query}
      threshold: "{threshold}"
"""


@pytest.mark.parametrize(
    ("adapter", "query", "threshold", "converted", "note"),
    [
        (
            "dynamo-pd-decoder",
            'avg(DCGM_FI_DEV_FB_USED{pod=~"dynamo-pd-decoder.*"})',
            "60000",
            ["external", "decode", "metric: seats", "engine: vllm", "maxNumSeqs: '256'", "threshold: '0.8'"],
            "; maxNumSeqs is vLLM's default: set your engine's sequence limit",
        ),
        (
            "sglang-pd-prefill",
            'sum(sglang:num_queue_reqs{engine_type="prefill"})',
            "4",
            ["external-push", "prefill", "metric: engine-queue", "engine: sglang", "threshold: '4'"],
            "",
        ),
    ],
    ids=["decode-dcgm", "prefill-sglang-queue"],
)
def test_a_built_in_prometheus_trigger_becomes_the_roles_recommended_trigger(
    adapter: str, query: str, threshold: str, converted: list[str], note: str
) -> None:
    text = BUILT_IN_PROMETHEUS.format(adapter=adapter, query=query, threshold=threshold)
    result = pd_scaler_check("-", stdin=text)
    assert result.returncode == 0
    kind, role, *signal = converted
    assert result.stdout.splitlines() == [
        f"<stdin>:8: ScaledObject default/{adapter} triggers[0]: type: warning: KEDA's built-in prometheus "
        f"scaler on a RoleBasedGroupScalingAdapter: pd-scaler never sees this trigger; for the {role} role use the "
        f"pd-scaler trigger below (no counterpart for query, threshold){note}",
        f"  - type: {kind}",  # at the column of the trigger it replaces
        "    metadata:",
        "      scalerAddress: pd-scaler.keda.svc.cluster.local:9090",
        f"      role: {role}",
        "      prometheusAddress: http://prometheus-operated.monitoring.svc:9090",
        *(f"      {line}" for line in signal),
        "1 files, 1 ScaledObjects, 1 triggers checked: 0 errors, 1 warnings",
    ]
    pasted = text.split("  - type: prometheus")[0] + "\n".join(result.stdout.splitlines()[1:-1]) + "\n"
    assert pd_scaler_check("-", stdin=pasted).stdout == (
        "1 files, 1 ScaledObjects, 1 triggers checked: 0 errors, 0 warnings\n"
    )


def test_unreadable_yaml_on_stdin_is_one_error() -> None:
    result = pd_scaler_check("-", stdin="kind: ScaledObject\nspec: [unclosed\n")
    assert result.returncode == 1
    [error, summary] = result.stdout.splitlines()
    assert error.startswith("<stdin>:0: file: -: error: cannot read: while parsing a flow sequence")
    assert summary == "1 files, 0 ScaledObjects, 0 triggers checked: 1 errors, 0 warnings"


def test_the_readme_shows_what_check_prints_for_the_ack_guide(tmp_path: Path) -> None:
    write(tmp_path, "scaledobject.yaml", ACK_GUIDE)
    result = subprocess.run(
        [sys.executable, "-m", "scaler", "check", "scaledobject.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert f"```\n{result.stdout}```\n" in (ROOT / "README.md").read_text()


ADMITTED = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: prefill, namespace: other}
spec:
  scaleTargetRef: {apiVersion: workloads.x-k8s.io/v1alpha1, kind: RoleBasedGroupScalingAdapter, name: dynamo-pd-prefill}
  minReplicaCount: 1
  triggers:
    - type: external
      metadata: {scalerAddress: "pd-scaler.keda:9090", role: prefill, natsServer: "nats://nats.other:4222"}
"""


def test_check_reports_what_a_scaler_with_the_admission_flags_would_refuse(tmp_path: Path) -> None:
    path = write(tmp_path, "admitted.yaml", ADMITTED)
    assert pd_scaler_check(path).returncode == 0  # any namespace, any address
    result = subprocess.run(
        [sys.executable, "-m", "scaler", "check", "--namespaces", "dynamo", "--connections-only", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    at = f"{path}:{line_of(ADMITTED, 'type: external')}: ScaledObject other/prefill triggers[0]"
    assert result.stdout.splitlines() == [
        f"{at}: metadata.namespace: error: namespace 'other' is not served by this scaler (--namespaces dynamo)",
        f"{at}: metadata: error: key 'natsServer': this scaler only reaches sources through named connection "
        "profiles (--connections-only); use natsConnection",
        "1 files, 1 ScaledObjects, 1 triggers checked: 2 errors, 0 warnings",
    ]
    assert result.returncode == 1
