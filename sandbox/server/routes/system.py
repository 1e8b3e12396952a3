"""Server-wide endpoints: health, tools, warmup, status and shutdown."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import JSONResponse

from ... import __version__
from ...errors import BackendError, InvalidParams
from ...protocol import ServiceState, WarmupRequest, WorkerRequest
from ...runtime.images import ImageState
from ..deps import (
    AdminDep,
    Services,
    ServicesDep,
    TenantDep,
    WorkerHeader,
    ensure_admin,
    worker_of,
)
from ..envelope import failure, respond, success

public = APIRouter(tags=["system"])
# The longest `warmup(wait=True)` waits for a shared service to start and index its
# default collection; past it the answer reports the state the service is in.
_SERVICE_WAIT_S = 900.0
router = APIRouter(tags=["system"])


@public.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    """Liveness, Docker reachability, version and uptime (needs no API key).

    It never waits for the start-up adoption of an earlier run's containers
    (``recovering`` says whether that is still going on).
    """
    docker_ok = await services.runtime.ping(timeout=2.0)
    data = {
        "status": "ok" if docker_ok else "degraded",
        "docker": "ok" if docker_ok else "unreachable",
        "version": __version__,
        "uptime_s": round(time.time() - services.started_at, 1),
        "server_id": services.settings.server_id,
        "sessions": len(services.sessions.sessions()),
        "recovering": services.sessions.recovering,
    }
    return respond(success(data))


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """200 when the server can start sessions (Docker answers), else 502."""
    if not await services.runtime.ping(timeout=2.0):
        raise BackendError("the Docker engine does not answer")
    return respond(success({"ready": True}))


@router.get("/tools")
async def tools(services: ServicesDep) -> JSONResponse:
    """Every tool with its description and the JSON schema of its parameters."""
    described = services.registry.describe()
    listing = {"tools": described, "count": len(described)}
    return respond(success(listing), top_level=listing)


@router.get("/tools/{name}/schema")
async def tool_schema(name: str, services: ServicesDep) -> JSONResponse:
    """One tool (``vm:click``, ``vm.click`` or an unambiguous ``click``): its description
    and the JSON schema of its parameters."""
    full_name = services.registry.resolve(name).full_name
    (described,) = [tool for tool in services.registry.describe() if tool["name"] == full_name]
    return respond(success(described), top_level=described)


def _images_of(services: Services, resources: list[str]) -> dict[str, str]:
    """Resource type -> image name; every resource type when none is given."""
    names = resources or services.registry.resource_names
    images = {}
    for index, name in enumerate(names):
        resource = services.registry.resource(name, field=f"resources.{index}")
        images[resource.name] = resource.image
    return images


async def _warmup_status(services: Services, images: dict[str, str]) -> dict[str, object]:
    await asyncio.gather(*(services.images.is_present(image) for image in set(images.values())))
    report: dict[str, object] = {}
    for resource, image in images.items():
        entry = services.images.status(image).as_dict()
        service = await services.sessions.service_status(resource)
        if service is not None:
            entry["service"] = service.model_dump(mode="json", exclude_unset=True)
        pools = services.sessions.pool_status(resource)
        if pools:
            entry["pools"] = [pool.model_dump() for pool in pools]
        report[resource] = entry
    return {"resources": report}


def _pool_sizes(services: Services, body: WarmupRequest) -> dict[str, int]:
    """Resource type -> pool size the request asks for (validated)."""
    if body.pool_size is None:
        return {}
    if isinstance(body.pool_size, int):
        names = body.resources or services.registry.resource_names
        return {
            name: body.pool_size
            for index, name in enumerate(names)
            if not services.registry.resource(name, field=f"resources.{index}").shared
        }
    for name in body.pool_size:
        if services.registry.resource(name, field=f"pool_size.{name}").shared:
            raise InvalidParams(
                f"pool_size.{name}: {name} sessions share one service container and have no pool",
                field=f"pool_size.{name}",
            )
    return dict(body.pool_size)


async def _wait_for_services(
    services: Services, resources: list[str], timeout: float = _SERVICE_WAIT_S
) -> None:
    """Until no shared service of `resources` is starting or indexing, or `timeout`.

    The deadline holds for the whole wait, status calls included: past it the
    caller reports the state each service is in.
    """

    async def settled() -> None:
        while True:
            states = await asyncio.gather(
                *(services.sessions.service_status(name) for name in resources)
            )
            if not any(state is not None and state.state.busy for state in states):
                return
            await asyncio.sleep(0.2)

    try:
        await asyncio.wait_for(settled(), timeout)
    except asyncio.TimeoutError:
        return


async def _service_failed(services: Services, resource: str) -> bool:
    status = await services.sessions.service_status(resource)
    return status is not None and status.state is ServiceState.FAILED


@router.post("/warmup")
async def warmup(body: WarmupRequest, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    """Build missing images and start shared services; waits only if `wait` is true.

    With `wait`, the answer comes once every image is built and every shared
    service (``rag``) has finished indexing its default collection. Pool sizes
    (`pool_size`) serve every tenant, so only an operator's tenant may set them.
    """
    if body.pool_size is not None:
        ensure_admin(services.settings, tenant, "set pool_size")
    sizes = _pool_sizes(services, body)
    images = _images_of(services, [*body.resources, *sizes] if body.resources else [])
    tasks = [services.images.ensure_in_background(image) for image in set(images.values())]
    for resource in images:
        services.sessions.warm_service(resource)
    if body.wait:
        await asyncio.gather(*tasks, return_exceptions=True)
    for resource, size in sizes.items():
        services.sessions.set_pool_size(resource, size)
    if body.wait:
        await _wait_for_services(services, list(images))
        timeout = services.settings.container_start_timeout_s * 2
        await services.sessions.wait_for_pools(list(sizes), timeout)
    status = await _warmup_status(services, images)
    failed = [
        resource
        for resource, image in images.items()
        if services.images.status(image).state is ImageState.FAILED
        or await _service_failed(services, resource)
    ]
    if body.wait and failed:
        return respond(failure(BackendError(f"warmup failed for {', '.join(failed)}", data=status)))
    return respond(success(status))


@router.get("/warmup/status")
async def warmup_status(services: ServicesDep) -> JSONResponse:
    """Per resource type: its image and whether it is missing, building, ready or failed."""
    return respond(success(await _warmup_status(services, _images_of(services, []))))


async def _shutdown(services: Services, background: BackgroundTasks) -> JSONResponse:
    destroyed = await services.sessions.destroy_all()
    background.add_task(services.request_shutdown)
    return respond(success({"destroyed": destroyed, "stopping": True}))


@router.post("/shutdown")
async def shutdown(
    services: ServicesDep, background: BackgroundTasks, _admin: AdminDep
) -> JSONResponse:
    """Destroy every session (every tenant's) and stop the server; operators only."""
    return await _shutdown(services, background)


@router.post("/server/shutdown")
async def server_shutdown(
    services: ServicesDep, background: BackgroundTasks, _admin: AdminDep
) -> JSONResponse:
    """Same as /shutdown (the AgentFlow client's path)."""
    return await _shutdown(services, background)


@router.post("/lifecycle/heartbeat")
async def heartbeat(
    services: ServicesDep,
    tenant: TenantDep,
    body: WorkerRequest | None = None,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Refresh the expiry of all the worker's sessions (none is not an error)."""
    worker_id = worker_of(body.worker_id if body else None, x_worker_id)
    sessions = services.sessions.sessions(worker_id, tenant=tenant)
    if sessions:  # refresh, as /session/refresh, but a worker with none is no error here
        services.sessions.refresh(worker_id, tenant=tenant)
    data = {
        "worker_id": worker_id,
        "refreshed": [s.session_id for s in sessions],
        "ttl_s": services.settings.session_ttl_s,
    }
    return respond(success(data))


@router.post("/lifecycle/status")
async def status(
    services: ServicesDep,
    tenant: TenantDep,
    body: WorkerRequest | None = None,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """The server's counters, and the worker's sessions when a worker is named."""
    worker_id = (body.worker_id if body else None) or x_worker_id
    data: dict[str, object] = {
        "server": {
            "version": __version__,
            "server_id": services.settings.server_id,
            "uptime_s": round(time.time() - services.started_at, 1),
            **services.sessions.stats().model_dump(),
        },
        "resource_types": services.registry.resource_names,
    }
    if worker_id:
        data["worker_id"] = worker_id
        found = services.sessions.sessions(worker_id, tenant=tenant)
        data["sessions"] = [s.info().model_dump() for s in found]
    return respond(success(data))


@router.post("/worker/disconnect")
async def disconnect(
    services: ServicesDep,
    tenant: TenantDep,
    body: WorkerRequest | None = None,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Destroy all the worker's sessions (none is not an error)."""
    worker_id = worker_of(body.worker_id if body else None, x_worker_id)
    sessions = services.sessions.sessions(worker_id, tenant=tenant)
    if sessions:
        await services.sessions.destroy(worker_id, tenant=tenant)
    return respond(success({"worker_id": worker_id, "destroyed": [s.session_id for s in sessions]}))
