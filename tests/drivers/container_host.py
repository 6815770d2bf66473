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

from deploy.local import podman_host
from deploy.local.podman_host import TEST_IMAGE, libpod_cgroups, podman_missing

__all__ = ["TEST_IMAGE", "make_container_driver", "podman_service", "require_podman"]
from services.hostagent.drivers.base import HostResources

if TYPE_CHECKING:
    from services.hostagent.drivers.container_driver import ContainerDriver

DEFAULT_HOST = HostResources(vcpus=16, ram_mb=65536, disk_gb=1000)
START_TIMEOUT_S = 20.0


def require_podman() -> None:
    """Skip the caller (at module level too) where podman cannot run; in CI, fail instead."""
    reason = podman_missing()
    if reason is None:
        return
    reason += ": run tools/setup_podman.sh as root, then make venv"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must test the container driver)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


class PodmanService:
    """`podman system service` on a private socket and storage, run by PID."""

    def __init__(self) -> None:
        # Short and under /tmp: a unix socket path may not exceed 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="stratus-podman-", dir="/tmp"))
        self.socket_url = f"unix://{self.dir}/podman.sock"
        self.options = podman_host.options(self.dir, self.dir)
        self.env = podman_host.environ()
        self._cgroups_before = libpod_cgroups()
        self._process: subprocess.Popen | None = None

    def podman(self, *args: str) -> str:
        """Runs the podman CLI on this service's storage; its output."""
        return podman_host.podman(self.options, *args)

    def start(self) -> None:
        podman_host.import_image(self.options)
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
            podman_host.remove_containers(self.options)
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        podman_host.remove_cgroups(self._cgroups_before)
        shutil.rmtree(self.dir, ignore_errors=True)


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
