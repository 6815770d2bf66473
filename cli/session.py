"""What one run of `stratus` holds: where the API is, the token, how to print, the clock.

The endpoint and token come from the first of: the --url/--token options, the
STRATUS_URL/STRATUS_TOKEN environment variables, the config file (keys `url`
and `token`), and for the endpoint the local mesh's address. The config file
is STRATUS_CLI_CONFIG if set, else ~/.config/stratus/config.toml
($XDG_CONFIG_HOME/stratus/config.toml where that is set).
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cli.rest import Api, CliError

DEFAULT_URL = "http://127.0.0.1:8780"
CONFIG_KEYS = ("url", "token")


@dataclass(frozen=True)
class Settings:
    url: str
    token: str


def config_path() -> tuple[Path, bool]:
    """The config file, and whether STRATUS_CLI_CONFIG named it (then it must exist)."""
    named = os.environ.get("STRATUS_CLI_CONFIG")
    if named:
        return Path(named).expanduser(), True
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "stratus" / "config.toml", False


def read_config_file() -> dict[str, str]:
    path, named = config_path()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if named:
            raise CliError(f"config file {path} (STRATUS_CLI_CONFIG) does not exist") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise CliError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; it may set url and token"
        )
    for key, value in data.items():
        if not isinstance(value, str):
            raise CliError(f'config file {path}: {key} must be a string, e.g. {key} = "..."')
    return data


def resolve_settings(url_option: str | None, token_option: str | None) -> Settings:
    """Option beats environment beats config file beats default."""
    file: dict[str, str] | None = None

    def pick(option: str | None, env_name: str, key: str, default: str) -> str:
        nonlocal file
        if option:
            return option
        if os.environ.get(env_name):
            return os.environ[env_name]
        # Read only when needed, so a broken file does not stop a run that overrides it.
        if file is None:
            file = read_config_file()
        return file.get(key, default)

    return Settings(
        url=pick(url_option, "STRATUS_URL", "url", DEFAULT_URL),
        token=pick(token_option, "STRATUS_TOKEN", "token", ""),
    )


@dataclass
class Session:
    """The click context object. Tests pass one with an httpx.MockTransport and a fake clock."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    url_option: str | None = None
    token_option: str | None = None
    output_format: str = "table"
    _api: Api | None = field(default=None, init=False, repr=False)

    @property
    def json(self) -> bool:
        return self.output_format == "json"

    def api(self) -> Api:
        """The API client, made on first use (so `--help` needs no endpoint)."""
        if self._api is None:
            settings = resolve_settings(self.url_option, self.token_option)
            self._api = Api(settings.url, settings.token, transport=self.transport)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
