"""Shared fixtures: real etcd, Envoy and services; SQLite and PostgreSQL.

PostgreSQL-backed tests run where a server answers on 127.0.0.1:5432 (user
postgres); in CI (CI=true) a missing server is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from deploy.local.mesh import MeshLayout, wait_hosts_reported
from tests.etcd_server import EtcdServer
from tests.harness import RunningMesh

PG_ADMIN_URL = os.environ.get(
    "STRATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_KINDS = ["sqlite", "postgresql"]


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresDatabases:
    """Creates throwaway databases on the test server and drops them afterwards."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.error: str | None = None
        try:
            asyncio.run(_pg_admin("SELECT 1"))
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            self.error = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"

    def require(self) -> None:
        if self.error is None:
            return
        if os.environ.get("CI") == "true":
            pytest.fail(f"{self.error} (CI must test against PostgreSQL)")
        pytest.skip(self.error)

    def new(self) -> str:
        self.require()
        name = f"stratus_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        for name in self.created:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def meshes(tmp_path_factory, postgres) -> Iterator[dict]:
    """Meshes by database kind, started on first use and stopped at the end."""
    started: dict[str, RunningMesh] = {}

    def get(kind: str) -> RunningMesh:
        if kind not in started:
            state = tmp_path_factory.mktemp(f"mesh-{kind}")
            layout = MeshLayout.on_free_ports(state / "state")
            if kind == "postgresql":
                for service in ("api_gateway", "placement", "quota"):
                    layout.database_urls[service] = postgres.new()
            mesh = RunningMesh(layout, logs=state / "logs")
            mesh.start()
            started[kind] = mesh
            # Agents report to placement just after they serve; tests need the hosts.
            wait_hosts_reported(mesh.layout)
        return started[kind]

    yield get
    for mesh in started.values():
        mesh.stop()


@pytest.fixture(scope="session", params=DB_KINDS)
def mesh(request, meshes, postgres) -> RunningMesh:
    """The whole mesh, once on SQLite and once with its databases on PostgreSQL."""
    if request.param == "postgresql":
        postgres.require()
    return meshes(request.param)


@pytest.fixture(scope="session")
def sqlite_mesh(meshes) -> RunningMesh:
    """The mesh on SQLite, for behaviour that does not depend on the database."""
    return meshes("sqlite")


@pytest.fixture(scope="session")
def etcd_process(tmp_path_factory) -> Iterator[EtcdServer]:
    state = tmp_path_factory.mktemp("etcd")
    server = EtcdServer(state / "data", state / "etcd.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def etcd_server(etcd_process) -> EtcdServer:
    """A real single-node etcd, shared by the session and running when each test starts
    even if the previous one stopped it to simulate an outage. Tests isolate their keys
    under a prefix of their own."""
    if not etcd_process.running:
        etcd_process.start()
    return etcd_process
