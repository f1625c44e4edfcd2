"""Deployments: what runs in one replica's pod and what it is billed — a measured profile, the engine's limits,
the GPUs requested per pod and how long a new pod takes to serve.

A deployment file (YAML or JSON) names a profile (bundled or a file) and overrides the engine settings the
profile was measured with. The ACK guide's Dynamo deployment runs a TP=1 vLLM engine in a pod that requests two
GPUs: both are billed, one is used.

The simulator models replicas with them, and the capacity policy reads one replica's capacity off them (a trigger's
`profile`), so they live outside the simulator's package. The bundled ones are in `scaler/simulate/data/`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scaler.durations import parse_duration
from scaler.profile import Profile, parse_profile


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


# -- the lookup: bundled by name, or a file ------------------------------------------------------------------------

DEPLOYMENT_SUFFIX = ".deployment.yaml"
# Where a decode replica's seats are read off its profile: a context typical of chat and code traces (prompt plus
# half the answer, 1-2k tokens).
DECODE_CONTEXT = 2048


def bundled_data() -> Any:
    """The bundled traces, profiles and deployments (read without importing the simulator)."""
    return resources.files("scaler") / "simulate" / "data"


def bundled_profiles() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in bundled_data().iterdir()
        if p.name.endswith(".yaml") and not p.name.endswith(DEPLOYMENT_SUFFIX)
    )


def bundled_deployments() -> list[str]:
    return sorted(
        p.name.removesuffix(DEPLOYMENT_SUFFIX) for p in bundled_data().iterdir() if p.name.endswith(DEPLOYMENT_SUFFIX)
    )


def _document(name_or_path: str, bundled: list[str], suffix: str, what: str) -> dict[str, Any]:
    if name_or_path in bundled:
        text = (bundled_data() / f"{name_or_path}{suffix}").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"no {what} {name_or_path!r}: give a file or one of {', '.join(bundled)}")
        text = path.read_text()
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} {name_or_path!r} is not a YAML/JSON mapping")
    return loaded


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name, or a YAML/JSON profile file."""
    return parse_profile(_document(name_or_path, bundled_profiles(), ".yaml", "profile"))


def load_deployment(name_or_path: str) -> Deployment:
    """A bundled deployment by name, or a YAML/JSON deployment file (its profile: bundled, or a file)."""
    return parse_deployment(
        _document(name_or_path, bundled_deployments(), DEPLOYMENT_SUFFIX, "deployment"), load_profile
    )


def bundled() -> list[str]:
    """What a trigger's `profile` may name: the bundled deployments, then the bundled profiles (their engine at the
    settings they were measured with). Never a file: trigger metadata is the caller's, the filesystem is not."""
    return bundled_deployments() + bundled_profiles()


@functools.lru_cache(maxsize=len(bundled()))
def replica(name: str) -> Profile:
    """The profile of one replica of a bundled deployment or profile (ValueError on another name)."""
    if name not in bundled():
        raise ValueError(f"no bundled deployment or profile {name!r}; accepted: {', '.join(bundled())}")
    return load_deployment(name).profile if name in bundled_deployments() else load_profile(name)


def prefill_tokens_per_second(profile: Profile) -> float:
    """Prompt tokens one prefill replica processes per second while busy: full chunks of max_num_batched_tokens
    back to back, each taking the profile's prefill time for one (the simulator's own)."""
    chunk = profile.spec.max_num_batched_tokens
    return chunk / profile.prefill_seconds(chunk)


def decode_step(profile: Profile) -> Callable[[int], float]:
    """Seconds one decode step takes at a batch of that many sequences of DECODE_CONTEXT tokens (the measure the
    seats are taken at)."""
    return lambda batch: profile.decode_step_seconds(batch, batch * DECODE_CONTEXT)


def decode_seats(profile: Profile, itl: float) -> int:
    """Sequences one decode replica runs with each step within `itl` (the largest batch, up to its max_num_seqs, at
    DECODE_CONTEXT tokens per sequence); ValueError when even one sequence's step takes longer."""
    one = profile.decode_step_seconds(1, DECODE_CONTEXT)
    if one > itl:
        raise ValueError(
            f"one sequence's decode step takes {one * 1000:.1f} ms at {DECODE_CONTEXT} tokens of "
            f"context, above the ITL of {itl * 1000:g} ms"
        )
    return profile.max_batch_within(itl, DECODE_CONTEXT)
