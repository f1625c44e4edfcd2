"""`pd-scaler check FILE…`: lint ScaledObject manifests aimed at pd-scaler before applying them.

Validates each pd-scaler trigger's metadata with the schema the server uses, and flags the mistakes that parse
but scale wrongly, including those of users migrating from KEDA's built-in scalers. Reads files, `-` for stdin,
and `kind: List` (what `kubectl get scaledobjects -o yaml` prints); findings carry the line of the object or
trigger. Pure apart from reading the inputs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from scaler.admission import Admission
from scaler.errors import Forbidden, InvalidTrigger
from scaler.kube import ADAPTER_KIND
from scaler.triggers import ROLES, DecodeTrigger, PrefillTrigger, parse

EXTERNAL = ("external", "external-push")
STDIN = "-"
# The chart installed as the README says (`helm install pd-scaler deploy/helm/pd-scaler -n keda`).
SCALER_ADDRESS = "pd-scaler.keda.svc.cluster.local:9090"
# Adapter names are `<rbg>-<role>`: suffixes that say which role an adapter scales.
_ROLE_SUFFIXES = {"prefill": ("-prefill",), "decode": ("-decode", "-decoder")}
# KV-cache fill of a decode replica whose 256 seats (vLLM's max_num_seqs) are all taken: 256 sequences of the
# Azure conversation trace (mean prompt 1,155 + output 211 tokens, in 128-token blocks) in the 796,800-token KV
# cache of the simulator's `h200-tp2` deployment (profile qwen3-32b-h200-tp2), where seats bind before KV — see
# docs/simulate.md, "Reading the results". New requests queue for a seat from there on, so a kv-cache threshold
# above it is never reached. (An engine with a smaller KV cache, as the default `ack-dynamo-guide`, fills it first.)
KV_FILL_AT_SEAT_SATURATION = 0.45
KV_THRESHOLD_ADVICE = 0.4
PREFILL_QUEUE_ADVICE = "4"  # waiting requests per prefill replica, as the SGLang example
_DEFAULT_METRIC = DecodeTrigger.model_fields["metric"].default
_DEFAULT_THRESHOLD = DecodeTrigger.model_fields["threshold"].default
_KEDA_MAX_REPLICAS = 100  # KEDA's default maxReplicaCount


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based line of the object or trigger; 0 when the file cannot be read
    where: str  # ScaledObject and trigger
    key: str
    severity: str  # "error" | "warning"
    message: str
    paste: str = ""  # YAML to paste in place of the trigger, indented as it stands in the file

    def __str__(self) -> str:
        head = f"{self.file}:{self.line}: {self.where}: {self.key}: {self.severity}: {self.message}"
        return f"{head}\n{self.paste}" if self.paste else head


class _Node(dict[str, Any]):
    """A YAML mapping that remembers where it starts in its file."""

    line = 0
    column = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Node]:
    data = _Node()
    data.line, data.column = node.start_mark.line + 1, node.start_mark.column
    yield data
    data.update({str(k): v for k, v in loader.construct_mapping(node).items()})


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _line(obj: object) -> int:
    return obj.line if isinstance(obj, _Node) else 0


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _scaled_objects(documents: list[Any]) -> Iterator[Mapping[str, Any]]:
    for doc in documents:
        if not isinstance(doc, Mapping):
            continue
        kind = str(doc.get("kind", ""))
        if kind == "ScaledObject":
            yield doc
        elif kind.endswith("List"):  # `kind: List` from kubectl, or ScaledObjectList from the API
            items = doc.get("items")
            yield from _scaled_objects(items if isinstance(items, list) else [])


@dataclass
class Checker:
    """Checks inputs one after another; remembers targets across them (what is applied together)."""

    admission: Admission = field(default_factory=Admission)  # what the scaler checked against admits
    files: int = 0
    scaled_objects: int = 0
    triggers: int = 0
    findings: list[Finding] = field(default_factory=list)
    _targets: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)

    def check(self, name: str) -> None:
        self.files += 1
        try:
            text = sys.stdin.read() if name == STDIN else Path(name).read_text(encoding="utf-8")
            documents = list(yaml.load_all(text, Loader=_Loader))  # a SafeLoader
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            first = f"cannot read: {exc}".splitlines()[0]
            self.findings.append(Finding(self._shown(name), 0, "file", "-", "error", first))
            return
        for obj in _scaled_objects(documents):
            self.findings += self._check_object(self._shown(name), obj)

    @staticmethod
    def _shown(name: str) -> str:
        return "<stdin>" if name == STDIN else name

    def _check_object(self, file: str, obj: Mapping[str, Any]) -> Iterator[Finding]:
        self.scaled_objects += 1
        meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
        target = _mapping(spec.get("scaleTargetRef"))
        namespace = str(meta.get("namespace", "default"))
        name = f"ScaledObject {namespace}/{meta.get('name', '?')}"
        located = f"{file}:{_line(obj)}"
        key = (namespace, str(target.get("kind", "Deployment")), str(target.get("name", "")))
        if key in self._targets:
            first_name, first_at = self._targets[key]
            yield Finding(
                file,
                _line(obj),
                name,
                "spec.scaleTargetRef",
                "error",
                (
                    f"{key[1]} {key[2]} is already the target of {first_name} ({first_at}): KEDA refuses a second "
                    "ScaledObject on one target, or their two HPAs fight over its replicas; keep one"
                ),
            )
        else:
            self._targets[key] = (name, located)
        triggers = spec.get("triggers")
        for i, trigger in enumerate(triggers if isinstance(triggers, list) else []):
            self.triggers += 1
            found = _check_trigger(_mapping(trigger), spec, target, namespace, self.admission)
            yield from (Finding(file, _line(trigger), f"{name} triggers[{i}]", *f) for f in found)


class Problem(NamedTuple):
    key: str
    severity: str
    message: str
    paste: str = ""


def _check_trigger(
    trigger: Mapping[str, Any],
    spec: Mapping[str, Any],
    target: Mapping[str, Any],
    namespace: str,
    admission: Admission,
) -> Iterator[Problem]:
    kind = trigger.get("type")
    if kind in ("nats-jetstream", "prometheus") and target.get("kind") == ADAPTER_KIND:
        yield _builtin(trigger, str(kind), str(target.get("name", "")))
        return
    metadata = {str(k): str(v) for k, v in _mapping(trigger.get("metadata")).items()}
    if kind not in EXTERNAL or not ("role" in metadata or "pd-scaler" in metadata.get("scalerAddress", "")):
        return
    if "scalerAddress" not in metadata:
        yield Problem("metadata.scalerAddress", "error", "KEDA needs scalerAddress: the pd-scaler Service, host:port")
    try:
        admission.check_namespace(namespace)
    except Forbidden as exc:
        yield Problem("metadata.namespace", "error", exc.message)
    try:
        admission.check_sources(parse(metadata))
    except InvalidTrigger as exc:  # reported, and the checks below still run on what the trigger says
        yield Problem("metadata", "error", exc.message)
    if trigger.get("metricType", "AverageValue") == "Value":
        yield Problem(
            "metricType",
            "error",
            (
                "pd-scaler reports a total over the role with a per-replica target, which needs AverageValue "
                "(desired = ceil(total / target)); Value multiplies by the current replicas and overshoots"
            ),
        )
    role = metadata.get("role")
    if role not in ROLES:
        return
    yield from _check_target(target, role, metadata)
    yield from _check_scale_to_zero(kind, role, metadata, spec.get("minReplicaCount", 0) == 0)  # KEDA's default: 0
    if role == "decode":
        yield from _check_decode_signal(metadata, spec.get("maxReplicaCount", _KEDA_MAX_REPLICAS))


def _check_target(target: Mapping[str, Any], role: str, metadata: Mapping[str, str]) -> Iterator[Problem]:
    kind = target.get("kind", "Deployment")
    if kind != ADAPTER_KIND:
        if _reads_pods(role, metadata) and "podSelector" not in metadata:
            yield Problem(
                "spec.scaleTargetRef.kind",
                "error",
                f"{role} finds its pods through a {ADAPTER_KIND}; with a {kind} target set metadata.podSelector",
            )
        else:
            yield Problem(
                "spec.scaleTargetRef.kind",
                "warning",
                (
                    f"{kind} is not a {ADAPTER_KIND}: RBG roles are scaled through the adapter RBG creates "
                    "for roles with scalingAdapter.enable: true"
                ),
            )
        return
    adapter = str(target.get("name", ""))
    for other, suffixes in _ROLE_SUFFIXES.items():
        if other != role and adapter.endswith(suffixes):
            yield Problem(
                "metadata.role",
                "warning",
                f"role is {role!r} but the target adapter {adapter!r} looks like the {other} role's",
            )


def _reads_pods(role: str, metadata: Mapping[str, str]) -> bool:
    """The trigger measures the role's running pods (everything but the JetStream lag and the Dynamo frontend's
    counts read through Prometheus); read from the raw metadata, which may be invalid."""
    if role == "decode":
        return True
    metric = metadata.get("metric", "queue-lag")
    return metric != "queue-lag" and not (metric == "prefill-tokens" and metadata.get("scrape") != "pods")


def _check_scale_to_zero(
    kind: object, role: str, metadata: Mapping[str, str], can_scale_to_zero: bool
) -> Iterator[Problem]:
    if not can_scale_to_zero:
        return
    if _reads_pods(role, metadata):
        yield Problem(
            "spec.minReplicaCount",
            "warning",
            (
                f"{role} measures its running pods: at 0 replicas there is nothing to measure and nothing "
                "wakes the role; set minReplicaCount to 1 or more"
            ),
        )
    elif kind == "external":
        yield Problem(
            "type",
            "warning",
            (
                "this role can scale to zero: use external-push, so the first queued request wakes it at once "
                "instead of at the next pollingInterval"
            ),
        )


def _recommended_decode() -> str:
    return "metric: seats, with maxNumSeqs the engine's sequence limit (vLLM --max-num-seqs, 256 by default)"


def _check_decode_signal(metadata: Mapping[str, str], max_replicas: object) -> Iterator[Problem]:
    metric = metadata.get("metric", _DEFAULT_METRIC)
    if metric == "gpu-memory":
        given = "metric: gpu-memory" if "metric" in metadata else "no metric, so gpu-memory (the default)"
        yield Problem(
            "metadata.metric",
            "warning",
            (
                f"{given}: engines that preallocate the KV cache (vLLM gpu-memory-utilization, SGLang "
                "mem-fraction-static, TensorRT-LLM) keep every decode pod near 0.95 whatever the load, above the "
                f"threshold, so the HPA adds a replica after each start-up until maxReplicaCount ({max_replicas}) "
                f"and keeps it there; use {_recommended_decode()} unless your engine allocates as it goes"
            ),
        )
    elif metric == "kv-cache":
        try:
            threshold = float(metadata.get("threshold", _DEFAULT_THRESHOLD))
        except ValueError:
            return  # the schema error is already reported
        if threshold > KV_THRESHOLD_ADVICE:
            yield Problem(
                "metadata.threshold",
                "warning",
                (
                    f"kv-cache threshold {threshold:g} is above where a decode replica runs out of sequence slots: "
                    f"with its 256 seats (vLLM's max_num_seqs) taken it shows about {KV_FILL_AT_SEAT_SATURATION:g} "
                    "KV-cache fill (the simulator's h200-tp2 deployment, 796,800 KV tokens, on the bundled Azure "
                    "conversation trace; docs/simulate.md), and new requests queue for a seat without the fill "
                    f"rising, so the role never scales; use {_recommended_decode()}, or a kv-cache threshold of "
                    f"{KV_THRESHOLD_ADVICE:g} or less"
                ),
            )


def _builtin(trigger: Mapping[str, Any], kind: str, adapter: str) -> Problem:
    """A KEDA built-in scaler on an RBG adapter: the pd-scaler trigger that replaces it, to paste."""
    given = {str(k): str(v) for k, v in _mapping(trigger.get("metadata")).items()}
    role = "prefill" if kind == "nats-jetstream" else _role_of(adapter)
    metadata: dict[str, str] = {"scalerAddress": SCALER_ADDRESS, "role": role}
    if kind == "nats-jetstream":
        # pd-scaler reads /jsz as the built-in does: the built-in's keys carry over unchanged.
        accepted = {f.alias or n for n, f in PrefillTrigger.model_fields.items()} - {"role"}
        metadata.update({k: v for k, v in given.items() if k in accepted})
        dropped = sorted(set(given) - accepted)
    else:
        # The built-in read Prometheus: so does the pd-scaler trigger, with the engine signal recommended for the
        # role, the engine told by the query's metric names (sglang:* or sglang_*, else vLLM's).
        query = given.get("query", "")
        metadata["prometheusAddress"] = given.get("serverAddress", "http://prometheus-operated.monitoring.svc:9090")
        metadata["metric"] = "engine-queue" if role == "prefill" else "seats"
        metadata["engine"] = "sglang" if re.search(r"sglang[:_]", query) else "vllm"
        if role == "decode":
            metadata["maxNumSeqs"] = "256"  # vLLM's default; neither engine exports its limit
        metadata["threshold"] = PREFILL_QUEUE_ADVICE if role == "prefill" else f"{_DEFAULT_THRESHOLD:g}"
        dropped = sorted(set(given) - {"serverAddress"})
    converted: dict[str, Any] = {"type": "external-push" if role == "prefill" else "external", "metadata": metadata}
    if "name" in trigger:
        converted = {"name": trigger["name"], **converted}
    message = (
        f"KEDA's built-in {kind} scaler on a {ADAPTER_KIND}: pd-scaler never sees this trigger; "
        f"for the {role} role use the pd-scaler trigger below"
    )
    if dropped:
        message += f" (no counterpart for {', '.join(dropped)})"
    if metadata.get("metric") == "seats":
        message += "; maxNumSeqs is vLLM's default: set your engine's sequence limit"
    return Problem("type", "warning", message, _as_list_item(converted, trigger))


def _role_of(adapter: str) -> str:
    return next((role for role, suffixes in _ROLE_SUFFIXES.items() if adapter.endswith(suffixes)), "decode")


def _as_list_item(item: Mapping[str, Any], original: object) -> str:
    """`item` as a YAML list entry at the column of the one it replaces (KEDA metadata values are strings)."""
    lines = yaml.safe_dump([dict(item)], sort_keys=False, default_flow_style=False).splitlines()
    # safe_dump starts the item at column 0, its keys at 2; the original's keys start at its column.
    indent = " " * max(original.column - 2, 0) if isinstance(original, _Node) else ""
    return "\n".join(indent + line for line in lines)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "check",
        help="lint ScaledObject manifests aimed at pd-scaler",
        description="Lint ScaledObject manifests aimed at pd-scaler. With serve's --namespaces, --allowed-sources "
        "and --connections-only, also what a scaler started with them would refuse.",
    )
    cmd.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="YAML manifests (multi-document, or a kind: List as kubectl prints); - reads stdin",
    )
    return cmd


def run(args: argparse.Namespace, admission: Admission) -> int:
    """Prints one line per finding (a trigger to paste below it); exit 1 if any is an error."""
    checker = Checker(admission)
    for name in args.files:
        checker.check(name)
    for finding in checker.findings:
        print(finding)
    errors = sum(f.severity == "error" for f in checker.findings)
    print(
        f"{checker.files} files, {checker.scaled_objects} ScaledObjects, {checker.triggers} triggers checked: "
        f"{errors} errors, {len(checker.findings) - errors} warnings"
    )
    return 1 if errors else 0
