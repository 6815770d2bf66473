"""Start a Stratus service: gRPC server, health, reflection, graceful stop.

A service describes itself with a small object (see ServiceApp) and calls
run(app); everything every service needs — logging, tracing, the request
interceptor, the standard health and reflection services, SIGTERM handling —
happens here, the same way for all five.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from typing import Protocol

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.config import ServiceSection, Settings, load_settings
from services.common.interceptors import RequestInterceptor
from services.common.telemetry import setup_logging, setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)


class ServiceApp(Protocol):
    """What a service gives the bootstrap."""

    name: str

    def section(self, settings: Settings) -> ServiceSection: ...

    async def start(self, settings: Settings) -> None:
        """Open connections and apply migrations; called before register()."""

    def register(self, server: grpc.aio.Server) -> list[str]:
        """Add servicers to server; return their full service names."""

    async def serving(self) -> None:
        """The server answers now: start background work that announces it."""

    async def stop(self) -> None:
        """Release what start() opened; in-flight calls have finished."""


async def serve(app: ServiceApp, settings: Settings, stop_event: asyncio.Event) -> None:
    section = app.section(settings)
    await app.start(settings)
    server = grpc.aio.server(interceptors=[RequestInterceptor()])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = app.register(server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        server.add_insecure_port(section.listen)
    except RuntimeError as exc:
        await app.stop()
        raise SystemExit(f"{app.name}: cannot listen on {section.listen}: {exc}") from exc

    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    # Everything alive now lives as long as the process; keep it out of the
    # collector's way so full collections stay short under load.
    gc.collect()
    gc.freeze()
    log.info("%s serving on %s", app.name, section.listen)
    await app.serving()

    await stop_event.wait()
    log.info(
        "%s stopping: finishing in-flight calls (up to %ss)", app.name, section.shutdown_grace_s
    )
    await health_servicer.enter_graceful_shutdown()
    await server.stop(section.shutdown_grace_s)
    await app.stop()
    log.info("%s stopped", app.name)


def run(app: ServiceApp) -> None:
    """Process entry point: configure, serve until SIGTERM or SIGINT."""
    settings = load_settings()
    setup_logging(app.name, settings.log_level)
    setup_tracing(app.name, settings.telemetry)

    async def main() -> None:
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_event.set)
        await serve(app, settings, stop_event)
        await _finish_leftover_tasks(app.name)

    try:
        # uvloop (libuv) rather than asyncio's own loop: less CPU per gRPC call and
        # per database round trip (placement's claims 1.20 -> 1.05 ms, releases
        # 1.45 -> 1.17 ms, bench/placement, 1,000 providers on PostgreSQL).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    finally:
        if settings.telemetry.exporter != "none":
            shutdown_tracing()


LEFTOVER_GRACE_S = 5.0


async def _finish_leftover_tasks(name: str) -> None:
    """Give tasks still running after the graceful stop a short while, then go.

    Seen under load: a request cancelled at the end of the grace period kept
    waiting on database cleanup after the engine was closed, and asyncio.run
    waited for it forever, so SIGTERM never ended the process. Every write
    is transactional, so leaving without those tasks loses nothing.
    """
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in leftovers:
        task.cancel()
    if not leftovers:
        return
    _, stuck = await asyncio.wait(leftovers, timeout=LEFTOVER_GRACE_S)
    if stuck:
        log.warning("%s: %d task(s) did not stop; exiting without them", name, len(stuck))
        logging.shutdown()
        os._exit(0)
