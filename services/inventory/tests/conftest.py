"""The repository's shared fixtures (real Kafka and PostgreSQL), for the inventory tests."""

from tests.conftest import eventually, settings  # noqa: F401
