"""Trigger metadata: the schema of `scalerMetadata`, parsed and validated into a typed spec.

The pydantic models here are the single source of truth for keys, types and defaults; the README's metadata
table is generated from them (`metadata_table`). Parsing is pure: no clock, no I/O, no globals.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from scaler import deployment, signals
from scaler.durations import parse_duration
from scaler.errors import InvalidTrigger

# Keys KEDA itself reads from the trigger's metadata and forwards to us unchanged.
KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})
FROM_ENV = "FromEnv"
ROLES = ("prefill", "decode")
METRICS = ("gpu-memory", "gpu-util", "kv-cache", "seats")  # decode
PREFILL_METRICS = ("queue-lag", "engine-queue", "prefill-tokens")
ENGINES = ("vllm", "sglang", "dynamo")
POLICIES = ("capacity", "threshold")
_NATS_KEYS = ("natsServer", "natsConnection", "natsServerMonitoringEndpoint")

# What one trigger's metadata may hold, checked before anything is parsed (`check_size`). KEDA forwards the
# handful of short keys a user wrote; these leave room for far more, and bound what one call can make us do.
MAX_KEYS = 64
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 2048
MAX_SUGGESTIONS = 3  # unknown keys that get a did-you-mean (each costs a fuzzy match against the schema)
ECHO_LENGTH = 64  # characters of a value quoted back in an error
# Per-replica targets and activation thresholds: far above any real one, far inside int64 and float precision.
MAX_TARGET = 1e9

_NATS_SCHEMES = ("nats", "tls")
_CREDENTIALS_HINT = (
    "credentials are not accepted in trigger metadata (KEDA does not protect it); "
    "put them in a connection profile of the --connections file and name it"
)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", str(exc)) from None
    return value


def _nats_servers(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    servers = tuple(s.strip() for s in value.split(",") if s.strip())
    if not servers:
        raise PydanticCustomError("nats_url", "expected one or more nats://host:port, comma-separated")
    for server in servers:
        parts = urlsplit(server)
        if parts.username or parts.password or "@" in parts.netloc:
            raise PydanticCustomError("credentials", _CREDENTIALS_HINT + " with natsConnection")
        if parts.scheme not in _NATS_SCHEMES or not parts.hostname:
            raise PydanticCustomError(
                "nats_url", "expected nats://host:port or tls://host:port (comma-separated for several)"
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise PydanticCustomError("nats_url", "the port is not a number") from None
    return servers


def _host_port(value: Any) -> Any:
    if isinstance(value, str):
        if "@" in value:
            raise PydanticCustomError("credentials", _CREDENTIALS_HINT)
        if not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?", value):
            raise PydanticCustomError("host_port", "expected host:port without a scheme, like KEDA's nats-jetstream")
    return value


def _exactly_one(**sources: object) -> None:
    """A trigger names its source one way only; `sources` maps each metadata key to its value."""
    given = [key for key, value in sources.items() if value is not None]
    if len(given) != 1:
        raise PydanticCustomError(
            "source",
            "exactly one of {keys} is required; got {got}",
            {"keys": ", ".join(sources), "got": ", ".join(given) or "none"},
        )


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveFloat = Annotated[float, Field(gt=0, le=MAX_TARGET, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=MAX_TARGET, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s*>.]+$")]
# Capacity knobs: a start-up delay beyond ten minutes or a rate window beyond five says something is wrong, and
# the sources' histories are sized for them.
StartupDelay = Annotated[Duration, Field(gt=0, le=600)]
Window = Annotated[Duration, Field(ge=5, le=300)]
BurstMemory = Annotated[Duration, Field(ge=0, le=600)]
MAX_HISTORY_S = 600 + 2 * 300


def _bundled(name: str) -> str:
    if name not in deployment.bundled():
        raise PydanticCustomError("profile", "accepted values: {names}", {"names": ", ".join(deployment.bundled())})
    return name


# A replica's measurements by name: never a file, as trigger metadata is the caller's and the filesystem is not.
BundledProfile = Annotated[str, AfterValidator(_bundled)]


def _policy_field(compat: str) -> Any:
    return Field(
        None,
        description=f"`capacity`: demand against one replica's capacity; `threshold`: the signal against `{compat}` "
        f"(KEDA's meaning). Default: `threshold` when `{compat}` is given, else `capacity`.",
    )


def _startup_field() -> Any:
    return Field(
        "120s",
        alias="startupDelay",
        validate_default=True,
        description="Capacity: time from ordering a replica to its serving; demand is forecast this far ahead.",
    )


def _window_field() -> Any:
    return Field("60s", validate_default=True, description="Capacity: rates are measured over this window.")


def _burst_field() -> Any:
    return Field(
        "10m",
        alias="burstMemory",
        validate_default=True,
        description="Capacity: the busiest quarter-window of prefill arrivals this recent is provisioned for "
        "(bursts shorter than the start-up delay recur; capacity ordered for one arrives after it).",
    )


class TriggerBase(BaseModel):
    """Keys every role accepts. Field aliases are the metadata keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: str = Field(description=f"Which role this trigger scales: {', '.join(ROLES)}.")
    metric: str = Field(description="What the trigger measures.")
    max_staleness: Duration = Field(
        "30s",
        gt=0,
        validate_default=True,
        alias="maxStaleness",
        description="Oldest sample still answered with; older → `UNAVAILABLE`. Duration: `30s`, `1m`, `500ms`.",
    )

    kind: ClassVar[str]

    @property
    def metric_name(self) -> str:
        """The HPA's metric name for this trigger (KEDA prefixes `sN-`)."""
        raise NotImplementedError

    @property
    def target(self) -> float:
        """The per-replica target (AverageValue)."""
        raise NotImplementedError


def _http_url(value: Any) -> Any:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.username or parts.password or "@" in parts.netloc:
            raise PydanticCustomError("credentials", _CREDENTIALS_HINT + " with prometheusConnection")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError("url", "expected an http:// or https:// URL of the Prometheus server")
    return value


def _matchers(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return signals.parse_matchers(value)
        except ValueError as exc:
            raise PydanticCustomError("matchers", str(exc)) from None
    return value


class SignalKeys(BaseModel):
    """Keys of triggers that read engine or DCGM metrics, through Prometheus or from the role's pods."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    engine: Literal["vllm", "sglang", "dynamo"] | None = Field(
        None,
        description=(
            "With an engine metric: whose metrics to read, `vllm`, `sglang` or `dynamo` (default `vllm`; "
            "`dynamo` for `prefill-tokens`)."
        ),
    )
    prometheus_address: Annotated[str | None, BeforeValidator(_http_url)] = Field(
        None, alias="prometheusAddress", description="Prometheus URL, e.g. `http://prometheus.monitoring:9090`."
    )
    prometheus_connection: Name | None = Field(
        None,
        alias="prometheusConnection",
        description="Name of a Prometheus profile in the `--connections` file (URL, token, basic auth, CA).",
    )
    series_selector: Annotated[tuple[signals.Matcher, ...] | None, BeforeValidator(_matchers), Field(max_length=16)] = (
        Field(
            None,
            alias="seriesSelector",
            description=(
                'PromQL label matchers every series must pass, e.g. `dynamo_namespace="llm-dynamo"` or '
                '`namespace="llm",service=~"sglang-.*"`: one Prometheus shared by many deployments answers for '
                "this one. Applied to scraped series too."
            ),
        )
    )
    scrape: Literal["prometheus", "pods"] = Field(
        "prometheus",
        description="`prometheus` (query a Prometheus) or `pods`: scrape the role's pods' /metrics directly.",
    )
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None,
        alias="metricsPort",
        description=(
            "With `scrape: pods`: the pods' metrics port (default per engine: vLLM 8000, SGLang 30000, Dynamo "
            "frontend 8000, Dynamo worker 8081)."
        ),
    )
    metrics_path: Annotated[str, Field(max_length=256, pattern=r"^/[A-Za-z0-9._~/-]*$")] = Field(
        "/metrics", alias="metricsPath", description="With `scrape: pods`: the path of the pods' metrics."
    )
    pod_selector: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        None,
        alias="podSelector",
        description=(
            "Label selector of the role's pods, instead of discovery through the RBG scaling adapter (with "
            "`prefill-tokens` and `scrape: pods`: the Dynamo frontend's pods)."
        ),
    )

    if TYPE_CHECKING:  # declared (and placed first in the table) by the trigger models
        role: str
        metric: str

    @property
    def signal_metric(self) -> str:
        return self.metric

    @property
    def signal(self) -> signals.Signal:
        return signals.signal(self.role, self.signal_metric, self.engine)

    @property
    def matchers(self) -> tuple[signals.Matcher, ...]:
        return self.series_selector or ()

    @property
    def reads_pods(self) -> bool:
        """The trigger measures the role's running pods (so it needs them, and cannot wake a role at zero)."""
        return self.metric != "queue-lag" and not (self.signal.per_worker and self.scrape == "prometheus")

    @property
    def port(self) -> int:
        """The pods' metrics port for `scrape: pods`."""
        return self.metrics_port or self.signal.port or 0

    def _check_signal(self) -> None:
        if self.signal_metric not in signals.ENGINE_METRICS and self.engine is not None:
            raise PydanticCustomError(
                "engine", "key 'engine' applies only with {metrics}", {"metrics": _engine_metrics(self.role)}
            )
        try:
            sig = self.signal
        except signals.Unsupported as exc:
            raise PydanticCustomError("engine", "key 'engine': {why}", {"why": str(exc)}) from None
        if self.scrape == "pods":
            extra = [k for k in ("prometheusAddress", "prometheusConnection") if _alias_set(self, k)]
            if extra:
                raise _only(extra, "scrape: prometheus (the default), not with scrape: pods")
            if sig.port is None:
                raise PydanticCustomError(
                    "scrape",
                    "key 'scrape': {metric} comes from dcgm-exporter, not the role's pods: read it through "
                    "Prometheus (scrape: prometheus)",
                    {"metric": self.metric},
                )
            if sig.per_worker and self.pod_selector is None:
                raise PydanticCustomError(
                    "scrape",
                    "key 'podSelector' is required with {metric} and scrape: pods: Dynamo's frontend exports "
                    "these counts, so select the frontend's pods",
                    {"metric": self.metric},
                )
            return
        given = [k for k in ("metricsPort", "metricsPath") if _alias_set(self, k)]
        if given:
            raise _only(given, "scrape: pods")
        _exactly_one(prometheusAddress=self.prometheus_address, prometheusConnection=self.prometheus_connection)


def _only(keys: list[str], condition: str) -> PydanticCustomError:
    quoted = ", ".join(repr(k) for k in keys)
    verb = "applies" if len(keys) == 1 else "apply"
    return PydanticCustomError(
        "source", "{noun} {keys} {verb} only with {condition}",
        {"noun": "key" if len(keys) == 1 else "keys", "keys": quoted, "verb": verb, "condition": condition},
    )  # fmt: skip


def _alias_set(model: BaseModel, alias: str) -> bool:
    return any((f.alias or n) == alias and n in model.model_fields_set for n, f in type(model).model_fields.items())


def _engine_metrics(role: str) -> str:
    return "metric: " + ", ".join(
        m for m in signals.ENGINE_METRICS if m in (PREFILL_METRICS if role == "prefill" else METRICS)
    )


class PrefillTrigger(SignalKeys, TriggerBase):
    """Prefill: the lag of the JetStream consumer prefill workers pull from, or the engines' or the Dynamo
    router's waiting work."""

    role: Literal["prefill"] = Field(description="`prefill`: scale on the prefill queue or the prefill engines' load.")
    metric: Literal["queue-lag", "engine-queue", "prefill-tokens"] = Field(
        "queue-lag",
        description=(
            "`queue-lag` (the JetStream consumer's lag, with a NATS source), `engine-queue` (requests waiting on "
            "the prefill pods) or `prefill-tokens` (prompt tokens waiting, from Dynamo's frontend)."
        ),
    )
    threshold: PositiveFloat | None = Field(
        None,
        description=(
            "With `engine-queue` / `prefill-tokens`: target per prefill replica, in waiting requests / prompt "
            "tokens. Required with those metrics."
        ),
    )
    activation_threshold: NonNegativeFloat = Field(
        0.0,
        alias="activationThreshold",
        description="With `engine-queue` / `prefill-tokens`: the role is active while the total is above this.",
    )
    stream: Name = Field("dynamo_prefill_queue", description="JetStream stream holding remote-prefill requests.")
    consumer: Name = Field("worker-group", description="Durable pull consumer the prefill workers share.")
    lag_threshold: PositiveFloat = Field(
        5.0,
        alias="lagThreshold",
        description="Target lag per prefill replica (messages), as KEDA's `lagThreshold`.",
    )
    activation_lag_threshold: NonNegativeFloat = Field(
        0.0, alias="activationLagThreshold", description="The role is active while the lag is above this."
    )
    nats_server: Annotated[tuple[str, ...] | None, BeforeValidator(_nats_servers)] = Field(
        None,
        alias="natsServer",
        description="NATS URL(s), `nats://host:port`, comma-separated. No credentials: see `natsConnection`.",
    )
    nats_connection: Name | None = Field(
        None,
        alias="natsConnection",
        description="Name of a NATS profile in the `--connections` file (servers, credentials, TLS).",
    )
    nats_server_monitoring_endpoint: Annotated[str | None, BeforeValidator(_host_port)] = Field(
        None,
        alias="natsServerMonitoringEndpoint",
        description="KEDA `nats-jetstream` compatibility: read `/jsz` from this `host:port` instead.",
    )
    account: Name | None = Field(
        None, description="With `natsServerMonitoringEndpoint`: the JetStream account (default `$G`)."
    )
    use_https: bool | None = Field(
        None, alias="useHttps", description="With `natsServerMonitoringEndpoint`: `true` to use HTTPS."
    )
    policy: Literal["capacity", "threshold"] | None = _policy_field("lagThreshold")
    ttft: Annotated[Duration, Field(gt=0, le=600)] = Field(
        "1s",
        validate_default=True,
        description="Capacity: TTFT SLO, the time a prompt may wait beyond its own prefill.",
    )
    startup_delay: StartupDelay = _startup_field()
    window: Window = _window_field()
    burst_memory: BurstMemory = _burst_field()
    prefill_tokens_per_second: PositiveFloat = Field(
        9000.0,
        alias="prefillTokensPerSecond",
        description="Capacity: prompt tokens one prefill replica processes per second. Given, it wins; else "
        "derived from `profile`; else this default (one H100/H200 on Qwen3-32B at 1-2k-token prompts).",
    )
    profile: BundledProfile | None = Field(
        None,
        description="Capacity: the prefill replica, a bundled deployment or profile (`"
        + "`, `".join(deployment.bundled())
        + "`) whose measured prefill gives `prefillTokensPerSecond`: full chunks of its "
        "`max_num_batched_tokens`, back to back.",
    )
    refine_capacity: bool = Field(
        False,
        alias="refineCapacity",
        description="Capacity: `true` measures one replica's prompt tokens per second from the queue while requests "
        "wait, per ready replica of the role (found as decode's are: ScaledObject, scaling adapter, pods; needs the "
        "same RBAC), and uses it instead of the configured figure while a measurement exists.",
    )
    decode_scaled_object: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        None,
        alias="decodeScaledObject",
        description="Capacity: the decode role's capacity ScaledObject (same namespace); prefill then counts the "
        "requests decode's engines hold waiting, beyond the queue's backlog, as work on its way (a decode engine "
        "publishes a request's remote prefill only once it has room for it).",
    )
    prompt_tokens_field: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")] = Field(
        "prompt_token_ids",
        alias="promptTokensField",
        description="Capacity: the JSON list in each queued request whose length is its prompt tokens "
        "(Dynamo's `RemotePrefillRequest`).",
    )
    mean_prompt_tokens: PositiveFloat = Field(
        1000.0,
        alias="meanPromptTokens",
        description="Capacity: prompt tokens counted for a request whose payload has no such list (or is over 1 MiB).",
    )

    kind: ClassVar[str] = "prefill"

    @model_validator(mode="after")
    def _one_source(self) -> PrefillTrigger:
        if self.policy == "capacity" and self.metric != "queue-lag":
            raise PydanticCustomError(
                "policy", "policy capacity reads the prefill queue: metric queue-lag (the default) with a NATS source"
            )
        capacity_only = [k for k, v in (("refineCapacity", self.refine_capacity), ("decodeScaledObject",
                         self.decode_scaled_object)) if v]  # fmt: skip
        if capacity_only and not self.capacity:
            raise _only(capacity_only, "policy capacity (the queue-lag default without KEDA's lag keys)")
        if self.metric != "queue-lag":
            lag_keys = (
                "stream",
                "consumer",
                "lagThreshold",
                "activationLagThreshold",
                *_NATS_KEYS,
                "account",
                "useHttps",
            )
            extra = [k for k in lag_keys if _alias_set(self, k)]
            if extra:
                raise _only(extra, "metric: queue-lag")
            if self.threshold is None:
                raise PydanticCustomError(
                    "threshold", "key 'threshold' is required with metric: {metric}", {"metric": self.metric}
                )
            self._check_signal()
            return self
        signal_keys = [
            k
            for k in ("engine", "threshold", "activationThreshold", "prometheusAddress", "prometheusConnection",
                      "seriesSelector", "scrape", "metricsPort", "metricsPath", "podSelector")
            if _alias_set(self, k)
        ]  # fmt: skip
        if signal_keys:
            raise _only(signal_keys, "metric: engine-queue or prefill-tokens, not with queue-lag")
        _exactly_one(
            natsServer=self.nats_server,
            natsConnection=self.nats_connection,
            natsServerMonitoringEndpoint=self.nats_server_monitoring_endpoint,
        )
        if self.nats_server_monitoring_endpoint is None:
            extra = [k for k, v in (("account", self.account), ("useHttps", self.use_https)) if v is not None]
            if extra:
                raise PydanticCustomError(
                    "source",
                    "{keys} only apply with natsServerMonitoringEndpoint",
                    {"keys": ", ".join(extra)},
                )
        if self.policy == "capacity":
            if self.nats_server_monitoring_endpoint is not None:
                raise PydanticCustomError(
                    "policy",
                    "policy capacity needs natsServer or natsConnection (it reads each request's prompt tokens); "
                    "natsServerMonitoringEndpoint only gives message counts",
                )
            _no_compat(self, ("lagThreshold", "activationLagThreshold"))
        return self

    @property
    def capacity(self) -> bool:
        """The capacity policy, unless a KEDA compatibility key or another metric chose the threshold one."""
        if self.policy is not None:
            return self.policy == "capacity"
        compat = {"lag_threshold", "activation_lag_threshold", "nats_server_monitoring_endpoint"}
        return self.metric == "queue-lag" and not (compat & self.model_fields_set)

    @property
    def metric_name(self) -> str:
        if self.capacity:
            return metric_name("prefill-tokens", self.stream, self.consumer)
        if self.metric != "queue-lag":
            return metric_name("prefill", self.metric)
        return metric_name("prefill-lag", self.stream, self.consumer)

    @property
    def replica_tokens_per_second(self) -> float:
        """Prompt tokens one replica prefills per second: `prefillTokensPerSecond` as given, else from `profile`."""
        if self.profile is None or "prefill_tokens_per_second" in self.model_fields_set:
            return self.prefill_tokens_per_second
        return _tokens_per_second(self.profile)

    @property
    def target(self) -> float:
        if self.capacity:
            return self.replica_tokens_per_second
        return self.lag_threshold if self.threshold is None else self.threshold

    @property
    def jsz_url(self) -> str:
        scheme = "https" if self.use_https else "http"
        return f"{scheme}://{self.nats_server_monitoring_endpoint}"


class DecodeTrigger(SignalKeys, TriggerBase):
    """Decode: GPU memory / utilisation from DCGM, or the engine's KV-cache fill or seats, summed over the role's
    pods."""

    role: Literal["decode"] = Field(description="`decode`: scale on seats, KV-cache fill, GPU memory or utilisation.")
    metric: Literal["gpu-memory", "gpu-util", "kv-cache", "seats"] = Field(
        "gpu-memory",
        description=(
            "`seats` (running + waiting sequences over `maxNumSeqs`), `kv-cache` (engine KV-cache fill), "
            "`gpu-memory` (DCGM framebuffer used; flat under engines that preallocate) or `gpu-util` (DCGM)."
        ),
    )
    threshold: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        0.8, description="Target per decode pod, as a fraction in (0, 1]; the value reported is the sum over pods."
    )
    activation_threshold: NonNegativeFloat = Field(
        0.0, alias="activationThreshold", description="The role is active while the sum is above this."
    )
    max_num_seqs: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None,
        alias="maxNumSeqs",
        description=(
            "With `seats`: one engine's sequence limit (vLLM `--max-num-seqs`, SGLang `--max-running-requests`); "
            "required, as neither engine exports it."
        ),
    )
    policy: Literal["capacity", "threshold"] | None = _policy_field("threshold")
    seats: PositiveFloat = Field(
        94.0,
        description="Capacity: sequences one decode replica runs within the ITL SLO. Given, it wins; else derived "
        "from `profile` and `itl`; else this default (Qwen3-32B on one H100 at 50 ms per token with 2k-token "
        "contexts: what the bundled `qwen3-32b-h100-tp1` profile derives).",
    )
    itl: Annotated[Duration, Field(gt=0, le=10)] = Field(
        "50ms",
        validate_default=True,
        description="Capacity: ITL SLO, the time between two output tokens; with `profile`, `seats` is the "
        f"largest batch whose decode step at {deployment.DECODE_CONTEXT} tokens of context meets it.",
    )
    profile: BundledProfile | None = Field(
        None,
        description="Capacity: the decode replica, a bundled deployment or profile (`"
        + "`, `".join(deployment.bundled())
        + "`) whose measured decode steps give `seats` at the `itl` SLO.",
    )
    startup_delay: StartupDelay = _startup_field()
    window: Window = _window_field()
    burst_memory: BurstMemory = _burst_field()
    prefill_scaled_object: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        None,
        alias="prefillScaledObject",
        description="Capacity: the prefill role's ScaledObject (same namespace); decode then anticipates its "
        "arrivals and backlog, and the bounds below apply.",
    )
    min_decode_per_prefill: PositiveFloat | None = Field(
        None, alias="minDecodePerPrefill", description="With `prefillScaledObject`: fewest decode per prefill replica."
    )
    max_decode_per_prefill: PositiveFloat | None = Field(
        None, alias="maxDecodePerPrefill", description="With `prefillScaledObject`: most decode per prefill replica."
    )
    decode_per_prefill: Literal["auto"] | None = Field(
        None,
        alias="decodePerPrefill",
        description="With `prefillScaledObject`: `auto` sets the fewest decode per prefill replica from the "
        "prompt/output mix, `meanOutputTokens` x `itl` / seats to the measured mean prompt / the prefill "
        "replica's tokens per second (instead of `minDecodePerPrefill`).",
    )
    mean_output_tokens: PositiveFloat | None = Field(
        None, alias="meanOutputTokens", description="With `decodePerPrefill: auto`: the answers' mean length in tokens."
    )

    kind: ClassVar[str] = "decode"

    @model_validator(mode="after")
    def _one_source(self) -> DecodeTrigger:
        if "seats" not in self.model_fields_set and ("itl" in self.model_fields_set or self.profile is not None):
            if self.profile is None:
                raise PydanticCustomError(
                    "itl",
                    "key 'itl' needs key 'profile' (the decode replica's bundled deployment or profile: {names}) to "
                    "derive seats from; or set key 'seats'",
                    {"names": ", ".join(deployment.bundled())},
                )
            try:
                _seats(self.profile, self.itl)
            except ValueError as exc:
                raise PydanticCustomError(
                    "itl",
                    "key 'itl': on {profile}, {why}; raise it, or set key 'seats'",
                    {"profile": self.profile, "why": str(exc)},
                ) from None
        if self.policy == "capacity":
            _no_compat(self, ("metric", "threshold", "activationThreshold", "maxNumSeqs"))
        if self.metric == "seats" and self.max_num_seqs is None and not self.capacity:
            raise PydanticCustomError(
                "seats",
                "key 'maxNumSeqs' is required with metric: seats: set it to the engine's sequence limit "
                "(vLLM --max-num-seqs, SGLang --max-running-requests); neither engine exports it",
            )
        if self.metric != "seats" and self.max_num_seqs is not None:
            raise _only(["maxNumSeqs"], "metric: seats")
        self._check_signal()
        bounds = [k for k in ("minDecodePerPrefill", "maxDecodePerPrefill", "decodePerPrefill") if _alias_set(self, k)]
        if bounds and self.prefill_scaled_object is None:
            raise _only(bounds, "prefillScaledObject (the prefill role to keep in step with)")
        if self.decode_per_prefill is None and self.mean_output_tokens is not None:
            raise _only(["meanOutputTokens"], "decodePerPrefill: auto")
        if self.decode_per_prefill is not None:
            if self.min_decode_per_prefill is not None:
                raise PydanticCustomError(
                    "coupling", "minDecodePerPrefill and decodePerPrefill: auto both set the fewest decode per "
                    "prefill replica; keep one",
                )  # fmt: skip
            if self.mean_output_tokens is None:
                raise PydanticCustomError(
                    "coupling", "key 'meanOutputTokens' is required with decodePerPrefill: auto (the answers' mean "
                    "length in tokens)",
                )  # fmt: skip
        lo, hi = self.min_decode_per_prefill, self.max_decode_per_prefill
        if lo is not None and hi is not None and lo > hi:
            raise PydanticCustomError("coupling", "minDecodePerPrefill is above maxDecodePerPrefill")
        return self

    @property
    def capacity(self) -> bool:
        """The capacity policy, unless a KEDA compatibility key (or the threshold's `metric`) chose the other."""
        if self.policy is not None:
            return self.policy == "capacity"
        return not ({"threshold", "activation_threshold", "metric", "max_num_seqs"} & self.model_fields_set)

    @property
    def signal_metric(self) -> str:
        # Capacity reads sequences (the seats signal) and, from the same engines, their KV-cache fill.
        return "seats" if self.capacity else self.metric

    @property
    def metric_name(self) -> str:
        return metric_name("decode", "sequences" if self.capacity else self.metric)

    @property
    def replica_seats(self) -> float:
        """Sequences one replica runs within the ITL SLO: `seats` as given, else derived from `profile`."""
        if self.profile is None or "seats" in self.model_fields_set:
            return self.seats
        return _seats(self.profile, self.itl)

    @property
    def target(self) -> float:
        return self.replica_seats if self.capacity else self.threshold


@functools.lru_cache(maxsize=256)  # asked on every call; few (profile, itl) pairs in use, each a batch search
def _seats(profile: str, itl: float) -> float:
    return float(deployment.decode_seats(deployment.replica(profile), itl))


@functools.lru_cache(maxsize=len(deployment.bundled()))
def _tokens_per_second(profile: str) -> float:
    return deployment.prefill_tokens_per_second(deployment.replica(profile))


def _no_compat(model: BaseModel, keys: tuple[str, ...]) -> None:
    given = [k for k in keys if _alias_set(model, k)]
    if given:
        raise PydanticCustomError(
            "policy", "{keys} only apply with policy threshold, not capacity", {"keys": ", ".join(given)}
        )


TriggerSpec = PrefillTrigger | DecodeTrigger
_MODELS: dict[str, type[TriggerBase]] = {"prefill": PrefillTrigger, "decode": DecodeTrigger}


@functools.lru_cache(maxsize=1024)  # asked on every call; the same few names each time
def metric_name(*parts: str) -> str:
    """A name the HPA accepts (lowercase letters, digits, `-`), the same for the same parts."""
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return name[:200].rstrip("-")


def _keys(model: type[TriggerBase]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _normalise(metadata: Mapping[str, str]) -> dict[str, str]:
    """Drop KEDA's own keys and fold `<key>FromEnv` (already resolved by KEDA) onto `<key>`."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if key in KEDA_KEYS:
            continue
        base = key[: -len(FROM_ENV)] if key.endswith(FROM_ENV) and len(key) > len(FROM_ENV) else key
        if base in out:
            raise InvalidTrigger(f"key {base!r} is given twice (as {base!r} and {base + FROM_ENV!r}); keep one")
        out[base] = value
    return out


def echo(text: str) -> str:
    """`text` quoted for an error message, cut to ECHO_LENGTH characters: a caller's value is never echoed whole."""
    if len(text) <= ECHO_LENGTH:
        return repr(text)
    return f"{text[:ECHO_LENGTH]!r}… ({len(text)} characters)"


def check_size(metadata: Mapping[str, str]) -> None:
    """InvalidTrigger if the metadata has too many keys or a key or value too long; cheap, so it runs first."""
    if len(metadata) > MAX_KEYS:
        raise InvalidTrigger(f"the trigger metadata has {len(metadata)} keys; at most {MAX_KEYS} are accepted")
    if not metadata or (
        max(map(len, metadata)) <= MAX_KEY_LENGTH and max(map(len, metadata.values())) <= MAX_VALUE_LENGTH
    ):
        return  # the usual case, without a loop in Python
    for key, value in metadata.items():
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidTrigger(f"key {echo(key)} is {len(key)} characters long; keys have at most {MAX_KEY_LENGTH}")
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidTrigger(
                f"key {echo(key)}: invalid value {echo(value)}: longer than the {MAX_VALUE_LENGTH} characters accepted"
            )


def _unknown(keys: list[str], model: type[TriggerBase]) -> str:
    """One clause for all unknown keys; only the first few get a did-you-mean."""
    accepted = _keys(model)
    named = []
    for key in keys[:MAX_SUGGESTIONS]:
        close = difflib.get_close_matches(key, accepted, n=1)
        named.append(echo(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(keys) - MAX_SUGGESTIONS} more" if len(keys) > MAX_SUGGESTIONS else ""
    noun = "key" if len(keys) == 1 else "keys"
    return f"unknown {noun} {', '.join(named)}{more}; {model.kind} triggers accept: {', '.join(sorted(accepted))}"


def _describe(error: Mapping[str, Any], given: Mapping[str, str]) -> str:
    loc = error["loc"]
    key = str(loc[0]) if loc else ""
    if error["type"] == "missing":
        return f"key {key!r} is required"
    if not key:
        return str(error["msg"])
    # Quote what the user wrote, not what an earlier validation step made of it.
    value = given.get(key, error["input"])
    return f"key {key!r}: invalid value {echo(value) if isinstance(value, str) else repr(value)}: {error['msg']}"


def parse(metadata: Mapping[str, str]) -> TriggerSpec:
    """The typed spec for one trigger's metadata, or InvalidTrigger naming the key, value and what is accepted."""
    check_size(metadata)
    fields = _normalise(metadata)
    role = fields.get("role")
    if role is None:
        raise InvalidTrigger(f"key 'role' is required; accepted values: {', '.join(ROLES)}")
    model = _MODELS.get(role)
    if model is None:
        raise InvalidTrigger(f"key 'role': invalid value {echo(role)}; accepted values: {', '.join(ROLES)}")
    try:
        return model.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as exc:
        errors = exc.errors()
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        described = [_describe(e, fields) for e in errors if e["type"] != "extra_forbidden"]
        raise InvalidTrigger("; ".join(described + ([_unknown(unknown, model)] if unknown else []))) from None


def metadata_table() -> str:
    """The README's metadata table, generated from the schema."""
    rows = ["| role | key | default | meaning |", "|---|---|---|---|"]
    for role, model in _MODELS.items():
        for name, field in model.model_fields.items():
            key = field.alias or name
            default = "required" if field.is_required() else _default_text(field.default)
            rows.append(f"| {role} | `{key}` | {default} | {field.description} |")
    return "\n".join(rows)


def _default_text(value: object) -> str:
    return "—" if value is None else f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
