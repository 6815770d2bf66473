"""A host's provider uuid is made once and kept; only the first start calls it new."""

from __future__ import annotations

from services.common.config import HostAgentSection
from services.hostagent.identity import host_identity


def test_the_uuid_is_new_on_the_first_start_only(tmp_path):
    section = HostAgentSection(host="h1")
    first = host_identity(section, tmp_path)
    again = host_identity(section, tmp_path)
    assert first.new and not again.new
    assert again.provider_uuid == first.provider_uuid
