"""Deployments: what runs in one replica's pod and what it is billed — a measured profile, the engine's limits,
the GPUs requested per pod and how long a new pod takes to serve.

A deployment file (YAML or JSON) names a profile (bundled or a file) and overrides the engine settings the
profile was measured with. The ACK guide's Dynamo deployment runs a TP=1 vLLM engine in a pod that requests two
GPUs: both are billed, one is used.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scaler.durations import parse_duration
from scaler.simulate.profile import Profile


@dataclass(frozen=True)
class StartupDelay:
    """Creation to ready: fixed, or drawn uniformly per replica from [low, high]."""

    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return self.low if self.high == self.low else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low:g}s" if self.high == self.low else f"{self.low:g}s..{self.high:g}s"


def parse_startup(text: str) -> StartupDelay:
    """`120s` or `90s..300s`; ValueError naming the forms on anything else."""
    low, sep, high = text.strip().partition("..")
    try:
        delay = StartupDelay(parse_duration(low), parse_duration(high) if sep else parse_duration(low))
    except ValueError:
        delay = StartupDelay(1.0, 0.0)
    if delay.high < delay.low:
        raise ValueError(f"start-up delay {text!r}: write a duration (120s) or a range LOW..HIGH (90s..300s)")
    return delay


class DeploymentFile(BaseModel):
    """The file format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str = ""
    profile: str = Field(description="bundled profile name or a profile file")
    gpus_per_replica: int = Field(gt=0, description="GPUs each pod requests: what is billed")
    tensor_parallel_size: int = Field(gt=0, description="GPUs the engine uses; must match the profile")
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int = Field(gt=0)
    block_size: int = Field(gt=0)
    startup_delay: str = Field("120s", description="`120s`, or `90s..300s` drawn per replica")

    @field_validator("startup_delay")
    @classmethod
    def _startup(cls, value: str) -> str:
        parse_startup(value)
        return value


@dataclass(frozen=True)
class Deployment:
    name: str
    profile: Profile  # with the deployment's engine settings and billing applied
    startup: StartupDelay

    def settings(self) -> dict[str, Any]:
        """What shaped the run, for the report and the JSON."""
        p = self.profile
        return {
            "name": self.name,
            "profile": p.name,
            "gpus_per_replica": p.gpus,
            "tensor_parallel_size": p.tp,
            "max_num_seqs": p.max_num_seqs,
            "max_num_batched_tokens": p.spec.max_num_batched_tokens,
            "block_size": p.block_size,
            "kv_capacity_tokens": p.kv_capacity,
            "startup_delay": str(self.startup),
        }


def parse_deployment(data: Mapping[str, Any], load_profile: Callable[[str], Profile]) -> Deployment:
    """A Deployment from a loaded document; ValueError naming the field on a bad one."""
    try:
        spec = DeploymentFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'deployment'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid deployment: {problems}") from None
    measured = load_profile(spec.profile)
    if spec.tensor_parallel_size != measured.tp:
        raise ValueError(
            f"invalid deployment: tensor_parallel_size: {spec.tensor_parallel_size}, but profile {measured.name!r}"
            f" was measured on {measured.tp} GPU(s)"
        )
    if spec.gpus_per_replica < spec.tensor_parallel_size:
        raise ValueError("invalid deployment: gpus_per_replica: fewer than tensor_parallel_size")
    profile = measured.with_engine(
        gpus=spec.gpus_per_replica,
        max_num_seqs=spec.max_num_seqs,
        max_num_batched_tokens=spec.max_num_batched_tokens,
        block_size=spec.block_size,
    )
    return Deployment(spec.name, profile, parse_startup(spec.startup_delay))


def override(deployment: Deployment, startup: StartupDelay | None, max_num_seqs: int | None) -> Deployment:
    """The deployment with what the command line says instead."""
    profile = deployment.profile
    if max_num_seqs is not None:
        profile = profile.with_engine(max_num_seqs=max_num_seqs)
    return Deployment(deployment.name, profile, startup or deployment.startup)
