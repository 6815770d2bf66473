"""Ports for test and local meshes come from outside the kernel's ephemeral
range, so an outgoing connection cannot take one before its service binds it."""

from __future__ import annotations

import socket
from pathlib import Path

from deploy.local.mesh import free_port


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert all(port < low for port in ports)
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
