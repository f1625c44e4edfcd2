"""Engine metrics straight from the role's pods: each pod's /metrics, scraped in the background, with no
Prometheus in between (seconds fresher than a 15 s scrape, and nothing else to run).

One scraper per pod set (a role's pods, or a podSelector's) and port/path, shared by every ScaledObject that
reads them: one request per pod per interval, whatever the number of ScaledObjects. A pod that does not answer,
answers with an error or with something that is not Prometheus text is named with the reason and left out; the
others still count. Reads are bounded as every source's (`bounded.get`: byte cap, no redirect, no compression).

Only the lines of the metrics some trigger reads are handed to prometheus_client's parser (an engine's page has
thousands of histogram lines); every line is still checked to look like the text format.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from scaler.errors import ScalerError, SourceUnavailable
from scaler.kube import RolePods, check_bound
from scaler.metrics import Metrics
from scaler.signals import Series
from scaler.sources import bounded
from scaler.sources.base import Clock, Source

REQUEST_TIMEOUT = 2.0
MAX_CONCURRENT = 32  # pods scraped at once
_ACCEPT = {"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}  # the classic text format
_SAMPLE = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{|\s)")


@dataclass(frozen=True)
class PodScrape:
    """One round over the pods: the series of those that answered (labelled with their pod) and why the others
    are left out."""

    namespace: str
    series: tuple[Series, ...]
    failed: Mapping[str, str]  # pod → why it has no series


def parse(text: str, names: frozenset[str], pod: str, namespace: str) -> list[Series]:
    """The samples of `names` in a text-format page, labelled with the pod; bounded.BadAnswer if the page is not
    Prometheus text."""
    kept = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise bounded.BadAnswer(f"not Prometheus text at line {number}: {line[:60]!r}")
        if match.group(1) in names:
            kept.append(line)
    try:
        samples = [s for family in text_string_to_metric_families("\n".join(kept) + "\n") for s in family.samples]
    except ValueError as exc:
        raise bounded.BadAnswer(f"not Prometheus text: {str(exc)[:120]}") from None
    where = {"pod": pod, "namespace": namespace}
    return [
        Series(
            {**s.labels, "__name__": s.name, **where},
            bounded.measurement(float(s.value), "value of " + bounded.series_name(s.name, s.labels)),
        )
        for s in samples
    ]


class PodScrapeSource(Source[PodScrape]):
    """Scrapes `http://<pod IP>:<port><path>` of every pod `role` lists."""

    kind = "pods"

    def __init__(
        self,
        role: Source[RolePods],
        port: int,
        path: str,
        interval: float,
        metrics: Metrics,
        clock: Clock = time.monotonic,
        *,
        role_max_age: float = 60.0,
        timeout: float = REQUEST_TIMEOUT,
        max_bytes: int = bounded.DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(f"scrape :{port}{path} of {role.name}", interval, metrics, clock)
        self.role, self.port, self.path = role, port, path
        self.role_max_age, self.timeout, self.max_bytes = role_max_age, timeout, max_bytes
        self.names: frozenset[str] = frozenset()
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENT)

    def want(self, names: Iterable[str]) -> None:
        """Keep the series of `names` too (each reader adds the names its signal reads). New names are scraped at
        once, and a first read waits for that scrape as for a new source's first."""
        new = frozenset(names) - self.names
        if new:
            self.names |= new
            self._settled.clear()
            self.refresh_soon()

    async def fetch(self) -> PodScrape:
        await self.role.settled(self.timeout)  # a new pod set: its first listing
        try:
            pods = check_bound(self.role.read(self.role_max_age))
        except ScalerError as exc:
            raise SourceUnavailable(f"{self.name}: the role's pods are not known: {exc.message}") from None
        if self._session is None:
            self._session = bounded.session(self.timeout)
        names = self.names
        results = await asyncio.gather(
            *(self._scrape(pod, pods.addresses.get(pod, ""), pods.namespace, names) for pod in pods.pods)
        )
        series: list[Series] = []
        failed: dict[str, str] = {}
        for pod, result in zip(pods.pods, results, strict=True):
            if isinstance(result, str):
                failed[pod] = result
            else:
                series += result
        return PodScrape(pods.namespace, tuple(series), failed)

    async def _scrape(self, pod: str, ip: str, namespace: str, names: frozenset[str]) -> list[Series] | str:
        """The pod's series, or why there are none."""
        if not ip:
            return "no pod IP yet"
        host = f"[{ip}]" if ":" in ip else ip
        assert self._session is not None
        async with self._limit:
            try:
                url = f"http://{host}:{self.port}{self.path}"
                status, body = await bounded.get(self._session, url, max_bytes=self.max_bytes, headers=_ACCEPT)
                if status != 200:
                    return f"HTTP {status}"
                # A page may be megabytes (up to the byte cap): parsed off the loop, which keeps answering KEDA.
                return await asyncio.to_thread(parse, body.decode("utf-8", errors="replace"), names, pod, namespace)
            except bounded.BadAnswer as exc:
                return str(exc)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
