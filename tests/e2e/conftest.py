from __future__ import annotations

import pytest

from tests.placement_client import Placement
from tests.quota_client import Quota


@pytest.fixture
def placement(mesh):
    """A placement client with the service role, on each database's mesh."""
    with mesh.channel("placement") as channel:
        yield Placement(channel)


@pytest.fixture
def quota(mesh):
    """A quota client with the service role, on each database's mesh."""
    with mesh.channel("quota") as channel:
        yield Quota(channel)
