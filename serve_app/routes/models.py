"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.protocol.models import model_list
from serve_app.routing import ModelRegistry


class ModelsRoute:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def list(self, request: Request) -> JSONResponse:
        return JSONResponse(model_list(self.registry.cards()))

    async def retrieve(self, request: Request) -> JSONResponse:
        return JSONResponse(self.registry.get(request.path_params["model_id"]).card())
