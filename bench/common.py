"""Shared by the benchmarks: processes to measure (pd-scaler, an empty-handler baseline) and the load client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Served:
    """A gRPC server process on free loopback ports: `pd-scaler serve` or the empty baseline."""

    def __init__(self, *args: str, empty: bool = False) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        if empty:
            cmd = [sys.executable, str(ROOT / "bench" / "empty_scaler.py"), str(self.grpc_port)]
        else:
            cmd = [sys.executable, "-m", "scaler", "serve", "--bind-address", "127.0.0.1",
                   "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                   "--log-level", "warning", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        if not empty:
            wait_http(f"http://127.0.0.1:{self.http_port}/readyz")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


Kinds = list[dict[str, object]]  # ScaledObjects as bench/load_client.py makes them: name and metadata templates


def kinds(metadata: dict[str, str]) -> Kinds:
    """ScaledObjects that differ only in name, all with the same trigger metadata."""
    return [{"name": "so-{group}", "metadata": metadata}]


def load(address: str, objects: Kinds, count: int, *, seconds: float, concurrency: int = 8,
         rate: float = 0.0) -> dict[str, object]:  # fmt: skip
    """Runs bench/load_client.py in its own process (the load must not share the server's interpreter). Exits
    naming the failures if any call did not answer OK: a figure measured on errors says nothing."""
    cmd = [sys.executable, str(ROOT / "bench" / "load_client.py"), address, json.dumps(objects), str(count),
           str(seconds), str(concurrency), str(rate)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{address}: the load client failed at {count} ScaledObjects:\n{done.stderr[-2000:]}")
    result = dict(json.loads(done.stdout))
    errors: dict[str, int] = result["errors"]
    if errors:
        worst = sorted(errors.items(), key=lambda e: -e[1])[:5]
        raise SystemExit(
            f"{address}: {sum(errors.values())} calls failed at {count} ScaledObjects; most often:\n"
            + "\n".join(f"  {n} x {what[:300]}" for what, n in worst)
        )
    return result
