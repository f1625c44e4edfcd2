"""Soak: pd-scaler under 1,000 calls/s for 10 minutes (1,000 ScaledObjects, shared source); resident memory at the
start, every minute and at the end, and the latencies over the whole run. `make soak`.

    python bench/soak.py [--seconds 600] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Served, kinds, rss_mib
from bench.grpc_load import prepare
from tests.servers import NatsServer


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--seconds", type=float, default=600.0)
    args.add_argument("--rate", type=float, default=1000.0)
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nats_server = NatsServer(Path(tmp))
        nats_server.start()
        asyncio.run(prepare(nats_server.url))
        scaler = Served()
        try:
            objects = json.dumps(kinds({"role": "prefill", "natsServer": nats_server.url}))
            client = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "load_client.py"), scaler.address, objects, "1000",
                 str(opts.seconds), "8", str(opts.rate)],
                cwd=ROOT, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            started = time.monotonic()
            samples = [(0.0, rss_mib(scaler.proc.pid))]
            print(f"  0 s: RSS {samples[0][1]:.1f} MiB", file=sys.stderr)
            while client.poll() is None:
                time.sleep(1)
                elapsed = time.monotonic() - started
                if elapsed - samples[-1][0] >= 60:
                    samples.append((elapsed, rss_mib(scaler.proc.pid)))
                    print(f"  {elapsed:.0f} s: RSS {samples[-1][1]:.1f} MiB", file=sys.stderr)
            samples.append((time.monotonic() - started, rss_mib(scaler.proc.pid)))
            result = json.loads(client.communicate()[0])
        finally:
            scaler.stop()
            nats_server.stop()
    start, end = samples[1][1] if len(samples) > 2 else samples[0][1], samples[-1][1]
    print(f"\nsoak: {opts.seconds:g} s at {opts.rate:g} calls/s requested, {result['calls_per_s']:.0f} served/s, "
          f"{sum(result['errors'].values())} errors")  # fmt: skip
    print(f"GetMetrics p50 {result['p50_ms']['GetMetrics']:.2f} ms, p99 {result['p99_ms']['GetMetrics']:.2f} ms")
    print("RSS MiB over time: " + ", ".join(f"{t:.0f}s={m:.1f}" for t, m in samples))
    print(f"RSS after warm-up {start:.1f} MiB, at the end {end:.1f} MiB: growth {end - start:+.1f} MiB "
          f"({end / start:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
