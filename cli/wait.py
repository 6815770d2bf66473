"""--wait: follow servers until they settle, printing each change on stderr.

A server has settled when it has no task in progress and a status it can rest
in (ACTIVE, SHUTOFF, ERROR, DELETED), or when it is gone (404). Waiting on
the status alone would stop too early: a stopping server is still ACTIVE with
task powering-off. Whether it settled where it was asked to is then a
separate question, so a failed stop that left the server ACTIVE is an error
too, not a hang until the timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from cli.rest import ApiError, CliError
from cli.session import Session

POLL_INTERVAL_S = 0.5
RESTING_STATUSES = frozenset({"ACTIVE", "SHUTOFF", "ERROR", "DELETED"})
GONE = "DELETED"


def label(server: dict) -> str:
    return server.get("name") or server.get("id", "?")


def settled(server: dict) -> bool:
    return not server.get("task_state") and server.get("status") in RESTING_STATUSES


@dataclass
class WaitResult:
    servers: list[dict]  # the last state the API gave of each, in the order given
    gone: set[str] = field(default_factory=set)  # ids that answered 404
    problems: list[str] = field(default_factory=list)

    def raise_if_failed(self) -> None:
        if self.problems:
            raise CliError("; ".join(self.problems))


class _Progress:
    """Prints a line whenever a server's status or task changes, with the time waited."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._start = session.clock()
        self._shown: dict[str, tuple] = {}

    def elapsed(self) -> float:
        return self._session.clock() - self._start

    def show(self, server: dict, gone: bool = False) -> None:
        status, task = server.get("status", ""), server.get("task_state", "")
        state = ("gone",) if gone else (status, task)
        if self._shown.get(server["id"]) == state:
            return
        self._shown[server["id"]] = state
        if gone:
            text = "deleted"
        elif task:
            text = f"{status} ({task})"
        elif status == "ERROR":
            text = f"ERROR: {lookup_fault(server)}"
        else:
            text = status
        click.echo(f"[{self.elapsed():6.1f}s] {label(server)}: {text}", err=True)


def lookup_fault(server: dict) -> str:
    return (server.get("fault") or {}).get("message") or "no fault recorded"


def wait_for_servers(
    session: Session, servers: list[dict], expect: str, timeout_s: float
) -> WaitResult:
    """Poll each server until it settles or `timeout_s` passes; `expect` is where success
    ends: ACTIVE, SHUTOFF, or DELETED (which also accepts the server being gone)."""
    api = session.api()
    progress = _Progress(session)
    latest = {s["id"]: s for s in servers}
    gone: set[str] = set()
    for server in servers:
        progress.show(server)
    pending = [s["id"] for s in servers if not settled(s)]
    while pending and progress.elapsed() < timeout_s:
        session.sleep(POLL_INTERVAL_S)
        for server_id in pending:
            try:
                latest[server_id] = api.get(f"/v1/servers/{server_id}")
            except ApiError as exc:
                if exc.code != 404:
                    raise
                gone.add(server_id)
                progress.show(latest[server_id], gone=True)
                continue
            progress.show(latest[server_id])
        pending = [i for i in pending if i not in gone and not settled(latest[i])]

    result = WaitResult([latest[s["id"]] for s in servers], gone)
    for server in result.servers:
        problem = _problem(session, server, server["id"] in gone, expect, timeout_s)
        if problem:
            result.problems.append(problem)
    return result


def _problem(
    session: Session, server: dict, gone: bool, expect: str, timeout_s: float
) -> str | None:
    name = f"server {label(server)} ({server['id']})"
    if gone:
        return None if expect == GONE else f"{name} was deleted"
    status, task = server.get("status", ""), server.get("task_state", "")
    if not settled(server):
        return f"timed out after {timeout_s:g} s waiting for {name}, still {status} ({task})"
    if status == expect:
        return None
    if status == "ERROR":
        return f"{name} is ERROR: {lookup_fault(server)}"
    # Settled elsewhere without ERROR: an action failed and the server kept its state.
    # Its last action says why.
    why = ""
    actions = session.api().get(f"/v1/servers/{server['id']}/actions").get("actions", [])
    if actions and actions[-1].get("result") == "error" and actions[-1].get("message"):
        why = f": {actions[-1]['action']} failed: {actions[-1]['message']}"
    return f"{name} is {status}, expected {expect}{why}"
