"""gRPC over TLS and mutual TLS, with real handshakes and certificates the test makes."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scaler.server import Server

Key = ec.EllipticCurvePrivateKey


def _pem_key(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject: str, key: Key, issuer: tuple[x509.Certificate, Key] | None, *, ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


class Pki:
    """A CA, the scaler's server certificate (for `pd-scaler.keda.svc`), KEDA's client certificate signed by the
    CA, and a client certificate from another CA."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("pd-scaler test CA", ca_key, None, ca=True)
        self.write("ca.pem", self.ca.public_bytes(serialization.Encoding.PEM))
        self.server = self.issue("pd-scaler.keda.svc", (self.ca, ca_key), "server")
        self.client = self.issue("keda-operator", (self.ca, ca_key), "client")
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        rogue_ca = _cert("someone else's CA", rogue_key, None, ca=True)
        self.rogue = self.issue("keda-operator", (rogue_ca, rogue_key), "rogue")

    def write(self, name: str, data: bytes) -> Path:
        (self.dir / name).write_bytes(data)
        return self.dir / name

    def issue(self, subject: str, issuer: tuple[x509.Certificate, Key], stem: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(subject, key, issuer)
        return (
            self.write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self.write(f"{stem}.key", _pem_key(key)),
        )


async def health(server: Server, client: tuple[Path, Path] | None, pki: Pki) -> int:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki.dir / "ca.pem").read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    options = [("grpc.ssl_target_name_override", "pd-scaler.keda.svc")]
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials, options) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(answer.status)


async def test_server_tls_serves_clients_that_trust_its_ca(make_scaler: Callable[..., Awaitable[Server]], tmp_path):
    pki = Pki(tmp_path)
    server = await make_scaler(tls_cert=pki.server[0], tls_key=pki.server[1])
    assert await health(server, None, pki) == health_pb2.HealthCheckResponse.SERVING

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(
    make_scaler: Callable[..., Awaitable[Server]], tmp_path
):
    pki = Pki(tmp_path)
    server = await make_scaler(tls_cert=pki.server[0], tls_key=pki.server[1], tls_client_ca=tmp_path / "ca.pem")
    assert await health(server, pki.client, pki) == health_pb2.HealthCheckResponse.SERVING
    for client in (None, pki.rogue):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health(server, client, pki)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
