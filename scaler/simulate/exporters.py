"""What Prometheus holds about the decode pods: DCGM and engine metrics, scraped every `interval`.

- DCGM framebuffer: the engine preallocates `gpu_memory_utilization` of each GPU once it is up, so used memory
  is flat whatever the load, as on real clusters; a pod still loading shows none yet.
- Engine KV-cache fill: the blocks in use over the blocks the engine has, as vLLM's `kv_cache_usage_perc`; only
  engines that are up export it.
- DCGM GPU utilisation: the share of the last scrape interval the replica spent stepping.
Pods being removed keep exporting until they stop (pd-scaler leaves them out: they are not the role's pods).
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.simulate.cluster import Cluster


@dataclass(frozen=True)
class PodSample:
    pod: str
    ready: bool
    kv_fill: float  # 0 to 1
    memory_fraction: float  # of each GPU, 0 to 1
    gpu_util: float  # percent, 0 to 100


class Scraper:
    def __init__(self, cluster: Cluster, interval: float = 15.0) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples: tuple[PodSample, ...] = ()
        self._busy: dict[str, tuple[float, float]] = {}  # pod → (time, busy seconds) at the last scrape

    def scrape(self, now: float) -> None:
        cluster, utilization = self.cluster, self.cluster.profile.spec.gpu_memory_utilization
        samples, busy = [], {}
        for d in cluster.decode:
            ready = d.ready_at <= now
            then, busy_then = self._busy.get(d.name, (now, d.busy_s))
            util = 100.0 * (d.busy_s - busy_then) / (now - then) if now > then else 0.0
            busy[d.name] = (now, d.busy_s)
            samples.append(
                PodSample(
                    pod=d.name,
                    ready=ready,
                    kv_fill=cluster.kv_fill(d) if ready else 0.0,
                    memory_fraction=utilization if ready else 0.0,
                    gpu_util=min(100.0, util),
                )
            )
        self.samples, self._busy = tuple(samples), busy
