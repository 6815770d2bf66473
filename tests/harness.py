"""Run the local mesh for tests: the Procfile's own lines, on free ports.

Each process gets its own session (process group) so stopping it stops
everything it started; every process is stopped at the end, and its log is
kept under the test's temporary directory for post-mortems.

Tests name callers by the identity headers a service reads (ADMIN, MEMBER).
Through the edge such an identity travels as a bearer token signed with the
mesh's key (RunningMesh.rest, .token, .edge_metadata); called directly, a
service reads the headers as gRPC metadata (the mesh's internal path).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import httpx

from deploy.local.mesh import ROOT, MeshLayout, process_env, start_service, wait_ready
from services.common.context import PROJECT_KEY, ROLES_KEY, USER_KEY

# Python source that gives a program the Ctrl-C a terminal gives it. A shell
# starts background jobs with SIGINT ignored (a suite run with `make test &`),
# and a child inherits that: the Ctrl-C tests would then interrupt nothing.
TERMINAL_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

ADMIN = {"x-stratus-roles": "admin", "x-stratus-project": "admin-project", "x-stratus-user": "root"}
MEMBER = {"x-stratus-roles": "member", "x-stratus-project": "project-a", "x-stratus-user": "alice"}


@dataclass
class RunningMesh:
    layout: MeshLayout
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Settings for every process of this mesh (e.g. short timeouts for fault tests).
    extra_env: dict[str, str] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        return process_env(self.layout) | self.extra_env

    def _launch(self, name: str, cmd: str) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                cmd,
                shell=True,
                cwd=ROOT,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        self.layout.prepare()
        self.logs.mkdir(parents=True, exist_ok=True)
        for name, cmd in self.layout.procfile_commands().items():
            self._launch(name, cmd)
        try:
            wait_ready(self.layout, timeout=60, alive=self._all_alive)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.tail_logs()}") from exc

    def start_replica(self, service: str) -> str:
        """Start one more process of `service` on a free port, sharing its database.

        Returns the replica's address; it is stopped with the mesh."""
        name = f"{service}-replica-{len(self.processes)}"
        with open(self.logs / f"{name}.log", "ab") as log:
            try:
                proc, address = start_service(
                    service,
                    self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{self.tail_logs()}") from exc
        self.processes[name] = proc
        return address

    def kill(self, name: str) -> None:
        """SIGKILL a process of the mesh (a crash: no cleanup of any kind)."""
        proc = self.processes[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, name: str) -> None:
        """Start a killed Procfile process again, same command, same port."""
        self._launch(name, self.layout.procfile_commands()[name])
        wait_ready(self.layout, timeout=60, alive=self._all_alive)

    def _all_alive(self) -> bool:
        return all(p.poll() is None for p in self.processes.values())

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def tail_logs(self, lines: int = 20) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def token(self, identity: dict[str, str], ttl: timedelta = timedelta(hours=1)) -> str:
        """A token carrying `identity` (identity headers); absent headers are absent claims."""
        roles = [r.strip() for r in identity.get(ROLES_KEY, "").split(",") if r.strip()]
        return self.layout.mint_token(
            project=identity.get(PROJECT_KEY), user=identity.get(USER_KEY), roles=roles, ttl=ttl
        )

    def edge_metadata(self, identity: dict[str, str]) -> tuple[tuple[str, str], ...]:
        """gRPC metadata for a call through the edge as `identity`."""
        return (("authorization", f"Bearer {self.token(identity)}"),)

    def rest(self, identity: dict[str, str] | None = None) -> httpx.Client:
        """A REST client of the edge; with an identity, it sends that identity's token."""
        headers = {} if identity is None else dict(self.edge_metadata(identity))
        return httpx.Client(base_url=self.layout.rest_url, headers=headers, timeout=10)

    def channel(self, service: str = "api_gateway") -> grpc.Channel:
        return grpc.insecure_channel(self.layout.address(service))
