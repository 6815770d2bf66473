"""`stratus flavor ...`: the sizes a server can be built with (create and delete: admins)."""

from __future__ import annotations

import click

from cli.options import format_option, is_uuid, parse_pairs, pass_session
from cli.output import Column, emit, fields, render_fields, render_table
from cli.rest import Api, CliError
from cli.session import Session

LIST_COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name"),
    Column("VCPUS", "vcpus"),
    Column("RAM MB", "ram_mb"),
    Column("DISK GB", "disk_gb"),
    Column("PUBLIC", "is_public"),
]
SHOW_FIELDS = fields("id name vcpus ram_mb disk_gb is_public extra_specs create_time")


def resolve_flavor(api: Api, ref: str) -> str:
    """A flavor id from an id or a name (flavor names are unique)."""
    if is_uuid(ref):
        return ref
    for flavor in api.list_all("/v1/flavors", "flavors"):
        if flavor.get("name") == ref:
            return flavor["id"]
    raise CliError(f"no flavor named {ref!r}")


@click.group()
def flavor() -> None:
    """Flavors: vCPUs, memory and disk of a server."""


@flavor.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (default: all).")
@format_option
@pass_session
def list_(session: Session, limit: int | None) -> None:
    """List flavors by name, following every page unless --limit."""
    flavors = session.api().list_all("/v1/flavors", "flavors", limit=limit)
    emit(session, {"flavors": flavors}, lambda: render_table(flavors, LIST_COLUMNS))


@flavor.command("show")
@click.argument("flavor_ref", metavar="FLAVOR")
@format_option
@pass_session
def show(session: Session, flavor_ref: str) -> None:
    """Show a flavor (by id or name)."""
    api = session.api()
    found = api.get(f"/v1/flavors/{resolve_flavor(api, flavor_ref)}")
    emit(session, found, lambda: render_fields(found, SHOW_FIELDS))


@flavor.command("create")
@click.argument("name")
@click.option("--vcpus", type=int, required=True)
@click.option("--ram-mb", type=int, required=True, help="Memory in MiB.")
@click.option("--disk-gb", type=int, help="Root disk in GiB; 0 or unset: the image decides.")
@click.option(
    "--extra-spec",
    "extra_specs",
    multiple=True,
    callback=parse_pairs,
    metavar="KEY=VALUE",
    help="Scheduling hint, e.g. trait:HW_CPU_X86_AVX2=required; repeat for several.",
)
@click.option("--public/--private", "is_public", default=None, help="Who may use it [public].")
@format_option
@pass_session
def create(
    session: Session,
    name: str,
    vcpus: int,
    ram_mb: int,
    disk_gb: int | None,
    extra_specs: dict[str, str],
    is_public: bool | None,
) -> None:
    """Create a flavor (admins)."""
    body: dict = {"name": name, "vcpus": vcpus, "ram_mb": ram_mb}
    if disk_gb is not None:
        body["disk_gb"] = disk_gb
    if extra_specs:
        body["extra_specs"] = extra_specs
    if is_public is not None:
        body["is_public"] = is_public
    created = session.api().post("/v1/flavors", body)
    emit(session, created, lambda: render_fields(created, SHOW_FIELDS))


@flavor.command("delete")
@click.argument("flavor_ref", metavar="FLAVOR")
@format_option
@pass_session
def delete(session: Session, flavor_ref: str) -> None:
    """Delete a flavor (admins; by id or name)."""
    api = session.api()
    flavor_id = resolve_flavor(api, flavor_ref)
    answer = api.delete(f"/v1/flavors/{flavor_id}")
    emit(session, answer, lambda: f"Deleted flavor {flavor_id}.")
