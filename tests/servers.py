"""Real servers for the tests: Debian's nats-server (JetStream) and prometheus, on free loopback ports with temp
data dirs."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.05)


class NatsServer:
    """`nats-server -js` on loopback; restartable on the same port and store, as a crashed pod would be."""

    def __init__(self, workdir: Path, *extra_args: str) -> None:
        if shutil.which("nats-server") is None:
            raise RuntimeError("nats-server is not installed: run `make test`, which installs it")
        self.port, self.monitor_port = free_port(), free_port()
        self.store = workdir / "jetstream"
        self.log = workdir / "nats-server.log"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitoring(self) -> str:
        return f"127.0.0.1:{self.monitor_port}"

    def start(self) -> None:
        cmd = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*cmd, "-sd", str(self.store), *self.extra_args], stdout=log, stderr=log)
        wait_http(f"http://{self.monitoring}/healthz?js-enabled-only=true")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class PrometheusServer:
    """Debian's `prometheus`, scraping the given static jobs every second; restartable on the same port and TSDB."""

    def __init__(self, workdir: Path, jobs: list[dict[str, object]]) -> None:
        if shutil.which("prometheus") is None:
            raise RuntimeError("prometheus is not installed: run `make test`, which installs it")
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        self.tsdb = workdir / "tsdb"
        self.log = workdir / "prometheus.log"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": jobs}
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.tsdb}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        wait_http(f"{self.url}/-/ready", timeout=30)

    def query(self, promql: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            return list(json.load(r)["data"]["result"])

    def wait_for_series(self, promql: str, count: int, timeout: float = 30.0) -> None:
        """New targets get their first samples ~5 s after start; wait for them rather than guess."""
        deadline = time.monotonic() + timeout
        while len(self.query(promql)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus: fewer than {count} series for {promql} after {timeout}s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
