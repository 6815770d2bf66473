"""Options and arguments several `stratus` commands share."""

from __future__ import annotations

import uuid

import click

from cli.session import Session

pass_session = click.make_pass_decorator(Session, ensure=True)


def _remember_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Session).output_format = value


def format_option(command):
    """-f/--format, accepted both before the command (`stratus -f json server list`) and after."""
    return click.option(
        "-f",
        "--format",
        type=click.Choice(["table", "json"]),
        expose_value=False,
        callback=_remember_format,
        help="table (default) or json: the API's answer, one document.",
    )(command)


def wait_options(command):
    command = click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=300,
        show_default=True,
        help="With --wait: seconds before giving up (exit status 1).",
    )(command)
    return click.option(
        "--wait",
        is_flag=True,
        help="Follow the server until it settles, printing each change of status or task.",
    )(command)


def parse_pairs(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """Repeated KEY=VALUE options as a dict (a later KEY wins)."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param=param)
        pairs[key] = value
    return pairs


def is_uuid(text: str) -> bool:
    """Whether a reference is an id; anything else is looked up by name."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
