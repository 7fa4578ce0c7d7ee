"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.gateway.context import context_of
from serve_app.gateway.registry import ModelRegistry
from serve_app.protocol.models import model_list


class ModelsRoute:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def list_models(self, request: Request) -> JSONResponse:
        allowed = context_of(request).authenticated().models
        return JSONResponse(model_list([await self._card(m) for m in self.registry.models()
                                        if allowed is None or m.id in allowed]))

    async def retrieve(self, request: Request) -> JSONResponse:
        model_id = request.path_params["model_id"]
        context_of(request).authenticated().require_model(model_id)
        return JSONResponse(await self._card(self.registry.get(model_id)))

    async def _card(self, model) -> dict:
        return {**model.card(), "status": await self.registry.state(model)}
