"""The Responses API (/v1/responses): a request becomes the chat request the engines already serve and runs
through the chat route's own steps (gateway/chat_pipeline.py); its answer comes back as output items, whole
or as OpenAI's semantic stream events.

Stored responses (`store`, default true) are kept in the state store for GET, DELETE, `input_items` and
`previous_response_id`; a key sees only its own. When the store cannot be reached, `store: true` requests are
refused with a 503 before any model work (an answer that could not be kept would break the client's next
`previous_response_id`), while `store: false` requests are answered as usual."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.errors import InvalidRequest, NotFound, store_unavailable
from serve_app.gateway.body import JSONLimits, read_json
from serve_app.gateway.chat_pipeline import ChatPipeline
from serve_app.gateway.context import RequestContext, context_of
from serve_app.gateway.registry import ServedModel
from serve_app.gateway.responses_stream import ResponseEvents, response_events
from serve_app.gateway.routes.listing import list_page, page_params
from serve_app.gateway.streaming import sse_response
from serve_app.protocol.responses import (
    INPUT_ITEMS,
    INPUT_TOKENS_FIELDS,
    InputItem,
    ResponsesRequest,
    parse_request,
)
from serve_app.protocol.responses_chat import ChatForm, to_chat
from serve_app.protocol.responses_output import (
    finish_status,
    new_id,
    output_items,
    response_body,
    stored_input,
    usage_body,
)
from serve_app.protocol.validation import refuse_unrecognized
from serve_app.state.responses import ResponseRepository


class ResponsesRoute:
    def __init__(self, pipeline: ChatPipeline, responses: ResponseRepository, body_limits: JSONLimits) -> None:
        self.pipeline = pipeline
        self.responses = responses
        self.body_limits = body_limits

    async def create(self, request: Request) -> Response:
        context = context_of(request)
        owner = context.authenticated().name
        req = parse_request(await read_json(request, self.body_limits))
        history = await self._history(owner, req)
        form, model = self._checked(context, req, history)
        if req.stored() and req.previous_response_id is None:  # (a previous response was just read from it)
            await self.responses.reachable()
        with form.responses_params():
            chat = await self.pipeline.with_images(context, form.chat, model)
        await self.pipeline.admit(context, chat, model)
        response_id, created_at = new_id("resp"), int(time.time())
        kept_input = stored_input(history) + stored_input(req.input_items())

        async def finish(status: str, output: list[dict], usage: dict, incomplete: dict | None) -> dict:
            body = response_body(response_id, created_at, req, status=status, output=output, usage=usage,
                                 incomplete_details=incomplete)
            await self._keep(owner, req, body, kept_input)
            return body

        if not req.streamed():
            result = await self.pipeline.complete(context, chat, model)
            text, finish_reason, _ = result.choices[0]
            status, incomplete = finish_status(finish_reason)
            output = output_items(self.pipeline.answer(chat, model, text, finish_reason), status)
            usage = usage_body(result.usage.prompt_tokens, result.usage.completion_tokens)
            return JSONResponse(await finish(status, output, usage, incomplete))
        first, steps = await self.pipeline.stream(context, chat, model)
        events = ResponseEvents(response_body(response_id, created_at, req, status="in_progress", output=[]))
        return sse_response(response_events(events, first, steps, chat, model, context.usage, finish),
                            done_marker=False, named_events=True, error_event=events.failed)

    async def input_tokens(self, request: Request) -> JSONResponse:
        """POST /v1/responses/input_tokens: the input tokens the request would use, counted by the model's own
        chat template and tokenizer (tool definitions, instructions, a previous response and images included).
        Nothing is generated or kept; the request is checked as `create` checks it."""
        context = context_of(request)
        body = await read_json(request, self.body_limits)
        refuse_unrecognized(body.keys() - INPUT_TOKENS_FIELDS)  # e.g. `stream`: nothing here would honour it
        req = parse_request(body)
        form, model = self._checked(context, req, await self._history(context.authenticated().name, req))
        with form.responses_params():
            chat = await self.pipeline.with_images(context, form.chat, model)
            await self.pipeline.registry.warm(model)
            tokens = await model.backend.count_tokens(chat)  # its 400s name the Responses field
        return JSONResponse({"object": "response.input_tokens", "input_tokens": tokens})

    def _checked(self, context: RequestContext, req: ResponsesRequest,
                 history: list[InputItem]) -> tuple[ChatForm, ServedModel]:
        """The chat request a Responses request means, checked as the chat route checks it (its 400s name the
        Responses fields), and the model it may use."""
        form = to_chat(req, history)
        with form.responses_params():
            self.pipeline.check(form.chat)
            model = self.pipeline.model_for(context, form.chat)
        if req.reasoning is not None and model.reasoning_parser is None:
            raise InvalidRequest(f"Model `{model.id}` does not think before answering: `reasoning` is only "
                                 "accepted by reasoning models.", param="reasoning")
        return form, model

    async def _history(self, owner: str, req: ResponsesRequest) -> list[InputItem]:
        """The conversation `previous_response_id` continues: its input items, then its output items."""
        if req.previous_response_id is None:
            return []
        items = await self.responses.conversation(owner, req.previous_response_id)
        if items is None:
            raise InvalidRequest(f"Previous response with id '{req.previous_response_id}' not found.",
                                 param="previous_response_id", code="previous_response_not_found")
        return INPUT_ITEMS.validate_python(items)

    async def _keep(self, owner: str, req: ResponsesRequest, body: dict, kept_input: list[dict]) -> None:
        if not req.stored():
            return
        try:
            await self.responses.save(owner, body, kept_input)
        except SQLAlchemyError as exc:  # the store failed mid-write: the same 503 (or stream event) as one down
            raise store_unavailable() from exc

    @staticmethod
    async def _owned(request: Request, read: Callable[[str, str], Awaitable[Any]]) -> Any:
        response_id = request.path_params["response_id"]
        found = await read(context_of(request).authenticated().name, response_id)
        if found is None:
            raise NotFound("response", response_id, param="response_id")
        return found

    async def retrieve(self, request: Request) -> JSONResponse:
        return JSONResponse(await self._owned(request, self.responses.get))

    async def delete(self, request: Request) -> JSONResponse:
        response_id = request.path_params["response_id"]
        if not await self.responses.delete(context_of(request).authenticated().name, response_id):
            raise NotFound("response", response_id, param="response_id")
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: Request) -> JSONResponse:
        """The items the response was answered from (the conversation before it included), newest first unless
        `order=asc`, paged with `limit` and `after` (an item id)."""
        items = await self._owned(request, self.responses.input_items)
        limit, after = page_params(request, default_limit=20, most=100)
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("`order` must be asc or desc.", param="order")
        if order == "desc":
            items = items[::-1]
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        return list_page(items[:limit], len(items) > limit)
