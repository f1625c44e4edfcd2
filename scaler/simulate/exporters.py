"""What Prometheus holds about the decode pods: DCGM and engine metrics, scraped every `interval`.

- DCGM framebuffer: the engine preallocates `gpu_memory_utilization` of each GPU it uses once it is up, so used
  memory is flat whatever the load, as on real clusters; a GPU the pod requests but the engine does not use (the
  ACK guide's TP=1 engine in a two-GPU pod) shows none; a pod still loading shows none yet.
- Engine (vLLM V1 names, only from engines that are up): `vllm:kv_cache_usage_perc` = blocks in use over the
  blocks the engine has; `vllm:num_requests_running` = sequences in the batch; `vllm:num_requests_waiting` =
  requests in its waiting queue plus those admitted and waiting for their remote KV (V1 keeps those in the
  waiting queue); `vllm:num_preemptions` = preemptions so far (a counter).
- DCGM GPU utilisation: the share of the last scrape interval the replica spent computing.
Pods being removed keep exporting until they stop (pd-scaler leaves them out: they are not the role's pods).

The prefill role, as the router-based stacks export it (current Dynamo, SGLang PD: no JetStream queue; the
router hands each request to a prefill engine at once, where it waits): the model's FIFO of requests not yet
started is the requests waiting on the prefill engines, each attributed to an engine that is up in turn
(`vllm:num_requests_waiting`), and, for Dynamo's frontend, the prompt tokens queued (router's pending
`dynamo_frontend_router_queue_pending_isl_tokens`) and in flight on each worker
(`dynamo_frontend_worker_active_prefill_tokens`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scaler.simulate.cluster import Cluster

KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
PREEMPTIONS = "vllm:num_preemptions"


@dataclass(frozen=True)
class PodSample:
    pod: str
    ready: bool
    kv_fill: float  # 0 to 1
    memory_fraction: float  # mean over the pod's GPUs, 0 to 1
    engine_memory_fraction: float  # of each GPU the engine uses
    gpu_util: float  # percent, 0 to 100
    running: int
    waiting: int
    preemptions: int


# What each vLLM series reads from a sample.
VLLM: dict[str, Callable[[PodSample], float]] = {
    KV_CACHE_USAGE: lambda s: s.kv_fill,
    RUNNING: lambda s: float(s.running),
    WAITING: lambda s: float(s.waiting),
    PREEMPTIONS: lambda s: float(s.preemptions),
}


@dataclass(frozen=True)
class PrefillSample:
    pods: tuple[str, ...]  # prefill engines that are up and not being removed
    waiting: tuple[int, ...]  # prompt tokens of each request not yet started, oldest first
    active: tuple[tuple[str, int], ...]  # (pod, prompt tokens) of each request being prefilled


class Scraper:
    def __init__(self, cluster: Cluster, interval: float = 15.0) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples: tuple[PodSample, ...] = ()
        self.prefill = PrefillSample((), (), ())
        self._busy: dict[str, tuple[float, float]] = {}  # pod → (time, busy seconds) at the last scrape

    def scrape(self, now: float) -> None:
        cluster, profile = self.cluster, self.cluster.profile
        utilization = profile.spec.gpu_memory_utilization
        samples, busy = [], {}
        for d in cluster.decode:
            ready = d.ready_at <= now
            then, busy_then = self._busy.get(d.name, (now, d.busy_s))
            util = 100.0 * (d.busy_s - busy_then) / (now - then) if now > then else 0.0
            busy[d.name] = (now, d.busy_s)
            engine = utilization if ready else 0.0
            samples.append(
                PodSample(
                    pod=d.name,
                    ready=ready,
                    kv_fill=cluster.kv_fill(d) if ready else 0.0,
                    memory_fraction=engine * profile.tp / profile.gpus,
                    engine_memory_fraction=engine,
                    gpu_util=min(100.0, util),
                    running=d.running + len(d.recomputing) if ready else 0,
                    waiting=d.n_waiting + d.remote - len(d.recomputing) if ready else 0,
                    preemptions=d.preemptions,
                )
            )
        self.samples, self._busy = tuple(samples), busy
        up = [p for p in cluster.prefill if p.ready_at <= now and not p.draining]
        self.prefill = PrefillSample(
            tuple(p.name for p in up),
            tuple(r.prompt for r in cluster.prefill_queue),
            tuple((p.name, p.busy.prompt) for p in cluster.prefill if p.busy is not None),
        )

    def prefill_waiting(self) -> list[tuple[str, float]]:
        """(pod, requests waiting) per prefill engine that is up: the queue dealt out to them in turn."""
        pods, waiting = self.prefill.pods, len(self.prefill.waiting)
        return [(pod, float(waiting // len(pods) + (i < waiting % len(pods)))) for i, pod in enumerate(pods)]

    def vllm_series(self, name: str) -> list[tuple[str, float]]:
        """(pod, value) of one vLLM V1 series at the last scrape, for the engines that are up."""
        read = VLLM[name]
        return [(s.pod, read(s)) for s in self.samples if s.ready]
