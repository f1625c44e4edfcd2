"""`pd-scaler check FILE…`: lint ScaledObject manifests aimed at pd-scaler before applying them.

Validates each pd-scaler trigger's metadata with the schema the server uses, and flags the mistakes that
parse but scale wrongly. Pure apart from reading the files.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scaler.errors import InvalidTrigger
from scaler.kube import ADAPTER_KIND
from scaler.triggers import DecodeTrigger, PrefillTrigger, parse

EXTERNAL = ("external", "external-push")
# Adapter names are `<rbg>-<role>`: suffixes that say which role an adapter scales.
_ROLE_SUFFIXES = {"prefill": ("-prefill",), "decode": ("-decode", "-decoder")}


@dataclass(frozen=True)
class Finding:
    file: str
    document: int  # 1-based, as editors count YAML documents
    where: str  # ScaledObject and trigger
    key: str
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.document}: {self.where}: {self.key}: {self.severity}: {self.message}"


def _aimed_at_us(trigger: Mapping[str, Any]) -> bool:
    meta = trigger.get("metadata") or {}
    return trigger.get("type") in EXTERNAL and ("role" in meta or "pd-scaler" in str(meta.get("scalerAddress", "")))


def check_scaledobject(obj: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(where, key, severity, message) for each problem of one ScaledObject's pd-scaler triggers."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    name = f"ScaledObject {meta.get('namespace', 'default')}/{meta.get('name', '?')}"
    can_scale_to_zero = spec.get("minReplicaCount", 0) == 0  # KEDA's default minReplicaCount is 0
    for i, trigger in enumerate(spec.get("triggers") or []):
        if not _aimed_at_us(trigger):
            continue
        where = f"{name} triggers[{i}]"
        metadata = {str(k): str(v) for k, v in (trigger.get("metadata") or {}).items()}
        if "scalerAddress" not in metadata:
            yield where, "metadata.scalerAddress", "error", "KEDA needs scalerAddress: the pd-scaler Service, host:port"
        try:
            parsed = parse(metadata)
        except InvalidTrigger as exc:
            yield where, "metadata", "error", exc.message
            continue
        if trigger.get("metricType", "AverageValue") == "Value":
            yield (
                where,
                "metricType",
                "error",
                (
                    "pd-scaler reports a total over the role with a per-replica target, which needs AverageValue "
                    "(desired = ceil(total / target)); Value multiplies by the current replicas and overshoots"
                ),
            )
        yield from _check_target(where, target, parsed)
        yield from _check_scale_to_zero(where, trigger.get("type"), parsed, can_scale_to_zero)


def _check_target(
    where: str, target: Mapping[str, Any], spec: PrefillTrigger | DecodeTrigger
) -> Iterator[tuple[str, str, str, str]]:
    kind = target.get("kind", "Deployment")
    if kind != ADAPTER_KIND:
        if spec.reads_pods and spec.pod_selector is None:
            yield (
                where,
                "spec.scaleTargetRef.kind",
                "error",
                (f"{spec.role} finds its pods through a {ADAPTER_KIND}; with a {kind} target set metadata.podSelector"),
            )
        else:
            yield (
                where,
                "spec.scaleTargetRef.kind",
                "warning",
                (
                    f"{kind} is not a {ADAPTER_KIND}: RBG roles are scaled through the adapter RBG creates "
                    "for roles with scalingAdapter.enable: true"
                ),
            )
        return
    adapter = str(target.get("name", ""))
    for role, suffixes in _ROLE_SUFFIXES.items():
        if role != spec.role and adapter.endswith(suffixes):
            yield (
                where,
                "metadata.role",
                "warning",
                (f"role is {spec.role!r} but the target adapter {adapter!r} looks like the {role} role's"),
            )


def _check_scale_to_zero(
    where: str, kind: object, spec: PrefillTrigger | DecodeTrigger, can_scale_to_zero: bool
) -> Iterator[tuple[str, str, str, str]]:
    if not can_scale_to_zero:
        return
    if spec.reads_pods:
        yield (
            where,
            "spec.minReplicaCount",
            "warning",
            (
                f"{spec.role} measures its running pods: at 0 replicas there is nothing to measure and nothing "
                "wakes the role; set minReplicaCount to 1 or more"
            ),
        )
    elif kind == "external":
        yield (
            where,
            "type",
            "warning",
            (
                "this role can scale to zero: use external-push, so the first queued request wakes it at once "
                "instead of at the next pollingInterval"
            ),
        )


def check_file(path: Path) -> list[Finding]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        return [Finding(str(path), 0, "file", "-", "error", f"cannot read: {exc}".splitlines()[0])]
    findings = []
    for n, doc in enumerate(documents, start=1):
        if isinstance(doc, dict) and doc.get("kind") == "ScaledObject":
            findings += [Finding(str(path), n, *f) for f in check_scaledobject(doc)]
    return findings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("check", help="lint ScaledObject manifests aimed at pd-scaler")
    cmd.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML manifests (multi-document allowed)")


def run(args: argparse.Namespace) -> int:
    """Prints one line per finding; exit 1 if any is an error."""
    findings = [f for path in args.files for f in check_file(path)]
    for finding in findings:
        print(finding)
    errors = sum(f.severity == "error" for f in findings)
    print(f"{len(args.files)} files checked: {errors} errors, {len(findings) - errors} warnings")
    return 1 if errors else 0
