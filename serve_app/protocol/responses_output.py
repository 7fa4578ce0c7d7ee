"""What /v1/responses answers: output items, usage and the response object, in OpenAI's shapes, and input items
as they are kept (each with an id) for `previous_response_id` and GET .../input_items."""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from serve_app.protocol.responses import FunctionToolChoice, InputItem, MessageItem, ResponsesRequest


class Answer(Protocol):
    """One choice's answer with thinking and tool calls read out (gateway/tool_calls.py's AssistantAnswer)."""

    content: str | None
    tool_calls: list[dict] | None
    finish_reason: str | None
    reasoning: str | None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def output_text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_text_part(text: str) -> dict:
    return {"type": "reasoning_text", "text": text}


def message_item(item_id: str, text: str | None, status: str) -> dict:
    content = [] if text is None else [output_text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None, status: str) -> dict:
    content = [] if text is None else [reasoning_text_part(text)]
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def finish_status(finish_reason: str | None) -> tuple[str, dict | None]:
    """The response's status and `incomplete_details` for the engine's finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def output_items(answer: Answer, status: str) -> list[dict]:
    """Thinking, then the text, then one item per function call; a message even when the text is empty, so
    every answer without calls has one."""
    item_status = "incomplete" if status == "incomplete" else "completed"
    items = []
    if answer.reasoning:
        items.append(reasoning_item(new_id("rs"), answer.reasoning, item_status))
    if answer.content or not answer.tool_calls:
        items.append(message_item(new_id("msg"), answer.content or "", item_status))
    for call in answer.tool_calls or []:
        function = call["function"]
        items.append(function_call_item(new_id("fc"), call["id"], function["name"], function["arguments"],
                                        "completed"))
    return items


def usage_body(input_tokens: int, output_tokens: int) -> dict:
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def response_body(response_id: str, created_at: int, request: ResponsesRequest, *, status: str,
                  output: list[dict], usage: dict | None = None, incomplete_details: dict | None = None,
                  error: dict | None = None) -> dict:
    """The response object, the request's settings echoed with OpenAI's defaults filled in."""
    choice = request.tool_choice
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None, "background": False,
        "error": error, "incomplete_details": incomplete_details, "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens, "max_tool_calls": None, "model": request.model,
        "output": output, "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": (request.reasoning.model_dump() if request.reasoning is not None
                      else {"effort": None, "summary": None}),
        "store": request.stored(),
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {"format": request.format().model_dump(by_alias=True, exclude_none=True)},
        "tool_choice": (choice.model_dump() if isinstance(choice, FunctionToolChoice) else choice or "auto"),
        "tools": [tool.model_dump() for tool in request.tools or []],
        "top_p": 1.0 if request.top_p is None else request.top_p, "truncation": "disabled",
        "usage": usage, "user": request.user, "metadata": request.metadata or {},
    }


_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def stored_input(items: list[InputItem]) -> list[dict]:
    """Input items as kept with a response: each with an id, message text as content parts."""
    kept = []
    for item in items:
        body: dict[str, Any] = item.model_dump(by_alias=True, exclude_none=True)
        if isinstance(item, MessageItem):
            body.setdefault("status", "completed")
            if isinstance(item.content, str):
                body["content"] = [output_text_part(item.content) if item.role == "assistant"
                                   else {"type": "input_text", "text": item.content}]
        if "id" not in body:  # reasoning items always carry theirs
            body["id"] = new_id(_ID_PREFIXES[item.type])
        kept.append(body)
    return kept
