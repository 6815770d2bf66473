"""`stratus keypair ...`: SSH public keys the project's servers can be built with."""

from __future__ import annotations

from urllib.parse import quote

import click

from cli.options import format_option, pass_session
from cli.output import Column, emit, fields, render_fields, render_table, timestamp
from cli.session import Session

LIST_COLUMNS = [
    Column("NAME", "name"),
    Column("TYPE", "type"),
    Column("FINGERPRINT", "fingerprint"),
    Column("CREATED", "create_time", timestamp),
]
SHOW_FIELDS = fields("name type fingerprint project_id create_time public_key")


@click.group()
def keypair() -> None:
    """Key pairs: import the public half of an SSH key you made."""


@keypair.command("create")
@click.argument("name")
@click.option(
    "--public-key",
    type=click.File("r"),
    required=True,
    help="An OpenSSH public key file, e.g. ~/.ssh/id_ed25519.pub (- for stdin).",
)
@format_option
@pass_session
def create(session: Session, name: str, public_key) -> None:
    """Import a public key under NAME."""
    body = {"name": name, "public_key": public_key.read().strip()}
    created = session.api().post("/v1/keypairs", body)
    emit(session, created, lambda: render_fields(created, SHOW_FIELDS))


@keypair.command("list")
@format_option
@pass_session
def list_(session: Session) -> None:
    """List the project's key pairs."""
    answer = session.api().get("/v1/keypairs")
    emit(session, answer, lambda: render_table(answer.get("key_pairs", []), LIST_COLUMNS))


@keypair.command("show")
@click.argument("name")
@format_option
@pass_session
def show(session: Session, name: str) -> None:
    """Show a key pair."""
    found = session.api().get(f"/v1/keypairs/{quote(name, safe='')}")
    emit(session, found, lambda: render_fields(found, SHOW_FIELDS))


@keypair.command("delete")
@click.argument("name")
@format_option
@pass_session
def delete(session: Session, name: str) -> None:
    """Delete a key pair."""
    answer = session.api().delete(f"/v1/keypairs/{quote(name, safe='')}")
    emit(session, answer, lambda: f"Deleted key pair {name}.")
