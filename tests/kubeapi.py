"""A small, API-faithful Kubernetes API server for tests (there is no kube-apiserver binary here).

It runs in a background thread on a free loopback port, so the code under test talks to it through the official
client exactly as it would to a cluster, while the test's event loop runs in the main thread. It serves GET and
LIST of the few resources pd-scaler reads, at their real paths, with real label-selector semantics, real `Status`
errors (messages worded as the apiserver words them), CRD versions served side by side, and bearer-token authn.
Tests drive it directly: put/delete objects, serve or stop serving versions, and inject 403s, 5xx and hangs.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

TOKEN = "pd-scaler-test-token"  # the bearer token the kubeconfig carries and the server accepts
USER = "system:serviceaccount:keda:pd-scaler"  # who the token authenticates as (named in 403 messages)
CREATED = "2026-01-01T00:00:00Z"

RBG_GROUP = "workloads.x-k8s.io"
ADAPTER_KIND = "RoleBasedGroupScalingAdapter"
# Pod labels of an RBG role, by the API version era (REFERENCE.md section 3).
ROLE_LABEL_KEYS = {
    "v1alpha1": ("rolebasedgroup.workloads.x-k8s.io/name", "rolebasedgroup.workloads.x-k8s.io/role"),
    "v1alpha2": ("rbg.workloads.x-k8s.io/group-name", "rbg.workloads.x-k8s.io/role-name"),
}


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    plural: str
    kind: str
    versions: tuple[str, ...]  # served by default, oldest first

    @property
    def qualified(self) -> str:
        """The group-qualified name, as RBAC and error messages use it: `scaledobjects.keda.sh`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def builtin(self) -> bool:
        return self.group == ""

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


RESOURCES = {
    r.qualified: r
    for r in (
        Resource("", "pods", "Pod", ("v1",)),
        Resource("keda.sh", "scaledobjects", "ScaledObject", ("v1alpha1",)),
        Resource(RBG_GROUP, "rolebasedgroups", "RoleBasedGroup", ("v1alpha1", "v1alpha2")),
        Resource(RBG_GROUP, "rolebasedgroupscalingadapters", ADAPTER_KIND, ("v1alpha1", "v1alpha2")),
    )
}
PODS = RESOURCES["pods"]
SCALEDOBJECTS = RESOURCES["scaledobjects.keda.sh"]
ROLEBASEDGROUPS = RESOURCES[f"rolebasedgroups.{RBG_GROUP}"]
ADAPTERS = RESOURCES[f"rolebasedgroupscalingadapters.{RBG_GROUP}"]
# RBG v0.7+ marks v1alpha1 deprecated; the apiserver then answers with a Warning header.
DEPRECATED = {(ROLEBASEDGROUPS.qualified, "v1alpha1"), (ADAPTERS.qualified, "v1alpha1")}


# --- label selectors (k8s.io/apimachinery/pkg/labels) -------------------------------------------------------------


class SelectorError(ValueError):
    """The selector does not parse; the text is the apiserver's 400 message."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


_LEX = re.compile(r"\s*(?:(?P<op>==|!=|=|\(|\)|,|!)|(?P<word>[^\s!=(),<>]+)|(?P<bad>\S))")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _tokens(text: str) -> list[str]:
    out = []
    for m in _LEX.finditer(text):
        if m.group("bad"):
            raise SelectorError(f"unable to parse requirement: found '{m.group('bad')}', expected: identifier")
        out.append(m.group("op") or m.group("word"))
    return out


def _check_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _PREFIX.fullmatch(prefix)):
        raise SelectorError(
            f'unable to parse requirement: key: Invalid value: "{key}": prefix part a lowercase RFC 1123 subdomain'
            " must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an"
            " alphanumeric character"
        )
    if not _NAME.fullmatch(name):
        raise SelectorError(
            f'unable to parse requirement: key: Invalid value: "{key}": name part must consist of alphanumeric'
            " characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return key


def _check_value(key: str, value: str) -> str:
    if not _VALUE.fullmatch(value):
        raise SelectorError(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": a valid label must be an'
            " empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
            " alphanumeric character"
        )
    return value


def parse_selector(text: str) -> list[Requirement]:
    """Parse a label selector the way the apiserver does: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    `a`, `!a`, joined by commas (AND). The empty selector matches everything."""
    toks, reqs = _tokens(text), []
    pos = 0

    def take() -> str:
        nonlocal pos
        tok = toks[pos] if pos < len(toks) else ""
        pos += 1
        return tok

    def peek() -> str:
        return toks[pos] if pos < len(toks) else ""

    while toks:
        tok = take()
        if tok == "!":
            reqs.append(Requirement(_check_key(_word(take(), "identifier after '!'")), "!"))
        else:
            key = _check_key(_word(tok, "identifier"))
            op = peek()
            if op in ("", ","):
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                take()
                value = "" if peek() in ("", ",") else _word(take(), "identifier")
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", frozenset({_check_value(key, value)})))
            elif op in ("in", "notin"):
                take()
                if (paren := take()) != "(":
                    raise SelectorError(f"unable to parse requirement: found '{paren}', expected: '('")
                values: set[str] = set()
                while (tok := take()) != ")" or values:
                    values.add(_check_value(key, _word(tok, "identifier")))
                    if (sep := take()) == ")":
                        break
                    if sep != ",":
                        raise SelectorError(f"unable to parse requirement: found '{sep}', expected: ',' or ')'")
                reqs.append(Requirement(key, op, frozenset(values)))
            else:
                raise SelectorError(
                    f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt"
                )
        if pos >= len(toks):
            break
        if (sep := take()) != ",":
            raise SelectorError(f"found '{sep}', expected: ',' or 'end of string'")
        if pos >= len(toks):
            raise SelectorError("found '', expected: identifier")
    return reqs


def _word(tok: str, expected: str) -> str:
    if tok in ("", "!", "=", "==", "!=", "(", ")", ",", "in", "notin"):
        raise SelectorError(f"unable to parse requirement: found '{tok}', expected: {expected}")
    return tok


def selector_matches(text: str, labels: dict[str, str]) -> bool:
    return all(r.matches(labels) for r in parse_selector(text))


# --- the server ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the server saw it (for asserting what the client asked, e.g. a server-side selector)."""

    method: str
    path: str
    query: dict[str, str]
    resource: str | None = None  # group-qualified
    version: str | None = None
    namespace: str | None = None
    name: str | None = None  # None for a list

    @property
    def verb(self) -> str:
        return "get" if self.name is not None else "list"


@dataclass
class _Failure:
    code: int
    message: str
    remaining: int | None  # None: until cleared


@dataclass
class _Hang:
    seconds: float
    resource: str | None


@dataclass
class _State:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    served: dict[str, tuple[str, ...]] = field(default_factory=dict)
    forbidden: set[tuple[str, str]] = field(default_factory=set)  # (resource, verb or "*")
    failures: dict[str, _Failure] = field(default_factory=dict)
    hang: _Hang | None = None
    requests: list[Request] = field(default_factory=list)


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status(code: int, message: str, details: dict[str, Any] | None = None, reason: str | None = None) -> dict[str, Any]:
    """A `Status` object as the apiserver sends for errors."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _details(resource: Resource, name: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if resource.group:
        out["group"] = resource.group
    out["kind"] = resource.plural
    return out


class KubeAPI:
    """The server. Use as a context manager, or `start()`/`stop()`. Thread-safe: tests call it from the loop thread
    while handler threads serve the client."""

    def __init__(self, token: str = TOKEN, user: str = USER) -> None:
        self.token, self.user = token, user
        self._lock = threading.Lock()
        self._state = _State(served={q: r.versions for q, r in RESOURCES.items()})
        self._rv = itertools.count(1000)
        self._release = threading.Event()  # set: hanging requests go on at once
        self.hanging = threading.Event()  # set once a request has started to hang
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> KubeAPI:
        api = self

        class Handler(_Handler):
            server_api = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # keep-alive connections must not hold shutdown
        # A short poll interval: shutdown() waits for the next poll.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="kubeapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> KubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig pointing the official client at this server (plain http, bearer token)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubeapi", "cluster": {"server": self.url}}],
            "users": [{"name": "pd-scaler", "user": {"token": self.token if token is None else token}}],
            "contexts": [
                {"name": "kubeapi", "context": {"cluster": "kubeapi", "user": "pd-scaler", "namespace": namespace}}
            ],
            "current-context": "kubeapi",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # objects

    def put(self, *objects: dict[str, Any]) -> None:
        """Create or replace objects (kind and apiVersion pick the resource; the stored version is kept)."""
        with self._lock:
            for obj in map(copy.deepcopy, objects):
                resource = _resource_of(obj)
                meta = obj.setdefault("metadata", {})
                meta.setdefault("namespace", "default")
                key = (resource.qualified, meta["namespace"], meta["name"])
                old = self._state.objects.get(key)
                meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
                meta.setdefault("creationTimestamp", CREATED)
                meta["resourceVersion"] = str(next(self._rv))
                if not resource.builtin:
                    meta["generation"] = old["metadata"].get("generation", 1) + 1 if old else 1
                self._state.objects[key] = obj

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of a stored object (resource: group-qualified, e.g. `pods`, `scaledobjects.keda.sh`)."""
        with self._lock:
            obj = self._state.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def delete(self, resource: str, namespace: str, name: str) -> None:
        with self._lock:
            del self._state.objects[(resource, namespace, name)]
            next(self._rv)

    def patch_status(self, resource: str, namespace: str, name: str, **fields: Any) -> None:
        """Set fields of an object's `status` (e.g. an adapter's phase), bumping its resourceVersion."""
        with self._lock:
            obj = self._state.objects[(resource, namespace, name)]
            obj.setdefault("status", {}).update(fields)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))

    # faults

    def serve(self, resource: str, *versions: str) -> None:
        """Serve only these versions of a resource (group-qualified) or of every resource of a group;
        none: the CRD is not installed. E.g. `serve("workloads.x-k8s.io", "v1alpha1")` mimics RBG <= v0.6."""
        targets = [q for q, r in RESOURCES.items() if resource in (q, r.group)]
        assert targets, f"unknown resource or group {resource!r}"
        with self._lock:
            for q in targets:
                self._state.served[q] = versions

    def forbid(self, resource: str, verb: str = "*") -> None:
        """Answer `verb` ("get", "list" or "*") on a resource with 403, as RBAC does without a matching rule."""
        with self._lock:
            self._state.forbidden.add((resource, verb))

    def fail(
        self, resource: str, code: int = 500, message: str = "etcdserver: request timed out", times: int | None = None
    ) -> None:
        """Answer requests for a resource with an error Status (`times` requests, or until cleared)."""
        with self._lock:
            self._state.failures[resource] = _Failure(code, message, times)

    def hang(self, seconds: float, resource: str | None = None) -> None:
        """Hold requests (for one resource, or all) up to `seconds` before answering; `release()` ends it."""
        with self._lock:
            self._release.clear()
            self.hanging.clear()
            self._state.hang = _Hang(seconds, resource)

    def release(self) -> None:
        """Stop hanging: held requests are answered now, new ones at once."""
        with self._lock:
            self._state.hang = None
        self._release.set()

    def clear_faults(self) -> None:
        """Undo forbid, fail, hang and serve: every resource served in all its versions, answering normally."""
        self.release()
        with self._lock:
            self._state.forbidden.clear()
            self._state.failures.clear()
            self._state.served = {q: r.versions for q, r in RESOURCES.items()}

    # request log

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._state.requests)

    def requests_for(self, resource: str) -> list[Request]:
        return [r for r in self.requests if r.resource == resource]

    def clear_requests(self) -> None:
        with self._lock:
            self._state.requests.clear()

    # serving (called from handler threads)

    def _answer(
        self, method: str, raw_path: str, authorization: str | None
    ) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        route = _route(split.path)
        req = Request(method, split.path, query, *route) if route else Request(method, split.path, query)
        with self._lock:
            self._state.requests.append(req)
            hang = self._state.hang
        if authorization != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", reason="Unauthorized"), {}
        if hang is not None and hang.resource in (None, req.resource):
            self.hanging.set()
            self._release.wait(hang.seconds)
        if route is None or req.resource not in RESOURCES:
            return 404, "404 page not found\n", {}
        resource = RESOURCES[req.resource]
        assert req.namespace is not None
        assert req.version is not None
        with self._lock:
            if {(resource.qualified, "*"), (resource.qualified, req.verb)} & self._state.forbidden:
                return 403, self._forbidden(resource, req), {}
            if req.version not in self._state.served[resource.qualified]:
                # The version's handler is not installed: the apiserver's plain not-found handler answers.
                return 404, "404 page not found\n", {}
            failure = self._state.failures.get(resource.qualified)
            if failure is not None:
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        del self._state.failures[resource.qualified]
                return failure.code, _failure_status(failure), {}
            if method != "GET":
                return 405, status(405, "the server does not allow this method on the requested resource"), {}
            headers = {}
            if (resource.qualified, req.version) in DEPRECATED and "v1alpha2" in self._state.served[resource.qualified]:
                headers["Warning"] = (
                    f'299 - "{resource.group}/v1alpha1 {resource.kind} is deprecated;'
                    f' use {resource.group}/v1alpha2 {resource.kind}"'
                )
            if req.name is not None:
                obj = self._state.objects.get((resource.qualified, req.namespace, req.name))
                if obj is None:
                    message = f'{resource.qualified} "{req.name}" not found'
                    return 404, status(404, message, _details(resource, req.name)), headers
                return 200, _as_version(obj, resource, req.version), headers
            try:
                requirements = parse_selector(query.get("labelSelector", ""))
            except SelectorError as exc:
                return 400, status(400, str(exc)), headers
            items = [
                _as_version(obj, resource, req.version, in_list=True)
                for (q, ns, _), obj in sorted(self._state.objects.items())
                if q == resource.qualified
                and ns == req.namespace
                and all(r.matches(obj["metadata"].get("labels") or {}) for r in requirements)
            ]
            list_meta: dict[str, Any] = {"resourceVersion": str(next(self._rv))}
            if not resource.builtin:
                list_meta["continue"] = ""
            body = {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version(req.version),
                "metadata": list_meta,
                "items": items,
            }
            return 200, body, headers

    def _forbidden(self, resource: Resource, req: Request) -> dict[str, Any]:
        what = f'{resource.qualified} "{req.name}"' if req.name else resource.qualified
        message = (
            f'{what} is forbidden: User "{self.user}" cannot {req.verb} resource "{resource.plural}" in API group'
            f' "{resource.group}" in the namespace "{req.namespace}"'
        )
        return status(403, message, _details(resource, req.name))


def _failure_status(failure: _Failure) -> dict[str, Any]:
    if failure.code == 500:
        return status(500, f"Internal error occurred: {failure.message}", {"causes": [{"message": failure.message}]})
    return status(failure.code, failure.message)


def _route(path: str) -> tuple[str, str, str, str | None] | None:
    """(group-qualified resource, version, namespace, name or None) for a namespaced resource path."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) in (5, 6) and parts[0] == "api" and parts[2] == "namespaces":
        _, version, _, ns, plural, *name = parts
        return plural, version, ns, name[0] if name else None
    if len(parts) in (6, 7) and parts[0] == "apis" and parts[3] == "namespaces":
        _, group, version, _, ns, plural, *name = parts
        return f"{plural}.{group}", version, ns, name[0] if name else None
    return None


def _resource_of(obj: dict[str, Any]) -> Resource:
    group = obj["apiVersion"].rpartition("/")[0]
    for r in RESOURCES.values():
        if r.group == group and r.kind == obj["kind"]:
            return r
    raise ValueError(f"kubeapi serves no {obj['kind']} in {obj['apiVersion']}")


def _as_version(obj: dict[str, Any], resource: Resource, version: str, in_list: bool = False) -> dict[str, Any]:
    """The object as served in `version`: CRD versions share one store and differ here only in apiVersion.
    Items of a built-in list carry no kind/apiVersion; those of a custom resource list do."""
    out = copy.deepcopy(obj)
    if in_list and resource.builtin:
        out.pop("kind", None)
        out.pop("apiVersion", None)
    else:
        out["apiVersion"] = resource.api_version(version)
    return out


class _Handler(BaseHTTPRequestHandler):
    server_api: KubeAPI
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    timeout = 30  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall between

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        code, body, headers = self.server_api._answer(self.command, self.path, self.headers.get("Authorization"))
        if isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode(), "application/json"
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout) while we hung
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line on stderr per request


# --- fixtures shaped like the CRDs --------------------------------------------------------------------------------


def role_labels(group: str, role: str, style: str = "v1alpha2") -> dict[str, str]:
    """The labels the RBG controller puts on a role's pods, in the label style of an API version era."""
    name_key, role_key = ROLE_LABEL_KEYS[style]
    return {name_key: group, role_key: role}


def role_selector(group: str, role: str, style: str = "v1alpha2") -> str:
    """An adapter's `status.selector` for the role, as `labels.SelectorFromSet(...).String()` prints it."""
    return ",".join(f"{k}={v}" for k, v in sorted(role_labels(group, role, style).items()))


def scaled_object(
    name: str,
    namespace: str,
    target: str,
    *,
    kind: str | None = ADAPTER_KIND,
    api_version: str | None = f"{RBG_GROUP}/v1alpha2",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A KEDA ScaledObject whose scaleTargetRef names `target` (kind/apiVersion None: left out, as users may)."""
    ref: dict[str, Any] = {"name": target}
    if api_version is not None:
        ref["apiVersion"] = api_version
    if kind is not None:
        ref["kind"] = kind
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": ref,
            "minReplicaCount": 1,
            "maxReplicaCount": 8,
            "triggers": [
                {
                    "type": "external",
                    "metadata": metadata or {"scalerAddress": "pd-scaler.keda.svc:9090", "role": "prefill"},
                }
            ],
        },
    }


def rolebasedgroup(name: str, namespace: str, roles: dict[str, int], *, version: str = "v1alpha2") -> dict[str, Any]:
    """An RBG with these roles (name: replicas), each with `scalingAdapter.enable: true`."""
    template = {"spec": {"containers": [{"name": "engine", "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.5.0"}]}}
    specs: list[dict[str, Any]] = []
    for role, replicas in roles.items():
        spec: dict[str, Any] = {"name": role, "replicas": replicas, "scalingAdapter": {"enable": True}}
        if version == "v1alpha1":
            spec |= {"workload": {"apiVersion": "apps/v1", "kind": "StatefulSet"}, "template": template}
        else:
            spec |= {"standalonePattern": {"template": template}}
        specs.append(spec)
    return {
        "apiVersion": f"{RBG_GROUP}/{version}",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"roles": specs},
        "status": {
            "roleStatuses": [
                {"name": r, "replicas": n, "readyReplicas": n, "updatedReplicas": n} for r, n in roles.items()
            ]
        },
    }


def scaling_adapter(
    group: str,
    role: str,
    namespace: str,
    *,
    version: str = "v1alpha2",
    style: str | None = None,
    phase: str | None = "Bound",
    replicas: int = 2,
) -> dict[str, Any]:
    """The adapter `<group>-<role>` the RBG controller creates; `style`: label era of the selector (default:
    `version`'s); phase None: no status yet (just created)."""
    adapter: dict[str, Any] = {
        "apiVersion": f"{RBG_GROUP}/{version}",
        "kind": ADAPTER_KIND,
        "metadata": {
            "name": f"{group}-{role}",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": f"{RBG_GROUP}/{version}",
                    "kind": "RoleBasedGroup",
                    "name": group,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{group}")),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": replicas, "scaleTargetRef": {"name": group, "role": role}},
    }
    if phase is not None:
        adapter["status"] = {"phase": phase, "replicas": replicas}
        if phase == "Bound":
            adapter["status"] |= {
                "selector": role_selector(group, role, style or version),
                "lastScaleTime": CREATED,
            }
            if (style or version) != "v1alpha1":
                adapter["status"]["readyReplicas"] = replicas
    return adapter


def pod(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    phase: str = "Running",
    node: str = "gpu-node-1",
    deleting: bool = False,
    ip: str = "10.0.0.1",
) -> dict[str, Any]:
    """A pod; `deleting`: it has a deletionTimestamp (terminating, still Running); `ip`: its status.podIP."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if deleting:
        metadata |= {"deletionTimestamp": "2026-01-01T00:05:00Z", "deletionGracePeriodSeconds": 30}
    ready = "True" if phase == "Running" and not deleting else "False"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"nodeName": node, "containers": [{"name": "engine", "image": "engine:latest"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}], "podIP": ip},
    }


@dataclass(frozen=True)
class DynamoPD:
    """What `install_dynamo_pd` put: the RBG, its adapters, ScaledObjects (named like the adapters) and pods."""

    namespace: str
    group: str
    prefill_pods: tuple[str, ...]
    decode_pods: tuple[str, ...]

    @property
    def prefill(self) -> str:
        return f"{self.group}-prefill"

    @property
    def decoder(self) -> str:
        return f"{self.group}-decoder"


def install_dynamo_pd(
    api: KubeAPI,
    namespace: str = "llm",
    *,
    version: str = "v1alpha2",
    style: str | None = None,
    pods_per_role: int = 2,
    ref_api_version: bool = True,
) -> DynamoPD:
    """RBG `dynamo-pd` with roles prefill and decoder, its adapters (Bound), one ScaledObject per adapter, and
    `pods_per_role` pods per role, prefill and decode pods sharing nodes. `ref_api_version` False: the
    ScaledObjects' scaleTargetRef leaves apiVersion out."""
    group = "dynamo-pd"
    style = style or version
    ref_version = f"{RBG_GROUP}/{version}" if ref_api_version else None
    api.put(rolebasedgroup(group, namespace, {"prefill": pods_per_role, "decoder": pods_per_role}, version=version))
    pods: dict[str, list[str]] = {}
    for role in ("prefill", "decoder"):
        api.put(scaling_adapter(group, role, namespace, version=version, style=style, replicas=pods_per_role))
        api.put(scaled_object(f"{group}-{role}", namespace, f"{group}-{role}", api_version=ref_version))
        pods[role] = [f"{group}-{role}-{i}" for i in range(pods_per_role)]
        for i, name in enumerate(pods[role]):
            api.put(pod(name, namespace, role_labels(group, role, style), node=f"gpu-node-{i}"))
    return DynamoPD(namespace, group, tuple(pods["prefill"]), tuple(pods["decoder"]))
