"""A Responses request as the chat completion request the engines already serve, and 400s mapped back.

Each chat message remembers the Responses field it came from, so an error the chat checks raise
(`messages[3].content[0].image_url`, `response_format.json_schema.schema`) names the field the client sent
(`input[2].content[0].image_url`, `text.format.schema`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from pydantic import ValidationError

from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.responses import (
    FormatJSONObject,
    FormatJSONSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionToolChoice,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    ResponsesRequest,
)
from serve_app.protocol.validation import param_path

PREVIOUS = "previous_response_id"  # where items carried over from the previous response come from
_MESSAGE_PARAM = re.compile(r"^messages\[(\d+)\]")
_TOOL_PARAM = re.compile(r"^tools\[(\d+)\]\.function\.")
_CHAT_PARAMS = {"messages": "input", "response_format.json_schema.schema": "text.format.schema",
                "reasoning_effort": "reasoning"}


@dataclass
class ChatForm:
    chat: ChatCompletionRequest
    origins: list[str]  # per chat message, the Responses field it came from

    def responses_params(self) -> AbstractContextManager[None]:
        """Chat-side 400s raised inside the block name Responses fields instead."""
        return _responses_params(self.origins)


def responses_param(chat_param: str | None, origins: list[str]) -> str | None:
    """The Responses field a chat request's field came from."""
    if chat_param is None:
        return None
    if chat_param in _CHAT_PARAMS:
        return _CHAT_PARAMS[chat_param]
    if chat_param.startswith("response_format"):
        return "text.format"
    if found := _MESSAGE_PARAM.match(chat_param):
        origin = origins[int(found.group(1))]
        return origin if origin in (PREVIOUS, "instructions") else origin + chat_param[found.end():]
    return _TOOL_PARAM.sub(r"tools[\1].", chat_param)


@contextmanager
def _responses_params(origins: list[str]) -> Iterator[None]:
    try:
        yield
    except InvalidRequest as exc:
        param = responses_param(exc.param, origins)
        if param != exc.param and exc.param is not None:
            exc.message, exc.param = exc.message.replace(exc.param, param), param
            exc.args = (exc.message,)
        raise


def to_chat(request: ResponsesRequest, history: list[InputItem]) -> ChatForm:
    """The chat request for `request`, whose conversation so far (from `previous_response_id`) is `history`."""
    messages: list[dict] = []
    origins: list[str] = []
    if request.instructions is not None:
        messages.append({"role": "system", "content": request.instructions})
        origins.append("instructions")
    own = request.input_items()
    field = "input" if isinstance(request.input, str) else "input[{}]"
    items = [(PREVIOUS, item) for item in history] + [(field.format(i), item) for i, item in enumerate(own)]
    if not items:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    called: set[str] = set()
    for origin, item in items:
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": _chat_content(item)})
            origins.append(origin)
        elif isinstance(item, FunctionCallItem):
            called.add(item.call_id)
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            if messages and messages[-1]["role"] == "assistant":  # one assistant turn: its text, then its calls
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
                origins.append(origin)
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in called:
                raise InvalidRequest(f"No tool call found for function call output with call_id {item.call_id}.",
                                     param=f"{origin}.call_id")
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text()})
            origins.append(origin)
        # reasoning items: earlier thinking is not shown to the model again
    with _responses_params(origins):
        return ChatForm(_validated(_chat_body(request, messages)), origins)


def _validated(body: dict) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:  # only what the Responses models let through and chat refuses
        error = exc.errors(include_url=False)[0]
        raise InvalidRequest(error["msg"], param=param_path(tuple(error["loc"])) or None) from None


def _chat_content(item: MessageItem) -> str | list[dict]:
    if isinstance(item.content, str) or item.role == "assistant":
        return item.text()
    parts: list[dict] = []
    for part in item.content:
        if isinstance(part, InputText):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, InputImage):
            detail = "high" if part.detail == "original" else part.detail
            parts.append({"type": "image_url", "image_url": {"url": part.image_url, "detail": detail}})
    return parts


def _chat_body(request: ResponsesRequest, messages: list[dict]) -> dict:
    body: dict = {"model": request.model, "messages": messages, "stream": request.streamed(),
                  "temperature": request.temperature, "top_p": request.top_p,
                  "max_completion_tokens": request.max_output_tokens, "user": request.user,
                  "parallel_tool_calls": request.parallel_tool_calls is not False}
    if request.tools is not None:
        body["tools"] = [{"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
                         for tool in request.tools]
    choice = request.tool_choice
    if isinstance(choice, FunctionToolChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        body["tool_choice"] = choice
    if request.reasoning is not None and request.reasoning.effort is not None:
        body["reasoning_effort"] = request.reasoning.effort
    fmt = request.format()
    if isinstance(fmt, FormatJSONObject):
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, FormatJSONSchema):
        body["response_format"] = {"type": "json_schema", "json_schema": fmt.model_dump(
            by_alias=True, exclude={"type"}, exclude_none=True)}
    return body
