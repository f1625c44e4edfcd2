"""deploy/dashboards/pd-scaler.json: a valid Grafana dashboard, and every one of its queries (template variables
included) answers with the expected series from a real Prometheus scraping a running pd-scaler that KEDA asks about
a prefill and a decode ScaledObject. Two scaler replicas answer (as the chart runs them): every query shows one
series per ScaledObject or source, not one per replica."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from nats.js import JetStreamContext

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from tests import kubeapi
from tests.conftest import CONSUMER, STREAM, eventually, make_queue, prefill_ref
from tests.exporters import NAMESPACE, cluster
from tests.servers import NatsServer, PrometheusServer
from tests.test_decode import DECODER, decode_ref
from tests.test_prefill import publish

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "dashboards" / "pd-scaler.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PREFILL = "dynamo-pd-prefill"
PREFILL_NAMESPACE = "dynamo"
# A prefill ScaledObject on a queue of its own, whose consumer is deleted while KEDA still asks about it.
RETIRED, RETIRED_STREAM, RETIRED_CONSUMER = "retired-prefill", "retired_prefill_queue", "retired-group"
# Grafana's built-in interval variables, as it would set them for a 1s scrape interval.
INTERVALS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

Labels = tuple[tuple[str, str], ...]
Expected = dict[Labels, float | Callable[[float], bool]]


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that queries, including those inside collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return panels


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def render(expr: str, values: dict[str, str]) -> str:
    """Grafana's interpolation of `$name` and `${name}`; a variable the test does not know fails."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def multi_value(values: list[str]) -> str:
    """A multi-value variable in a PromQL regex matcher, as Grafana formats it (no character here needs escaping)."""
    assert values
    assert all(re.fullmatch(r"[a-z0-9-]+", v) for v in values), values
    return values[0] if len(values) == 1 else "(" + "|".join(values) + ")"


# -- the dashboard as a file ----------------------------------------------------------------------------------------


def test_dashboard_is_grafana_json_with_a_prometheus_datasource_variable() -> None:
    dashboard = load()
    assert (dashboard["uid"], dashboard["title"]) == ("pd-scaler", "pd-scaler")
    assert dashboard["schemaVersion"] >= 36
    datasource = variables(dashboard)["datasource"]
    assert (datasource["type"], datasource["query"], datasource["multi"]) == ("datasource", "prometheus", False)
    for name in ("namespace", "scaledobject"):
        variable = variables(dashboard)[name]
        assert (variable["type"], variable["datasource"]) == ("query", DATASOURCE)
        assert (variable["multi"], variable["includeAll"], variable["allValue"]) == (True, True, ".*")
        assert variable["query"].startswith("label_values(pd_scaler_scaledobject_metric_value")


def test_every_panel_queries_the_datasource_variable() -> None:
    dashboard = load()
    panels = query_panels(dashboard)
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    assert len({p["title"] for p in panels}) == len(panels), "panel titles are not unique"
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), f"{panel['title']}: empty expr"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


# -- every query against a running pd-scaler ------------------------------------------------------------------------


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Path]:
    """RBG dynamo-pd with a third decode pod just scheduled, which has no series yet."""
    with kubeapi.KubeAPI() as api:
        kubeapi.install_dynamo_pd(api, NAMESPACE)
        labels = kubeapi.role_labels("dynamo-pd", "decoder")
        api.put(kubeapi.pod("dynamo-pd-decoder-2", NAMESPACE, labels, node="gpu-node-2"))
        yield api.write_kubeconfig(tmp_path / "kubeconfig")


@dataclass
class Cluster:
    scalers: list[Server]
    prometheus: PrometheusServer
    nats: NatsServer
    js: JetStreamContext
    http: aiohttp.ClientSession
    stubs: list[pb_grpc.ExternalScalerStub]  # one per scaler replica
    polled: list[pb.ScaledObjectRef] = field(default_factory=list)  # what KEDA asks about
    failing: set[str] = field(default_factory=set)  # ScaledObjects whose calls are expected to fail

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.prometheus.url}/api/v1/{path}", params=params) as r:
            body = await r.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=promql)
        assert data["resultType"] == "vector", promql
        return list(data["result"])

    async def keda(self) -> None:
        """KEDA and the HPA polling each ScaledObject (every 0.2 s rather than 30 s, so rates show at once), on every
        scaler replica (KEDA balances its calls round-robin over them)."""
        while True:
            for ref in list(self.polled):
                tolerated = (grpc.aio.AioRpcError,) if ref.name in self.failing else ()
                for stub in self.stubs:
                    with contextlib.suppress(*tolerated):
                        await stub.GetMetricSpec(ref)
                    with contextlib.suppress(*tolerated):
                        await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref))
                    with contextlib.suppress(*tolerated):
                        await stub.IsActive(ref)
            await asyncio.sleep(0.2)


@pytest.fixture
async def running(
    kube: Path,
    make_scaler: Callable[..., Awaitable[Server]],
    nats_server: NatsServer,
    js: JetStreamContext,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """Two pd-scaler replicas that KEDA asks about a prefill and a decode ScaledObject, scraped by Prometheus (job
    pd-scaler) along with the decode pods' dcgm-exporters and engines."""
    scalers = [await make_scaler(kubeconfig=kube, kube_refresh_interval=0.1) for _ in range(2)]
    exporters, jobs = cluster()
    targets = [f"127.0.0.1:{scaler.http_port}" for scaler in scalers]
    scrape_scaler = {"job_name": "pd-scaler", "static_configs": [{"targets": targets}]}
    prometheus = PrometheusServer(tmp_path, [*jobs, scrape_scaler])
    prometheus.start()
    poller: asyncio.Task[None] | None = None
    try:
        async with (
            aiohttp.ClientSession() as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{scalers[0].grpc_port}") as first,
            grpc.aio.insecure_channel(f"127.0.0.1:{scalers[1].grpc_port}") as second,
        ):
            stubs = [pb_grpc.ExternalScalerStub(channel) for channel in (first, second)]
            running = Cluster(scalers, prometheus, nats_server, js, http, stubs)

            async def dcgm_scraped() -> None:  # before KEDA's first call, so that no answer is an error
                assert len(await running.query("DCGM_FI_DEV_FB_USED")) == 9

            await eventually(dcgm_scraped, timeout=30, interval=0.2)
            await publish(js, 11)
            prefill, decode = prefill_ref(nats_server, name=PREFILL), decode_ref(prometheus)
            # The first answers are right (the sources settle before answering), so no call is ever an error.
            for ref, value in ((prefill, 11.0), (decode, 1.2)):
                for stub in stubs:
                    response = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref))
                    assert [v.metricValueFloat for v in response.metricValues] == [value]
            running.polled += [prefill, decode]
            poller = asyncio.create_task(running.keda())
            yield running
            assert not poller.done(), poller.exception()
    finally:
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        prometheus.stop()
        for exporter in exporters:
            exporter.close()


def is_positive(value: float) -> bool:
    return 0 < value < math.inf


def is_latency(seconds: float) -> bool:
    return 0 < seconds < 1


def is_fraction(ratio: float) -> bool:
    return 0 < ratio < 1


PREFILL_SO: Labels = (("namespace", PREFILL_NAMESPACE), ("role", "prefill"), ("scaledobject", PREFILL))
RETIRED_SO: Labels = (("namespace", PREFILL_NAMESPACE), ("role", "prefill"), ("scaledobject", RETIRED))
DECODE_SO: Labels = (("namespace", NAMESPACE), ("role", "decode"), ("scaledobject", DECODER))
METHODS = ["GetMetricSpec", "GetMetrics", "IsActive"]
PER_REPLICA = "pd-scaler targets up"  # the one panel that shows each scaler replica


def source(kind: str, name: str) -> Labels:
    return (("kind", kind), ("source", name))


def healthy(running: Cluster) -> dict[str, list[Expected]]:
    """Per panel title, per query: the series it returns (see `labels`) and their values, in a healthy cluster:
    prefill lag 11 against lagThreshold 5, decode 1.2 (pods at 0.5 and 0.7, a third pod without series) against 0.8,
    no error ever answered, no NATS reconnect."""
    prometheus_query = '{__name__=~"DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_FREE|DCGM_FI_DEV_FB_RESERVED"}'
    sources = [
        source("kubernetes", f"kubernetes scaledobject {NAMESPACE}/{DECODER}"),
        source("nats", f"nats {running.nats.url} stream={STREAM} consumer={CONSUMER}"),
        source("prometheus", f"prometheus {running.prometheus.url} query={prometheus_query}"),
    ]
    return {
        PER_REPLICA: [{(): 1.0}],  # the labels compared leave out `instance`
        "Running sources": [{(("kind", kind),): 2.0 for kind in ("kubernetes", "nats", "prometheus")}],
        "ScaledObjects answered with an error": [{(): 0.0}],
        "Prefill: value vs target": [{PREFILL_SO: 11.0}, {PREFILL_SO: 5.0}],
        "Prefill: replicas wanted": [{PREFILL_SO: 3.0}],
        "Prefill: active": [{PREFILL_SO: 1.0}],
        "Decode: value vs target": [{DECODE_SO: 1.2}, {DECODE_SO: 0.8}],
        "Decode: replicas wanted": [{DECODE_SO: 2.0}],
        "Decode: active": [{DECODE_SO: 1.0}],
        "Decode: pods without series": [{DECODE_SO: 1.0}],
        "Source sample age": [{s: lambda age: 0 <= age < 5 for s in sources}],
        "Source up": [{s: 1.0 for s in sources}],
        "Source refreshes /s": [{s: is_positive for s in sources}],
        "Source refresh errors /s": [{s: 0.0 for s in sources}],
        "NATS reconnects": [{(("connection", running.nats.url),): 0.0}],
        "Requests /s by method and code": [{(("code", "OK"), ("method", m)): is_positive for m in METHODS}],
        "Error ratio by method": [{(("method", m),): 0.0 for m in METHODS}],
        "Latency p50 / p99 by method": [{(("method", m),): is_latency for m in METHODS}] * 2,
    }


def with_retired(running: Cluster) -> dict[str, list[Expected]]:
    """The same cluster once a second prefill ScaledObject, which answered lag 0, lost its consumer: every GetMetrics
    and IsActive about it is NOT_FOUND, its value NaN (its target and activity stay as last answered), its source
    down."""
    expected = healthy(running)
    retired = source("nats", f"nats {running.nats.url} stream={RETIRED_STREAM} consumer={RETIRED_CONSUMER}")
    ok = {(("code", "OK"), ("method", m)): is_positive for m in METHODS}
    return expected | {
        "Running sources": [{(("kind", "kubernetes"),): 2.0, (("kind", "nats"),): 4.0, (("kind", "prometheus"),): 2.0}],
        "ScaledObjects answered with an error": [{(): 1.0}],
        "Prefill: value vs target": [{PREFILL_SO: 11.0, RETIRED_SO: math.isnan}, {PREFILL_SO: 5.0, RETIRED_SO: 5.0}],
        "Prefill: replicas wanted": [{PREFILL_SO: 3.0, RETIRED_SO: math.isnan}],
        "Prefill: active": [{PREFILL_SO: 1.0, RETIRED_SO: 0.0}],
        "Source sample age": [expected["Source sample age"][0] | {retired: lambda age: 0 < age < 30}],
        "Source up": [expected["Source up"][0] | {retired: 0.0}],
        "Source refreshes /s": [expected["Source refreshes /s"][0] | {retired: is_positive}],
        "Source refresh errors /s": [expected["Source refresh errors /s"][0] | {retired: is_positive}],
        "Requests /s by method and code": [
            ok | {(("code", "NOT_FOUND"), ("method", m)): is_positive for m in ("GetMetrics", "IsActive")}
        ],
        "Error ratio by method": [
            {
                (("method", "GetMetricSpec"),): 0.0,
                (("method", "GetMetrics"),): is_fraction,
                (("method", "IsActive"),): is_fraction,
            }
        ],
    }


def labels(metric: dict[str, str]) -> Labels:
    """A series' labels but the metric name and those of the scrape target."""
    return tuple(sorted((k, v) for k, v in metric.items() if k not in ("__name__", "job", "instance")))


def mismatch(got: dict[Labels, float], expected: Expected) -> str | None:
    if set(got) != set(expected):
        return f"series {sorted(got)}, expected {sorted(expected)}"
    for series, want in expected.items():
        ok = want(got[series]) if callable(want) else got[series] == want
        if not ok:
            return f"{dict(series)}: {got[series]}"
    return None


async def test_template_variables_list_the_scaledobjects_answered(running: Cluster) -> None:
    templating = variables(load())

    async def label_values(name: str, values: dict[str, str]) -> list[str]:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", templating[name]["query"])
        assert match, templating[name]["query"]
        return list(await running.api(f"label/{match[2]}/values", **{"match[]": render(match[1], values)}))

    async def listed() -> None:
        assert await label_values("namespace", {}) == [PREFILL_NAMESPACE, NAMESPACE]
        assert await label_values("scaledobject", {"namespace": ".*"}) == [DECODER, PREFILL]  # All
        assert await label_values("scaledobject", {"namespace": NAMESPACE}) == [DECODER]

    await eventually(listed, timeout=30, interval=0.2)


async def test_every_panel_query_returns_the_expected_series(running: Cluster) -> None:
    """The queries as Grafana sends them with every namespace and ScaledObject selected, in a healthy cluster
    (queries over series that only exist after an error still answer), then while one ScaledObject fails. Rates
    need two scrapes of a counter after it changes, so the answers are polled for."""
    panels = query_panels(load())
    assert sorted(p["title"] for p in panels) == sorted(healthy(running))

    async def answered(expected: dict[str, list[Expected]], scaledobjects: list[str]) -> None:
        selected = {
            "namespace": multi_value([PREFILL_NAMESPACE, NAMESPACE]),
            "scaledobject": multi_value(scaledobjects),
        }
        problems = []
        for panel in panels:
            for target, want in zip(panel["targets"], expected[panel["title"]], strict=True):
                result = await running.query(render(target["expr"], selected | INTERVALS))
                series = [(labels(s["metric"]), float(s["value"][1])) for s in result]
                problem = mismatch(dict(series), want)
                if len(dict(series)) < len(series) and panel["title"] != PER_REPLICA:
                    problem = f"a series per scaler replica: {sorted(series)}"
                if problem:
                    problems.append(f"{panel['title']} [{target['refId']}] {target['expr']}: {problem}")
        assert not problems, "\n".join(problems)

    await eventually(lambda: answered(healthy(running), [DECODER, PREFILL]), timeout=30, interval=0.5)

    await make_queue(running.js, RETIRED_STREAM, RETIRED_CONSUMER)
    try:
        ref = prefill_ref(running.nats, name=RETIRED, stream=RETIRED_STREAM, consumer=RETIRED_CONSUMER)
        for stub in running.stubs:
            response = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref))
            assert [v.metricValueFloat for v in response.metricValues] == [0.0]
        running.failing.add(RETIRED)
        running.polled.append(ref)
        await running.js.delete_consumer(RETIRED_STREAM, RETIRED_CONSUMER)
        scaledobjects = [DECODER, PREFILL, RETIRED]
        await eventually(lambda: answered(with_retired(running), scaledobjects), timeout=30, interval=0.5)
    finally:
        await running.js.delete_stream(RETIRED_STREAM)
