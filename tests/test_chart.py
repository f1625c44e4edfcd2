"""The Helm chart (deploy/helm/pd-scaler), rendered and linted by the real Helm SDK.

What a user installs must be valid Kubernetes, reach pd-scaler the way KEDA dials it (headless Service, named
ports), hold only read access, run locked down, and hand `pd-scaler serve` settings it accepts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from scaler.cli import ENV_PREFIX, parser
from scaler.connections import Connections

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "pd-scaler"
RELEASE, NAMESPACE = "pd-scaler", "keda"
KUBERNETES = "1.30"

# Everything on: Prometheus Operator objects, dashboard, mutual TLS (client CA from its own Secret), profiles.
ALL_ON: dict[str, Any] = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "dashboard": {"enabled": True, "namespace": "monitoring"},
    "tls": {
        "enabled": True,
        "secretName": "pd-scaler-tls",
        "clientCA": {"enabled": True, "secretName": "pd-scaler-client-ca", "key": "ca.pem"},
    },
    "config": {"namespaces": ["dynamo", "sglang"], "connectionsOnly": True},
    "connections": {
        "nats": {
            "dynamo": {
                "servers": ["nats://nats.default.svc.cluster.local:4222"],
                "user": "prefill-scaler",
                "password": "s3cret",
            }
        },
        "prometheus": {
            "monitoring": {
                "url": "https://prometheus.monitoring.svc:9090",
                "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            }
        },
    },
}
EXISTING_SECRET: dict[str, Any] = {
    "connections": {"existingSecret": "scaler-profiles", "existingSecretKey": "profiles.yaml"},
}
VALUE_SETS = {"default": None, "all-on": ALL_ON, "existing-secret": EXISTING_SECRET}

CORE_KINDS = {
    "NetworkPolicy",
    "Deployment",
    "Service",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodDisruptionBudget",
    "Secret",
    "ConfigMap",
}
READ_VERBS = {"get", "list", "watch"}
BASE_KINDS = (
    *("Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"),
    *("PodDisruptionBudget", "NetworkPolicy"),
)


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm_python.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["pd-scaler"]
    return containers[0]


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objects)["env"]}


def secret_file(objects: list[dict[str, Any]], path: str) -> tuple[str, str]:
    """(Secret name, key) behind a file path in the pd-scaler container, followed through mounts and volumes."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    file = PurePosixPath(path)
    mounts = [m for m in container(objects)["volumeMounts"] if PurePosixPath(m["mountPath"]) in file.parents]
    assert len(mounts) == 1, f"{path} is under {len(mounts)} mounts"
    assert mounts[0]["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    relative = str(file.relative_to(mounts[0]["mountPath"]))
    keys = [item["key"] for item in volume["secret"]["items"] if item["path"] == relative]
    assert len(keys) == 1, f"{relative} is not one item of volume {volume['name']}"
    return volume["secret"]["secretName"], keys[0]


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_finds_nothing_above_info(values: dict[str, Any] | None) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBERNETES}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        (None, {*BASE_KINDS}),
        (ALL_ON, {*BASE_KINDS, "Secret", "ConfigMap", "ServiceMonitor", "PrometheusRule"}),
        (EXISTING_SECRET, {*BASE_KINDS}),
    ],
    ids=VALUE_SETS.keys(),
)
def test_core_objects_are_valid_kubernetes(
    chart: helm_python.Chart, values: dict[str, Any] | None, kinds: set[str]
) -> None:
    objects = render(chart, values)
    assert {o["kind"] for o in objects} == kinds
    for obj in objects:
        if obj["kind"] in CORE_KINDS:
            try:
                kubernetes_validate.validate(obj, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.absolute_path)}")
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            expected = "monitoring" if obj["kind"] == "ConfigMap" else NAMESPACE
            assert obj["metadata"]["namespace"] == expected, obj["kind"]


def test_service_is_headless_with_the_grpc_and_metrics_ports_named(chart: helm_python.Chart) -> None:
    objects = render(chart, None)
    service = one(objects, "Service")
    assert service["metadata"]["name"] == "pd-scaler"
    assert service["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("grpc", 9090, "grpc"),
        ("metrics", 8080, "metrics"),
    ]
    assert [(p["name"], p["containerPort"]) for p in container(objects)["ports"]] == [
        ("grpc", 9090),
        ("metrics", 8080),
    ]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_notes_give_the_address_triggers_dial(chart: helm_python.Chart) -> None:
    notes = chart.render(None, name=RELEASE, namespace=NAMESPACE)["pd-scaler/templates/NOTES.txt"]
    assert "scalerAddress: pd-scaler.keda.svc.cluster.local:9090" in notes
    other = chart.render(None, name="scaler", namespace="autoscaling")["pd-scaler/templates/NOTES.txt"]
    assert "scalerAddress: scaler-pd-scaler.autoscaling.svc.cluster.local:9090" in other


def test_rbac_is_read_only_and_exactly_what_discovery_needs(chart: helm_python.Chart) -> None:
    objects = render(chart, None)
    rules = one(objects, "ClusterRole")["rules"]
    assert rules == [
        {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["get"]},
        {
            "apiGroups": ["workloads.x-k8s.io"],
            "resources": ["rolebasedgroupscalingadapters"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    ]
    assert all(set(rule["verbs"]) <= READ_VERBS for rule in rules)
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(objects, "ClusterRole")["metadata"]["name"],
    }
    account = one(objects, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert pod["automountServiceAccountToken"] is True


def test_pod_runs_locked_down_with_a_writable_tmp(chart: helm_python.Chart) -> None:
    objects = render(chart, None)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(objects)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container(objects)["volumeMounts"]
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp


def test_two_replicas_spread_over_nodes_kept_by_a_disruption_budget(chart: helm_python.Chart) -> None:
    objects = render(chart, None)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [term] = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    resources = container(objects)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_probes_use_the_http_endpoints_so_they_work_with_grpc_tls(chart: helm_python.Chart) -> None:
    for values in (None, ALL_ON):
        main = container(render(chart, values))
        assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_env_is_what_pd_scaler_serve_accepts(
    chart: helm_python.Chart, values: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(chart, values)
    main = container(objects)
    assert main["args"] == ["serve"]
    variables = env(objects)
    assert all(name.startswith(ENV_PREFIX) for name in variables)
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)  # only what the chart sets
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    serve = parser().parse_args(["serve"])  # the real CLI reads PD_SCALER_*; a bad value exits
    flags = {ENV_PREFIX + k.upper() for k in vars(serve) if k != "command"}
    assert set(variables) <= flags
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert (serve.grpc_port, serve.http_port) == (ports["grpc"], ports["metrics"]) == (9090, 8080)
    assert (serve.refresh_interval, serve.source_idle_timeout, serve.kube_refresh_interval) == (1.0, 300.0, 5.0)
    assert (serve.log_format, serve.log_level, serve.kubeconfig) == ("json", "info", None)


def test_without_tls_the_scaler_serves_plain_grpc(chart: helm_python.Chart) -> None:
    objects = render(chart, None)
    assert not {"PD_SCALER_TLS_CERT", "PD_SCALER_TLS_KEY", "PD_SCALER_TLS_CLIENT_CA"} & env(objects).keys()
    assert {m["name"] for m in container(objects)["volumeMounts"]} == {"tmp"}


def test_mutual_tls_mounts_the_certificate_key_and_client_ca_the_env_names(chart: helm_python.Chart) -> None:
    objects = render(chart, ALL_ON)
    variables = env(objects)
    assert secret_file(objects, variables["PD_SCALER_TLS_CERT"]) == ("pd-scaler-tls", "tls.crt")
    assert secret_file(objects, variables["PD_SCALER_TLS_KEY"]) == ("pd-scaler-tls", "tls.key")
    assert secret_file(objects, variables["PD_SCALER_TLS_CLIENT_CA"]) == ("pd-scaler-client-ca", "ca.pem")


def test_server_tls_alone_sets_no_client_ca(chart: helm_python.Chart) -> None:
    objects = render(chart, {"tls": {"enabled": True, "secretName": "pd-scaler-tls"}})
    variables = env(objects)
    assert secret_file(objects, variables["PD_SCALER_TLS_CERT"]) == ("pd-scaler-tls", "tls.crt")
    assert "PD_SCALER_TLS_CLIENT_CA" not in variables


def test_mutual_tls_without_a_server_certificate_is_refused(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"tls.clientCA.enabled \(mutual TLS\) needs tls.enabled"):
        chart.render({"tls": {"clientCA": {"enabled": True}}}, name=RELEASE, namespace=NAMESPACE)


def test_profiles_from_values_become_a_secret_pd_scaler_loads(chart: helm_python.Chart) -> None:
    objects = render(chart, ALL_ON)
    name, key = secret_file(objects, env(objects)["PD_SCALER_CONNECTIONS"])
    secret = one(objects, "Secret")
    assert (secret["metadata"]["name"], secret["type"]) == (name, "Opaque")
    assert set(secret["stringData"]) == {key}
    loaded = Connections.model_validate(yaml.safe_load(secret["stringData"][key]))
    dynamo = loaded.nats_profile("dynamo")
    assert dynamo.servers == ("nats://nats.default.svc.cluster.local:4222",)
    assert (dynamo.user, dynamo.password and dynamo.password.get_secret_value()) == ("prefill-scaler", "s3cret")
    monitoring = loaded.prometheus_profile("monitoring")
    assert monitoring.url == "https://prometheus.monitoring.svc:9090"
    assert str(monitoring.bearer_token_file) == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_changing_a_profile_rolls_the_pods(chart: helm_python.Chart) -> None:
    def checksum(password: str) -> str:
        values = json.loads(json.dumps(ALL_ON))
        values["connections"]["nats"]["dynamo"]["password"] = password
        annotations = one(render(chart, values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/connections"])

    assert checksum("s3cret") == checksum("s3cret")
    assert checksum("s3cret") != checksum("rotated")


def test_profiles_from_an_existing_secret_are_mounted_not_rendered(chart: helm_python.Chart) -> None:
    objects = render(chart, EXISTING_SECRET)
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert secret_file(objects, env(objects)["PD_SCALER_CONNECTIONS"]) == ("scaler-profiles", "profiles.yaml")
    assert "annotations" not in one(objects, "Deployment")["spec"]["template"]["metadata"]


def test_service_monitor_scrapes_metrics_and_keeps_scaledobject_namespaces(chart: helm_python.Chart) -> None:
    objects = render(chart, ALL_ON)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(objects, "Service")["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == ("metrics", "/metrics", True)


def test_prometheus_rule_carries_the_shipped_alerts(chart: helm_python.Chart) -> None:
    rule = one(render(chart, ALL_ON), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    shipped = yaml.safe_load((CHART / "files" / "pd-scaler.rules.yaml").read_text())["groups"]
    assert rule["spec"]["groups"] == shipped
    alerts = {r["alert"]: r for group in shipped for r in group["rules"]}
    assert {"PdScalerDown", "PdScalerSourceDown", "PdScalerSourceStale"} <= alerts.keys()
    assert [a for a in alerts if a.startswith("PdScalerGrpcError")]
    assert (alerts["PdScalerSourceDown"]["expr"], alerts["PdScalerSourceDown"]["for"]) == (
        "max without (instance, pod) (pd_scaler_source_up == 0)",
        "2m",
    )


def test_prometheus_rule_groups_can_be_replaced(chart: helm_python.Chart) -> None:
    own = [{"name": "mine", "rules": [{"alert": "Mine", "expr": "vector(1)"}]}]
    rule = one(render(chart, {"prometheusRule": {"enabled": True, "groups": own}}), "PrometheusRule")
    assert rule["spec"]["groups"] == own


def test_dashboard_config_map_is_picked_up_by_the_grafana_sidecar(chart: helm_python.Chart) -> None:
    config_map = one(render(chart, ALL_ON), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    [(name, text)] = config_map["data"].items()
    assert name.endswith(".json")
    shipped = (CHART / "dashboards" / "pd-scaler.json").read_text()
    assert text == shipped.rstrip("\n")
    assert json.loads(text)["panels"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"replicaCont": 2}, "additional properties 'replicaCont' not allowed"),
        ({"ports": {"grpc": 70000}}, "at '/ports/grpc'"),
        ({"config": {"logFormat": "xml"}}, "at '/config/logFormat'"),
        ({"config": {"refreshInterval": "1 sec"}}, "at '/config/refreshInterval'"),
        ({"tls": {"enabled": True}}, "at '/tls/secretName'"),
        ({"connections": {"nats": {"dynamo": {"server": ["nats://nats:4222"]}}}}, "missing property 'servers'"),
        ({"connections": {"prometheus": {"p": {"url": "prometheus:9090"}}}}, "at '/connections/prometheus/p/url'"),
        ({"config": {"namespaces": "dynamo"}}, "at '/config/namespaces'"),
        ({"networkPolicy": {"keda": {"podLabels": {"app": 1}}}}, "at '/networkPolicy/keda/podLabels/app'"),
    ],
    ids=[
        *("replicaCount", "typo", "port", "logFormat", "duration", "tls-no-secret", "nats-profile", "prometheus-url"),
        *("namespaces-not-a-list", "label-not-a-string"),
    ],
)
def test_values_schema_refuses_wrong_values(
    chart: helm_python.Chart, values: Mapping[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart.render(dict(values), name=RELEASE, namespace=NAMESPACE)
    assert complaint in str(refused.value)
    report = helm_python.lint(CHART, dict(values), namespace=NAMESPACE)
    assert any(complaint in error for error in report["errors"])


def test_values_schema_covers_every_default_value(chart: helm_python.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def uncovered(values: Mapping[str, Any], node: Mapping[str, Any], where: str) -> Iterator[str]:
        for key, value in values.items():
            sub = node.get("properties", {}).get(key)
            if sub is None:
                yield f"{where}.{key}"
            elif "type" not in sub:
                yield f"{where}.{key} (no type)"
            elif isinstance(value, dict) and "properties" in sub:
                yield from uncovered(value, sub, f"{where}.{key}")

    assert list(uncovered(chart.values, schema, "")) == []


def _ingress_peers(rule: dict[str, Any]) -> list[tuple[list[str], dict[str, str]]]:
    peers = []
    for peer in rule["from"]:
        [expression] = peer["namespaceSelector"]["matchExpressions"]
        assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
        peers.append((expression["values"], peer["podSelector"]["matchLabels"]))
    return peers


def test_by_default_only_keda_reaches_grpc_and_only_prometheus_reaches_http(chart: helm_python.Chart) -> None:
    objects = render(chart, None)
    policy = one(objects, "NetworkPolicy")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    grpc_rule, http_rule = policy["ingress"]
    ports = {p["name"] for p in container(objects)["ports"]}
    assert [(p["port"], p["protocol"]) for p in grpc_rule["ports"]] == [("grpc", "TCP")]
    assert [(p["port"], p["protocol"]) for p in http_rule["ports"]] == [("metrics", "TCP")]
    assert {"grpc", "metrics"} <= ports
    assert _ingress_peers(grpc_rule) == [([NAMESPACE], {"app": "keda-operator"})]
    assert _ingress_peers(http_rule) == [(["monitoring"], {"app.kubernetes.io/name": "prometheus"})]


def test_network_policy_peers_and_extra_rules_come_from_values(chart: helm_python.Chart) -> None:
    extra = {"from": [{"podSelector": {"matchLabels": {"app": "status-proxy"}}}], "ports": [{"port": "metrics"}]}
    values = {
        "networkPolicy": {
            "keda": {"namespaces": ["keda", "keda-canary"], "podLabels": {"app.kubernetes.io/name": "keda-operator"}},
            "prometheus": {"namespaces": []},
            "extraIngress": [extra],
        }
    }
    policy = one(render(chart, values), "NetworkPolicy")["spec"]
    grpc_rule, extra_rule = policy["ingress"]
    assert _ingress_peers(grpc_rule) == [(["keda", "keda-canary"], {"app.kubernetes.io/name": "keda-operator"})]
    assert extra_rule == extra
    assert not [o for o in render(chart, {"networkPolicy": {"enabled": False}}) if o["kind"] == "NetworkPolicy"]


def test_http_local_only_keeps_the_pages_on_localhost_and_admits_no_scraper(chart: helm_python.Chart) -> None:
    objects = render(chart, {"config": {"httpLocalOnly": True}})
    assert env(objects)["PD_SCALER_HTTP_LOCAL_ONLY"] == "true"
    [grpc_rule] = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [p["port"] for p in grpc_rule["ports"]] == ["grpc"]
    main = container(objects)  # the kubelet still probes over the pod's address
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    with pytest.raises(helm_python.HelmRenderError, match=r"config\.httpLocalOnly answers /metrics only on localhost"):
        chart.render(
            {"config": {"httpLocalOnly": True}, "serviceMonitor": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE
        )


def test_namespaces_and_sources_reach_pd_scaler_serve(
    chart: helm_python.Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"config": {"namespaces": ["dynamo", "sglang"], "allowedSources": ["nats://*.svc:4222"]}}
    variables = env(render(chart, values))
    assert "PD_SCALER_CONNECTIONS_ONLY" not in variables
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    serve = parser().parse_args(["serve"])
    assert (serve.namespaces, serve.allowed_sources, serve.connections_only) == (
        ("dynamo", "sglang"),
        ("nats://*.svc:4222",),
        False,
    )
    all_on = env(render(chart, ALL_ON))
    assert (all_on["PD_SCALER_NAMESPACES"], all_on["PD_SCALER_CONNECTIONS_ONLY"]) == ("dynamo,sglang", "true")
