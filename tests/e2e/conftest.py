from __future__ import annotations

import pytest

from tests.placement_client import Placement


@pytest.fixture
def placement(mesh):
    """A placement client with the service role, on each database's mesh."""
    with mesh.channel("placement") as channel:
        yield Placement(channel)
