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
        allowed = request.state.caller.models
        return JSONResponse(model_list([c for c in self.registry.cards() if allowed is None or c["id"] in allowed]))

    async def retrieve(self, request: Request) -> JSONResponse:
        model_id = request.path_params["model_id"]
        request.state.caller.require_model(model_id)
        return JSONResponse(self.registry.get(model_id).card())
