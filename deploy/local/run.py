"""`make run`: the whole Stratus mesh on this machine, ready to use.

Starts etcd, Envoy and the five services from deploy/local/Procfile under
honcho, waits until each answers its health check, seeds default flavors and
prints how to call the API, with an admin and a member token. Ctrl-C stops
everything.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from deploy.local.mesh import (
    DEFAULT_PORT_BASE,
    HOST_AGENTS,
    ROOT,
    SERVICES,
    MeshLayout,
    process_env,
    seed_flavors,
    wait_ready,
)

# The banner's tokens: long enough for a working day, short enough to expire.
TOKEN_TTL = timedelta(hours=12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-dir", type=Path, default=ROOT / "state", help="where all state lives"
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help="ports used are base+0,1 (Envoy) and base+10..18 (services, etcd, host agents)",
    )
    args = parser.parse_args()

    layout = MeshLayout.from_port_base(args.state_dir, args.port_base)
    layout.prepare()
    env_file = layout.state_dir / "mesh.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in layout.env().items()))
    # The Procfile for this machine: without the libvirt host where libvirt is missing.
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


def banner(layout: MeshLayout, created: list[str]) -> str:
    seeded = (
        f"seeded flavors: {', '.join(created)}" if created else "flavors kept from the last run"
    )
    admin = layout.mint_token(project="admin", user="admin", roles=["admin"], ttl=TOKEN_TTL)
    member = layout.mint_token(project="demo", user="demo", roles=["member"], ttl=TOKEN_TTL)
    hours = f"{TOKEN_TTL.total_seconds() / 3600:.0f}"
    grpc = "\n".join(f"  {s:<12} {layout.address(s)}" for s in SERVICES if s != "hostagent")
    hosts = "\n".join(f"  {HOST_AGENTS[a]:<12} {layout.address(a)}" for a in layout.agents)
    libvirt_note = (
        ""
        if layout.with_libvirt
        else "\n  (no libvirt host: install libvirt-dev and pkg-config, then `make venv`)"
    )
    return f"""
================ Stratus is up ================
REST (Envoy):  {layout.rest_url}
gRPC services:
{grpc}
host agents:
{hosts}{libvirt_note}
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
