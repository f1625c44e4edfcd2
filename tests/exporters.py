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
    """One pod's engine /metrics. kv: name → list of (extra labels, value)."""

    kv: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, series in self.kv.items():
            family = GaugeMetricFamily(name, "KV-cache usage.")
            for labels, value in series:
                family.add_sample(name, labels, value)
            yield family


class Exporter:
    """A /metrics endpoint on a free loopback port, like a pod's."""

    def __init__(self, collector: Collector) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.port = free_port()
        self.server: WSGIServer
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

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
