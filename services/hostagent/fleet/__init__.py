"""The fleet simulator: thousands of fake hosts in one hostagent process.

Each simulated host is the real agent's parts (hosts.py: fake driver with
servers in memory, HostAgentServicer, InventoryReporter, PowerStateSync);
what a process holds once for all its hosts is what would not scale per
host: one gRPC endpoint dispatching on the host a request names
(servicer.py), a few etcd streams renewing every host's lease (leases.py), and
one loop per process instead of per-host loops (sweeps.py). control.py holds
the test-only calls (status, crash). Start it with deploy/local/fleet.py.
"""
