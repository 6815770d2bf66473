"""Fixtures of the unit tests that need a database of their own."""

from __future__ import annotations

import pytest

from services.common.db import resolve_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres) -> str:
    """A fresh, empty database URL, once on SQLite and once on PostgreSQL."""
    configured = postgres.new() if request.param == "postgresql" else ""
    return resolve_url(configured, tmp_path, "unit")
