"""Real servers for the tests: Debian's nats-server (JetStream), on free loopback ports with temp data dirs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
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
