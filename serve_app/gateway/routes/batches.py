"""The Batch API (/v1/batches): a batch is checked whole before it is accepted (its file, endpoint, custom_ids
and models, a 400 naming the line), then left to the batch runner deployment, which runs it at low priority."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.batches.input import BATCH_ENDPOINTS, check_batch_lines, parse_batch_file
from serve_app.config import StateConfig
from serve_app.errors import APIError, Conflict, InvalidRequest, NotFound, RateLimited
from serve_app.gateway.body import JSONLimits, read_json
from serve_app.gateway.context import context_of
from serve_app.gateway.registry import ModelRegistry
from serve_app.gateway.routes.listing import list_page, page_params
from serve_app.protocol.batches import BatchCreateRequest
from serve_app.protocol.validation import parse_model
from serve_app.security.auth import Caller
from serve_app.state.batches import BatchRepository, batch_object
from serve_app.state.files import FileRepository

log = logging.getLogger(__name__)


class BatchesRoute:
    def __init__(self, batches: BatchRepository, files: FileRepository, registry: ModelRegistry,
                 config: StateConfig, body_limits: JSONLimits,
                 wake_runner: Callable[[], Awaitable[None]] | None = None) -> None:
        self.batches = batches
        self.files = files
        self.registry = registry
        self.config = config
        self.body_limits = body_limits
        self.wake_runner = wake_runner

    def _may_use(self, caller: Caller, endpoint: str) -> Callable[[str], bool]:
        def known(model_id: str) -> bool:
            try:
                caller.require_model(model_id)
                self.registry.get(model_id).require(BATCH_ENDPOINTS[endpoint])
            except APIError:
                return False
            return True

        return known

    async def create(self, request: Request) -> JSONResponse:
        caller = context_of(request).authenticated()
        req = parse_model(BatchCreateRequest, await read_json(request, self.body_limits))
        if req.endpoint not in BATCH_ENDPOINTS:
            raise InvalidRequest(f"`endpoint` must be one of {list(BATCH_ENDPOINTS)}.", param="endpoint")
        row = await self.files.get(caller.name, req.input_file_id)
        if row is None:
            raise NotFound("File", req.input_file_id, param="input_file_id")
        if row.purpose != "batch":
            raise InvalidRequest(f"File {row.id} has purpose `{row.purpose}`, not `batch`.", param="input_file_id")
        lines = await asyncio.to_thread(parse_batch_file, await self.files.content(row),  # off the event loop
                                        self.config.max_batch_lines, self.body_limits.max_elements, "input_file_id")
        check_batch_lines(lines, req.endpoint, self._may_use(caller, req.endpoint))
        if await self.batches.unfinished_count(caller.name) >= self.config.max_batches_in_flight_per_key:
            raise RateLimited(f"Key `{caller.name}` already has {self.config.max_batches_in_flight_per_key} "
                              "unfinished batches; wait for one to end or cancel one.", code="batch_limit_reached")
        batch = await self.batches.create(caller.name, req.endpoint, row.id, req.completion_window, req.metadata,
                                          len(lines))
        await self._wake_runner()
        return JSONResponse(batch)

    async def _wake_runner(self) -> None:
        if self.wake_runner is not None:
            try:
                await self.wake_runner()
            except Exception as exc:  # noqa: BLE001 - the runner also polls; a lost wake-up only delays it
                log.warning("could not wake the batch runner: %s", exc)

    async def _owned(self, request: Request):
        batch_id = request.path_params["batch_id"]
        row = await self.batches.get(context_of(request).authenticated().name, batch_id)
        if row is None:
            raise NotFound("Batch", batch_id, param="batch_id")
        return row

    async def retrieve(self, request: Request) -> JSONResponse:
        return JSONResponse(batch_object(await self._owned(request)))

    async def cancel(self, request: Request) -> JSONResponse:
        row = await self._owned(request)
        if row.status in ("completed", "failed", "expired"):
            raise Conflict(f"Cannot cancel a batch with status `{row.status}`.", code="batch_not_cancellable")
        await self.batches.transition(row.id, ("validating", "in_progress"), "cancelling")
        await self._wake_runner()
        return JSONResponse(batch_object(await self._owned(request)))

    async def list(self, request: Request) -> JSONResponse:
        caller = context_of(request).authenticated()
        limit, after = page_params(request, default_limit=20, most=100)
        data, more = await self.batches.list(caller.name, limit, after)
        return list_page(data, more)
