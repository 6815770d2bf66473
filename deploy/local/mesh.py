"""The local mesh: where each part listens, how to start it, how to tell it is ready.

Used by `make run` (run.py, through honcho) and by the test fixtures, which
start the very same Procfile lines on free ports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from honcho.environ import parse_procfile

from cli.tokens import ensure_signing_key, jwks_path, load_signing_key, mint_token
from deploy.local import podman_host, redfish_bmc

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = Path(__file__).with_name("Procfile")
DESCRIPTOR = ROOT / "gen" / "stratus.binpb"
SERVICES = ("api_gateway", "placement", "scheduler", "quota", "hostagent")
# The services Envoy routes REST or gRPC to.
EDGE_UPSTREAMS = ("api_gateway", "placement", "quota")
DEFAULT_PORT_BASE = 8780
# Offsets from the port base; with the default base the services sit on the
# ports services.common.config uses by default (api_gateway 8790, ...).
PORT_OFFSETS = {
    "envoy": 0,
    "envoy_admin": 1,
    "api_gateway": 10,
    "placement": 11,
    "scheduler": 12,
    "quota": 13,
    "hostagent": 14,
    "etcd": 15,
    "etcd_peer": 16,
    "hostagent_2": 17,
    "hostagent_libvirt": 18,
    "redfish_bmc": 19,
    "hostagent_redfish": 20,
    "hostagent_container": 21,
}
# Host agents by port name, with their host names (the Procfile sets them).
HOST_AGENTS = {
    "hostagent": "fake-1",
    "hostagent_2": "fake-2",
    "hostagent_libvirt": "libvirt-1",
    "hostagent_redfish": "metal-1",
    "hostagent_container": "container-1",
}
# Procfile processes of each optional part, by the MeshLayout flag that turns it on.
OPTIONAL_PROCESSES = {
    "with_libvirt": ("hostagent-libvirt",),
    "with_redfish": ("redfish-bmc", "hostagent-redfish"),
    "with_containers": ("podman", "hostagent-container"),
}
# The bare-metal machines of `make run`'s BMC (metal-1's).
BMC_MACHINES = (
    redfish_bmc.Machine("bm-0", "5e1f0000-0000-4000-8000-000000000000", 2, 4096),
    redfish_bmc.Machine("bm-1", "5e1f0000-0000-4000-8000-000000000001", 4, 8192),
    redfish_bmc.Machine("bm-2", "5e1f0000-0000-4000-8000-000000000002", 8, 16384, "silver"),
)
BMC_USERNAME = "stratus"
# A stand-in image file for the libvirt agent: its test driver never reads it.
LIBVIRT_TEST_IMAGE = "cirros"


def libvirt_available() -> bool:
    return importlib.util.find_spec("libvirt") is not None


DEFAULT_FLAVORS = (
    {"name": "m1.tiny", "vcpus": 1, "ram_mb": 512, "disk_gb": 1},
    {"name": "m1.small", "vcpus": 1, "ram_mb": 2048, "disk_gb": 20},
    {"name": "m1.medium", "vcpus": 2, "ram_mb": 4096, "disk_gb": 40},
    {"name": "m1.large", "vcpus": 4, "ram_mb": 8192, "disk_gb": 80},
)
# Who seeds the flavors: an admin of the "admin" project.
SEED_IDENTITY = {"project": "admin", "user": "admin", "roles": ["admin"]}


# Ports handed out by this process: never twice, even once free again.
_handed_out: set[int] = set()
_PORT_FLOOR = 10000


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port nothing listens on now, below the kernel's ephemeral range.

    The caller binds it a moment later, in another process. A port from
    binding port 0 comes from the ephemeral range, where any outgoing
    connection made meanwhile may take it: a host agent once failed to start
    with "Address already in use" that way, and the tests after it failed
    against a half-started mesh."""
    low = _ephemeral_low()
    if low - _PORT_FLOOR < 1000:  # an unusual range: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    for _ in range(1000):
        port = random.randrange(_PORT_FLOOR, low)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {_PORT_FLOOR} and {low}")


@dataclass
class MeshLayout:
    state_dir: Path
    ports: dict[str, int]
    database_urls: dict[str, str] = field(default_factory=dict)
    with_libvirt: bool = field(default_factory=libvirt_available)
    # Off unless asked for (run.py turns them on where their backend is available).
    with_redfish: bool = False
    with_containers: bool = False

    def _off(self) -> set[str]:
        """Procfile processes this mesh does not run."""
        return {p for flag, ps in OPTIONAL_PROCESSES.items() if not getattr(self, flag) for p in ps}

    @property
    def agents(self) -> list[str]:
        """Port names of the host agents this mesh runs."""
        off = self._off()
        return [a for a in HOST_AGENTS if a.replace("_", "-") not in off]

    @property
    def bmc_dir(self) -> Path:
        return self.state_dir / "bmc"

    @classmethod
    def from_port_base(cls, state_dir: Path, base: int = DEFAULT_PORT_BASE) -> MeshLayout:
        return cls(state_dir.resolve(), {name: base + off for name, off in PORT_OFFSETS.items()})

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> MeshLayout:
        return cls(state_dir.resolve(), {name: free_port() for name in PORT_OFFSETS})

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.address('envoy')}"

    def env(self) -> dict[str, str]:
        """The environment the Procfile lines read."""
        env = {
            "STRATUS_STATE_DIR": str(self.state_dir),
            "STRATUS_ETCD_ENDPOINTS": self.address("etcd"),
            "STRATUS_LOCAL_ETCD_PEER": self.address("etcd_peer"),
            "STRATUS_LOCAL_HOSTAGENT_2": self.address("hostagent_2"),
            "STRATUS_LOCAL_HOSTAGENT_LIBVIRT": self.address("hostagent_libvirt"),
            "STRATUS_LOCAL_HOSTAGENT_REDFISH": self.address("hostagent_redfish"),
            "STRATUS_LOCAL_HOSTAGENT_CONTAINER": self.address("hostagent_container"),
            "STRATUS_LOCAL_PODMAN_URL": podman_host.socket_url(self.state_dir),
            "PYTHONUNBUFFERED": "1",
        }
        for service in SERVICES:
            env[f"STRATUS_{service.upper()}__LISTEN"] = self.address(service)
        for service, url in self.database_urls.items():
            env[f"STRATUS_{service.upper()}__DATABASE_URL"] = url
        return env

    def render_envoy(self) -> Path:
        """Write Envoy's config, creating the signing key on first use (reused afterwards):
        the config names its public key set, which Envoy reads when it starts."""
        ensure_signing_key(self.state_dir)
        out = self.state_dir / "envoy.json"
        cmd = [
            sys.executable,
            str(ROOT / "envoy" / "render.py"),
            "--descriptor",
            str(DESCRIPTOR),
            "--out",
            str(out),
            "--jwks",
            str(jwks_path(self.state_dir)),
            "--listen",
            self.address("envoy"),
            "--admin",
            self.address("envoy_admin"),
        ]
        for service in EDGE_UPSTREAMS:
            cmd += ["--upstream", f"{service}={self.address(service)}"]
        subprocess.run(cmd, check=True)
        return out

    def prepare(self) -> None:
        if not DESCRIPTOR.exists():
            raise SystemExit(f"{DESCRIPTOR} is missing: run `make gen` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.render_envoy()
        if self.with_libvirt:
            images = self.state_dir / "images"
            images.mkdir(exist_ok=True)
            (images / LIBVIRT_TEST_IMAGE).write_text("stand-in image for libvirt's test driver\n")
        if self.with_redfish:
            self._prepare_bmc()
        if self.with_containers:
            podman_host.import_image(podman_host.mesh_options(self.state_dir))

    def _prepare_bmc(self) -> None:
        """The BMC's flask config, machines and password (new each start), and metal-1's
        machines file naming them (credentials in bmc.toml, mode 0600)."""
        bmc = self.bmc_dir
        bmc.mkdir(mode=0o700, exist_ok=True)
        password = secrets.token_urlsafe(18)
        redfish_bmc.write_htpasswd(bmc / "htpasswd", BMC_USERNAME, password)
        redfish_bmc.write_config(
            bmc / "emulator.conf", self.ports["redfish_bmc"], bmc / "state", bmc / "htpasswd"
        )
        redfish_bmc.write_machines_json(bmc / "machines.json", BMC_MACHINES)
        url = f"http://{self.address('redfish_bmc')}"
        redfish_bmc.write_enrolment(bmc, url, BMC_MACHINES, BMC_USERNAME, password)

    def cleanup(self) -> None:
        """After the mesh stopped: remove what outlives its processes (the containers of
        its podman service, which conmon keeps running)."""
        if self.with_containers:
            podman_host.remove_containers(podman_host.mesh_options(self.state_dir))
            podman_host.forget_run_dir(self.state_dir)

    def mint_token(
        self, *, project: str | None, user: str | None, roles: Iterable[str], ttl: timedelta
    ) -> str:
        """A bearer token this mesh's edge accepts (signed with its key)."""
        key = load_signing_key(self.state_dir)
        return mint_token(key, project=project, user=user, roles=roles, ttl=ttl)

    def procfile_commands(self) -> dict[str, str]:
        """The Procfile's processes for this mesh (without the optional ones it does not run)."""
        commands = dict(parse_procfile(PROCFILE.read_text()).processes)
        return {name: c for name, c in commands.items() if name not in self._off()}


def process_env(layout: MeshLayout) -> dict[str, str]:
    """The full environment for mesh processes: ours, with the venv's bin first on PATH."""
    env = dict(os.environ)
    env.update(layout.env())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_service(
    service: str, env: dict[str, str], timeout: float = 30.0, **popen
) -> tuple[subprocess.Popen, str]:
    """Run `python -m services.<service>` on a free port and wait until it serves.

    `env` is the process environment (the listen address is added). Returns
    the process and its address; one that exits or does not serve in time
    is stopped and reported.
    """
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env={**env, f"STRATUS_{service.upper()}__LISTEN": address},
        **popen,
    )
    deadline = time.monotonic() + timeout
    while not grpc_serving(address):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise RuntimeError(f"{service} did not start on {address}")
        time.sleep(0.1)
    return proc, address


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def grpc_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def not_ready(layout: MeshLayout) -> list[str]:
    """The parts that do not answer their health check yet."""
    waiting = []
    if not _http_ok(f"http://{layout.address('etcd')}/health"):
        waiting.append("etcd")
    if not _http_ok(f"http://{layout.address('envoy_admin')}/ready"):
        waiting.append("envoy")
    parts = dict.fromkeys([*SERVICES, *layout.agents])
    waiting += [s for s in parts if not grpc_serving(layout.address(s))]
    return waiting


def wait_ready(layout: MeshLayout, timeout: float = 60.0, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while True:
        waiting = not_ready(layout)
        if not waiting:
            return
        if not alive():
            raise RuntimeError("a mesh process exited while starting; see its log above")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")
        time.sleep(0.2)


def seed_flavors(layout: MeshLayout) -> list[str]:
    """Create the default flavors through the REST edge; existing ones are kept."""
    created = []
    token = layout.mint_token(**SEED_IDENTITY, ttl=timedelta(minutes=5))
    for flavor in DEFAULT_FLAVORS:
        request = urllib.request.Request(
            f"{layout.rest_url}/v1/flavors",
            data=json.dumps(flavor).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                created.append(flavor["name"])
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: seeded by an earlier run
                raise
    return created


def wait_hosts_reported(layout: MeshLayout, timeout: float = 30.0) -> None:
    """Wait until every started host is UP in /v1/hosts with its capacity reported:
    an agent answers its health check a moment before placement knows its size,
    and a server created in that moment would find no host."""
    token = layout.mint_token(**SEED_IDENTITY, ttl=timedelta(minutes=5))
    wanted = {HOST_AGENTS[a] for a in layout.agents}
    request = urllib.request.Request(
        f"{layout.rest_url}/v1/hosts", headers={"authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                hosts = {h["name"]: h for h in json.load(response).get("hosts", [])}
        except (OSError, urllib.error.URLError, ValueError):
            hosts = {}
        # A bare-metal host's capacity sits on its machines, not on the host itself.
        ready = {
            name
            for name, h in hosts.items()
            if h.get("status") == "UP" and (h.get("resources") or h.get("driver") == "redfish")
        }
        if wanted <= ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"hosts not reported after {timeout:.0f}s: {sorted(wanted - ready)}")
        time.sleep(0.2)
