"""A real single-node etcd for tests, which can be stopped and started again.

It keeps its ports and data directory across `stop()`/`start()`, so a restart
looks to clients like the same cluster coming back after an outage: same
address, same keys and leases (etcd restores leases and extends them by their
TTL when it comes back).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from deploy.local.mesh import free_port

ETCD = Path(sys.executable).with_name("etcd")


class EtcdServer:
    def __init__(self, data_dir: Path, log_file: Path) -> None:
        self.data_dir = data_dir
        self.log_file = log_file
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        client = f"http://{self.endpoint}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(ETCD),
                    "--name=test",
                    f"--data-dir={self.data_dir}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=test={peer}",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy(timeout)

    def stop(self) -> None:
        """Kill etcd the hard way: an outage is a crash, not a polite shutdown."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise RuntimeError(f"etcd exited while starting; see {self.log_file}")
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"etcd not healthy after {timeout:.0f}s; see {self.log_file}")
            time.sleep(0.05)
