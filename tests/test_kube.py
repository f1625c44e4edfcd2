"""Role discovery through the official kubernetes client, against the API-faithful server in tests/kubeapi.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from scaler.errors import InvalidTrigger, NotFound, SourceUnavailable
from scaler.kube import RolePods, RoleSource, check_bound, load_api_client
from scaler.metrics import Metrics
from scaler.observations import ReadySpan
from tests.kubeapi import (
    ADAPTERS,
    RBG_GROUP,
    SCALEDOBJECTS,
    KubeAPI,
    install_dynamo_pd,
    pod,
    role_labels,
    role_selector,
    scaled_object,
    scaling_adapter,
)

NS = "llm"
DECODER = "dynamo-pd-decoder"
ADAPTER = ADAPTERS.qualified
SO = SCALEDOBJECTS.qualified
Opener = Callable[..., Coroutine[Any, Any, RoleSource]]


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client takes proxies from the environment; the test server is on loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        yield api


@pytest.fixture
def api_client(kube: KubeAPI, tmp_path: Path) -> Iterator[ApiClient]:
    with load_api_client(kube.write_kubeconfig(tmp_path / "kubeconfig")) as client:
        yield client


@pytest.fixture
async def open_source(api_client: ApiClient) -> AsyncIterator[Opener]:
    """Start a RoleSource and wait for its first fetch; every source is stopped after the test."""
    sources: list[RoleSource] = []

    async def open_(scaledobject: str = DECODER, *, client: ApiClient | None = None, **kwargs: Any) -> RoleSource:
        source = RoleSource(client or api_client, NS, scaledobject, 60.0, Metrics(), **kwargs)
        sources.append(source)
        source.start()
        await source.settled(5)
        return source

    yield open_
    for source in sources:
        await source.stop()


async def refresh(source: RoleSource) -> None:
    source.refresh_soon()
    await asyncio.wait_for(source.next_update(), 5)


def adapter_versions(kube: KubeAPI) -> list[str | None]:
    return [r.version for r in kube.requests_for(ADAPTER)]


def last_error(source: RoleSource) -> str:
    """What a reader sees while the source has never succeeded."""
    with pytest.raises(SourceUnavailable) as info:
        source.read(max_age=30)
    prefix = f"{source.name}: no sample yet; last error: "
    assert info.value.message.startswith(prefix)
    return info.value.message.removeprefix(prefix)


# --- resolving a role's pods ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "selector"),
    [
        ("v1alpha1", "rolebasedgroup.workloads.x-k8s.io/name=dynamo-pd,rolebasedgroup.workloads.x-k8s.io/role=decoder"),
        ("v1alpha2", "rbg.workloads.x-k8s.io/group-name=dynamo-pd,rbg.workloads.x-k8s.io/role-name=decoder"),
    ],
)
async def test_adapter_selector_resolves_to_exactly_the_decode_pods(
    kube: KubeAPI, open_source: Opener, version: str, selector: str
) -> None:
    if version == "v1alpha1":
        kube.serve(RBG_GROUP, "v1alpha1")  # RBG <= v0.6
    pd = install_dynamo_pd(kube, NS, version=version)
    # Same labels in another namespace, and a prefill pod on the decode pod's node: neither is the role's.
    kube.put(pod("dynamo-pd-decoder-0", "other", role_labels("dynamo-pd", "decoder", version)))
    kube.put(pod("dynamo-pd-prefill-extra", NS, role_labels("dynamo-pd", "prefill", version), node="gpu-node-0"))

    source = await open_source(pd.decoder)

    assert source.read(max_age=30) == RolePods(
        namespace=NS,
        scaledobject=DECODER,
        adapter=DECODER,
        rolebasedgroup="dynamo-pd",
        role="decoder",
        phase="Bound",
        replicas=2,
        selector=selector,
        pods=("dynamo-pd-decoder-0", "dynamo-pd-decoder-1"),
        addresses={"dynamo-pd-decoder-0": "10.0.0.1", "dynamo-pd-decoder-1": "10.0.0.1"},
        ready=("dynamo-pd-decoder-0", "dynamo-pd-decoder-1"),
    )
    assert check_bound(source.read(max_age=30)).pods == pd.decode_pods
    assert source.name == "kubernetes scaledobject llm/dynamo-pd-decoder"
    # The selector went to the server: filtering happens there, not on a list of every pod.
    (pods_request,) = kube.requests_for("pods")
    assert pods_request.path == "/api/v1/namespaces/llm/pods"
    assert pods_request.query == {"labelSelector": selector}
    assert adapter_versions(kube) == [version]


async def test_the_prefill_scaledobject_gets_the_prefill_pods(kube: KubeAPI, open_source: Opener) -> None:
    pd = install_dynamo_pd(kube, NS, pods_per_role=3)
    source = await open_source(pd.prefill)
    assert source.read(max_age=30).pods == ("dynamo-pd-prefill-0", "dynamo-pd-prefill-1", "dynamo-pd-prefill-2")
    assert source.read(max_age=30).role == "prefill"


async def test_the_ready_pods_are_kept_over_time_and_a_failed_listing_breaks_the_record(
    kube: KubeAPI, api_client: ApiClient
) -> None:
    pd = install_dynamo_pd(kube, NS, pods_per_role=3)
    labels = role_labels("dynamo-pd", "prefill")
    kube.put(pod("dynamo-pd-prefill-2", NS, labels, phase="Pending"))  # scheduled, not ready: listed, not counted
    clock = ManualClock()
    source = RoleSource(api_client, NS, pd.prefill, 5.0, Metrics(), clock)
    for t in (1000.0, 1005.0):
        clock.now = t
        await source.refresh()
    assert source.read(max_age=30).pods == pd.prefill_pods
    assert source.read(max_age=30).ready == ("dynamo-pd-prefill-0", "dynamo-pd-prefill-1")
    kube.put(pod("dynamo-pd-prefill-2", NS, labels))
    clock.now = 1010.0
    await source.refresh()
    kube.forbid("pods", "list")
    clock.now = 1015.0
    await source.refresh()
    kube.clear_faults()
    clock.now = 1020.0
    await source.refresh()
    assert source.ready_history(max_age=30).spans == (
        ReadySpan(1000.0, 1005.0, 2),
        ReadySpan(1010.0, 1010.0, 3),
        ReadySpan(1020.0, 1020.0, 3),  # the same count, but nothing is known of 1010..1020
    )
    kube.patch_status(ADAPTER, NS, pd.prefill, phase="NotBound")
    clock.now = 1025.0
    await source.refresh()
    with pytest.raises(SourceUnavailable, match="is NotBound, not Bound"):
        source.ready_history(max_age=30)
    await source.stop()


async def test_api_version_is_taken_from_scale_target_ref(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS, version="v1alpha2")
    kube.put(scaled_object(DECODER, NS, DECODER, api_version=f"{RBG_GROUP}/v1alpha1"))

    source = await open_source()

    assert source.read(max_age=30).pods == ("dynamo-pd-decoder-0", "dynamo-pd-decoder-1")
    assert adapter_versions(kube) == ["v1alpha1"]


async def test_without_api_version_falls_back_from_v1alpha2_to_v1alpha1(kube: KubeAPI, open_source: Opener) -> None:
    kube.serve(RBG_GROUP, "v1alpha1")  # RBG <= v0.6: v1alpha2 answers 404 "page not found"
    install_dynamo_pd(kube, NS, version="v1alpha1", ref_api_version=False)

    source = await open_source()

    assert source.read(max_age=30).pods == ("dynamo-pd-decoder-0", "dynamo-pd-decoder-1")
    assert adapter_versions(kube) == ["v1alpha2", "v1alpha1"]
    # The version that answered is tried first from then on.
    kube.clear_requests()
    await refresh(source)
    assert adapter_versions(kube) == ["v1alpha1"]


async def test_without_api_version_uses_v1alpha2_where_served(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS, version="v1alpha2", ref_api_version=False)
    source = await open_source()
    assert source.read(max_age=30).pods == ("dynamo-pd-decoder-0", "dynamo-pd-decoder-1")
    assert adapter_versions(kube) == ["v1alpha2"]


async def test_finished_and_terminating_pods_are_left_out(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    labels = role_labels("dynamo-pd", "decoder")
    kube.put(
        pod("dynamo-pd-decoder-done", NS, labels, phase="Succeeded"),
        pod("dynamo-pd-decoder-crashed", NS, labels, phase="Failed"),
        pod("dynamo-pd-decoder-leaving", NS, labels, deleting=True),
        pod("dynamo-pd-decoder-starting", NS, labels, phase="Pending"),
    )
    source = await open_source()
    assert source.read(max_age=30).pods == ("dynamo-pd-decoder-0", "dynamo-pd-decoder-1", "dynamo-pd-decoder-starting")


async def test_a_refresh_sees_pods_come_and_go(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    source = await open_source()
    kube.delete("pods", NS, "dynamo-pd-decoder-0")
    kube.put(pod("dynamo-pd-decoder-2", NS, role_labels("dynamo-pd", "decoder")))
    await refresh(source)
    assert source.read(max_age=30).pods == ("dynamo-pd-decoder-1", "dynamo-pd-decoder-2")


# --- podSelector override ---------------------------------------------------------------------------------------


async def test_pod_selector_lists_only_pods(kube: KubeAPI, open_source: Opener) -> None:
    kube.put(
        pod("web-0", NS, {"app": "engine", "tier": "decode"}),
        pod("web-1", NS, {"app": "engine", "tier": "decode", "canary": "true"}),
        pod("web-2", NS, {"app": "engine", "tier": "prefill"}),
        pod("web-3", NS, {"app": "other", "tier": "decode"}),
    )
    selector = "app=engine,tier in (decode),!canary"

    # Shared by every ScaledObject naming the selector: no ScaledObject is read.
    source = await open_source(None, pod_selector=selector)

    rp = source.read(max_age=30)
    assert rp == RolePods(
        NS, None, None, None, None, None, None, selector, ("web-0",), {"web-0": "10.0.0.1"}, ("web-0",)
    )
    assert check_bound(rp) is rp
    assert [(r.resource, r.query) for r in kube.requests] == [("pods", {"labelSelector": selector})]
    assert source.name == "kubernetes pods llm podSelector='app=engine,tier in (decode),!canary'"


async def test_an_invalid_pod_selector_is_an_invalid_trigger(kube: KubeAPI, open_source: Opener) -> None:
    source = await open_source("web", pod_selector="tier in decode")
    with pytest.raises(InvalidTrigger) as info:
        source.read(max_age=30)
    assert info.value.message == (
        "podSelector 'tier in decode' is not a valid label selector:"
        " unable to parse requirement: found 'decode', expected: '('"
    )


# --- adapter not bound ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "state"), [("NotBound", "is NotBound"), (None, "has no status.phase yet")])
async def test_an_unbound_adapter_has_no_pods_and_check_bound_says_why(
    kube: KubeAPI, open_source: Opener, phase: str | None, state: str
) -> None:
    install_dynamo_pd(kube, NS)
    kube.put(scaling_adapter("dynamo-pd", "decoder", NS, phase=phase))
    kube.clear_requests()

    source = await open_source()

    rp = source.read(max_age=30)
    assert (rp.phase, rp.selector, rp.pods, rp.bound) == (phase, "", (), False)
    assert kube.requests_for("pods") == []
    with pytest.raises(SourceUnavailable) as info:
        check_bound(rp)
    assert info.value.message == (
        f"RoleBasedGroupScalingAdapter llm/dynamo-pd-decoder {state}, not Bound: the RBG controller binds only the"
        " adapters it creates itself, for roles with scalingAdapter.enable: true"
        " (RoleBasedGroup 'dynamo-pd', role 'decoder')"
    )


async def test_an_adapter_becoming_bound_is_seen_on_refresh(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    kube.put(scaling_adapter("dynamo-pd", "decoder", NS, phase="NotBound"))
    source = await open_source()
    assert not source.read(max_age=30).bound

    kube.patch_status(ADAPTER, NS, DECODER, phase="Bound", selector=role_selector("dynamo-pd", "decoder"))
    await refresh(source)

    assert check_bound(source.read(max_age=30)).pods == ("dynamo-pd-decoder-0", "dynamo-pd-decoder-1")


# --- not found --------------------------------------------------------------------------------------------------


async def test_a_missing_scaledobject_is_not_found(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    source = await open_source("nope")
    with pytest.raises(NotFound) as info:
        source.read(max_age=30)
    assert info.value.message == "ScaledObject llm/nope not found"


@pytest.mark.parametrize("ref_api_version", [True, False])
async def test_a_missing_adapter_is_not_found(kube: KubeAPI, open_source: Opener, ref_api_version: bool) -> None:
    install_dynamo_pd(kube, NS, ref_api_version=ref_api_version)
    kube.delete(ADAPTER, NS, DECODER)

    source = await open_source()

    with pytest.raises(NotFound) as info:
        source.read(max_age=30)
    assert info.value.message == "RoleBasedGroupScalingAdapter llm/dynamo-pd-decoder not found"
    # A served version that lacks the object: the others lack it too (one store), so no second try.
    assert adapter_versions(kube) == ["v1alpha2"]


async def test_no_served_adapter_version_is_not_found_and_says_so(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS, ref_api_version=False)
    kube.serve(RBG_GROUP)  # RBG's CRDs are not installed
    source = await open_source()
    with pytest.raises(NotFound) as info:
        source.read(max_age=30)
    assert info.value.message == (
        "RoleBasedGroupScalingAdapter llm/dynamo-pd-decoder not found: neither workloads.x-k8s.io/v1alpha2"
        " nor workloads.x-k8s.io/v1alpha1 is served by the API server (is RBG installed?)"
    )


async def test_an_unserved_api_version_in_scale_target_ref_is_not_found(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS, version="v1alpha2")  # the ScaledObject names v1alpha2 ...
    kube.serve(RBG_GROUP, "v1alpha1")  # ... on RBG <= v0.6
    source = await open_source()
    with pytest.raises(NotFound) as info:
        source.read(max_age=30)
    assert info.value.message == (
        "RoleBasedGroupScalingAdapter llm/dynamo-pd-decoder not found: workloads.x-k8s.io/v1alpha2 is not served"
        " by the API server (is RBG installed, and recent enough for this apiVersion?)"
    )
    assert adapter_versions(kube) == ["v1alpha2"]


# --- invalid scale targets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "shown"), [("Deployment", "Deployment"), ("StatefulSet", "StatefulSet"), (None, "Deployment")]
)
async def test_a_target_other_than_an_adapter_needs_a_pod_selector(
    kube: KubeAPI, open_source: Opener, kind: str | None, shown: str
) -> None:
    kube.put(scaled_object("web", NS, "web", kind=kind, api_version="apps/v1"))
    source = await open_source("web")
    with pytest.raises(InvalidTrigger) as info:
        source.read(max_age=30)
    assert info.value.message == (
        f"ScaledObject llm/web scales {shown} 'web': podSelector must be set for targets other than"
        " a RoleBasedGroupScalingAdapter"
    )
    assert kube.requests_for(ADAPTER) == []


async def test_an_adapter_of_another_api_group_is_invalid(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    kube.put(scaled_object(DECODER, NS, DECODER, api_version="apps/v1"))
    source = await open_source()
    with pytest.raises(InvalidTrigger) as info:
        source.read(max_age=30)
    assert info.value.message == (
        "ScaledObject llm/dynamo-pd-decoder: scaleTargetRef.apiVersion 'apps/v1' is not workloads.x-k8s.io/<version>,"
        " as a RoleBasedGroupScalingAdapter needs"
    )


# --- API failures -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "verb", "plural", "group", "name"),
    [
        ("scaledobjects.keda.sh", "get", "scaledobjects", "keda.sh", DECODER),
        (ADAPTER, "get", "rolebasedgroupscalingadapters", RBG_GROUP, DECODER),
        ("pods", "list", "pods", "", None),
    ],
)
async def test_forbidden_names_the_missing_rbac_verb_and_resource(
    kube: KubeAPI, open_source: Opener, resource: str, verb: str, plural: str, group: str, name: str | None
) -> None:
    install_dynamo_pd(kube, NS)
    kube.forbid(resource, verb)

    source = await open_source()

    what = f'{resource} "{name}"' if name else resource
    assert last_error(source) == (
        f'kubernetes: forbidden: pd-scaler\'s service account needs "{verb}" on "{resource}" in namespace "llm"'
        f' ({what} is forbidden: User "system:serviceaccount:keda:pd-scaler" cannot {verb} resource "{plural}"'
        f' in API group "{group}" in the namespace "llm")'
    )


async def test_a_server_error_is_unavailable(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    kube.fail(ADAPTER, 500)
    source = await open_source()
    assert last_error(source) == (
        "kubernetes: get rolebasedgroupscalingadapters.workloads.x-k8s.io llm/dynamo-pd-decoder:"
        " HTTP 500 InternalError: Internal error occurred: etcdserver: request timed out"
    )


async def test_a_failing_refresh_keeps_the_last_sample_until_it_is_stale(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    clock = ManualClock()
    source = await open_source(clock=clock)
    good = source.read(max_age=30)

    kube.fail("pods", 503, "the server is currently unable to handle the request")
    await refresh(source)

    assert not source.up
    assert source.read(max_age=30) == good
    clock.now += 31
    with pytest.raises(SourceUnavailable) as info:
        source.read(max_age=30)
    assert info.value.message == (
        "kubernetes scaledobject llm/dynamo-pd-decoder: newest sample is 31.0s old, over maxStaleness 30s;"
        " last error: kubernetes: list pods in namespace llm with labelSelector"
        " 'rbg.workloads.x-k8s.io/group-name=dynamo-pd,rbg.workloads.x-k8s.io/role-name=decoder':"
        " HTTP 503 ServiceUnavailable: the server is currently unable to handle the request"
    )

    kube.clear_faults()
    await refresh(source)
    assert source.up
    assert source.read(max_age=30) == good


async def test_a_hanging_api_server_times_out_without_blocking_the_loop(kube: KubeAPI, open_source: Opener) -> None:
    install_dynamo_pd(kube, NS)
    kube.hang(10)
    started = time.monotonic()

    source_task = asyncio.create_task(open_source(request_timeout=0.3))
    # The loop runs on while the request hangs in its worker thread.
    assert await asyncio.to_thread(kube.hanging.wait, 5)
    assert not source_task.done()
    source = await source_task

    assert time.monotonic() - started < 3
    assert last_error(source) == "kubernetes: get scaledobjects.keda.sh llm/dynamo-pd-decoder: no answer within 0.3s"
    assert len(kube.requests_for(SO)) == 1  # not retried into several timeouts
    kube.release()


async def test_rejected_credentials_are_unavailable_and_not_echoed(
    kube: KubeAPI, open_source: Opener, tmp_path: Path
) -> None:
    install_dynamo_pd(kube, NS)
    with load_api_client(kube.write_kubeconfig(tmp_path / "wrong", token="s3cret-expired-token")) as client:
        message = last_error(await open_source(client=client))
    assert message == (
        "kubernetes: get scaledobjects.keda.sh llm/dynamo-pd-decoder: HTTP 401 Unauthorized: the API server"
        " rejected pd-scaler's credentials (expired or revoked token?)"
    )
    assert "s3cret" not in message


async def test_an_unreachable_api_server_is_unavailable(open_source: Opener, tmp_path: Path) -> None:
    with KubeAPI() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "gone")
    with load_api_client(kubeconfig) as client:
        message = last_error(await open_source(client=client))
    assert message.startswith("kubernetes: get scaledobjects.keda.sh llm/dynamo-pd-decoder: cannot connect: ")
    assert "Connection refused" in message


# --- configuration ----------------------------------------------------------------------------------------------


def test_without_kubeconfig_outside_a_cluster_there_is_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(SourceUnavailable) as info:
        load_api_client(None)
    assert info.value.message == "kubernetes: no configuration: not running in a cluster and no --kubeconfig given"


def test_a_missing_kubeconfig_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as info:
        load_api_client(tmp_path / "absent")
    assert info.value.message == f"kubernetes: kubeconfig {tmp_path / 'absent'} does not exist or is not a file"


def test_a_kubeconfig_that_is_not_yaml_is_unavailable_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("users: [{token: s3cret\n")
    with pytest.raises(SourceUnavailable) as info:
        load_api_client(path)
    assert info.value.message == f"kubernetes: kubeconfig {path} is not valid YAML"


def test_loading_a_kubeconfig_leaves_the_default_configuration_alone(kube: KubeAPI, tmp_path: Path) -> None:
    before = Configuration.get_default_copy().host
    with load_api_client(kube.write_kubeconfig(tmp_path / "kubeconfig")) as client:
        assert client.configuration.host == kube.url
    assert Configuration.get_default_copy().host == before


# --- the test server's label selectors, through the official client -------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", ["a", "b", "c", "d"]),
        ("tier=decode", ["a", "b"]),
        ("tier==decode", ["a", "b"]),
        ("tier!=decode", ["c", "d"]),  # includes the pod without the label
        ("tier in (prefill, decode)", ["a", "b", "c"]),
        ("tier notin (decode)", ["c", "d"]),
        ("canary", ["b"]),
        ("!canary", ["a", "c", "d"]),
        ("tier=decode,!canary", ["a"]),
    ],
)
def test_kubeapi_label_selectors(kube: KubeAPI, api_client: ApiClient, selector: str, expected: list[str]) -> None:
    kube.put(
        pod("a", NS, {"tier": "decode"}),
        pod("b", NS, {"tier": "decode", "canary": ""}),
        pod("c", NS, {"tier": "prefill"}),
        pod("d", NS, {"app": "x"}),
    )
    pods = CoreV1Api(api_client).list_namespaced_pod(NS, label_selector=selector)
    assert pods.kind == "PodList"
    assert pods.metadata is not None
    assert pods.metadata.resource_version
    assert [p.metadata.name for p in pods.items if p.metadata is not None] == expected


def test_kubeapi_serves_crd_versions_side_by_side(kube: KubeAPI, api_client: ApiClient) -> None:
    install_dynamo_pd(kube, NS, version="v1alpha2")
    custom = CustomObjectsApi(api_client)
    for version in ("v1alpha1", "v1alpha2"):
        rbg: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
            RBG_GROUP, version, NS, "rolebasedgroups", "dynamo-pd"
        )
        assert rbg["apiVersion"] == f"{RBG_GROUP}/{version}"
        assert [r["name"] for r in rbg["spec"]["roles"]] == ["prefill", "decoder"]

    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(RBG_GROUP, "v1alpha2", NS, "rolebasedgroups", "ghost")
    assert missing.value.status == 404
    assert json.loads(missing.value.body or "") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'rolebasedgroups.workloads.x-k8s.io "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "group": RBG_GROUP, "kind": "rolebasedgroups"},
        "code": 404,
    }

    kube.serve(RBG_GROUP, "v1alpha1")
    with pytest.raises(ApiException) as unserved:
        custom.get_namespaced_custom_object(RBG_GROUP, "v1alpha2", NS, "rolebasedgroups", "dynamo-pd")
    assert (unserved.value.status, unserved.value.body) == (404, "404 page not found\n")
