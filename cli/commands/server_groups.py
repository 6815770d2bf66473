"""`stratus server group ...`: where a project's servers go relative to each other."""

from __future__ import annotations

import click

from cli.options import format_option, is_uuid, pass_session
from cli.output import Column, emit, fields, render_fields, render_table, timestamp
from cli.rest import Api, CliError
from cli.session import Session

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
LIST_COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name"),
    Column("POLICY", "policy"),
    Column("MEMBERS", "members", lambda members: str(len(members or []))),
    Column("CREATED", "create_time", timestamp),
]
SHOW_FIELDS = fields("id name policy members project_id create_time")


def resolve_server_group(api: Api, ref: str) -> str:
    """A server group id from an id, or from the name of exactly one group of the project."""
    if is_uuid(ref):
        return ref
    found = [g for g in api.get("/v1/server_groups")["server_groups"] if g.get("name") == ref]
    if not found:
        raise CliError(f"no server group named {ref!r}")
    if len(found) > 1:
        raise CliError(f"{len(found)} server groups are named {ref!r}; give the id")
    return found[0]["id"]


@click.group("group")
def server_group() -> None:
    """Server groups: affinity and anti-affinity, hard or soft."""


@server_group.command("create")
@click.argument("name")
@click.option("--policy", required=True, type=click.Choice(POLICIES))
@format_option
@pass_session
def create(session: Session, name: str, policy: str) -> None:
    """Create a server group."""
    group = session.api().post("/v1/server_groups", {"name": name, "policy": policy})
    emit(session, group, lambda: render_fields(group, SHOW_FIELDS))


@server_group.command("list")
@format_option
@pass_session
def list_(session: Session) -> None:
    """List the project's server groups."""
    answer = session.api().get("/v1/server_groups")
    emit(session, answer, lambda: render_table(answer.get("server_groups", []), LIST_COLUMNS))


@server_group.command("show")
@click.argument("group_ref", metavar="GROUP")
@format_option
@pass_session
def show(session: Session, group_ref: str) -> None:
    """Show a server group and its members (by id, or by name)."""
    api = session.api()
    group = api.get(f"/v1/server_groups/{resolve_server_group(api, group_ref)}")
    emit(session, group, lambda: render_fields(group, SHOW_FIELDS))


@server_group.command("delete")
@click.argument("group_ref", metavar="GROUP")
@format_option
@pass_session
def delete(session: Session, group_ref: str) -> None:
    """Delete a server group that has no members (by id, or by name)."""
    api = session.api()
    group_id = resolve_server_group(api, group_ref)
    answer = api.delete(f"/v1/server_groups/{group_id}")
    emit(session, answer, lambda: f"Deleted server group {group_id}.")
