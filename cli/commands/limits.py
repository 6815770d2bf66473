"""`stratus limits`: the project's quota limits and what it uses."""

from __future__ import annotations

import click

from cli.options import format_option, pass_session
from cli.output import Column, emit, render_table
from cli.session import Session

# The order people read them in; a resource the API adds later comes after, by name.
ORDER = ("instances", "cores", "ram_mb", "key_pairs", "server_groups", "server_group_members")


def _limit(value: int | None) -> str:
    return "unlimited" if value == -1 else str(value or 0)


COLUMNS = [
    Column("RESOURCE", "resource"),
    Column("LIMIT", "limit", _limit),
    Column("IN USE", "in_use", lambda v: str(v or 0)),
]


@click.command()
@format_option
@pass_session
def limits(session: Session) -> None:
    """Show the project's limits and what it uses.

    In JSON, a limit of -1 is unlimited.
    """
    answer = session.api().get("/v1/limits")
    found = answer.get("limits", {})
    names = sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    rows = [{"resource": n, **found[n]} for n in names]
    emit(session, answer, lambda: render_table(rows, COLUMNS))
