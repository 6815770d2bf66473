"""`make run`: the whole Stratus mesh on this machine, ready to use.

Starts etcd, Envoy and the five services from deploy/local/Procfile under
honcho, with two fake hosts and a host of each other driver whose backend is
available here (libvirt, redfish bare metal, podman containers), waits until
each answers its health check, seeds default flavors and prints how to call the
API, with an admin and a member token, and which hosts run. Ctrl-C stops
everything, and removes the containers of the mesh's own podman service.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from deploy.local import podman_host, redfish_bmc
from deploy.local.mesh import (
    DEFAULT_PORT_BASE,
    HOST_AGENTS,
    ROOT,
    SERVICES,
    MeshLayout,
    process_env,
    seed_flavors,
    wait_hosts_reported,
    wait_ready,
)

# The banner's tokens: long enough for a working day, short enough to expire.
TOKEN_TTL = timedelta(hours=12)
# What each host agent runs servers on, for the banner.
DRIVERS = {
    "hostagent": "fake",
    "hostagent_2": "fake",
    "hostagent_libvirt": "libvirt (test:///default)",
    "hostagent_redfish": "redfish: bare metal bm-0..2 behind a BMC emulator",
    "hostagent_container": "container: podman",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-dir", type=Path, default=ROOT / "state", help="where all state lives"
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help="ports used are base+0,1 (Envoy) and base+10..21 (services, etcd, hosts, BMC)",
    )
    args = parser.parse_args()

    layout = MeshLayout.from_port_base(args.state_dir, args.port_base)
    layout.with_redfish = redfish_bmc.redfish_available() is None
    layout.with_containers = podman_host.podman_missing() is None
    layout.prepare()
    env_file = layout.state_dir / "mesh.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in layout.env().items()))
    # The Procfile for this machine: without the hosts whose backend is missing.
    procfile = layout.state_dir / "Procfile"
    procfile.write_text("".join(f"{n}: {c}\n" for n, c in layout.procfile_commands().items()))
    honcho = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "honcho",
            "-f",
            str(procfile),
            "-d",
            str(ROOT),
            "-e",
            str(env_file),
            "start",
        ],
        env=process_env(layout),
    )
    # honcho stops every process on SIGINT/SIGTERM; we only wait for it.
    signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
    try:
        wait_ready(layout, alive=lambda: honcho.poll() is None)
        wait_hosts_reported(layout)
        created = seed_flavors(layout)
        print(banner(layout, created), flush=True)
        return honcho.wait()
    except KeyboardInterrupt:
        honcho.wait()
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"stratus: {exc}", file=sys.stderr, flush=True)
        honcho.send_signal(signal.SIGTERM)
        honcho.wait()
        return 1
    finally:
        # Containers outlive podman's service (conmon keeps them): remove them too.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            layout.cleanup()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"stratus: cleanup failed: {exc}", file=sys.stderr, flush=True)


def host_lines(layout: MeshLayout) -> str:
    """The host agents started, then one line per host not started: why, and how to start it."""
    lines = [f"  {HOST_AGENTS[a]:<12} {layout.address(a):<16} {DRIVERS[a]}" for a in layout.agents]
    missing = {
        "hostagent_libvirt": (
            "libvirt-python is missing",
            "install libvirt-dev and pkg-config, then `make venv`",
        ),
        "hostagent_redfish": (
            redfish_bmc.redfish_available(),
            "`make venv` (sushy-tools, a dev dependency, and libvirt-python)",
        ),
        "hostagent_container": (
            podman_host.podman_missing(),
            "run tools/setup_podman.sh as root, `make venv`, then `make run` as root",
        ),
    }
    for agent, (why, how) in missing.items():
        if agent not in layout.agents:
            lines.append(f"  {HOST_AGENTS[agent]:<12} not started: {why or 'turned off'}; {how}")
    return "\n".join(lines)


def banner(layout: MeshLayout, created: list[str]) -> str:
    seeded = (
        f"seeded flavors: {', '.join(created)}" if created else "flavors kept from the last run"
    )
    admin = layout.mint_token(project="admin", user="admin", roles=["admin"], ttl=TOKEN_TTL)
    member = layout.mint_token(project="demo", user="demo", roles=["member"], ttl=TOKEN_TTL)
    hours = f"{TOKEN_TTL.total_seconds() / 3600:.0f}"
    grpc = "\n".join(f"  {s:<12} {layout.address(s)}" for s in SERVICES if s != "hostagent")
    hosts = host_lines(layout)
    return f"""
================ Stratus is up ================
REST (Envoy):  {layout.rest_url}
gRPC services:
{grpc}
host agents:
{hosts}
etcd:          {layout.address("etcd")}
state:         {layout.state_dir}   ({seeded})

Tokens for {hours} h, an admin (project "admin") and a member (project "demo"):
  export ADMIN_TOKEN={admin}
  export TOKEN={member}
More: .venv/bin/stratus-manage token create --state-dir {layout.state_dir} \\
        --project P --user U --role member --ttl 1h

Try:
  export STRATUS_URL={layout.rest_url} STRATUS_TOKEN=$TOKEN
  .venv/bin/stratus server create web --flavor m1.tiny --image cirros --wait
  .venv/bin/stratus server list
  curl -s {layout.rest_url}/v1/servers -H "Authorization: Bearer $TOKEN"
  curl -s {layout.rest_url}/v1/flavors -H "Authorization: Bearer $ADMIN_TOKEN" \\
       -d '{{"name": "m2.xl", "vcpus": 8, "ram_mb": 16384}}'
  curl -s {layout.rest_url}/v1/placement/resource_providers -H "Authorization: Bearer $ADMIN_TOKEN"
  .venv/bin/grpcurl -plaintext -protoset gen/stratus.binpb -H "authorization: Bearer $TOKEN" \\
       {layout.address("envoy")} stratus.compute.v1.FlavorService/ListFlavors

Ctrl-C stops everything.
==============================================="""


if __name__ == "__main__":
    sys.exit(main())
