"""A container host for tests: a podman service of the test session's own.

The service listens on a socket in a temporary directory and keeps its storage
there too (vfs: no overlay mounts to leave behind), with
deploy/podman/containers.conf, so it never sees the machine's other containers.
Its images are the busybox test image (tools/podman_test_image.sh), also tagged
`cirros`, the image the conformance suite boots. It starts on first use and
stops when the session ends (tests/drivers/conftest.py), after removing every
container in it and the cgroups podman made for them.

It needs root (cgroup limits), podman, runc and busybox-static, which
tools/setup_podman.sh installs; where they are missing the tests skip, except
in CI, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.hostagent.drivers.base import HostResources

if TYPE_CHECKING:
    from services.hostagent.drivers.container_driver import ContainerDriver

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
IMAGE_SCRIPT = ROOT / "tools" / "podman_test_image.sh"
TEST_IMAGE = "localhost/stratus-busybox:latest"
# The conformance suite boots `cirros` on every driver.
IMAGE_ALIASES = ("localhost/cirros:latest",)
DEFAULT_HOST = HostResources(vcpus=16, ram_mb=65536, disk_gb=1000)
START_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 60.0
CGROUP_WAIT_S = 5.0
CGROUP_ROOTS = ("/sys/fs/cgroup", *(str(p) for p in Path("/sys/fs/cgroup").glob("*/")))


def require_podman() -> None:
    """Skip the caller (at module level too) where podman cannot run; in CI, fail instead."""
    missing = [tool for tool in ("podman", "runc", "busybox") if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} missing: run tools/setup_podman.sh as root"
    elif os.geteuid() != 0:
        reason = "the container driver's tests need root (podman sets cgroup limits)"
    else:
        try:
            import podman  # noqa: F401
        except ImportError as exc:
            reason = f"the podman client is missing ({exc}): make venv"
        else:
            return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must test the container driver)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


class PodmanService:
    """`podman system service` on a private socket and storage, run by PID."""

    def __init__(self) -> None:
        # Short and under /tmp: a unix socket path may not exceed 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="stratus-podman-", dir="/tmp"))
        self.socket_url = f"unix://{self.dir}/podman.sock"
        self.options = [
            f"--root={self.dir}/root",
            f"--runroot={self.dir}/run",
            f"--tmpdir={self.dir}/tmp",
            "--storage-driver=vfs",
            # Else netavark keeps its lock in /etc/containers/networks, even with no network.
            f"--network-config-dir={self.dir}/networks",
        ]
        self.env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
        self._cgroups_before = _libpod_cgroups()
        self._process: subprocess.Popen | None = None

    def podman(self, *args: str) -> str:
        """Runs the podman CLI on this service's storage; its output."""
        done = subprocess.run(
            ["podman", *self.options, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        subprocess.run(
            [str(IMAGE_SCRIPT), *self.options],
            env=self.env,
            check=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        for alias in IMAGE_ALIASES:
            self.podman("tag", TEST_IMAGE, alias)
        log = (self.dir / "service.log").open("wb")
        self._process = subprocess.Popen(
            ["podman", *self.options, "system", "service", "--time=0", self.socket_url],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        from podman import PodmanClient

        deadline = time.monotonic() + START_TIMEOUT_S
        with PodmanClient(base_url=self.socket_url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                with contextlib.suppress(Exception):
                    if client.ping():
                        return
                time.sleep(0.1)
        log = (self.dir / "service.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"podman system service did not answer on {self.socket_url}:\n{log}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.podman("rm", "--all", "--force", "--time=0")
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._remove_cgroups()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _remove_cgroups(self) -> None:
        """cgroupfs leaves libpod_parent/{conmon,...} under every controller: remove the
        ones this session made. rmdir refuses a cgroup in use, so the last conmons
        (which exit just after their container is removed) get a moment to go."""
        deadline = time.monotonic() + CGROUP_WAIT_S
        while True:
            left = sorted(_libpod_cgroups() - self._cgroups_before, key=len, reverse=True)
            for cgroup in left:
                with contextlib.suppress(OSError):
                    os.rmdir(cgroup)
            if not left or time.monotonic() > deadline:
                return
            time.sleep(0.1)


_service: PodmanService | None = None


def podman_service() -> PodmanService:
    """The session's podman service, started on first use."""
    global _service
    require_podman()
    if _service is None:
        service = PodmanService()
        service.start()
        _service = service
    return _service


def stop_podman_service() -> None:
    global _service
    if _service is not None:
        _service.stop()
        _service = None


def make_container_driver(
    host: HostResources = DEFAULT_HOST, stop_timeout_s: int = 5
) -> ContainerDriver:
    """A driver on the session's podman service, reporting a host of `host`'s size.

    Close it when done."""
    service = podman_service()
    from services.hostagent.drivers.container_driver import ContainerDriver

    return ContainerDriver(
        socket_url=service.socket_url,
        stop_timeout_s=stop_timeout_s,
        vcpus=host.vcpus,
        ram_mb=host.ram_mb,
        disk_gb=host.disk_gb,
    )


def _libpod_cgroups() -> set[str]:
    """Every cgroup directory at or under a libpod_parent, in every hierarchy."""
    found: set[str] = set()
    for root in CGROUP_ROOTS:
        parent = Path(root) / "libpod_parent"
        if parent.is_dir():
            found.add(str(parent))
            found.update(str(p) for p in parent.rglob("*") if p.is_dir())
    return found
