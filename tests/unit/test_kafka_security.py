"""The OM_KAFKA_SECURITY_* settings reach every kind of Kafka client the services create: the
aiokafka producers and admin client (client_security) and the FastStream broker
(broker_security) connect the same way, verify the broker against the configured CA, and
never show the password."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka.security import parse_security
from pydantic import ValidationError

from libs.runtime.kafka import admin_client, broker_security, client_security, durable_producer
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate, like Strimzi's cluster CA (ca.crt)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("kafka-ca") / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def scram_settings(ca_file: Path) -> RuntimeSettings:
    return RuntimeSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="order",
        kafka_sasl_password="s3cret-password",  # type: ignore[arg-type]  # pydantic coerces to SecretStr
        kafka_ssl_cafile=str(ca_file),
    )


def test_by_default_clients_connect_in_plaintext_as_the_local_broker_expects() -> None:
    settings = RuntimeSettings()
    assert client_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(settings) is None


def test_sasl_ssl_clients_authenticate_with_scram_and_verify_the_broker_against_the_ca(
    ca_file: Path,
) -> None:
    options = client_security(scram_settings(ca_file))

    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "order"
    assert options["sasl_plain_password"] == "s3cret-password"
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    trusted = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "cluster-ca test"} in trusted


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SSL", "SCRAM-SHA-512"),
    ],
)
def test_the_faststream_broker_connects_like_the_other_clients(
    ca_file: Path, protocol: str, mechanism: str
) -> None:
    settings = scram_settings(ca_file).model_copy(
        update={"kafka_security_protocol": protocol, "kafka_sasl_mechanism": mechanism}
    )
    security = broker_security(settings)
    assert security is not None
    # What FastStream hands to its aiokafka consumers and producer.
    broker_options = parse_security(security)
    client_options = client_security(settings)

    def comparable(options: dict[str, object]) -> dict[str, object]:
        return {
            key: (value is not None) if key == "ssl_context" else value
            for key, value in options.items()
            if value is not None or key == "ssl_context"
        }

    assert comparable(broker_options) == comparable({"ssl_context": None, **client_options})


async def test_producers_and_the_admin_client_get_the_security_settings(ca_file: Path) -> None:
    settings = scram_settings(ca_file)
    producer = durable_producer(settings, "test")
    admin = admin_client(settings)
    for client in (producer.client, admin._client):  # noqa: SLF001 - aiokafka keeps them there
        assert client._security_protocol == "SASL_SSL"  # noqa: SLF001
        assert client._sasl_mechanism == "SCRAM-SHA-512"  # noqa: SLF001
        assert client._sasl_plain_username == "order"  # noqa: SLF001


def test_sasl_without_credentials_is_refused_naming_the_missing_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("OM_KAFKA_SASL_USERNAME", "order")
    with pytest.raises(ValidationError, match="OM_KAFKA_SASL_PASSWORD"):
        RuntimeSettings()


def test_the_kafka_password_is_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("OM_KAFKA_SASL_USERNAME", "billing")
    monkeypatch.setenv("OM_KAFKA_SASL_PASSWORD", "from-the-secret")
    settings = RuntimeSettings()
    assert client_security(settings)["sasl_plain_password"] == "from-the-secret"
    assert "from-the-secret" not in repr(settings)
    assert "from-the-secret" not in str(settings.model_dump())


async def test_a_service_runtime_consumes_and_relays_with_the_security_settings(ca_file: Path) -> None:
    settings = scram_settings(ca_file)
    runtime = ServiceRuntime(name="secured", settings=settings)
    try:
        # The FastStream broker builds its aiokafka consumers with these keyword arguments.
        consumer_options = runtime.broker.config.broker_config.builder.keywords
        assert consumer_options["security_protocol"] == "SASL_SSL"
        assert consumer_options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert consumer_options["sasl_plain_username"] == "order"
        assert isinstance(consumer_options["ssl_context"], ssl.SSLContext)
        relay_producer = runtime.relay._producer_factory()  # noqa: SLF001 - what the relay starts
        assert relay_producer.client._security_protocol == "SASL_SSL"  # noqa: SLF001
    finally:
        await runtime.engine.dispose()
