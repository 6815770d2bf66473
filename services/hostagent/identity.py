"""Who this host is: its name, and its resource provider uuid kept across restarts.

The uuid is made once and kept in the state directory, so a restarted agent
reports to the same provider instead of creating a second one (Nova keeps a
compute_id file for the same reason).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.common.config import HostAgentSection


@dataclass(frozen=True)
class HostIdentity:
    host: str
    provider_uuid: str
    # The uuid was made just now: placement cannot have a provider with it yet.
    new: bool = False


def host_identity(section: HostAgentSection, state_dir: Path) -> HostIdentity:
    host = section.host or socket.gethostname()
    if section.provider_uuid:
        return HostIdentity(host, str(uuid.UUID(section.provider_uuid)))
    path = state_dir / "hostagent" / host / "provider_uuid"
    if path.exists():
        return HostIdentity(host, str(uuid.UUID(path.read_text().strip())))
    path.parent.mkdir(parents=True, exist_ok=True)
    new = str(uuid.uuid4())
    # Write-then-rename: a crash never leaves a half-written uuid behind.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new + "\n")
    os.replace(tmp, path)
    return HostIdentity(host, new, new=True)
