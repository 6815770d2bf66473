"""What the redfish driver must not forget: which machine runs which server.

Kept in one small JSON file in the agent's state directory and written whole
after every change (to a temporary file, then renamed over the old one), so a
restart, or a crash in the middle of a call, finds every assignment it made.
Each machine's provider uuid lives there too, made once like the host's own,
so placement sees the same machine after a restart. Power states are not kept:
the BMC knows them.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from services.hostagent.drivers.base import ServerSpec

VERSION = 1


@dataclass(frozen=True)
class Assignment:
    """A server on a machine, with the flavor's sizes and image it was built with."""

    machine: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    image_ref: str
    # False from the moment the machine is taken until it has booted: a spawn that
    # died in between is finished by the next spawn of the same id, or destroyed.
    ready: bool = False

    @classmethod
    def of(cls, spec: ServerSpec, machine: str) -> Assignment:
        return cls(machine, spec.name, spec.vcpus, spec.ram_mb, spec.disk_gb, spec.image_ref)


class Assignments:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.providers: dict[str, str] = {}  # machine name -> provider uuid
        self.servers: dict[str, Assignment] = {}  # server id -> where it runs
        if path.exists():
            data = json.loads(path.read_text())
            self.providers = dict(data["providers"])
            self.servers = {k: Assignment(**v) for k, v in data["servers"].items()}

    def provider_uuids(self, machines: list[str]) -> dict[str, str]:
        """Each machine's provider uuid, made (and saved) the first time it is asked for."""
        missing = [m for m in machines if m not in self.providers]
        for machine in missing:
            self.providers[machine] = str(uuid.uuid4())
        if missing:
            self.save()
        return {m: self.providers[m] for m in machines}

    def server_on(self, machine: str) -> str | None:
        return next((s for s, a in self.servers.items() if a.machine == machine), None)

    def assign(self, server_id: str, assignment: Assignment) -> None:
        self.servers[server_id] = assignment
        self.save()

    def mark_ready(self, server_id: str) -> Assignment:
        self.servers[server_id] = done = replace(self.servers[server_id], ready=True)
        self.save()
        return done

    def forget(self, server_id: str) -> None:
        if self.servers.pop(server_id, None) is not None:
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": VERSION,
            "providers": self.providers,
            "servers": {k: asdict(v) for k, v in self.servers.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
