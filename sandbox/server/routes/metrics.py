"""Prometheus metrics (``GET /metrics``), guarded by the API key like every endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..deps import ServicesDep

router = APIRouter(tags=["system"])

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text format (OpenMetrics when the Accept header "
            "asks for it).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "4XX": {"description": "An error envelope: 401 without the API key.", "content": _ERROR},
        "5XX": {"description": "An error envelope (5000).", "content": _ERROR},
    },
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Sessions, tool calls and their latency, session starts, pools and uptime, for Prometheus."""
    body, media_type = services.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=media_type)
