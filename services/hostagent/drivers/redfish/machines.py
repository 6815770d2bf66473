"""Enrolment: the machines a redfish host drives, and the images they boot, in one TOML file.

    [[machine]]
    name = "bm-0"                          # unique on this host
    bmc = "https://10.1.0.5"               # the BMC: scheme, host and port only
    system = "1"                           # its system id or path; optional if it has one
    profile = "gold"                       # the machine's resource class: CUSTOM_BAREMETAL_GOLD
    disk_gb = 480                          # local disk, for flavors' disk_gb (default 0)
    credentials_file = "bmc/bm-0.toml"     # username = "..." and password = "..." (mode 0600)
    # or, inline: username = "admin" and password = "..."
    # verify_tls = false                   # for a BMC with a self-signed certificate

    [images]
    ubuntu-24.04 = "https://images.example/ubuntu-24.04.iso"   # virtual media, boots from CD
    netboot = "pxe"                        # the network's PXE server decides what boots
    local = "hdd"                          # whatever the machine's own disk holds

Credentials are kept as secrets: they never appear in a repr, a log line or an
error, and validation errors name the field without echoing the value given.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from services.common.errors import InvalidArgument

SYSTEMS_PATH = "/redfish/v1/Systems/"
BOOT_SOURCES = ("pxe", "hdd")
RESOURCE_CLASS_PREFIX = "CUSTOM_BAREMETAL_"
INVALID = "hostagent.invalid_machines_file"


@dataclass(frozen=True)
class Credentials:
    username: str = field(repr=False)
    password: SecretStr = field(repr=False)


@dataclass(frozen=True)
class Machine:
    name: str
    bmc: str
    system: str  # a path under /redfish/v1/Systems/, or "" for the BMC's only system
    profile: str
    disk_gb: int
    verify_tls: bool
    credentials: Credentials = field(repr=False)

    @property
    def resource_class(self) -> str:
        return RESOURCE_CLASS_PREFIX + self.profile.upper()

    @property
    def where(self) -> str:
        """The BMC and system, for messages (no credentials: the URL may not carry any)."""
        return f"{self.bmc}{self.system}"


@dataclass(frozen=True)
class Enrolment:
    machines: tuple[Machine, ...]
    # image reference -> "pxe", "hdd", or an http(s) URL to insert as virtual media
    images: dict[str, str]


class _Secrets(BaseModel):
    model_config = {"extra": "forbid"}

    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)


class _Entry(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    bmc: str
    system: str = ""
    profile: str = Field(pattern=r"^[A-Za-z0-9_]{1,200}$")
    disk_gb: int = Field(0, ge=0)
    verify_tls: bool = True
    username: str = ""
    password: SecretStr | None = None
    credentials_file: Path | None = None

    @field_validator("bmc")
    @classmethod
    def _bmc_is_an_address(cls, bmc: str) -> str:
        parts = urlsplit(bmc)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://host[:port]")
        if parts.username or parts.password:
            # A URL ends up in messages and logs; credentials go in their own fields.
            raise ValueError("must not carry credentials; use username/password")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("must be the BMC's address only; name the system with `system`")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("system")
    @classmethod
    def _system_path(cls, system: str) -> str:
        if not system:
            return ""
        path = system if system.startswith("/") else SYSTEMS_PATH + system
        if not path.startswith(SYSTEMS_PATH) or not re.fullmatch(r"[A-Za-z0-9/._:-]+", path):
            raise ValueError(f"must be a system id or a path under {SYSTEMS_PATH}")
        return path.rstrip("/")

    @model_validator(mode="after")
    def _one_way_to_credentials(self) -> _Entry:
        inline = bool(self.username) or self.password is not None
        if inline == (self.credentials_file is not None):
            raise ValueError("give either username and password, or credentials_file")
        if inline and not (self.username and self.password and self.password.get_secret_value()):
            raise ValueError("username and password go together")
        return self


class _File(BaseModel):
    model_config = {"extra": "forbid"}

    machine: list[_Entry] = Field(default_factory=list)
    images: dict[str, str] = Field(default_factory=dict)

    @field_validator("images")
    @classmethod
    def _image_sources(cls, images: dict[str, str]) -> dict[str, str]:
        for ref, source in images.items():
            if source not in BOOT_SOURCES and urlsplit(source).scheme not in ("http", "https"):
                raise ValueError(f"{ref}: must be pxe, hdd or an http(s) URL")
        return images


def load_enrolment(path: Path) -> Enrolment:
    """The machines and images of path; InvalidArgument (never echoing a value) if wrong."""
    raw = _read_toml(path, "the machines file")
    parsed = _validate(_File, raw, path)
    machines = []
    for entry in parsed.machine:
        if entry.credentials_file is not None:
            secrets_path = path.parent / entry.credentials_file
            secrets = _validate(
                _Secrets, _read_toml(secrets_path, "a credentials file"), secrets_path
            )
            credentials = Credentials(secrets.username, secrets.password)
        else:
            assert entry.password is not None
            credentials = Credentials(entry.username, entry.password)
        machines.append(
            Machine(
                name=entry.name,
                bmc=entry.bmc,
                system=entry.system,
                profile=entry.profile,
                disk_gb=entry.disk_gb,
                verify_tls=entry.verify_tls,
                credentials=credentials,
            )
        )
    _refuse_duplicates(path, machines)
    return Enrolment(tuple(machines), dict(parsed.images))


def _read_toml(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {path}: {exc.strerror}", code=INVALID) from None
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message names a line and column, never the text there.
        raise InvalidArgument(f"{what} {path} is not valid TOML: {exc}", code=INVALID) from None


def _validate(model: type[BaseModel], raw: dict, path: Path):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        # str(exc) would quote the input, which may be a password: name the field only.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise InvalidArgument(f"{path}: {problems}", code=INVALID) from None


def _refuse_duplicates(path: Path, machines: list[Machine]) -> None:
    names = [m.name for m in machines]
    systems = [m.where for m in machines]
    for kind, values in (("name", names), ("BMC system", systems)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise InvalidArgument(
                f"{path}: machines must differ by {kind}; enrolled twice: {', '.join(twice)}",
                code=INVALID,
            )
