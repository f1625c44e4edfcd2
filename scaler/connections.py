"""Connection profiles: where sources live and the credentials to reach them.

Read from the file given by `--connections` (a mounted Secret), so credentials never travel in trigger
metadata. Secrets are `SecretStr`: they print as `**********` in any repr, log or error.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from scaler.errors import InvalidTrigger


class TLSFiles(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ca: Path | None = Field(None, description="CA bundle to verify the server with.")
    cert: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key: Path | None = Field(None, description="Client key (mutual TLS).")

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert:
            ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return ctx


class NatsProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    servers: tuple[str, ...] = Field(min_length=1, description="nats://host:port URLs.")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = Field(None, alias="credsFile", description="NATS .creds file (JWT + NKey).")
    tls: TLSFiles | None = None


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    username: str
    password: SecretStr


class PrometheusProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.")
    bearer_token_file: Path | None = Field(None, alias="bearerTokenFile", description="Read on every request.")
    basic_auth: BasicAuth | None = Field(None, alias="basicAuth")
    ca: Path | None = Field(None, description="CA bundle to verify an https URL with.")

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_url(cls, data: Any) -> Any:
        """`http://user:password@host` is accepted as basic auth, and the URL kept without it: the URL is shown in
        errors and logs, the credentials never are. Nothing here echoes the URL."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        parts = urlsplit(data["url"])
        if parts.scheme not in ("http", "https"):
            raise PydanticCustomError("url", "url: expected an http:// or https:// URL")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise PydanticCustomError("url", "url: the port is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise PydanticCustomError("url", "url: no host")
        if "@" not in parts.netloc:
            return data
        if data.get("basicAuth") is not None:
            raise PydanticCustomError("url", "url: credentials are given both in the URL and in basicAuth; keep one")
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        return {
            **data,
            "url": urlunsplit(parts._replace(netloc=host)),
            "basicAuth": {"username": unquote(user), "password": unquote(password)},
        }

    def headers(self) -> dict[str, str]:
        if self.bearer_token_file is not None:
            # Re-read each time: projected service-account tokens rotate.
            return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}
        if self.basic_auth is not None:
            pair = f"{self.basic_auth.username}:{self.basic_auth.password.get_secret_value()}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        return {}


class Connections(BaseModel):
    """The whole `--connections` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nats: dict[str, NatsProfile] = Field(default_factory=dict)
    prometheus: dict[str, PrometheusProfile] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> Connections:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(path.read_text()) or {}
            return cls.model_validate(data)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            # Name the file and the failing location, never the values: they may be secrets.
            raise ValueError(f"--connections {path}: {_without_inputs(exc)}") from None

    def nats_profile(self, name: str) -> NatsProfile:
        return _profile(self.nats, name, "natsConnection", "NATS", "nats")

    def prometheus_profile(self, name: str) -> PrometheusProfile:
        return _profile(self.prometheus, name, "prometheusConnection", "Prometheus", "prometheus")


P = TypeVar("P")


def _profile(profiles: dict[str, P], name: str, key: str, what: str, section: str) -> P:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or f"none (no --connections file or no '{section}' section)"
        raise InvalidTrigger(
            f"key {key!r}: invalid value {name!r}: no such {what} profile; known profiles: {known}"
        ) from None


def _without_inputs(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, yaml.YAMLError):
        return "not valid YAML"
    return str(exc)
