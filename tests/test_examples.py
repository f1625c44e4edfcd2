"""The manifests in deploy/examples: what a user applies is valid, and its pieces fit together.

Each ScaledObject's pd-scaler triggers pass the scaler's own metadata schema, dial the address the chart gives
the Service, and scale a RoleBasedGroupScalingAdapter that an example RoleBasedGroup asks RBG to create. The
mutual-TLS files agree with each other and with the chart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from scaler.triggers import DecodeTrigger, PrefillTrigger, parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "deploy" / "examples"
CHART = ROOT / "deploy" / "helm" / "pd-scaler"
KUBERNETES = "1.30"
# The chart installed as documented: `helm install pd-scaler deploy/helm/pd-scaler -n keda`.
SCALER_ADDRESS = "pd-scaler.keda.svc.cluster.local:9090"
CORE_KINDS = {"ConfigMap", "Service", "ServiceAccount", "Role", "RoleBinding", "Secret"}
ADAPTER_API_VERSIONS = {"workloads.x-k8s.io/v1alpha1", "workloads.x-k8s.io/v1alpha2"}
TLS_KEYS = {"enableTLS"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file, object) for every Kubernetes object in the examples; chart values files are not manifests."""
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        if path.name.endswith("-values.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return found


OBJECTS = manifests()


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for _, obj in OBJECTS if obj["kind"] == kind]


def named(kind: str, name: str, namespace: str = "default", file: str | None = None) -> dict[str, Any]:
    [obj] = [
        o
        for f, o in OBJECTS
        if o["kind"] == kind
        and (o["metadata"]["name"], o["metadata"].get("namespace")) == (name, namespace)
        and file in (None, f)
    ]
    return obj


def pd_scaler_triggers(scaled_object: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for trigger in scaled_object["spec"]["triggers"]:
        if trigger["type"] in ("external", "external-push"):
            yield trigger


def scaled_objects_by_file(name: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for f, o in OBJECTS if f == name and o["kind"] == "ScaledObject"}


def test_every_document_is_a_named_kubernetes_object() -> None:
    assert OBJECTS
    for file, obj in OBJECTS:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), file
        assert obj["metadata"]["name"], file


@pytest.mark.parametrize(("file", "obj"), [(f, o) for f, o in OBJECTS if o["kind"] in CORE_KINDS])
def test_core_objects_are_valid_kubernetes(file: str, obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{file}: {obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.absolute_path)}")


def test_role_pod_templates_are_valid_kubernetes() -> None:
    groups = of_kind("RoleBasedGroup")
    assert {g["metadata"]["name"] for g in groups} == {"dynamo-pd", "sglang-pd", "dynamo-disagg"}
    for group in groups:
        for role in group["spec"]["roles"]:
            template = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": f"{group['metadata']['name']}-{role['name']}"},
                "template": role["template"],
            }
            try:
                kubernetes_validate.validate(template, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{template['metadata']['name']}: {exc.message} at {list(exc.absolute_path)}")


def test_pd_scaler_triggers_pass_the_scalers_schema_and_dial_the_chart_service() -> None:
    scaled_objects = of_kind("ScaledObject")
    assert scaled_objects
    for scaled_object in scaled_objects:
        triggers = list(pd_scaler_triggers(scaled_object))
        assert triggers, scaled_object["metadata"]["name"]
        for trigger in triggers:
            metadata = trigger["metadata"]
            assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
            spec = parse(metadata)
            assert metadata["scalerAddress"] == SCALER_ADDRESS
            if isinstance(spec, PrefillTrigger):
                assert trigger["type"] == "external-push", "prefill wakes the role through StreamIsActive"
            else:
                assert isinstance(spec, DecodeTrigger)
            if spec.reads_pods or spec.metric == "prefill-tokens":  # Dynamo's frontend drops a model at 0
                assert scaled_object["spec"]["minReplicaCount"] >= 1, "measured on running pods"


def test_each_scaled_object_targets_an_adapter_rbg_creates_for_an_example_role() -> None:
    adapters = {
        (group["metadata"]["namespace"], f"{group['metadata']['name']}-{role['name']}")
        for group in of_kind("RoleBasedGroup")
        for role in group["spec"]["roles"]
        if role.get("scalingAdapter", {}).get("enable") is True
    }
    assert adapters == {
        ("default", "dynamo-pd-prefill"),
        ("default", "dynamo-pd-decoder"),
        ("default", "sglang-pd-prefill"),
        ("default", "sglang-pd-decode"),
        ("default", "dynamo-disagg-prefill"),
        ("default", "dynamo-disagg-decode"),
    }
    targets = set()
    for scaled_object in of_kind("ScaledObject"):
        ref = scaled_object["spec"]["scaleTargetRef"]
        assert ref["kind"] == "RoleBasedGroupScalingAdapter"
        assert ref["apiVersion"] in ADAPTER_API_VERSIONS
        targets.add((scaled_object["metadata"]["namespace"], ref["name"]))
    assert targets == adapters  # every role of every example scales


def test_dynamo_prefill_trigger_reads_the_queue_dynamo_fills() -> None:
    config = yaml.safe_load(named("ConfigMap", "dynamo-configs")["data"]["qwen3.yaml"])
    # Every prefill goes through the queue, so its backlog is the whole prefill load.
    assert (config["VllmWorker"]["remote-prefill"], config["VllmWorker"]["conditional-disagg"]) == (True, False)
    [trigger] = pd_scaler_triggers(named("ScaledObject", "dynamo-pd-prefill", file="dynamo-pd-scaledobjects.yaml"))
    spec = parse(trigger["metadata"])
    assert isinstance(spec, PrefillTrigger)
    assert (spec.stream, spec.consumer, spec.lag_threshold) == ("dynamo_prefill_queue", "worker-group", 5.0)
    roles = {r["name"]: r for r in named("RoleBasedGroup", "dynamo-pd")["spec"]["roles"]}
    assert {name: role["replicas"] for name, role in roles.items()} == {"processor": 1, "prefill": 2, "decoder": 1}
    nats = {e["name"]: e["value"] for e in roles["prefill"]["template"]["spec"]["containers"][0]["env"]}
    assert nats["NATS_SERVER"] == "nats://nats:4222"
    assert spec.nats_server == ("nats://nats.default.svc.cluster.local:4222",)


def test_mtls_scaled_objects_are_the_plain_ones_plus_tls() -> None:
    plain = scaled_objects_by_file("dynamo-pd-scaledobjects.yaml")
    tls = scaled_objects_by_file("dynamo-pd-scaledobjects-mtls.yaml")
    assert plain.keys() == tls.keys() == {"dynamo-pd-prefill", "dynamo-pd-decoder"}
    for name, scaled_object in tls.items():
        for plain_trigger, tls_trigger in zip(
            plain[name]["spec"]["triggers"], scaled_object["spec"]["triggers"], strict=True
        ):
            stripped = {k: v for k, v in tls_trigger.items() if k != "authenticationRef"}
            stripped["metadata"] = {k: v for k, v in tls_trigger["metadata"].items() if k not in TLS_KEYS}
            assert stripped == plain_trigger
        assert {k: v for k, v in scaled_object["spec"].items() if k != "triggers"} == {
            k: v for k, v in plain[name]["spec"].items() if k != "triggers"
        }


def test_tls_triggers_name_a_trigger_authentication_with_the_client_certificate() -> None:
    tls_triggers = [
        (so, t) for so in of_kind("ScaledObject") for t in pd_scaler_triggers(so) if "authenticationRef" in t
    ]
    assert tls_triggers
    for scaled_object, trigger in tls_triggers:
        assert trigger["metadata"]["enableTLS"] == "true"
        ref = trigger["authenticationRef"]
        assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        auth = named("TriggerAuthentication", ref["name"], scaled_object["metadata"]["namespace"])
        params = {p["parameter"]: (p["name"], p["key"]) for p in auth["spec"]["secretTargetRef"]}
        assert set(params) == {"caCert", "tlsClientCert", "tlsClientKey"}
        [secret] = {name for name, _ in params.values()}
        client = [c for c in of_kind("Certificate") if c["spec"]["secretName"] == secret]
        assert [c["metadata"]["namespace"] for c in client] == [auth["metadata"]["namespace"]]
        assert "client auth" in client[0]["spec"]["usages"]
        assert params == {
            "caCert": (secret, "ca.crt"),
            "tlsClientCert": (secret, "tls.crt"),
            "tlsClientKey": (secret, "tls.key"),
        }
    plain = [t for so in of_kind("ScaledObject") for t in pd_scaler_triggers(so) if "authenticationRef" not in t]
    assert all("enableTLS" not in t["metadata"] for t in plain)


def test_mtls_values_serve_the_certificate_named_for_the_scaler_address() -> None:
    values = yaml.safe_load((EXAMPLES / "pd-scaler-mtls-values.yaml").read_text())
    report = helm_python.lint(CHART, values, strict=True, namespace="keda")
    assert report["errors"] == []
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="pd-scaler", namespace="keda")["pd-scaler/templates/deployment.yaml"]
    env = {e["name"] for e in yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"PD_SCALER_TLS_CERT", "PD_SCALER_TLS_KEY", "PD_SCALER_TLS_CLIENT_CA"} <= env
    [server] = [c for c in of_kind("Certificate") if c["spec"]["secretName"] == values["tls"]["secretName"]]
    assert server["metadata"]["namespace"] == "keda"
    assert SCALER_ADDRESS.rsplit(":", 1)[0] in server["spec"]["dnsNames"]
    assert "server auth" in server["spec"]["usages"]
    # Server and client certificates come from one CA: the one mutual TLS checks clients against.
    [client] = [c for c in of_kind("Certificate") if "client auth" in c["spec"].get("usages", [])]
    assert client["spec"]["issuerRef"] == server["spec"]["issuerRef"]
    assert values["tls"]["clientCA"]["secretName"] == server["spec"]["secretName"]


def _command(group: str, role: str) -> str:
    roles = {r["name"]: r for r in named("RoleBasedGroup", group)["spec"]["roles"]}
    [container] = roles[role]["template"]["spec"]["containers"]
    return " ".join(container["command"])


def _container(group: str, role: str) -> dict[str, Any]:
    roles = {r["name"]: r for r in named("RoleBasedGroup", group)["spec"]["roles"]}
    [container] = roles[role]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize(
    ("scaled_object", "group", "role", "limit_flag"),
    [
        ("sglang-pd-decode", "sglang-pd", "decode", "--max-running-requests"),
        ("dynamo-disagg-decode", "dynamo-disagg", "decode", "--max-num-seqs"),
    ],
)
def test_decode_seats_repeat_the_engine_s_limit_and_scrape_its_metrics_port(
    scaled_object: str, group: str, role: str, limit_flag: str
) -> None:
    [trigger] = pd_scaler_triggers(named("ScaledObject", scaled_object))
    spec = parse(trigger["metadata"])
    assert isinstance(spec, DecodeTrigger)
    assert (spec.metric, spec.scrape) == ("seats", "pods")
    words = _command(group, role).split()
    assert words[words.index(limit_flag) + 1] == str(spec.max_num_seqs)
    ports = {p["containerPort"] for p in _container(group, role).get("ports", [])}
    assert spec.port in ports


def test_recommended_decode_signal_everywhere() -> None:
    """Every shipped decode trigger scales on seats (kv-cache saturates on seats first; gpu-memory is flat)."""
    decode = [parse(t["metadata"]) for so in of_kind("ScaledObject") for t in pd_scaler_triggers(so)]
    assert {s.metric for s in decode if isinstance(s, DecodeTrigger)} == {"seats"}


def test_every_prefill_scaled_object_scales_down_gradually() -> None:
    """A queue that empties must not take every replica with it: a stabilization window and a rate limit."""
    for scaled_object in of_kind("ScaledObject"):
        if not any(isinstance(parse(t["metadata"]), PrefillTrigger) for t in pd_scaler_triggers(scaled_object)):
            continue
        down = scaled_object["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300, scaled_object["metadata"]["name"]
        assert [p["type"] for p in down["policies"]] == ["Pods"]
        assert all(p["value"] == 1 for p in down["policies"])


def test_current_dynamo_prefill_reads_its_own_deployment_s_frontend() -> None:
    [trigger] = pd_scaler_triggers(named("ScaledObject", "dynamo-disagg-prefill"))
    spec = parse(trigger["metadata"])
    assert isinstance(spec, PrefillTrigger)
    assert (spec.metric, spec.engine, spec.nats_server) == ("prefill-tokens", "dynamo", None)
    env = {e["name"]: e["value"] for e in _container("dynamo-disagg", "frontend")["env"]}
    assert [(m.label, m.op, m.value) for m in spec.matchers] == [("dynamo_namespace", "=", env["DYN_NAMESPACE"])]
