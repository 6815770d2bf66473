"""stratus-manage: the deployment's signing key and the bearer tokens it signs."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import click

from cli.tokens import (
    ROLES,
    ensure_signing_key,
    jwks_path,
    key_path,
    load_signing_key,
    mint_token,
)

_TTL = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="STRATUS_STATE_DIR",
    default="state",
    show_default=True,
    help="The mesh's state directory; the key lives in its auth/ folder.",
)


def _ttl(value: str) -> timedelta:
    match = _TTL.match(value.strip())
    if not match or int(match[1]) == 0:
        raise click.BadParameter(f"{value!r}: use a positive number and a unit, e.g. 30m, 12h, 7d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _existing_key(state_dir: Path):
    # Creating a key here would mint tokens the running Envoy does not know
    # (a mistyped --state-dir is the usual cause), so refuse instead.
    try:
        return load_signing_key(state_dir)
    except FileNotFoundError:
        raise click.ClickException(
            f"no signing key at {key_path(state_dir)}: start the mesh once (make run), "
            "run `stratus-manage key create`, or pass the right --state-dir"
        ) from None


@click.group()
def main() -> None:
    """The deployment's signing key and the bearer tokens it signs.

    \b
      stratus-manage token create --project P --user U --role member --ttl 1h
      stratus-manage key create      # what the mesh does on its first start
      stratus-manage key show-jwks   # the public key set, for an Envoy elsewhere
    """


@main.group()
def token() -> None:
    """Bearer tokens for the REST and gRPC edge."""


@token.command("create")
@click.option("--project", required=True, help="Project the caller acts in.")
@click.option("--user", required=True, help="User id, for audit and ownership.")
@click.option(
    "--role",
    "roles",
    type=click.Choice(ROLES),
    multiple=True,
    default=("member",),
    show_default=True,
    help="Repeat for several roles.",
)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 12h, 7d ...")
@state_dir_option
def create_token(project: str, user: str, roles: tuple[str, ...], ttl: str, state_dir: Path):
    """Print a signed token; send it as `Authorization: Bearer <token>`."""
    key = _existing_key(state_dir)
    click.echo(mint_token(key, project=project, user=user, roles=roles, ttl=_ttl(ttl)))


@main.group()
def key() -> None:
    """The edge's signing key."""


@key.command("create")
@state_dir_option
def create_key(state_dir: Path) -> None:
    """Create the signing key unless there is one; print its JWKS path."""
    signing_key = ensure_signing_key(state_dir)
    click.echo(f"{jwks_path(state_dir)} (kid {signing_key.kid})")


@key.command("show-jwks")
@state_dir_option
def show_jwks(state_dir: Path) -> None:
    """Print the public key set Envoy verifies tokens with."""
    click.echo(json.dumps(_existing_key(state_dir).jwks(), indent=1))


if __name__ == "__main__":
    main()
