"""Kubernetes: which pods serve a ScaledObject's role (through RBG's scaling adapter, or a podSelector)."""

from scaler.kube.client import REQUEST_TIMEOUT, ApiCall, ApiFailure, load_api_client
from scaler.kube.discovery import ADAPTER_KIND, ADAPTER_VERSIONS, RolePods, RolePodsSource, RoleSource, check_bound

__all__ = [
    "ADAPTER_KIND",
    "ADAPTER_VERSIONS",
    "REQUEST_TIMEOUT",
    "ApiCall",
    "ApiFailure",
    "RolePods",
    "RolePodsSource",
    "RoleSource",
    "check_bound",
    "load_api_client",
]
