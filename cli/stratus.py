"""stratus: the command line for people using Stratus compute, through the REST edge."""

from __future__ import annotations

import click

from cli.commands.flavors import flavor
from cli.commands.hosts import host
from cli.commands.keypairs import keypair
from cli.commands.limits import limits
from cli.commands.servers import server
from cli.options import format_option
from cli.session import Session


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    help="The REST edge [env STRATUS_URL, config url, default http://127.0.0.1:8780].",
)
@click.option("--token", metavar="TOKEN", help="Bearer token [env STRATUS_TOKEN, config token].")
@format_option
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Servers, flavors, key pairs, server groups, hosts and limits of Stratus.

    \b
      stratus flavor list
      stratus server create web-1 --flavor m1.small --image cirros --wait
      stratus server list --status ACTIVE -f json
      stratus server stop web-1 --wait

    The endpoint and token come from --url/--token, else STRATUS_URL/STRATUS_TOKEN,
    else the config file (STRATUS_CLI_CONFIG, default ~/.config/stratus/config.toml,
    keys url and token). Errors print `error: <message> (<reason>, HTTP <code>)` on
    stderr and exit 1.
    """
    session = ctx.ensure_object(Session)
    session.url_option, session.token_option = url, token
    ctx.call_on_close(session.close)


for command in (server, flavor, keypair, host, limits):
    main.add_command(command)


if __name__ == "__main__":
    main()
