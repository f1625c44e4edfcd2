"""Exporters the tests serve with prometheus_client, in the exact formats of ../shared/reference/samples:
dcgm-exporter (per GPU, pod attribution labels) and the engines' KV-cache gauges (vLLM, SGLang, Dynamo).

The cluster they describe: RBG `dynamo-pd` in namespace `llm`, decode pods `dynamo-pd-decoder-{0,1}` and prefill
pods `dynamo-pd-prefill-{0,1}`, TP=2 (two GPUs per pod), a decode and a prefill pod on each node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.servers import free_port

NAMESPACE = "llm"
DCGM_LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]
POD_LABELS = ["container", "namespace", "pod", "pod_uid"]
MIB_PER_GPU = 143360  # H200 (140 GiB): FB_USED + FB_FREE + FB_RESERVED; fractions come out exact


@dataclass
class Gpu:
    index: int
    node: str
    pod: str | None  # the pod the GPU is allocated to, if any
    memory: float  # fraction of framebuffer used
    util: float  # percent

    def labels(self) -> list[str]:
        return [
            str(self.index),
            f"GPU-{self.node}-{self.index:04d}",
            f"00000000:{0x18 + self.index:02X}:00.0",
            f"nvidia{self.index}",
            "NVIDIA H200",
            self.node,
            "570.124.06",
        ]


@dataclass(eq=False)  # registries key collectors by identity
class Dcgm(Collector):
    """One node's dcgm-exporter. `reserved`: False mimics an old exporter without DCGM_FI_DEV_FB_RESERVED."""

    gpus: list[Gpu]
    reserved: bool = True

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", lambda g: g.util),
            "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", lambda g: self._split(g)[1]),
            "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", lambda g: self._split(g)[0]),
        }
        if self.reserved:
            families["DCGM_FI_DEV_FB_RESERVED"] = ("Framebuffer memory reserved (in MiB).", lambda g: self._split(g)[2])
        for name, (doc, value) in families.items():
            allocated = GaugeMetricFamily(name, doc, labels=DCGM_LABELS + POD_LABELS)
            free = GaugeMetricFamily(name, doc, labels=DCGM_LABELS)
            for gpu in self.gpus:
                if gpu.pod:
                    allocated.add_metric([*gpu.labels(), "main", NAMESPACE, gpu.pod, ""], value(gpu))
                else:
                    free.add_metric(gpu.labels(), value(gpu))
            merged = GaugeMetricFamily(name, doc)
            merged.samples = allocated.samples + free.samples
            yield merged

    def _split(self, gpu: Gpu) -> tuple[float, float, float]:
        reserved = 608.0 if self.reserved else 0.0
        used = gpu.memory * MIB_PER_GPU
        return used, MIB_PER_GPU - used - reserved, reserved


@dataclass(eq=False)
class Engine(Collector):
    """One pod's engine /metrics: gauges, name → list of (labels, value)."""

    kv: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, series in self.kv.items():
            family = GaugeMetricFamily(name, f"{name} as the engine exports it.")
            for labels, value in series:
                family.add_sample(name, labels, value)
            yield family


class Exporter:
    """A /metrics endpoint on a free loopback port, like a pod's."""

    def __init__(self, collector: Collector, addr: str = "127.0.0.1", port: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.addr, self.port = addr, port or free_port()
        self.server: WSGIServer
        self.server, _ = start_http_server(self.port, addr=addr, registry=self.registry)

    @property
    def target(self) -> str:
        return f"{self.addr}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


VLLM = {"engine": "0", "model_name": "Qwen/Qwen3-32B"}
SGLANG = {"engine_type": "unified", "model_name": "Qwen/Qwen3-32B", "moe_ep_rank": "0", "pp_rank": "0"}
DYNAMO = {"dynamo_component": "backend", "dynamo_namespace": "dynamo"}


def cluster() -> tuple[list[Exporter], list[dict[str, object]]]:
    """The exporters and Prometheus scrape jobs of the test cluster. Expected per decode pod:
    gpu-memory 0.5 / 0.7, gpu-util 0.625 / 0.25, vLLM KV 0.25 / 0.5, SGLang KV 0.375 / 0.25, Dynamo KV 0.125 / 0.375."""
    node0 = Dcgm(
        [
            Gpu(0, "gpu-node-0", "dynamo-pd-decoder-0", 0.5, 50),
            Gpu(1, "gpu-node-0", "dynamo-pd-decoder-0", 0.5, 75),
            Gpu(2, "gpu-node-0", "dynamo-pd-prefill-0", 0.9, 100),  # another role on the same node
            Gpu(3, "gpu-node-0", "dynamo-pd-prefill-0", 0.9, 100),
            Gpu(4, "gpu-node-0", None, 0.0, 0),  # allocated to no pod
        ]
    )
    node1 = Dcgm(
        [
            Gpu(0, "gpu-node-1", "dynamo-pd-decoder-1", 0.7, 25),
            Gpu(1, "gpu-node-1", "dynamo-pd-decoder-1", 0.7, 25),
            Gpu(2, "gpu-node-1", "dynamo-pd-prefill-1", 0.9, 100),
            Gpu(3, "gpu-node-1", "dynamo-pd-prefill-1", 0.9, 100),
        ],
        reserved=False,
    )
    engines = {
        "dynamo-pd-decoder-0": Engine(
            {
                "vllm:kv_cache_usage_perc": [(VLLM, 0.25)],
                "sglang:token_usage": [(SGLANG | {"tp_rank": "0"}, 0.25), (SGLANG | {"tp_rank": "1"}, 0.375)],
                "dynamo_component_kvstats_gpu_cache_usage_percent": [(DYNAMO, 0.125)],
            }
        ),
        "dynamo-pd-decoder-1": Engine(
            {
                "vllm:gpu_cache_usage_perc": [(VLLM, 0.5)],  # an older vLLM
                "sglang:token_usage": [(SGLANG | {"tp_rank": "0"}, 0.25), (SGLANG | {"tp_rank": "1"}, 0.125)],
                "dynamo_component_kvstats_gpu_cache_usage_percent": [(DYNAMO, 0.375)],
            }
        ),
        "dynamo-pd-prefill-0": Engine({"vllm:kv_cache_usage_perc": [(VLLM, 0.99)]}),
    }
    node0_exporter, node1_exporter = Exporter(node0), Exporter(node1)
    engine_exporters = {pod: Exporter(engine) for pod, engine in engines.items()}
    jobs: list[dict[str, object]] = [
        # The exporter's own pod/namespace labels kept (honor_labels: true) ...
        {"job_name": "dcgm-honor", "honor_labels": True, "static_configs": [{"targets": [node0_exporter.target]}]},
        # ... or renamed exported_pod/exported_namespace, with pod/namespace naming the exporter (the default).
        {
            "job_name": "dcgm-exporter",
            "static_configs": [
                {
                    "targets": [node1_exporter.target],
                    "labels": {"pod": "nvidia-dcgm-exporter-x7k2p", "namespace": "gpu-operator"},
                }
            ],
        },
        # Engines scraped like a PodMonitor does: the target carries its pod and namespace.
        {
            "job_name": "engines",
            "static_configs": [
                {"targets": [exporter.target], "labels": {"pod": pod, "namespace": NAMESPACE}}
                for pod, exporter in engine_exporters.items()
            ],
        },
    ]
    return [node0_exporter, node1_exporter, *engine_exporters.values()], jobs


# --- engines of PD deployments, with the exact names and labels of their sources (REFERENCE §7) -----------------

MODEL = "Qwen/Qwen3-32B"
V1 = {"model_name": MODEL}  # vLLM V1: model_name, engine (the data-parallel engine's index)
SGLANG_PD = {"model_name": MODEL, "pp_rank": "0", "moe_ep_rank": "0"}  # + engine_type, tp_rank


def _sglang(engine_type: str, ranks: dict[str, list[float]]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """SGLang gauges of one TP=2 server (`--enable-metrics-for-all-schedulers`): each name's value per tp_rank."""
    return {
        f"sglang:{name}": [(SGLANG_PD | {"engine_type": engine_type, "tp_rank": str(r)}, v) for r, v in enumerate(vs)]
        for name, vs in ranks.items()
    }


def _frontend(namespace: str, tokens: dict[str, dict[str, float]]) -> Engine:
    """A current Dynamo frontend: per-worker active prefill tokens and the router's pending prompt tokens."""
    workers = [
        ({"dynamo_namespace": namespace, "worker_id": worker, "worker_type": kind, "dp_rank": "0"}, value)
        for kind, per in tokens.items()
        if kind != "queue"
        for worker, value in per.items()
    ]
    queue = [({"dynamo_namespace": namespace, "worker_type": kind}, value) for kind, value in tokens["queue"].items()]
    return Engine(
        {
            "dynamo_frontend_worker_active_prefill_tokens": workers,
            "dynamo_frontend_router_queue_pending_isl_tokens": queue,
            "dynamo_frontend_queued_requests": [({"dynamo_namespace": namespace, "model": MODEL}, 3)],
        }
    )


# pod → (label app, role, engine collector). Expected totals (see tests/test_signals.py):
#   vLLM prefill engine-queue 3 + (4 + 2) = 9 (pod 1 runs two data-parallel engines)
#   vLLM decode seats (100 + 15 + 5) / 256 + 50 / 256 = 0.6640625 with maxNumSeqs 256
#   SGLang prefill engine-queue (2 + 1 + 3) + (1 + 0 + 1) = 8 (max over TP ranks)
#   SGLang decode seats (30 + 2 + 4 + 4) / 64 + 16 / 64 = 0.875 with maxNumSeqs 64
#   Dynamo prefill-tokens 1500 + 2500 + 4096 = 8096 in dynamo_namespace llm-dynamo; 100000 more in another one
ENGINE_PODS: dict[str, tuple[str, str, Engine]] = {
    "vllm-prefill-0": ("vllm", "prefill", Engine({"vllm:num_requests_waiting": [(V1 | {"engine": "0"}, 3)]})),
    "vllm-prefill-1": (
        "vllm",
        "prefill",
        Engine({"vllm:num_requests_waiting": [(V1 | {"engine": "0"}, 4), (V1 | {"engine": "1"}, 2)]}),
    ),
    "vllm-decode-0": (
        "vllm",
        "decode",
        Engine(
            {
                "vllm:num_requests_running": [(V1 | {"engine": "0"}, 100)],
                "vllm:num_requests_waiting": [(V1 | {"engine": "0"}, 20)],
                "vllm:num_requests_waiting_by_reason": [
                    (V1 | {"engine": "0", "reason": "capacity"}, 15),
                    (V1 | {"engine": "0", "reason": "deferred"}, 5),
                ],
                "vllm:kv_cache_usage_perc": [(V1 | {"engine": "0"}, 0.5)],
            }
        ),
    ),
    "vllm-decode-1": (  # a vLLM without waiting_by_reason
        "vllm",
        "decode",
        Engine(
            {
                "vllm:num_requests_running": [(V1 | {"engine": "0"}, 50)],
                "vllm:num_requests_waiting": [(V1 | {"engine": "0"}, 0)],
                "vllm:kv_cache_usage_perc": [(V1 | {"engine": "0"}, 0.25)],
            }
        ),
    ),
    "sglang-prefill-0": (
        "sglang",
        "prefill",
        Engine(
            _sglang(
                "prefill",
                {
                    "num_queue_reqs": [2, 2],
                    "num_prefill_prealloc_queue_reqs": [1, 0],
                    "num_prefill_inflight_queue_reqs": [3, 3],
                    "num_running_reqs": [8, 8],
                },
            )
        ),
    ),
    "sglang-prefill-1": (
        "sglang",
        "prefill",
        Engine(
            _sglang(
                "prefill",
                {
                    "num_queue_reqs": [1, 1],
                    "num_prefill_prealloc_queue_reqs": [0, 0],
                    "num_prefill_inflight_queue_reqs": [1, 0],
                },
            )
        ),
    ),
    "sglang-decode-0": (
        "sglang",
        "decode",
        Engine(
            _sglang(
                "decode",
                {
                    "num_running_reqs": [30, 30],
                    "num_queue_reqs": [2, 2],
                    "num_decode_prealloc_queue_reqs": [4, 4],
                    "num_decode_transfer_queue_reqs": [4, 3],
                    "token_usage": [0.5, 0.5],
                },
            )
        ),
    ),
    "sglang-decode-1": (
        "sglang",
        "decode",
        Engine(
            _sglang(
                "decode",
                {
                    "num_running_reqs": [16, 16],
                    "num_queue_reqs": [0, 0],
                    "num_decode_prealloc_queue_reqs": [0, 0],
                    "num_decode_transfer_queue_reqs": [0, 0],
                },
            )
        ),
    ),
    "dynamo-frontend-0": (
        "dynamo",
        "frontend",
        _frontend(
            "llm-dynamo",
            {
                "prefill": {"7587888160958628000": 1500, "7587888160958628002": 2500},
                "decode": {"7587888160958628001": 999},
                "queue": {"prefill": 4096, "decode": 77},
            },
        ),
    ),
    "other-frontend-0": (  # another deployment's frontend, same Prometheus
        "other",
        "frontend",
        _frontend("other-dynamo", {"prefill": {"7587888160958629000": 100000}, "queue": {"prefill": 0}}),
    ),
}


@dataclass
class EngineCluster:
    """The engines of ENGINE_PODS, each on its own loopback address and one shared port (as pods share a
    container port), a Prometheus scrape job for them, and each pod's labels and IP for the Kubernetes API."""

    port: int
    exporters: dict[str, Exporter]
    ips: dict[str, str]

    @property
    def jobs(self) -> list[dict[str, object]]:
        return [
            {
                "job_name": "engines-pd",
                "static_configs": [
                    {"targets": [exporter.target], "labels": {"pod": pod, "namespace": NAMESPACE}}
                    for pod, exporter in self.exporters.items()
                ],
            }
        ]

    def labels(self, pod: str) -> dict[str, str]:
        app, role, _ = ENGINE_PODS[pod]
        return {"app": app, "role": role}

    def close(self) -> None:
        for exporter in self.exporters.values():
            exporter.close()


def engine_cluster() -> EngineCluster:
    port = free_port()
    ips = {pod: f"127.0.0.{i}" for i, pod in enumerate(ENGINE_PODS, start=2)}
    exporters = {pod: Exporter(engine, ips[pod], port) for pod, (_, _, engine) in ENGINE_PODS.items()}
    return EngineCluster(port, exporters, ips)
