"""What counts as meeting the SLO, and which requests no provisioning could serve within it."""

from __future__ import annotations

from dataclasses import dataclass

from scaler.profile import Profile
from scaler.simulate.cluster import Record


@dataclass(frozen=True)
class Slo:
    """A request meets the SLO when its TTFT is within its allowance — the TTFT it would have alone (its own prefill,
    its KV transfer and its first decode step) plus `ttft_slack` — and its mean inter-token latency is at most `itl`."""

    ttft_slack: float = 1.0
    itl: float = 0.05

    def allowance(self, r: Record) -> float:
        return r.prefill_s + r.transfer_s + r.first_step_s + self.ttft_slack

    def met(self, r: Record) -> bool:
        return r.ttft <= self.allowance(r) and (r.output <= 1 or r.itl <= self.itl)


def feasible(r: Record, profile: Profile, slo: Slo) -> bool:
    """Could any provisioning serve it within the SLO? Not if its KV exceeds an engine's, or if its inter-token
    latency alone (one sequence at its mean context) already exceeds the objective. (Alone, its TTFT is within
    its allowance by construction.)"""
    if r.prompt + r.output > profile.kv_capacity:
        return False
    return r.output <= 1 or profile.decode_step_seconds(1, r.prompt + r.output / 2) <= slo.itl
