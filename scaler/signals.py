"""From Prometheus series to one value per pod: the decode signals. Pure functions.

Pod attribution: dcgm-exporter labels a GPU's series with the pod it is allocated to; scraped with
`honor_labels: false` (the kube-prometheus-stack default) those labels become `exported_pod` /
`exported_namespace` and `pod` / `namespace` name the exporter itself. `exported_*` wins when present.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scaler.observations import DecodeLoad

Labels = Mapping[str, str]
PodKey = tuple[str, str]  # (namespace, pod)

FB_USED, FB_FREE, FB_RESERVED = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"

# Engine KV-cache fill (fraction 0 to 1), newest name first. Prometheus 2.x stores `vllm:x` as `vllm_x` when the
# engine's client negotiates underscore escaping; Prometheus 3 keeps the colon: accept both.
KV_CACHE_NAMES: dict[str, tuple[str, ...]] = {
    "vllm": (
        "vllm:kv_cache_usage_perc",
        "vllm_kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm_gpu_cache_usage_perc",
    ),
    "sglang": ("sglang:token_usage", "sglang_token_usage"),
    "dynamo": ("dynamo_component_kvstats_gpu_cache_usage_percent",),
}  # fmt: skip


# Sequences an engine runs and holds waiting (the capacity policy's decode load), newest name first. Dynamo's
# workers run vLLM and export its metrics.
_VLLM_RUNNING = ("vllm:num_requests_running", "vllm_num_requests_running")
_VLLM_WAITING = ("vllm:num_requests_waiting", "vllm_num_requests_waiting")
RUNNING_NAMES: dict[str, tuple[str, ...]] = {
    "vllm": _VLLM_RUNNING,
    "sglang": ("sglang:num_running_reqs", "sglang_num_running_reqs"),
    "dynamo": _VLLM_RUNNING,
}
WAITING_NAMES: dict[str, tuple[str, ...]] = {
    "vllm": _VLLM_WAITING, "sglang": ("sglang:num_queue_reqs", "sglang_num_queue_reqs"), "dynamo": _VLLM_WAITING,
}  # fmt: skip


@dataclass(frozen=True)
class Series:
    labels: Labels
    value: float

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


def _names_query(names: Iterable[str]) -> str:
    return '{__name__=~"' + "|".join(names) + '"}'


def query(metric: str, engine: str) -> str:
    """The one PromQL query a decode signal needs; shared by every ScaledObject that uses the signal."""
    if metric == "gpu-memory":
        return _names_query((FB_USED, FB_FREE, FB_RESERVED))
    if metric == "gpu-util":
        return GPU_UTIL
    return _names_query(KV_CACHE_NAMES[engine])


def loads_query(engine: str) -> str:
    """The one query for the decode load of `engine`'s pods: running, waiting and KV-cache fill."""
    return _names_query(RUNNING_NAMES[engine] + WAITING_NAMES[engine] + KV_CACHE_NAMES[engine])


def loads(engine: str, series: Iterable[Series]) -> dict[PodKey, DecodeLoad]:
    """Each pod's decode load; a pod counts only with its running-sequences series (KV fill absent counts 0).
    Per pod, the max over its series of one name, as SGLang's TP ranks each report the same numbers."""
    series = tuple(series)
    running = _kv_cache(RUNNING_NAMES[engine], series)
    waiting = _kv_cache(WAITING_NAMES[engine], series)
    kv = _kv_cache(KV_CACHE_NAMES[engine], series)
    return {pod: DecodeLoad(r, waiting.get(pod, 0.0), kv.get(pod, 0.0)) for pod, r in running.items()}


def pod_of(labels: Labels) -> PodKey | None:
    if "exported_pod" in labels:
        return labels.get("exported_namespace", ""), labels["exported_pod"]
    if "pod" in labels:
        return labels.get("namespace", ""), labels["pod"]
    return None


def _gpu(labels: Labels) -> str:
    return labels.get("UUID") or labels.get("gpu", "")


def per_pod(metric: str, engine: str, series: Iterable[Series]) -> dict[PodKey, float]:
    """Each pod's value of `metric`: GPU fractions are the mean over the pod's GPUs; KV-cache fill the max over
    the pod's series (SGLang emits one per TP rank)."""
    if metric == "gpu-memory":
        return _gpu_memory(series)
    if metric == "gpu-util":
        return _mean_per_pod((pod, s.value / 100.0) for s in series if (pod := pod_of(s.labels)))
    return _kv_cache(KV_CACHE_NAMES[engine], series)


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


def _kv_cache(names: tuple[str, ...], series: Iterable[Series]) -> dict[PodKey, float]:
    best: dict[PodKey, tuple[int, float]] = {}  # pod → (rank of the name, max value under that name)
    for s in series:
        pod = pod_of(s.labels)
        if pod is None or s.name not in names:
            continue
        rank = names.index(s.name)
        if pod not in best or rank < best[pod][0]:
            best[pod] = (rank, s.value)
        elif rank == best[pod][0]:
            best[pod] = (rank, max(best[pod][1], s.value))
    return {pod: value for pod, (_, value) in best.items()}
