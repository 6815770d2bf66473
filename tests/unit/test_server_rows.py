"""Server rows built without the ORM's attribute events read and change like
any other, and a misspelt attribute is refused as the usual constructor does."""

from __future__ import annotations

import pytest

from services.api_gateway.models import ServerRow
from services.api_gateway.servers import detached_server, server_row, server_values


def test_a_detached_server_reads_and_changes_like_a_constructed_one():
    fast = detached_server(id="s-1", name="web", vcpus=2, alternates=[{"host": "h"}])
    usual = ServerRow(id="s-1", name="web", vcpus=2, alternates=[{"host": "h"}])
    for attr in ("id", "name", "vcpus", "alternates", "host", "fault_time"):
        assert getattr(fast, attr) == getattr(usual, attr), attr
    fast.task_state = "deleting"
    assert fast.task_state == "deleting"


def test_a_row_read_back_with_core_keeps_every_column():
    columns = {column.name: f"v-{column.name}" for column in ServerRow.__table__.columns}
    row = server_row(columns)
    assert row.metadata_ == "v-metadata" and row.host == "v-host"


def test_a_misspelt_attribute_is_refused():
    with pytest.raises(TypeError, match="nmae"):
        detached_server(id="s-1", nmae="web")


def test_a_rows_values_name_every_column_and_leave_the_unset_ones_none():
    row = detached_server(id="s-1", metadata_={"k": "v"})
    row.task_state = "deleting"  # a change after construction is written too
    values = server_values(row)
    assert values.keys() == {column.name for column in ServerRow.__table__.columns}
    assert values["metadata"] == {"k": "v"} and values["task_state"] == "deleting"
    assert values["host"] is None and values["deleted_at"] is None
