"""sushy-tools' Redfish emulator over libvirt's test:///default, with bare-metal machines in it.

sushy-tools opens a libvirt connection per request. test:///default keeps its
domains for the life of the process, so the machines are defined here, in the
emulator's own process, before it serves (a test:///node.xml URI would be
re-read by every connection and forget every power change). Each machine is a
domain with a CD-ROM drive and a network interface, so its boot source can be
set to Cd or Pxe (not Hdd: it has no disk); power changes take about 0.1 s.

Usage: python -m tests.drivers.redfish_emulator --config <flask config> <machines.json>
where machines.json is a list of {"name", "uuid", "vcpus", "ram_mb"}.
"""

from __future__ import annotations

import json
import sys

DOMAIN = """<domain type='test'>
  <name>{name}</name><uuid>{uuid}</uuid>
  <memory unit='MiB'>{ram_mb}</memory><vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>"""


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
