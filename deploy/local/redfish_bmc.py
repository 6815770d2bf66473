"""A Redfish BMC for bare-metal hosts on one machine: sushy-tools' emulator over libvirt's
test:///default, with the machines defined in-process. `make run` starts it (the
Procfile's redfish-bmc line) and so do the redfish driver's tests (tests/drivers/redfish_host.py).

sushy-tools opens a libvirt connection per request. test:///default keeps its
domains for the life of the process, so the machines are defined here, in the
emulator's own process, before it serves (a test:///node.xml URI would be
re-read by every connection and forget every power change). Each machine is a
domain with a CD-ROM drive and a network interface, so its boot source can be
set to Cd or Pxe (not Hdd: it has no disk); power changes take about 0.1 s.

Usage: python -m deploy.local.redfish_bmc --config <flask config> <machines.json>
where machines.json is a list of {"name", "uuid", "vcpus", "ram_mb"}.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

DOMAIN = """<domain type='test'>
  <name>{name}</name><uuid>{uuid}</uuid>
  <memory unit='MiB'>{ram_mb}</memory><vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>"""
DISK_GB = 500
# Image reference -> boot source; the emulator's libvirt test driver can PXE boot only.
IMAGES = {"cirros": "pxe"}


@dataclass(frozen=True)
class Machine:
    name: str
    uuid: str
    vcpus: int
    ram_mb: int
    profile: str = "gold"


def redfish_available() -> str | None:
    """Why a bare-metal host cannot run here, or None when it can."""
    modules = ("libvirt", "sushy", "sushy_tools", "bcrypt")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} missing"
    return None


def write_htpasswd(path: Path, username: str, password: str) -> None:
    import bcrypt

    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    path.write_text(f"{username}:{digest}\n")
    path.chmod(0o600)


def write_config(
    path: Path,
    port: int,
    state_dir: Path,
    auth_file: Path,
    libvirt_uri: str | None = "test:///default",
    **extra,
) -> None:
    """The emulator's flask config: listening on 127.0.0.1:port, basic auth from auth_file,
    libvirt at libvirt_uri (None: not set), and any other SUSHY_EMULATOR_* settings."""
    lines = {
        "SUSHY_EMULATOR_LISTEN_IP": "127.0.0.1",
        "SUSHY_EMULATOR_LISTEN_PORT": port,
        "SUSHY_EMULATOR_STATE_DIR": str(state_dir),
        "SUSHY_EMULATOR_AUTH_FILE": str(auth_file),
        **extra,
    }
    if libvirt_uri is not None:
        lines["SUSHY_EMULATOR_LIBVIRT_URI"] = libvirt_uri
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in lines.items()))


def write_machines_json(path: Path, machines: Iterable[Machine]) -> None:
    """The machines main() defines (its last argument)."""
    path.write_text(json.dumps([asdict(m) for m in machines]))


def write_enrolment(
    directory: Path,
    bmc_url: str,
    machines: Iterable[Machine],
    username: str,
    password: str,
    images: Mapping[str, str] = IMAGES,
    credentials_file: bool = True,
) -> Path:
    """The redfish driver's machines file for machines behind bmc_url; credentials in a
    file of their own (bmc.toml, mode 0600) unless credentials_file is False."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for m in machines:
        entry = [
            "[[machine]]",
            f'name = "{m.name}"',
            f'bmc = "{bmc_url}"',
            f'system = "{m.uuid}"',
            f'profile = "{m.profile}"',
            f"disk_gb = {DISK_GB}",
        ]
        if credentials_file:
            entry.append('credentials_file = "bmc.toml"')
        else:
            entry += [f'username = "{username}"', f'password = "{password}"']
        entries.append("\n".join(entry))
    secrets = directory / "bmc.toml"
    secrets.touch(mode=0o600)
    secrets.chmod(0o600)
    secrets.write_text(f'username = "{username}"\npassword = "{password}"\n')
    path = directory / "machines.toml"
    table = "\n".join(f'"{ref}" = "{source}"' for ref, source in images.items())
    path.write_text("\n\n".join(entries) + f"\n\n[images]\n{table}\n")
    return path


def main() -> int:
    import libvirt
    from sushy_tools.emulator import main as emulator

    *args, machines_file = sys.argv[1:]
    with open(machines_file) as f:
        machines = json.load(f)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("test:///default")  # kept open: the domains live as long as it does
    for machine in machines:
        conn.defineXML(DOMAIN.format(**machine))  # defined, so powered off
    sys.argv = ["sushy-emulator", *args]
    try:
        return emulator.main()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
