"""Performance profile of one serving replica: how long a prefill and a decode step take, and what it holds.

A profile file (YAML or JSON) lists measured points; the model interpolates between them (piecewise linear,
held flat below the smallest point, extended along the last segment above the largest) and adds what the
measurements leave out: `engine_overhead` (a real engine's scheduler and sampling, as a fraction of the
measured time) and the KV transfer from the prefill to the decode replica.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrefillPoint(_Strict):
    tokens: int = Field(gt=0)
    seconds: float = Field(gt=0)


class DecodePoint(_Strict):
    batch: int = Field(gt=0)
    context: int = Field(gt=0, description="KV tokens each sequence of the batch holds")
    step_seconds: float = Field(gt=0)


class KvTransfer(_Strict):
    latency_s: float = Field(0.002, ge=0)
    gbit_per_s: float = Field(200.0, gt=0)


class ProfileFile(_Strict):
    """The file format: what was measured, and what a replica holds."""

    name: str
    source: str = ""
    gpus_per_replica: int = Field(gt=0)
    gpu_memory_gib: float = Field(gt=0, description="framebuffer per GPU, as DCGM reports it")
    gpu_memory_utilization: float = Field(0.95, gt=0, le=1, description="share each GPU's engine preallocates")
    kv_capacity_tokens: int = Field(gt=0, description="KV-cache tokens one replica holds")
    kv_bytes_per_token: int = Field(gt=0, description="KV bytes per token, whole model (all layers and heads)")
    block_size: int = Field(128, gt=0)
    max_num_seqs: int = Field(256, gt=0, description="most sequences a decode replica runs at once")
    max_num_batched_tokens: int = Field(2048, gt=0, description="prefill chunk size")
    engine_overhead: float = Field(0.10, ge=0, description="added to every measured time, as a fraction")
    kv_transfer: KvTransfer = KvTransfer(latency_s=0.002, gbit_per_s=200.0)
    prefill: tuple[PrefillPoint, ...] = Field(min_length=2)
    decode: tuple[DecodePoint, ...] = Field(min_length=1)


class Profile:
    """Interpolated times of one replica. All times include `engine_overhead`."""

    def __init__(self, spec: ProfileFile, gpus: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.tp = spec.gpus_per_replica  # the GPUs the measured engine spans
        self.gpus = gpus or spec.gpus_per_replica  # the GPUs a pod requests: what is billed
        self.max_num_seqs = spec.max_num_seqs
        self.block_size = spec.block_size
        # The engine allocates whole blocks: what it holds is a whole number of them.
        self.kv_blocks = spec.kv_capacity_tokens // spec.block_size
        self.kv_capacity = self.kv_blocks * spec.block_size
        self._slowdown = 1.0 + spec.engine_overhead
        points = sorted({p.tokens: p.seconds for p in spec.prefill}.items())
        self._prefill_x = [float(n) for n, _ in points]
        self._prefill_y = [t for _, t in points]
        self._attention = _pair_cost(points)
        rows: dict[int, dict[int, float]] = {}
        for d in spec.decode:
            rows.setdefault(d.context, {})[d.batch] = d.step_seconds
        self._contexts = [float(c) for c in sorted(rows)]
        self._rows = [
            ([float(b) for b in sorted(rows[c])], [rows[c][b] for b in sorted(rows[c])]) for c in sorted(rows)
        ]
        self._by_batch: dict[int, list[float]] = {}
        self._transfer_latency = spec.kv_transfer.latency_s
        self._transfer_s_per_token = spec.kv_bytes_per_token * 8 / (spec.kv_transfer.gbit_per_s * 1e9)

    def with_engine(self, gpus: int | None = None, **engine: int) -> Profile:
        """The same measurements under other engine settings (max_num_seqs, max_num_batched_tokens,
        block_size) and billed GPUs."""
        return Profile(self.spec.model_copy(update=engine), gpus or self.gpus)

    def _single_pass(self, tokens: float) -> float:
        return _interp(self._prefill_x, self._prefill_y, tokens)

    def prefill_seconds(self, tokens: int) -> float:
        """A prompt of `tokens`, prefilled in chunks of at most `max_num_batched_tokens`.

        Chunk i (c_i tokens after o_i earlier ones) costs the measured single pass P(c_i) plus its attention to the
        earlier chunks, 2·k·c_i·o_i, where k is the per-token-pair attention cost taken from the two longest
        measured prompts (P(n) ≈ b·n + k·n²). Unchunked, the sum is the measured P(n)."""
        chunk = self.spec.max_num_batched_tokens
        if tokens <= chunk:
            return self._single_pass(tokens) * self._slowdown
        full, rest = divmod(tokens, chunk)
        seconds = full * self._single_pass(chunk) + (self._single_pass(rest) if rest else 0.0)
        pairs = chunk * chunk * full * (full - 1) / 2 + rest * full * chunk
        return (seconds + 2 * self._attention * pairs) * self._slowdown

    def decode_step_seconds(self, batch: int, total_context: float) -> float:
        """One decode step of `batch` sequences holding `total_context` KV tokens together: interpolated in batch
        within each measured context, then in the batch's mean context between them."""
        times = self._by_batch.get(batch)
        if times is None:
            times = self._by_batch[batch] = [_interp(xs, ys, float(batch)) for xs, ys in self._rows]
        return _interp(self._contexts, times, total_context / batch) * self._slowdown

    def kv_transfer_seconds(self, tokens: int) -> float:
        return self._transfer_latency + tokens * self._transfer_s_per_token

    def max_batch_within(self, step_seconds: float, context: float) -> int:
        """The largest batch (up to max_num_seqs) whose step at `context` tokens per sequence is within
        `step_seconds`; at least 1."""
        best = 1
        for batch in range(1, self.max_num_seqs + 1):
            if self.decode_step_seconds(batch, batch * context) <= step_seconds:
                best = batch
        return best


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise linear through (xs, ys): flat below xs[0], extended along the last segment above xs[-1]."""
    if len(xs) == 1 or x <= xs[0]:
        return ys[0]
    i = min(bisect.bisect_left(xs, x), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _pair_cost(points: Sequence[tuple[int, float]]) -> float:
    """k in P(n) ≈ b·n + k·n², from the two longest prompts: P2 - (n2/n1)·P1 = k·n2·(n2 - n1)."""
    (n1, p1), (n2, p2) = points[-2], points[-1]
    return max(0.0, (p2 - n2 / n1 * p1) / (n2 * (n2 - n1)))


def parse_profile(data: Mapping[str, Any]) -> Profile:
    """A Profile from a loaded YAML/JSON document; ValueError naming the field on a bad one."""
    try:
        return Profile(ProfileFile.model_validate(data))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid profile: {problems}") from None
