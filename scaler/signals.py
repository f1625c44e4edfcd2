"""From metric series to one value per pod (or per router worker): every signal a trigger can scale on. Pure.

A `Signal` names the series it reads (with the exact names and labels the engines export, in both spellings) and
how a pod's value is made from them; the same code serves series answered by Prometheus and series scraped from
the pods' own /metrics.

Pod attribution: dcgm-exporter labels a GPU's series with the pod it is allocated to; scraped with
`honor_labels: false` (the kube-prometheus-stack default) those labels become `exported_pod` /
`exported_namespace` and `pod` / `namespace` name the exporter itself. `exported_*` wins when present. Engine
series carry the pod their target was scraped from (a PodMonitor's `pod` label, or the scraped pod itself).

Ranks: a tensor-parallel engine may emit the same gauge once per rank (SGLang's `tp_rank`, `pp_rank`,
`moe_ep_rank`): those are one measurement, so a pod takes the max over them. Data-parallel engines in one pod
(vLLM's `engine`, SGLang's `dp_rank`) hold separate queues and sequences: those are summed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Labels = Mapping[str, str]
PodKey = tuple[str, str]  # (namespace, pod)

FB_USED, FB_FREE, FB_RESERVED = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"


def spellings(*names: str) -> tuple[str, ...]:
    """Each name as the engine exports it and as Prometheus 2.x stores it when the engine's client negotiates
    underscore escaping (`vllm:x` → `vllm_x`); Prometheus 3 keeps the colon. Preferred spelling first."""
    out: list[str] = []
    for name in names:
        out += [name, name.replace(":", "_")] if ":" in name else [name]
    return tuple(out)


# Engine KV-cache fill (fraction 0 to 1), newest name first: vLLM V1 renamed gpu_cache_usage_perc.
KV_CACHE_NAMES: dict[str, tuple[str, ...]] = {
    "vllm": spellings("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "sglang": spellings("sglang:token_usage"),
    "dynamo": ("dynamo_component_kvstats_gpu_cache_usage_percent",),
}
# The label that tells data-parallel engines of one pod apart (summed); series that differ in any other label, as
# the ranks of one engine do, are one measurement (max).
PARALLEL_LABELS = {"vllm": "engine", "sglang": "dp_rank"}
# The port each engine serves /metrics on by default (vLLM's and SGLang's API servers; Dynamo's frontend,
# DYN_HTTP_PORT; Dynamo workers serve theirs on DYN_SYSTEM_PORT, off by default and 8081 in Dynamo's examples).
METRICS_PORTS = {"vllm": 8000, "sglang": 30000, "dynamo": 8000}
DYNAMO_SYSTEM_PORT = 8081


@dataclass(frozen=True)
class Series:
    labels: Labels
    value: float

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


@dataclass(frozen=True)
class Matcher:
    """One PromQL label matcher: `label op "value"`, op one of = != =~ !~ (regexes anchored, as in PromQL)."""

    label: str
    op: str
    value: str

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """`a="x",b=~"y.*"` → matchers; ValueError saying what is wrong."""
    out, pos = [], 0
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    while pos < len(text):
        m = _MATCHER.match(text, pos)
        if m is None:
            raise ValueError(f'expected label="value" matchers, comma-separated; cannot read {text[pos:]!r}')
        label, op, raw = m.group(1), m.group(2), m.group(3)
        if label == "__name__":
            raise ValueError("__name__ is chosen by the metric; match other labels")
        value = re.sub(r"\\(.)", r"\1", raw)
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{label}{op}: not a regular expression: {exc}") from None
        out.append(Matcher(label, op, value))
        pos = m.end()
        if m.group(4) == "" and pos < len(text):
            raise ValueError(f"cannot read {text[pos:]!r}")
    if not out:
        raise ValueError('expected at least one label="value" matcher')
    return tuple(out)


@dataclass(frozen=True)
class Signal:
    """What one (role, metric, engine) reads, and how its values are made.

    `parts` are the gauges summed into a value (e.g. SGLang's queue and its PD queues), each with its accepted
    spellings; `where` the label matchers its series must pass (e.g. SGLang's `engine_type`); `per_worker`: the
    series are the Dynamo frontend's, one per router worker, not attributed to pods."""

    role: str
    metric: str
    engine: str | None
    unit: str
    parts: tuple[tuple[str, ...], ...]
    where: tuple[Matcher, ...] = ()
    per_worker: bool = False
    port: int | None = None  # /metrics port on the pods; None: not served by the role's pods

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for part in self.parts for name in part)

    def query(self, matchers: tuple[Matcher, ...] = ()) -> str:
        """The one PromQL query this signal needs; shared by every ScaledObject with the same signal and matchers."""
        selector = ['__name__=~"' + "|".join(self.names) + '"']
        selector += [m.promql() for m in (*self.where, *matchers)]
        return "{" + ", ".join(selector) + "}"


class Unsupported(ValueError):
    """The engine does not export what the metric needs: the message says what it does export."""


def _not_role(role: str) -> Matcher:
    # SGLang tags series with the server's PD mode; older builds say `unified` everywhere, so only the other
    # role's series are left out.
    return Matcher("engine_type", "!=", "decode" if role == "prefill" else "prefill")


_SIGNALS: dict[tuple[str, str, str | None], Signal] = {}


def _add(*signals: Signal) -> None:
    for s in signals:
        _SIGNALS[(s.role, s.metric, s.engine)] = s


_add(
    Signal("decode", "gpu-memory", None, "fraction", ((FB_USED,), (FB_FREE,), (FB_RESERVED,))),
    Signal("decode", "gpu-util", None, "fraction", ((GPU_UTIL,),)),
    Signal("decode", "kv-cache", "vllm", "fraction", (KV_CACHE_NAMES["vllm"],), port=METRICS_PORTS["vllm"]),
    Signal("decode", "kv-cache", "sglang", "fraction", (KV_CACHE_NAMES["sglang"],), (_not_role("decode"),), port=30000),
    Signal("decode", "kv-cache", "dynamo", "fraction", (KV_CACHE_NAMES["dynamo"],), port=DYNAMO_SYSTEM_PORT),
    Signal("prefill", "engine-queue", "vllm", "requests", (spellings("vllm:num_requests_waiting"),), port=8000),
    Signal(
        "prefill",
        "engine-queue",
        "sglang",
        "requests",
        (
            spellings("sglang:num_queue_reqs"),
            spellings("sglang:num_prefill_prealloc_queue_reqs"),
            spellings("sglang:num_prefill_inflight_queue_reqs"),
        ),
        (_not_role("prefill"),),
        port=30000,
    ),
    Signal(
        "prefill",
        "prefill-tokens",
        "dynamo",
        "tokens",
        (
            ("dynamo_frontend_worker_active_prefill_tokens",),
            ("dynamo_frontend_router_queue_pending_isl_tokens",),
        ),
        (Matcher("worker_type", "=", "prefill"),),
        per_worker=True,
        port=METRICS_PORTS["dynamo"],
    ),
    Signal(
        "decode",
        "seats",
        "vllm",
        "sequences",
        (
            spellings("vllm:num_requests_running"),
            spellings("vllm:num_requests_waiting_by_reason", "vllm:num_requests_waiting"),
        ),
        port=8000,
    ),
    Signal(
        "decode",
        "seats",
        "sglang",
        "sequences",
        (
            spellings("sglang:num_running_reqs"),
            spellings("sglang:num_queue_reqs"),
            spellings("sglang:num_decode_prealloc_queue_reqs"),
            spellings("sglang:num_decode_transfer_queue_reqs"),
        ),
        (_not_role("decode"),),
        port=30000,
    ),
)

_UNSUPPORTED = {
    ("prefill", "engine-queue", "dynamo"): (
        "Dynamo's frontend exports the prefill workers' waiting prompt tokens, not a request queue: use metric: "
        "prefill-tokens, or engine: vllm / sglang to read the workers' own engine metrics"
    ),
    ("prefill", "prefill-tokens", "vllm"): (
        "vLLM exports only request counts for its waiting queue (vllm:num_requests_waiting), no waiting prompt "
        "tokens: use metric: engine-queue, or engine: dynamo for Dynamo's frontend token counts"
    ),
    ("prefill", "prefill-tokens", "sglang"): (
        "SGLang exports only request counts for its prefill queues (sglang:num_queue_reqs and the PD prefill "
        "queues), no waiting prompt tokens: use metric: engine-queue"
    ),
    ("decode", "seats", "dynamo"): (
        "Dynamo's own metrics count KV blocks, not sequences: Dynamo workers pass their engine's metrics "
        "through, so use engine: vllm or sglang"
    ),
}
DEFAULT_ENGINE = {"kv-cache": "vllm", "engine-queue": "vllm", "seats": "vllm", "prefill-tokens": "dynamo"}
ENGINE_METRICS = tuple(DEFAULT_ENGINE)


def signal(role: str, metric: str, engine: str | None = None) -> Signal:
    """The signal for a trigger; Unsupported if the engine does not export what the metric needs."""
    engine = (engine or DEFAULT_ENGINE[metric]) if metric in DEFAULT_ENGINE else None
    key = (role, metric, engine)
    if key in _UNSUPPORTED:
        raise Unsupported(_UNSUPPORTED[key])
    return _SIGNALS[key]


def query(metric: str, engine: str, matchers: tuple[Matcher, ...] = ()) -> str:
    """The PromQL query of a decode signal (kept for callers that name signals by metric and engine)."""
    return signal("decode", metric, engine).query(matchers)


def union_query(sigs: tuple[Signal, ...], matchers: tuple[Matcher, ...] = ()) -> str:
    """One PromQL query for several signals of the same engine (their `where` matchers must be the same)."""
    assert len({s.where for s in sigs}) == 1, "signals with different matchers need separate queries"
    names = tuple(n for s in sigs for n in s.names)
    return Signal(sigs[0].role, "union", sigs[0].engine, "", (names,), sigs[0].where).query(matchers)


def pod_of(labels: Labels) -> PodKey | None:
    if "exported_pod" in labels:
        return labels.get("exported_namespace", ""), labels["exported_pod"]
    if "pod" in labels:
        return labels.get("namespace", ""), labels["pod"]
    return None


def _gpu(labels: Labels) -> str:
    return labels.get("UUID") or labels.get("gpu", "")


@dataclass(frozen=True)
class Values:
    """A signal's values: per pod (or per router worker), and for `seats` the number of data-parallel engines
    each pod's value was measured over."""

    values: dict[PodKey, float]
    engines: dict[PodKey, int]


def evaluate(sig: Signal, series: Iterable[Series], matchers: tuple[Matcher, ...] = ()) -> Values:
    """Each pod's (or worker's) value of `sig` from `series`; series failing the signal's or the user's matchers
    are left out (Prometheus applies them already; scraped series are filtered here)."""
    wanted = set(sig.names)
    checks = (*sig.where, *matchers)
    kept = [s for s in series if s.name in wanted and all(m.matches(s.labels) for m in checks)]
    if sig.metric == "gpu-memory":
        return Values(_gpu_memory(kept), {})
    if sig.metric == "gpu-util":
        return Values(_mean_per_pod((pod, s.value / 100.0) for s in kept if (pod := pod_of(s.labels))), {})
    if sig.per_worker:
        return Values(_per_worker(kept), {})
    if sig.metric == "kv-cache":
        return Values(_per_pod_max(sig.parts[0], kept), {})
    return _counts(sig, kept)


def _gpu_memory(series: Iterable[Series]) -> dict[PodKey, float]:
    gpus: dict[tuple[PodKey, str], dict[str, float]] = defaultdict(dict)
    for s in series:
        if pod := pod_of(s.labels):
            gpus[(pod, _gpu(s.labels))][s.name] = s.value
    fractions = []
    for (pod, _), fields in gpus.items():
        if FB_USED in fields and FB_FREE in fields:
            # Older exporters have no RESERVED series: it counts as 0.
            total = fields[FB_USED] + fields[FB_FREE] + fields.get(FB_RESERVED, 0.0)
            if total > 0:
                fractions.append((pod, fields[FB_USED] / total))
    return _mean_per_pod(fractions)


def _mean_per_pod(values: Iterable[tuple[PodKey, float]]) -> dict[PodKey, float]:
    grouped: dict[PodKey, list[float]] = defaultdict(list)
    for pod, value in values:
        grouped[pod].append(value)
    return {pod: sum(v) / len(v) for pod, v in grouped.items()}


def _preferred(names: tuple[str, ...], series: Iterable[Series], key: Callable[[Series], object]) -> list[Series]:
    """Per `key`, only the series under the most preferred of `names` present (a renamed metric or the other
    spelling is read only where the preferred one is absent, never added to it)."""
    best: dict[object, int] = {}
    grouped: list[tuple[object, int, Series]] = []
    for s in series:
        if s.name in names:
            k, rank = key(s), names.index(s.name)
            best[k] = min(best.get(k, rank), rank)
            grouped.append((k, rank, s))
    return [s for k, rank, s in grouped if rank == best[k]]


def _per_pod_max(names: tuple[str, ...], series: Iterable[Series]) -> dict[PodKey, float]:
    out: dict[PodKey, float] = {}
    for s in _preferred(names, series, lambda s: pod_of(s.labels)):
        pod = pod_of(s.labels)
        if pod is not None:
            out[pod] = max(out.get(pod, s.value), s.value)
    return out


def _counts(sig: Signal, series: list[Series]) -> Values:
    """Request or sequence counts per pod: each part's max over ranks, summed over data-parallel engines and
    over parts. For `seats` the number of engines is kept: a pod's limit is the per-engine limit times it."""
    parallel = PARALLEL_LABELS.get(sig.engine or "", "")
    totals: dict[PodKey, float] = defaultdict(float)
    engines: dict[PodKey, set[str]] = defaultdict(set)
    for part in sig.parts:
        peak: dict[tuple[PodKey, str], float] = {}
        for s in _preferred(part, series, lambda s: pod_of(s.labels)):
            pod = pod_of(s.labels)
            if pod is None:
                continue
            if s.name.endswith("waiting_by_reason"):
                # One series per reason (capacity, deferred): distinct requests, summed like engines.
                group = (pod, s.labels.get(parallel, "") + "/" + s.labels.get("reason", ""))
            else:
                group = (pod, s.labels.get(parallel, ""))
            peak[group] = max(peak.get(group, s.value), s.value)
            if part is sig.parts[0]:
                engines[pod].add(s.labels.get(parallel, ""))
        for (pod, _), value in peak.items():
            totals[pod] += value
    if sig.metric == "seats":
        # Only pods that report running sequences are measured: waiting alone says nothing of the seats held.
        return Values({pod: totals[pod] for pod in engines}, {pod: len(e) for pod, e in engines.items()})
    return Values(dict(totals), {})


def _per_worker(series: list[Series]) -> dict[PodKey, float]:
    """The Dynamo frontend's counts: one value per prefill worker (`worker_id`, data-parallel ranks summed) and
    one for the router's own queue; several frontends each count what they routed, so they are summed too."""
    out: dict[PodKey, float] = defaultdict(float)
    for s in series:
        worker = s.labels.get("worker_id")
        out[("", f"worker {worker}" if worker else "router queue")] += s.value
    return dict(out)
