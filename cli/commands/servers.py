"""`stratus server ...`: create, list, show, change and act on servers.

Create and the actions answer at once with the server in its transitional
state; --wait follows it to where it settles (cli/wait.py). A server can be
named by id or, when only one live server of the project has it, by name.
"""

from __future__ import annotations

import click

from cli.commands.server_groups import resolve_server_group, server_group
from cli.options import format_option, is_uuid, parse_pairs, pass_session, wait_options
from cli.output import Column, emit, fields, render_fields, render_table, timestamp
from cli.rest import Api, CliError
from cli.session import Session
from cli.wait import wait_for_servers

STATUSES = ("BUILD", "ACTIVE", "SHUTOFF", "REBOOT", "ERROR", "DELETED")

LIST_COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name"),
    Column("STATUS", "status"),
    Column("TASK", "task_state"),
    Column("POWER", "power_state"),
    Column("HOST", "host"),
    Column("FLAVOR", "flavor"),
    Column("IMAGE", "image_ref"),
    Column("CREATED", "create_time", timestamp),
]
PROJECT_COLUMN = Column("PROJECT", "project_id")
SHOW_FIELDS = fields(
    """id name status task_state power_state host host_status flavor vcpus ram_mb disk_gb
    image_ref key_name availability_zone server_group_id metadata project_id user_id
    create_time update_time fault.code fault.message"""
)
ACTION_COLUMNS = [
    Column("ACTION", "action"),
    Column("RESULT", "result"),
    Column("START", "start_time", timestamp),
    Column("FINISH", "finish_time", timestamp),
    Column("USER", "user_id"),
    Column("REQUEST ID", "request_id"),
    Column("MESSAGE", "message"),
]


def resolve_server(api: Api, ref: str) -> str:
    """A server id from an id, or from the name of exactly one live server."""
    if is_uuid(ref):
        return ref
    found = [
        s
        for s in api.get("/v1/servers", params={"name": ref, "page_size": 100})["servers"]
        if s.get("status") != "DELETED"
    ]
    if not found:
        raise CliError(f"no server named {ref!r}")
    if len(found) > 1:
        raise CliError(f"{len(found)} servers are named {ref!r}; give the id")
    return found[0]["id"]


def show_one(session: Session, server: dict) -> None:
    emit(session, server, lambda: render_fields(server, SHOW_FIELDS))


@click.group()
def server() -> None:
    """Servers: create, list, act on them, and follow them with --wait."""


server.add_command(server_group)


@server.command("create")
@click.argument("name")
@click.option("--flavor", required=True, help="Flavor id or name.")
@click.option("--image", required=True, help="Image the hosts can boot, e.g. cirros.")
@click.option("--key-name", help="Key pair of the project, by name.")
@click.option("--availability-zone")
@click.option("--group", help="Server group id or name.")
@click.option(
    "--property",
    "metadata",
    multiple=True,
    callback=parse_pairs,
    metavar="KEY=VALUE",
    help="Metadata; repeat for several.",
)
@click.option("--user-data", type=click.File("r"), help="File given to the server at boot.")
@click.option("--min", "min_count", type=int, help="Create at least this many, or none.")
@click.option("--max", "max_count", type=int, help="Create up to this many, as quota allows.")
@wait_options
@format_option
@pass_session
def create(
    session: Session,
    name: str,
    flavor: str,
    image: str,
    key_name: str | None,
    availability_zone: str | None,
    group: str | None,
    metadata: dict[str, str],
    user_data,
    min_count: int | None,
    max_count: int | None,
    wait: bool,
    timeout: float,
) -> None:
    """Create a server (several with --min/--max: NAME-1, NAME-2, ...)."""
    api = session.api()
    spec = {"name": name, "flavor": flavor, "image_ref": image}
    optional = {
        "key_name": key_name,
        "availability_zone": availability_zone,
        "server_group_id": resolve_server_group(api, group) if group else None,
        "metadata": metadata,
        "user_data": user_data.read() if user_data else None,
    }
    spec.update({k: v for k, v in optional.items() if v})
    body: dict = {"server": spec}
    if min_count is not None:
        body["min_count"] = min_count
    if max_count is not None:
        body["max_count"] = max_count
    answer = api.post("/v1/servers", body)
    result = None
    if wait:
        result = wait_for_servers(session, answer.get("servers", []), "ACTIVE", timeout)
        answer = {**answer, "servers": result.servers}  # as they are now
    servers = answer.get("servers", [])
    if len(servers) == 1:
        emit(session, answer, lambda: render_fields(servers[0], SHOW_FIELDS))
    else:
        emit(session, answer, lambda: render_table(servers, LIST_COLUMNS))
    if result is not None:
        result.raise_if_failed()


@server.command("list")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False))
@click.option("--name", help="Only servers with exactly this name.")
@click.option("--host", help="Admins: only servers on this host.")
@click.option("--all-projects", is_flag=True, help="Admins: servers of every project.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (default: all).")
@format_option
@pass_session
def list_(session: Session, status, name, host, all_projects, limit) -> None:
    """List servers, newest first, following every page unless --limit."""
    params = {"status": status.upper() if status else None, "name": name, "host": host}
    params = {k: v for k, v in params.items() if v}
    if all_projects:
        params["all_projects"] = "true"
    servers = session.api().list_all("/v1/servers", "servers", params, limit)
    columns = [*LIST_COLUMNS, PROJECT_COLUMN] if all_projects else LIST_COLUMNS
    emit(session, {"servers": servers}, lambda: render_table(servers, columns))


@server.command("show")
@click.argument("server_ref", metavar="SERVER")
@format_option
@pass_session
def show(session: Session, server_ref: str) -> None:
    """Show a server (by id, or by name when the name is unique)."""
    api = session.api()
    show_one(session, api.get(f"/v1/servers/{resolve_server(api, server_ref)}"))


@server.command("set")
@click.argument("server_ref", metavar="SERVER")
@click.option("--name", "new_name", help="Rename the server.")
@click.option(
    "--property",
    "metadata",
    multiple=True,
    callback=parse_pairs,
    metavar="KEY=VALUE",
    help="Add or change a metadata item; repeat for several.",
)
@click.option("--unset-property", "unset", multiple=True, metavar="KEY")
@format_option
@pass_session
def set_(session: Session, server_ref: str, new_name, metadata, unset) -> None:
    """Rename a server or change its metadata."""
    if not (new_name or metadata or unset):
        raise click.UsageError("nothing to change: give --name, --property or --unset-property")
    api = session.api()
    server_id = resolve_server(api, server_ref)
    body: dict = {}
    mask = []
    if new_name:
        body["name"] = new_name
        mask.append("name")
    if metadata or unset:
        # The update mask replaces the whole map, so merge into what the server has now.
        # Two people changing one server's metadata at once can lose one change.
        current = api.get(f"/v1/servers/{server_id}").get("metadata", {})
        merged = {**current, **metadata}
        body["metadata"] = {k: v for k, v in merged.items() if k not in unset}
        mask.append("metadata")
    updated = api.patch(f"/v1/servers/{server_id}", body, {"update_mask": ",".join(mask)})
    show_one(session, updated)


def _act(
    session: Session,
    server_ref: str,
    action: str,
    body: dict,
    expect: str,
    wait: bool,
    timeout: float,
) -> None:
    """Ask for an action, print the server, and with --wait follow it to `expect`."""
    api = session.api()
    server_id = resolve_server(api, server_ref)
    path = f"/v1/servers/{server_id}"
    answer = api.delete(path) if action == "delete" else api.post(f"{path}:{action}", body)
    if not wait:
        show_one(session, answer)
        return
    result = wait_for_servers(session, [answer], expect, timeout)
    # A server that is gone has nothing left to show but the last state seen, which
    # scripts (-f json) still get; people saw "deleted" in the progress lines.
    if session.json or server_id not in result.gone:
        show_one(session, result.servers[0])
    result.raise_if_failed()


@server.command("delete")
@click.argument("server_ref", metavar="SERVER")
@wait_options
@format_option
@pass_session
def delete(session: Session, server_ref: str, wait: bool, timeout: float) -> None:
    """Delete a server (it ends DELETED, or gone)."""
    _act(session, server_ref, "delete", {}, "DELETED", wait, timeout)


@server.command("reboot")
@click.argument("server_ref", metavar="SERVER")
@click.option("--hard", is_flag=True, help="Power-cycle instead of asking the guest.")
@wait_options
@format_option
@pass_session
def reboot(session: Session, server_ref: str, hard: bool, wait: bool, timeout: float) -> None:
    """Reboot a server (soft unless --hard)."""
    body = {"type": "HARD" if hard else "SOFT"}
    _act(session, server_ref, "reboot", body, "ACTIVE", wait, timeout)


@server.command("stop")
@click.argument("server_ref", metavar="SERVER")
@wait_options
@format_option
@pass_session
def stop(session: Session, server_ref: str, wait: bool, timeout: float) -> None:
    """Power a server off (it ends SHUTOFF)."""
    _act(session, server_ref, "stop", {}, "SHUTOFF", wait, timeout)


@server.command("start")
@click.argument("server_ref", metavar="SERVER")
@wait_options
@format_option
@pass_session
def start(session: Session, server_ref: str, wait: bool, timeout: float) -> None:
    """Power a stopped server on (it ends ACTIVE)."""
    _act(session, server_ref, "start", {}, "ACTIVE", wait, timeout)


@server.command("actions")
@click.argument("server_ref", metavar="SERVER")
@format_option
@pass_session
def actions(session: Session, server_ref: str) -> None:
    """What was done to a server, oldest first, and how each ended."""
    api = session.api()
    answer = api.get(f"/v1/servers/{resolve_server(api, server_ref)}/actions")
    emit(session, answer, lambda: render_table(answer.get("actions", []), ACTION_COLUMNS))
