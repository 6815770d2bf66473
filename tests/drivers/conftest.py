"""Driver test fixtures shared by the conformance suite and the per-driver files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.drivers.container_host import stop_podman_service


@pytest.fixture(scope="session", autouse=True)
def _podman_service_stops_with_the_session() -> Iterator[None]:
    """The container tests' podman service starts on first use; this ends it, if it ran."""
    yield
    stop_podman_service()
