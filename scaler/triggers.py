"""Trigger metadata: the schema of `scalerMetadata`, parsed and validated into a typed spec.

The pydantic models here are the single source of truth for keys, types and defaults; the README's metadata
table is generated from them (`metadata_table`). Parsing is pure: no clock, no I/O, no globals.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from scaler.durations import parse_duration
from scaler.errors import InvalidTrigger

# Keys KEDA itself reads from the trigger's metadata and forwards to us unchanged.
KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})
FROM_ENV = "FromEnv"
ROLES = ("prefill", "decode")
METRICS = ("gpu-memory", "gpu-util", "kv-cache")
ENGINES = ("vllm", "sglang", "dynamo")

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


class TriggerBase(BaseModel):
    """Keys every role accepts. Field aliases are the metadata keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: str = Field(description=f"Which role this trigger scales: {', '.join(ROLES)}.")
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


class PrefillTrigger(TriggerBase):
    """Prefill: the lag of the JetStream consumer prefill workers pull from."""

    role: Literal["prefill"] = Field(description="`prefill`: scale on the prefill queue's consumer lag.")
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

    kind: ClassVar[str] = "prefill"

    @model_validator(mode="after")
    def _one_source(self) -> PrefillTrigger:
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
        return self

    @property
    def metric_name(self) -> str:
        return metric_name("prefill-lag", self.stream, self.consumer)

    @property
    def target(self) -> float:
        return self.lag_threshold

    @property
    def jsz_url(self) -> str:
        scheme = "https" if self.use_https else "http"
        return f"{scheme}://{self.nats_server_monitoring_endpoint}"


def _http_url(value: Any) -> Any:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.username or parts.password or "@" in parts.netloc:
            raise PydanticCustomError("credentials", _CREDENTIALS_HINT + " with prometheusConnection")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError("url", "expected an http:// or https:// URL of the Prometheus server")
    return value


class DecodeTrigger(TriggerBase):
    """Decode: GPU memory / utilisation from DCGM, or the engine's KV-cache fill, summed over the role's pods."""

    role: Literal["decode"] = Field(description="`decode`: scale on GPU memory, GPU utilisation or KV-cache fill.")
    metric: Literal["gpu-memory", "gpu-util", "kv-cache"] = Field(
        "gpu-memory",
        description="`gpu-memory` (DCGM framebuffer used), `gpu-util` (DCGM utilisation) or `kv-cache` (engine).",
    )
    threshold: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        0.8, description="Target per decode pod, as a fraction in (0, 1]; the value reported is the sum over pods."
    )
    activation_threshold: NonNegativeFloat = Field(
        0.0, alias="activationThreshold", description="The role is active while the sum is above this."
    )
    engine: Literal["vllm", "sglang", "dynamo"] | None = Field(
        None, description="With `kv-cache`: whose metric to read, `vllm` (default), `sglang` or `dynamo`."
    )
    prometheus_address: Annotated[str | None, BeforeValidator(_http_url)] = Field(
        None, alias="prometheusAddress", description="Prometheus URL, e.g. `http://prometheus.monitoring:9090`."
    )
    prometheus_connection: Name | None = Field(
        None,
        alias="prometheusConnection",
        description="Name of a Prometheus profile in the `--connections` file (URL, token, basic auth, CA).",
    )
    pod_selector: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        None,
        alias="podSelector",
        description="Label selector of the role's pods, instead of discovery through the RBG scaling adapter.",
    )

    kind: ClassVar[str] = "decode"

    @model_validator(mode="after")
    def _one_source(self) -> DecodeTrigger:
        _exactly_one(prometheusAddress=self.prometheus_address, prometheusConnection=self.prometheus_connection)
        if self.engine is not None and self.metric != "kv-cache":
            raise PydanticCustomError("engine", "engine only applies with metric: kv-cache")
        return self

    @property
    def kv_engine(self) -> str:
        return self.engine or "vllm"

    @property
    def metric_name(self) -> str:
        return metric_name("decode", self.metric)

    @property
    def target(self) -> float:
        return self.threshold


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
