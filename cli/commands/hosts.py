"""`stratus host ...`: compute hosts as admins see them."""

from __future__ import annotations

from urllib.parse import quote

import click

from cli.options import format_option, pass_session
from cli.output import Column, emit, fields, render_fields, render_table
from cli.session import Session

# The classes every host reports, as table columns; show lists whatever the host has.
RESOURCE_CLASSES = ("VCPU", "MEMORY_MB", "DISK_GB")


def usage(resource: dict | None) -> str:
    """used/capacity, where capacity is what placement can give out."""
    resource = resource or {}
    return f"{resource.get('used', 0)}/{resource.get('capacity', 0)}"


LIST_COLUMNS = [
    Column("NAME", "name"),
    Column("STATUS", "status"),
    Column("ZONE", "availability_zone"),
    Column("DRIVER", "driver"),
    Column("SERVERS", "server_count"),
    *[Column(rc, f"resources.{rc}", usage) for rc in RESOURCE_CLASSES],
]
SHOW_FIELDS = fields("name status availability_zone driver resource_provider_uuid server_count")


@click.group()
def host() -> None:
    """Compute hosts: alive or not, capacity, usage (admins)."""


@host.command("list")
@format_option
@pass_session
def list_(session: Session) -> None:
    """List hosts with their resources as used/capacity."""
    answer = session.api().get("/v1/hosts")
    emit(session, answer, lambda: render_table(answer.get("hosts", []), LIST_COLUMNS))


@host.command("show")
@click.argument("name")
@format_option
@pass_session
def show(session: Session, name: str) -> None:
    """Show a host and each of its resources as used/capacity."""
    found = session.api().get(f"/v1/hosts/{quote(name, safe='')}")
    resources = [
        Column(f"resources.{rc}", f"resources.{rc}", usage)
        for rc in sorted(found.get("resources", {}))
    ]
    emit(session, found, lambda: render_fields(found, SHOW_FIELDS + resources))
