"""The fleet simulator: thousands of fake hosts in a few processes, for tests and benchmarks.

Each simulated host is a real participant: its own resource provider with
VCPU/MEMORY_MB/DISK_GB inventories and the fake driver's trait in placement,
its own lease and liveness key in etcd (the same key and JSON value as a real
agent, whose "address" is its simulator process's gRPC endpoint), and it
answers HostAgentService calls naming it. See services/hostagent/fleet/ for
how one process holds many hosts.

Command line (a mesh must be running: `make run`, whose settings it reads from
`<state-dir>/mesh.env`, or STRATUS_* variables in the environment):

    python -m deploy.local.fleet --hosts 10000 --processes 4 [--name-prefix sim-]
        [--state-dir state] [--vcpus 16 --ram-mb 65536 --disk-gb 1000]
        [--delete-providers]
    make fleet HOSTS=10000 PROCESSES=4

It prints when every host is in placement and etcd, and runs until Ctrl-C,
which revokes the hosts' leases (they leave liveness at once) and keeps their
providers, so the next start reuses the same uuids (kept under
`<state>/hostagent/<host>/provider_uuid`, like a real agent's), unless
`--delete-providers` is given.

Python API:

    fleet = Fleet(env, hosts=1000, processes=2, name_prefix="sim-", logs=Path("logs"))
    fleet.start()                           # processes serving (seconds)
    fleet.wait_registered(timeout=300)      # every host in placement and etcd
    fleet.names                             # ["sim-00000", ...]
    fleet.address_of("sim-00042")           # its simulator's host:port
    fleet.crash(["sim-00001", "sim-00007"]) # die as a machine: no more keepalives, no revoke
    fleet.status()                          # totals: hosts, reported, registered, keepalives_sent
    fleet.stop(delete_providers=False)      # revoke leases, stop every process

`env` is the mesh processes' environment (`deploy.local.mesh.process_env(layout)`,
or a RunningMesh's); add STRATUS_HOSTAGENT__* settings to it to change the
simulated hosts (LIVENESS_TTL_S, FAKE__VCPUS, FAKE__DELAY_S, ...). Fleet is
also a context manager (start on enter, stop on exit).
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import grpc
from google.protobuf import struct_pb2
from stratus.placement.v1 import resource_providers_pb2 as rp_pb
from stratus.placement.v1 import resource_providers_pb2_grpc

from deploy.local.mesh import ROOT, free_port, grpc_serving
from services.common.context import ROLES_KEY, SERVICE_ROLE
from services.hostagent.fleet.control import CRASH_HOSTS, STATUS
from services.hostagent.fleet.hosts import host_names

METADATA = ((ROLES_KEY, SERVICE_ROLE),)
# Provider deletions in flight when the fleet is stopped with delete_providers.
DELETE_CONCURRENCY = 32


class Fleet:
    def __init__(
        self,
        env: dict[str, str],
        hosts: int,
        processes: int = 1,
        name_prefix: str = "sim-",
        logs: Path | None = None,
    ) -> None:
        if hosts < 1 or not 1 <= processes <= hosts:
            raise ValueError(f"need 1 <= processes <= hosts, got {processes} for {hosts} hosts")
        self.env = env
        self.names = host_names(name_prefix, 0, hosts)
        self._prefix = name_prefix
        # Contiguous slices: process p runs names[bounds[p]:bounds[p + 1]].
        self._bounds = [p * hosts // processes for p in range(processes + 1)]
        self._logs = logs
        self.processes: list[subprocess.Popen] = []
        self.addresses: list[str] = []

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Start the simulator processes; returns once each serves (hosts still registering)."""
        atexit.register(self.stop)  # its processes are out of reach of a Ctrl-C (sessions)
        for p in range(len(self._bounds) - 1):
            address = f"127.0.0.1:{free_port()}"
            self.processes.append(self._launch(p, address))
            self.addresses.append(address)
        deadline = time.monotonic() + timeout
        for proc, address in zip(self.processes, self.addresses, strict=True):
            while not grpc_serving(address):
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fleet process on {address} did not start")
                time.sleep(0.1)

    def _launch(self, p: int, address: str) -> subprocess.Popen:
        first, end = self._bounds[p], self._bounds[p + 1]
        cmd = [
            sys.executable,
            "-m",
            "services.hostagent.fleet",
            f"--first={first}",
            f"--count={end - first}",
            f"--name-prefix={self._prefix}",
        ]
        env = {**self.env, "STRATUS_HOSTAGENT__LISTEN": address}
        if self._logs is None:
            return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        self._logs.mkdir(parents=True, exist_ok=True)
        with open(self._logs / f"fleet-{p}.log", "ab") as log:
            return subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def address_of(self, host: str) -> str:
        """The simulator endpoint serving `host` (one of `names`)."""
        index = int(host.removeprefix(self._prefix))
        return self.addresses[bisect.bisect_right(self._bounds, index) - 1]

    def _call(self, address: str, method: str, request: dict, timeout: float = 30) -> dict:
        body = struct_pb2.Struct()
        body.update(request)
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(
                method,
                request_serializer=struct_pb2.Struct.SerializeToString,
                response_deserializer=struct_pb2.Struct.FromString,
            )
            reply = call(body, metadata=METADATA, timeout=timeout)
        return dict(reply)

    def status(self) -> dict[str, int]:
        """Totals over the processes: hosts running, reported to placement, registered in
        etcd, and keepalives sent since start."""
        totals: dict[str, int] = {}
        for address in self.addresses:
            for key, value in self._call(address, STATUS, {}).items():
                totals[key] = totals.get(key, 0) + int(value)
        return totals

    def wait_registered(self, timeout: float = 300.0) -> float:
        """Wait until every running host is in placement and etcd; returns the seconds waited."""
        started = time.monotonic()
        while True:
            status = self.status()
            if status["reported"] == status["registered"] == status["hosts"]:
                return time.monotonic() - started
            if any(proc.poll() is not None for proc in self.processes):
                raise RuntimeError("a fleet process exited; see its log")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"fleet not registered after {timeout:.0f}s: {status}")
            time.sleep(0.2)

    def crash(self, hosts: Iterable[str]) -> int:
        """Make hosts die as machines do: leases no longer renewed (not revoked), their
        agent no longer answering. Returns how many were running."""
        by_process: dict[str, list[str]] = {}
        for host in hosts:
            by_process.setdefault(self.address_of(host), []).append(host)
        return sum(
            int(self._call(address, CRASH_HOSTS, {"hosts": names})["crashed"])
            for address, names in by_process.items()
        )

    def stop(self, delete_providers: bool = False, timeout: float = 60.0) -> None:
        """SIGTERM every process (each revokes its hosts' leases), then optionally delete
        the hosts' providers from placement."""
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes, self.addresses = [], []
        atexit.unregister(self.stop)
        if delete_providers:
            self.delete_providers()

    def delete_providers(self) -> int:
        """Delete the hosts' providers (those holding no allocations); returns how many."""
        state_dir = Path(self.env.get("STRATUS_STATE_DIR", "state"))
        uuids = [
            path.read_text().strip()
            for name in self.names
            if (path := state_dir / "hostagent" / name / "provider_uuid").exists()
        ]
        target = self.env.get("STRATUS_PLACEMENT__ENDPOINT") or self.env.get(
            "STRATUS_PLACEMENT__LISTEN", "127.0.0.1:8791"
        )
        deleted = 0
        with grpc.insecure_channel(target) as channel:
            stub = resource_providers_pb2_grpc.ResourceProviderServiceStub(channel)
            for start in range(0, len(uuids), DELETE_CONCURRENCY):
                calls = [
                    stub.DeleteResourceProvider.future(
                        rp_pb.DeleteResourceProviderRequest(uuid=uuid),
                        metadata=METADATA,
                        timeout=30,
                    )
                    for uuid in uuids[start : start + DELETE_CONCURRENCY]
                ]
                for call in calls:
                    try:
                        call.result()
                        deleted += 1
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.NOT_FOUND:
                            print(f"fleet: provider kept: {exc.details()}", file=sys.stderr)
        return deleted


def _mesh_env(state_dir: Path) -> dict[str, str]:
    """The running mesh's settings: `make run` writes them to <state>/mesh.env."""
    env = dict(os.environ)
    env_file = state_dir / "mesh.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                env[key] = value
    env.setdefault("STRATUS_STATE_DIR", str(state_dir))
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, required=True, help="simulated hosts")
    parser.add_argument("--processes", type=int, default=4, help="simulator processes")
    parser.add_argument("--name-prefix", default="sim-", help="host names are <prefix>00000...")
    parser.add_argument(
        "--state-dir", type=Path, default=ROOT / "state", help="the mesh's state directory"
    )
    parser.add_argument("--vcpus", type=int, help="CPUs of each host (default: the fake's 16)")
    parser.add_argument("--ram-mb", type=int, help="memory of each host (default 65536)")
    parser.add_argument("--disk-gb", type=int, help="disk of each host (default 1000)")
    parser.add_argument(
        "--delete-providers", action="store_true", help="on stop, delete the hosts' providers"
    )
    args = parser.parse_args()
    env = _mesh_env(args.state_dir.resolve())
    for option, name in (("vcpus", "VCPUS"), ("ram_mb", "RAM_MB"), ("disk_gb", "DISK_GB")):
        if getattr(args, option) is not None:
            env[f"STRATUS_HOSTAGENT__FAKE__{name}"] = str(getattr(args, option))
    logs = Path(env["STRATUS_STATE_DIR"]) / "fleet-logs"
    fleet = Fleet(env, args.hosts, min(args.processes, args.hosts), args.name_prefix, logs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started = time.monotonic()
    try:
        fleet.start()
        fleet.wait_registered(timeout=3600)
        print(
            f"fleet: {args.hosts} hosts ({fleet.names[0]} .. {fleet.names[-1]}) in placement "
            f"and etcd after {time.monotonic() - started:.1f} s, served by "
            f"{', '.join(fleet.addresses)}; logs in {logs}; Ctrl-C stops them",
            flush=True,
        )
        while all(proc.poll() is None for proc in fleet.processes):
            time.sleep(1)
        print("fleet: a simulator process exited; see its log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        fleet.stop(delete_providers=args.delete_providers)
        print("fleet: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
