"""Which pods serve a ScaledObject's role: ScaledObject -> RoleBasedGroupScalingAdapter -> `status.selector` -> pods.

The adapter's `status.selector` is read rather than hard-coding label keys: RBG changed them between versions
(`rolebasedgroup.workloads.x-k8s.io/role` before v0.7, `rbg.workloads.x-k8s.io/role-name` since). Pods are
listed with that selector on the server, so the answer is small however many pods the namespace holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from scaler.errors import InvalidTrigger, NotFound, SourceUnavailable
from scaler.kube.client import REQUEST_TIMEOUT, ApiCall, ApiFailure, Missing, request
from scaler.metrics import Metrics
from scaler.observations import ReplicaHistory
from scaler.sources.base import Clock, Source
from scaler.sources.history import ReadyHistory
from scaler.triggers import MAX_HISTORY_S

KEDA_GROUP, KEDA_VERSION, SCALEDOBJECTS = "keda.sh", "v1alpha1", "scaledobjects"
RBG_GROUP, ADAPTERS = "workloads.x-k8s.io", "rolebasedgroupscalingadapters"
ADAPTER_KIND = "RoleBasedGroupScalingAdapter"
# RBG <= v0.6 serves only v1alpha1; v0.7+ stores v1alpha2 and still serves v1alpha1 (deprecated).
ADAPTER_VERSIONS = ("v1alpha2", "v1alpha1")
BOUND = "Bound"
_FINISHED = frozenset({"Succeeded", "Failed"})  # pods that will never serve again


@dataclass(frozen=True)
class RolePods:
    """The pods of one role, as found for one ScaledObject; all in the ScaledObject's namespace."""

    namespace: str
    scaledobject: str | None  # None with a podSelector: the pods are shared by every ScaledObject naming it
    adapter: str | None  # None with a podSelector override
    rolebasedgroup: str | None  # the adapter's spec.scaleTargetRef.name
    role: str | None  # the adapter's spec.scaleTargetRef.role
    phase: str | None  # the adapter's status.phase ("Bound" | "NotBound")
    replicas: int | None  # the adapter's status.replicas
    selector: str  # the label selector the pods were listed with ("" while the adapter has none)
    pods: tuple[str, ...]  # names of pods neither finished nor being deleted, sorted
    addresses: Mapping[str, str] = field(default_factory=dict)  # pod → status.podIP, for scraping its /metrics
    ready: tuple[str, ...] = ()  # those of `pods` whose Ready condition is True

    @property
    def bound(self) -> bool:
        """The pods are meaningful: a podSelector override, or a Bound adapter with a selector."""
        return self.adapter is None or (self.phase == BOUND and bool(self.selector))


def check_bound(rp: RolePods) -> RolePods:
    """`rp` if its pods can be used, else SourceUnavailable saying why the adapter is not usable yet."""
    if rp.bound:
        return rp
    where = f"RoleBasedGroupScalingAdapter {rp.namespace}/{rp.adapter}"
    if rp.phase == BOUND:
        raise SourceUnavailable(f"{where} is Bound but has no status.selector yet")
    target = (
        f" (RoleBasedGroup {rp.rolebasedgroup!r}, role {rp.role!r})"
        if rp.rolebasedgroup is not None and rp.role is not None
        else ""
    )
    state = f"is {rp.phase}" if rp.phase else "has no status.phase yet"
    raise SourceUnavailable(
        f"{where} {state}, not Bound: the RBG controller binds only the adapters it creates itself, for roles"
        f" with scalingAdapter.enable: true{target}"
    )


class RolePodsSource(Source[RolePods]):
    """A role's pods, and how many were ready over time (the prefill capacity's replicas, `refineCapacity`): the
    history lives in the source, as the queue's does, so every reader sees the same one."""

    def __init__(self, name: str, interval: float, metrics: Metrics, clock: Clock = time.monotonic) -> None:
        super().__init__(name, interval, metrics, clock)
        self._ready = ReadyHistory(MAX_HISTORY_S)

    async def refresh(self) -> None:
        await super().refresh()
        if self._error is None and self._sample is not None:
            self._ready.observe(self._sampled_at, len(self._sample.ready))
        else:
            self._ready.unobserved()

    def ready_history(self, max_age: float) -> ReplicaHistory:
        """The ready replicas' history, if the role's pods are usable now (at most `max_age` old, and bound)."""
        check_bound(self.read(max_age))
        return self._ready.snapshot()


class RoleSource(RolePodsSource):
    """The pods of the role a ScaledObject scales, refreshed every interval.

    With `pod_selector` (the trigger's podSelector override) only the pods are listed: no ScaledObject or adapter
    lookups, so any scale target works.
    """

    kind = "kubernetes"

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str,
        scaledobject: str | None,
        interval: float,
        metrics: Metrics,
        clock: Clock = time.monotonic,
        *,
        pod_selector: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if pod_selector is not None:
            name = f"kubernetes pods {namespace} podSelector={pod_selector!r}"
        else:
            assert scaledobject is not None, "discovery needs the ScaledObject"
            name = f"kubernetes scaledobject {namespace}/{scaledobject}"
        super().__init__(name, interval, metrics, clock)
        self.namespace, self.scaledobject, self.pod_selector = namespace, scaledobject, pod_selector
        self.request_timeout = request_timeout
        self._core = CoreV1Api(api_client)
        self._custom = CustomObjectsApi(api_client)
        self._adapter_version: str | None = None  # the version that answered last, tried first next time

    def read(self, max_age: float) -> RolePods:
        # A wrong scale target is a configuration error, not an outage: answer it as such at once, never
        # as "no sample yet" or a stale sample.
        if isinstance(self._error, InvalidTrigger):
            self.last_used = self.clock()
            raise self._error
        return super().read(max_age)

    async def fetch(self) -> RolePods:
        if self.pod_selector is not None:
            pods, ready = await self._pods(self.pod_selector, override=True)
            return RolePods(
                self.namespace, self.scaledobject, None, None, None, None, None, self.pod_selector, tuple(pods), pods,
                ready,
            )  # fmt: skip

        ref = await self._scale_target_ref()
        adapter_name = str(ref["name"])
        adapter = await self._adapter(adapter_name, ref.get("apiVersion"))
        spec_ref = _dig(adapter, "spec", "scaleTargetRef")
        phase = _str(_dig(adapter, "status", "phase"))
        selector = _str(_dig(adapter, "status", "selector")) or ""
        pods, ready = await self._pods(selector) if phase == BOUND and selector else ({}, ())
        return RolePods(
            namespace=self.namespace,
            scaledobject=self.scaledobject,
            adapter=adapter_name,
            rolebasedgroup=_str(_dig(spec_ref, "name")),
            role=_str(_dig(spec_ref, "role")),
            phase=phase,
            replicas=_int(_dig(adapter, "status", "replicas")),
            selector=selector,
            pods=tuple(pods),
            addresses=pods,
            ready=ready,
        )

    async def _scale_target_ref(self) -> dict[str, Any]:
        """The ScaledObject's spec.scaleTargetRef, checked to name a RoleBasedGroupScalingAdapter."""
        call = ApiCall("get", f"{SCALEDOBJECTS}.{KEDA_GROUP}", self.namespace, self.scaledobject)
        try:
            so = await request(
                call,
                self.request_timeout,
                self._custom.get_namespaced_custom_object,
                KEDA_GROUP,
                KEDA_VERSION,
                self.namespace,
                SCALEDOBJECTS,
                self.scaledobject,
            )
        except Missing:
            raise NotFound(f"ScaledObject {self.namespace}/{self.scaledobject} not found") from None
        where = f"ScaledObject {self.namespace}/{self.scaledobject}"
        ref = _dig(so, "spec", "scaleTargetRef")
        if not isinstance(ref, dict) or not _str(ref.get("name")):
            raise InvalidTrigger(f"{where} has no spec.scaleTargetRef.name")
        kind = _str(ref.get("kind")) or "Deployment"  # KEDA's default when kind is left out
        if kind != ADAPTER_KIND:
            raise InvalidTrigger(
                f"{where} scales {kind} {ref['name']!r}: podSelector must be set for targets other than"
                f" a {ADAPTER_KIND}"
            )
        return ref

    def _versions(self, api_version: Any) -> tuple[str, ...]:
        """The adapter versions to try, in order: the one scaleTargetRef names, else newest first."""
        if api_version:
            group, _, version = str(api_version).partition("/")
            if group != RBG_GROUP or not version:
                raise InvalidTrigger(
                    f"ScaledObject {self.namespace}/{self.scaledobject}: scaleTargetRef.apiVersion {api_version!r}"
                    f" is not {RBG_GROUP}/<version>, as a {ADAPTER_KIND} needs"
                )
            return (version,)
        if self._adapter_version is None:
            return ADAPTER_VERSIONS
        return (self._adapter_version, *(v for v in ADAPTER_VERSIONS if v != self._adapter_version))

    async def _adapter(self, name: str, api_version: Any) -> dict[str, Any]:
        call = ApiCall("get", f"{ADAPTERS}.{RBG_GROUP}", self.namespace, name)
        versions = self._versions(api_version)
        for version in versions:
            try:
                adapter = await request(
                    call,
                    self.request_timeout,
                    self._custom.get_namespaced_custom_object,
                    RBG_GROUP,
                    version,
                    self.namespace,
                    ADAPTERS,
                    name,
                )
            except Missing as missing:
                if missing.object_missing:  # served, and CRD versions share one store: absent in every version
                    raise NotFound(f"{ADAPTER_KIND} {self.namespace}/{name} not found") from None
                continue  # this version is not served (e.g. v1alpha2 on RBG <= v0.6): try the next
            self._adapter_version = version
            return adapter if isinstance(adapter, dict) else {}
        raise NotFound(f"{ADAPTER_KIND} {self.namespace}/{name} not found: {_not_served(versions)}")

    async def _pods(self, selector: str, *, override: bool = False) -> tuple[dict[str, str], tuple[str, ...]]:
        """Name → pod IP ("" until it has one) of the pods neither finished nor being deleted, sorted by name; and
        the names of those that are ready."""
        call = ApiCall("list", "pods", self.namespace, label_selector=selector)
        try:
            data = await request(call, self.request_timeout, self._list_pods_json, selector)
        except Missing:  # the namespace is gone: no pods
            return {}, ()
        except ApiFailure as exc:
            if override and exc.status == 400:  # the server could not parse the user's selector
                raise InvalidTrigger(
                    f"podSelector {selector!r} is not a valid label selector: {exc.server_message}"
                ) from None
            raise
        try:
            items = _json(data).get("items") or []
        except ValueError:
            raise SourceUnavailable(f"kubernetes: {call}: the answer is not a JSON PodList") from None
        live = [
            pod
            for pod in items
            if _dig(pod, "status", "phase") not in _FINISHED and not _dig(pod, "metadata", "deletionTimestamp")
        ]
        addresses = {str(_dig(pod, "metadata", "name")): _str(_dig(pod, "status", "podIP")) or "" for pod in live}
        ready = (str(_dig(pod, "metadata", "name")) for pod in live if _ready(pod))
        return dict(sorted(addresses.items())), tuple(sorted(ready))

    def _list_pods_json(self, selector: str, **options: Any) -> bytes:
        """The raw PodList (runs in the worker thread: the body is read there too, not on the loop).

        Raw JSON rather than V1PodList: only names, phases, deletion marks and pod IPs are needed, and the models
        reject objects from newer API servers that they do not know how to validate."""
        # With _preload_content=False the client returns the urllib3 response, whatever its annotation says.
        response: Any = self._core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False, **options
        )
        try:
            return bytes(response.data)
        finally:
            response.release_conn()


def _not_served(versions: tuple[str, ...]) -> str:
    if len(versions) == 1:
        return (
            f"{RBG_GROUP}/{versions[0]} is not served by the API server"
            " (is RBG installed, and recent enough for this apiVersion?)"
        )
    names = " nor ".join(f"{RBG_GROUP}/{v}" for v in versions)
    return f"neither {names} is served by the API server (is RBG installed?)"


def _ready(pod: Any) -> bool:
    conditions = _dig(pod, "status", "conditions")
    return isinstance(conditions, list) and any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def _json(data: bytes) -> dict[str, Any]:
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("not an object")
    return body


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
