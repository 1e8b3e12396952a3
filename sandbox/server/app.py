"""The FastAPI application factory.

The Docker runtime, agent client and session manager live in the lifespan, not in
import-time globals, so each app (and each test) owns its own. Every route is
served at its bare path and again under ``/api/v1``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from .. import __version__
from ..backends import RESOURCE_TYPES
from ..config import Settings
from ..protocol import Envelope
from ..recording import Recorder
from ..runtime.agent import AgentClient
from ..runtime.base import Runtime
from ..runtime.docker import DockerRuntime
from ..runtime.images import ImageService
from ..sessions.manager import SessionManager
from ..sessions.registry import ToolRegistry
from ..sessions.table import Clock
from .dedup import RequestDeduplication
from .deps import Services, require_api_key, tenant_of_scope
from .envelope import TraceMiddleware, install_error_handlers
from .limits import BodySizeLimit
from .live_view import LiveViews
from .metrics import ServerMetrics
from .routes import execute, init, metrics, recordings, sessions, system, trajectories, ui, ui_vnc

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

# Documented on every envelope route, so the OpenAPI document (and a client or a
# fuzzer generated from it) knows what errors look like.
_ENVELOPE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Envelope, "description": "Success: code 0 and the result in `data`."},
    "4XX": {
        "model": Envelope,
        "description": "1001 tool or endpoint not found (404); 1002 parameter error naming "
        "the field in `data.field` (400, 405, 413 for a body over `max_body_bytes`); "
        "1003 session error (409); a missing or wrong API key (401).",
    },
    "5XX": {
        "model": Envelope,
        "description": "2001 container, agent or Docker failure (502); 2002 timeout (504); "
        "5000 unexpected error, the trace id in the message (500).",
    },
}


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    agents: AgentClient | None = None,
    request_shutdown: Callable[[], None] | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    """Build the API server.

    Args:
        settings: Server settings; read from the environment when omitted.
        runtime: Runtime to use instead of the one `settings.runtime` names (tests
            inject fakes).
        agents: Agent client to use instead of a new one.
        request_shutdown: Called after ``/shutdown`` destroyed every session; the
            ``sandbox serve`` command passes one that stops uvicorn.
        clock: The time sessions are created, used and expire by (tests pass a
            fake to expire sessions without sleeping).
    """
    settings = settings or Settings()
    app = FastAPI(
        title="sandbox",
        version=__version__,
        summary="Isolated Docker execution environments for AI agents.",
        lifespan=_lifespan(
            settings, runtime, agents, request_shutdown or _no_process_to_stop, clock
        ),
    )
    install_error_handlers(app)
    _include_routes(app)
    # Outermost last: the trace id is set first, so every answer below carries it;
    # an oversized body is refused before de-duplication records anything, and
    # de-duplication itself checks the API key before it replays or records.
    app.add_middleware(
        RequestDeduplication,
        identify=functools.partial(tenant_of_scope, settings),
        ttl_s=settings.dedup_ttl_s,
        max_bytes=settings.dedup_max_bytes,
        max_entries=settings.dedup_max_entries,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(TraceMiddleware)
    return app


def _lifespan(
    settings: Settings,
    runtime: Runtime | None,
    agents: AgentClient | None,
    request_shutdown: Callable[[], None],
    clock: Clock,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: makes the runtime, agent client and session manager, and stops them."""
    server_metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        docker_runtime = runtime or make_runtime(settings)
        agent_client = agents or AgentClient(
            reply_max_bytes=settings.agent_reply_max_bytes,
            network_backend=docker_runtime.agent_network(),
        )
        offered = settings.resource_types  # None: every resource type
        registry = ToolRegistry(r for r in RESOURCE_TYPES if offered is None or r.name in offered)
        images = ImageService(docker_runtime, settings.images_dir, settings.image_namespace)
        manager = SessionManager(settings, docker_runtime, agent_client, registry, images, clock)
        recorder = Recorder(
            settings.recording_dir,
            redact_keys=settings.recording_redact_keys,
            max_age_s=settings.recording_max_age_s,
            max_bytes=settings.recording_max_bytes,
            clock=clock,
        )
        app.state.services = Services(
            settings=settings,
            runtime=docker_runtime,
            registry=registry,
            images=images,
            sessions=manager,
            request_shutdown=request_shutdown,
            live_views=LiveViews.start(settings.live_view),
            metrics=server_metrics,
            recorder=recorder,
        )
        server_metrics.watch(app.state.services)
        await manager.start()
        log.info("sandbox server %s ready (server id %s)", __version__, settings.server_id)
        try:
            yield
        finally:
            await manager.stop()
            # Every call queued before shutdown is stored before the process ends.
            await asyncio.to_thread(recorder.close)
            await agent_client.aclose()
            docker_runtime.close()
            log.info("sandbox server stopped")

    return lifespan


def make_runtime(settings: Settings) -> Runtime:
    """The runtime `settings.runtime` names: one Docker engine, or a Docker Swarm."""
    if settings.runtime == "swarm":
        from ..runtime.swarm import SwarmRuntime  # only a swarm server needs it

        swarm = settings.swarm
        return SwarmRuntime(
            threads=settings.docker_threads,
            server_id=settings.server_id,
            session_network=swarm.session_network,
            internal_network=swarm.internal_network,
            session_subnet=swarm.session_subnet,
            internal_subnet=swarm.internal_subnet,
            encrypted=swarm.encrypted,
            relay=swarm.relay,
            relay_image=swarm.relay_image or f"{settings.image_namespace}/shell:latest",
            reservation_fraction=swarm.reservation_fraction,
            placement=swarm.placement,
            schedule_timeout_s=swarm.schedule_timeout_s,
            registry=swarm.registry,
            start_timeout_s=settings.container_start_timeout_s,
        )
    return DockerRuntime(threads=settings.docker_threads, session_network=settings.session_network)


def _include_routes(app: FastAPI) -> None:
    """Every router at its bare path and under ``/api/v1``; all but health need the key.

    The web page (``/ui``) is at its bare path only; its page, assets and login
    need no key, what it reads does.
    """
    guarded = [Depends(require_api_key)]
    app.include_router(ui.public, include_in_schema=False)
    app.include_router(ui_vnc.public, include_in_schema=False)
    app.include_router(ui.router, dependencies=guarded, responses=_ENVELOPE_RESPONSES)
    app.include_router(ui_vnc.router, dependencies=guarded, responses=_ENVELOPE_RESPONSES)
    for prefix in ("", API_PREFIX):
        app.include_router(
            system.public,
            prefix=prefix,
            responses=_ENVELOPE_RESPONSES,
            generate_unique_id_function=_op_id(prefix),
        )
        for router in (
            execute.router,
            sessions.router,
            init.router,
            system.router,
            trajectories.router,
            recordings.router,
        ):
            app.include_router(
                router,
                prefix=prefix,
                dependencies=guarded,
                responses=_ENVELOPE_RESPONSES,
                generate_unique_id_function=_op_id(prefix),
            )
        app.include_router(
            metrics.router,
            prefix=prefix,
            dependencies=guarded,
            generate_unique_id_function=_op_id(prefix),
        )


def _op_id(prefix: str) -> Callable[[APIRoute], str]:
    """OpenAPI operation ids that stay unique with every route mounted twice."""
    tag = "v1_" if prefix else ""

    def generate(route: APIRoute) -> str:
        return f"{tag}{route.name}"

    return generate


def _no_process_to_stop() -> None:
    log.info("shutdown requested; this embedded app has no process to stop")


__all__ = ["API_PREFIX", "create_app", "make_runtime"]
