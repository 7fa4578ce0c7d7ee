"""Tools (function calling) and structured outputs on chat completions: OpenAI's request shapes, and the one
JSON schema a request's answer must follow when it is constrained.

Constrained answers use a canonical shape both engines decode to: for `response_format` the answer is the
user's JSON itself; for `tool_choice` `required` or a named function it is
`{"tool_calls": [{"name": ..., "arguments": {...}}]}`, which the gateway turns into OpenAI's `tool_calls`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from serve_app.protocol.wire import FUNCTION_NAME, Wire


class FunctionDefinition(Wire):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments object.")
    strict: bool | None = None


class Tool(Wire):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(Wire):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(Wire):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(Wire):
    name: str
    arguments: str = Field(description="The arguments as a JSON string.")
    # Added by the OpenAI SDKs' streaming helpers to the messages they assemble, which clients send back as
    # the next turn's history: accepted, and not shown to the model (`arguments` says the same).
    parsed_arguments: Any = None


class ToolCall(Wire):
    id: str
    type: Literal["function"]
    function: FunctionCall
    index: int | None = None  # the stream position the SDKs' streaming helpers keep: not part of the history


class JSONSchemaFormat(Wire):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


@dataclass(frozen=True)
class Constraint:
    """What a constrained answer must be: JSON following `schema`."""

    schema: dict[str, Any]
    kind: Literal["json", "tool_calls"]


def arguments_schema(function: FunctionDefinition) -> dict[str, Any]:
    return function.parameters if function.parameters is not None else {"type": "object"}


def tool_calls_schema(tools: list[Tool], parallel: bool) -> dict[str, Any]:
    """The canonical tool-call answer for `tools`: one call, or with `parallel` one or more."""
    calls = [{"type": "object", "properties": {"name": {"const": t.function.name},
                                                 "arguments": arguments_schema(t.function)},
              "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    items: dict[str, Any] = {"type": "array", "items": call, "minItems": 1}
    if not parallel:
        items["maxItems"] = 1
    return {"type": "object", "properties": {"tool_calls": items}, "required": ["tool_calls"],
            "additionalProperties": False}


def tool_prompt(tools: list[Tool]) -> str:
    """For chat templates that know no tools: the tools described in a system message, and how to call one
    (the hermes format, which the `hermes` parser reads back)."""
    import json

    described = "\n".join(json.dumps({"type": "function", "function": t.function.model_dump(exclude_none=True)})
                          for t in tools)
    return ("You may call functions to help answer. The functions, as JSON Schema:\n<tools>\n" + described
            + "\n</tools>\nTo call one, answer with only\n<tool_call>\n{\"name\": <function name>, "
            "\"arguments\": <arguments object>}\n</tool_call>\n(one block per call).")

