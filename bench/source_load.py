"""Load on the sources as ScaledObjects grow: requests per second pd-scaler makes to NATS, Prometheus and the
role's pods (`scrape: pods`) with 1, 10, 100 and 1,000 ScaledObjects on the same sources, counted by the servers
themselves (NATS's JetStream API total, Prometheus's own request counter, each pod exporter's scrape count, the
test Kubernetes API's request log). Should stay flat for NATS, Prometheus and the pods (one scrape per pod per
--refresh-interval, here 1 s, over POD_COUNT pods); the Kubernetes API is asked once per decode ScaledObject
per --kube-refresh-interval (here 1 s; each ScaledObject has its own scale target) plus once for the scraped
pods' shared podSelector. The baseline is the 1-ScaledObject rate measured in the same run.

    python bench/source_load.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import nats
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Served
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from tests import kubeapi
from tests.conftest import make_queue
from tests.exporters import ENGINE_PODS, Engine, Exporter
from tests.servers import NatsServer, PrometheusServer, free_port

SIZES = (1, 10, 100, 1000)
POD_COUNT = 4


class CountedEngine(Engine):
    """A vLLM decode pod's /metrics that counts how often it is scraped."""

    scrapes = 0

    def collect(self):  # type: ignore[no-untyped-def]
        self.scrapes += 1
        return super().collect()


def scraped_pods(api: kubeapi.KubeAPI) -> tuple[int, list[CountedEngine], list[Exporter]]:
    """POD_COUNT vLLM decode pods on their own loopback addresses and one port, listed in the Kubernetes API."""
    port, engines, exporters = free_port(), [], []
    for i in range(POD_COUNT):
        engine = CountedEngine(dict(ENGINE_PODS["vllm-decode-0"][2].kv))
        ip = f"127.0.1.{i + 2}"
        engines.append(engine)
        exporters.append(Exporter(engine, ip, port))
        api.put(kubeapi.pod(f"scraped-{i}", "bench", {"role": "scraped"}, ip=ip))
    return port, engines, exporters


def nats_api_total(nats_server: NatsServer) -> float:
    with urllib.request.urlopen(f"http://{nats_server.monitoring}/jsz", timeout=5) as r:
        return float(json.load(r)["api"]["total"])


def prometheus_queries(prometheus: PrometheusServer) -> float:
    with urllib.request.urlopen(f"{prometheus.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "prometheus_http_requests_total" and s.labels.get("handler") == "/api/v1/query"
    )


async def ask(address: str, refs: list[pb.ScaledObjectRef], seconds: float) -> None:
    """Every ScaledObject asked once a second (faster than KEDA, which makes the point stronger)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            await asyncio.gather(
                *(stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=r)) for r in refs), return_exceptions=True
            )
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def prepare(url: str) -> None:
    nc = await nats.connect(url)
    await make_queue(nc.jetstream())
    await nc.close()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--seconds", type=float, default=5.0)
    seconds = args.parse_args().seconds
    rows = []
    with tempfile.TemporaryDirectory() as tmp, kubeapi.KubeAPI() as api:
        nats_server = NatsServer(Path(tmp))
        nats_server.start()
        prometheus = PrometheusServer(Path(tmp), [])
        prometheus.start()
        asyncio.run(prepare(nats_server.url))
        api.put(kubeapi.pod("decode-0", "bench", {"role": "decode"}))
        port, engines, exporters = scraped_pods(api)
        kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
        try:
            for n in SIZES:
                scaler = Served(
                    "--kubeconfig", str(kubeconfig), "--refresh-interval", "1s", "--kube-refresh-interval", "1s"
                )
                prefill = {"role": "prefill", "natsServer": nats_server.url}
                decode = {"role": "decode", "prometheusAddress": prometheus.url, "podSelector": "role=decode"}
                scraped = {"role": "decode", "metric": "seats", "maxNumSeqs": "256", "podSelector": "role=scraped",
                           "scrape": "pods", "metricsPort": str(port)}  # fmt: skip
                refs = [
                    pb.ScaledObjectRef(name=f"{kind}-{i}", namespace="bench", scalerMetadata=meta)
                    for i in range(n)
                    for kind, meta in (("prefill", prefill), ("decode", decode), ("scraped", scraped))
                ]
                asyncio.run(ask(scaler.address, refs, 2.0))  # start every source, past its first refresh

                def counts() -> tuple[float, ...]:
                    scrapes = sum(e.scrapes for e in engines)
                    return nats_api_total(nats_server), prometheus_queries(prometheus), scrapes, len(api.requests)

                before = counts()
                asyncio.run(ask(scaler.address, refs, seconds))
                after = counts()
                scaler.stop()
                rates = tuple((a - b) / seconds for a, b in zip(after, before, strict=True))
                rows.append((n, rates))
                print(f"  {n} ScaledObjects per kind measured", file=sys.stderr)
        finally:
            prometheus.stop()
            nats_server.stop()
            for exporter in exporters:
                exporter.close()

    base = rows[0][1]
    print(f"\nrequests/s made to each source ({seconds:g} s windows; every ScaledObject asked once a second)")
    print(
        f"{'ScaledObjects per kind':>24}{'NATS':>10}{'x base':>8}{'Prometheus':>12}{'x base':>8}"
        f"{f'{POD_COUNT} pods':>10}{'x base':>8}{'Kube API':>10}"
    )
    for n, (nats_rate, prom_rate, pod_rate, kube_rate) in rows:
        print(
            f"{n:>24}{nats_rate:>10.2f}{nats_rate / base[0]:>8.2f}{prom_rate:>12.2f}{prom_rate / base[1]:>8.2f}"
            f"{pod_rate:>10.2f}{pod_rate / base[2]:>8.2f}{kube_rate:>10.1f}"
        )


if __name__ == "__main__":
    main()
