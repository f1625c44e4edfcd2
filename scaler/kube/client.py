"""The official Kubernetes client, configured for pd-scaler, and the translation of its failures into ScalerErrors.

The client is synchronous (urllib3): every call runs in a worker thread with a total request timeout, so neither a
slow nor a hanging API server can hold the event loop that answers KEDA.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from scaler.errors import SourceUnavailable

REQUEST_TIMEOUT = 5.0  # one GET or LIST of a handful of objects takes milliseconds; past this the server is stuck
USER_AGENT = "pd-scaler"

# The source loop retries on its own every interval; urllib3's default 3 retries would turn one hanging request
# into four request timeouts. One connect retry still covers a pooled keep-alive connection the server dropped.
_RETRIES = urllib3.util.Retry(total=1, connect=1, read=0, status=0, redirect=0, other=0)


def load_api_client(kubeconfig: Path | None) -> ApiClient:
    """An ApiClient from the pod's service account, or from `kubeconfig` when given.

    The configuration is a fresh `Configuration`: the client's process-wide default is left alone.
    """
    cfg = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except ConfigException:
            raise SourceUnavailable(
                "kubernetes: no configuration: not running in a cluster and no --kubeconfig given"
            ) from None
    elif not kubeconfig.is_file():
        raise SourceUnavailable(f"kubernetes: kubeconfig {kubeconfig} does not exist or is not a file")
    else:
        try:
            # persist_config=False: never write refreshed credentials back into the user's file.
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
            )
        except yaml.YAMLError:
            # The parser's message quotes the offending line, which may hold a token.
            raise SourceUnavailable(f"kubernetes: kubeconfig {kubeconfig} is not valid YAML") from None
        except Exception as exc:  # the loader raises ConfigException, but also OSError, ValueError, KeyError
            raise SourceUnavailable(
                f"kubernetes: cannot load kubeconfig {kubeconfig}: {type(exc).__name__}: {exc}"
            ) from None
    cfg.retries = _RETRIES
    api = ApiClient(cfg)
    api.user_agent = USER_AGENT
    return api


@dataclass(frozen=True)
class ApiCall:
    """One request, named the way RBAC names what it needs (verb, group-qualified resource, namespace)."""

    verb: str  # "get" | "list"
    resource: str  # "pods", "scaledobjects.keda.sh", "rolebasedgroupscalingadapters.workloads.x-k8s.io"
    namespace: str
    name: str | None = None  # the object of a get
    label_selector: str | None = None  # the selector of a list

    def __str__(self) -> str:
        if self.name is not None:
            return f"{self.verb} {self.resource} {self.namespace}/{self.name}"
        selector = f" with labelSelector {self.label_selector!r}" if self.label_selector is not None else ""
        return f"{self.verb} {self.resource} in namespace {self.namespace}{selector}"


class ApiFailure(SourceUnavailable):
    """An error answer other than 404; `status` is its HTTP status (0: TLS failure), `server_message` the Status's."""

    def __init__(self, message: str, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class Missing(Exception):
    """A 404; `status` is the Status object when the server sent one (no Status: the path is not served at all)."""

    def __init__(self, status: dict[str, Any] | None) -> None:
        super().__init__("not found")
        self.status = status

    @property
    def object_missing(self) -> bool:
        """True when the resource is served but this object does not exist (the Status names the object)."""
        details = (self.status or {}).get("details")
        return isinstance(details, dict) and bool(details.get("name"))


async def request(call: ApiCall, timeout: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one blocking client call in a worker thread: its result, `Missing` on a 404, else a ScalerError."""
    try:
        return await asyncio.to_thread(fn, *args, _request_timeout=timeout, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            raise Missing(_status_object(exc)) from None
        raise api_failure(call, exc) from None
    except Exception as exc:  # urllib3 errors: timeouts, refused or broken connections
        raise SourceUnavailable(f"kubernetes: {call}: {_describe(exc, timeout)}") from None


def api_failure(call: ApiCall, exc: ApiException) -> ApiFailure:
    """The message for an error answer from the API server (never the request's headers or credentials)."""
    status = _status_object(exc)
    message = str(status.get("message") or "") if status else _body_text(exc)
    code = int(exc.status or 0)
    if code == 403:
        text = (
            f'kubernetes: forbidden: pd-scaler\'s service account needs "{call.verb}" on "{call.resource}" '
            f'in namespace "{call.namespace}"' + (f" ({message})" if message else "")
        )
    elif code == 401:
        text = (
            f"kubernetes: {call}: HTTP 401 Unauthorized: the API server rejected pd-scaler's credentials"
            " (expired or revoked token?)"
        )
    elif code == 0:  # the client reports TLS failures as status 0, the error in `reason`
        text = f"kubernetes: {call}: {str(exc.reason or 'failed').replace(chr(10), ': ')}"
    else:
        reason = (str(status.get("reason") or "") if status else "") or str(exc.reason or "")
        text = (
            f"kubernetes: {call}: HTTP {code}" + (f" {reason}" if reason else "") + (f": {message}" if message else "")
        )
    return ApiFailure(text, code, message)


def _status_object(exc: ApiException) -> dict[str, Any] | None:
    """The `Status` the server answered with, if the body is one."""
    try:
        body = json.loads(exc.body) if exc.body else None
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("kind") == "Status" else None


def _body_text(exc: ApiException) -> str:
    text = " ".join(str(exc.body or "").split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # first: urllib3 makes it a ConnectTimeoutError
        return f"cannot connect: {exc}"
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return f"connection broken: {exc}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
