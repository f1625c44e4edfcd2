"""A bursty synthetic request trace in the Azure LLM trace format, for `pd-scaler simulate --trace`.

Poisson arrivals at a base rate, with bursts at random times (exponential gaps) during which the rate is several
times higher; prompt and output lengths log-normal with heavy tails, so one prompt is 200 tokens and the next
20,000. Seeded: the same arguments give the same file.

    python -m bench.bursty_trace --out bursty.csv
"""

from __future__ import annotations

import argparse
import datetime
import math
import random
from pathlib import Path


def generate(
    seed: int, duration: float, base_rate: float, burst_factor: float, burst_every: float, burst_length: float
) -> list[tuple[float, int, int]]:
    rng = random.Random(seed)
    bursts, t = [], rng.expovariate(1 / burst_every)
    while t < duration:
        length = rng.uniform(0.5, 1.5) * burst_length
        bursts.append((t, t + length))
        t += length + rng.expovariate(1 / burst_every)
    peak = base_rate * burst_factor
    rows, t = [], 0.0
    while True:
        t += rng.expovariate(peak)  # thinning: arrivals at the peak rate, kept with rate(t) / peak
        if t >= duration:
            return rows
        in_burst = any(a <= t < b for a, b in bursts)
        if in_burst or rng.random() < base_rate / peak:
            prompt = min(32_000, max(16, round(rng.lognormvariate(math.log(1000), 1.0))))
            output = min(4_000, max(1, round(rng.lognormvariate(math.log(150), 0.8))))
            rows.append((t, prompt, output))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds (default 3600)")
    parser.add_argument("--base-rate", type=float, default=3.0, help="requests/s outside bursts (default 3)")
    parser.add_argument("--burst-factor", type=float, default=6.0, help="rate multiplier in a burst (default 6)")
    parser.add_argument("--burst-every", type=float, default=300.0, help="mean gap between bursts, s (default 300)")
    parser.add_argument("--burst-length", type=float, default=60.0, help="mean burst length, s (default 60)")
    args = parser.parse_args()
    rows = generate(args.seed, args.duration, args.base_rate, args.burst_factor, args.burst_every, args.burst_length)
    start = datetime.datetime(2026, 1, 1)
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for t, prompt, output in rows:
        stamp = (start + datetime.timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
        lines.append(f"{stamp},{prompt},{output}")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} requests over {args.duration:g} s written to {args.out}")


if __name__ == "__main__":
    main()
