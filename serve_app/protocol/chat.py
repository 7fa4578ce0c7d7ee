"""Chat completions: the request body (OpenAI fields plus vLLM's sampling extras) and response shapes."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from serve_app.errors import InvalidRequest
from serve_app.protocol.sampling import SamplingRequest
from serve_app.protocol.tools import (
    Constraint,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    tool_calls_schema,
)
from serve_app.protocol.wire import MAX_TOOLS, Wire

MAX_TOP_LOGPROBS = 20  # OpenAI's cap


class TextPart(Wire):
    type: Literal["text"]
    text: str


class ImageURL(Wire):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(Wire):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="Assistant messages: the calls it made.")
    tool_call_id: str | None = Field(None, description="Tool messages: the call this is the result of.")
    # What this endpoint's replies carry besides content, so a reply appended to the history as the SDKs
    # return it is a valid message. Not shown to the model: chat templates drop earlier turns' thinking, and
    # `parsed` (the SDKs' parse helpers) repeats the content.
    reasoning_content: str | None = Field(None, description="Assistant messages: the reply's thinking (ignored).")
    parsed: Any = Field(None, description="Assistant messages: the SDK's parsed content (ignored).")
    # OpenAI's assistant message fields, null in every reply the SDKs hand back (`model_dump()` keeps them):
    # a refusal is the assistant's text; annotations (citations) point into the content; this endpoint makes
    # no audio and no legacy `function_call`, so those two are null or the message is refused.
    refusal: str | None = Field(None, description="Assistant messages: a refusal, the reply's text.")
    annotations: list[dict[str, Any]] | None = Field(None, description="Assistant messages: citations (ignored).")
    audio: None = Field(None, description="Assistant messages: null (this endpoint answers no audio).")
    function_call: None = Field(None, description="Assistant messages: null (legacy; use tool_calls).")
    # After role and tool_calls, so its check can read them.
    content: str | list[ContentPart] | None = Field(None, validate_default=True)

    @field_validator("content")
    @classmethod
    def _content_unless_tool_calls(cls, content, info: ValidationInfo):
        assistant = info.data.get("role") == "assistant"
        if content is None and not (assistant and (info.data.get("tool_calls") or info.data.get("refusal"))):
            # Null only in assistant messages that carry tool_calls or a refusal; elsewhere it is missing.
            raise PydanticCustomError("missing", "Field required")
        return content

    @model_validator(mode="after")
    def _shape_per_role(self) -> ChatMessage:
        if self.role != "assistant" and (self.tool_calls is not None or self.refusal is not None):
            raise ValueError("only assistant messages carry tool_calls or a refusal")
        if (self.tool_call_id is not None) != (self.role == "tool"):
            raise ValueError("tool messages, and only they, need a tool_call_id")
        return self

    def text(self) -> str:
        if self.content is None:
            return self.refusal or ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class StreamOptions(Wire):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # OpenAI pads chunks against length side channels; nothing to pad


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = Field(False, description="Return each output token's log probability (vLLM engine).")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS,
                                     description="Also return this many most likely tokens at each position.")
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        None, description="Reasoning models only: `none` or `minimal` switch the thinking off (where the chat "
        "template can, e.g. Qwen3's); the other levels leave it on, as the model thinks.")
    user: str | None = None
    # What OpenAI's SDKs and clients send that changes nothing here, at the values that ask for nothing this
    # endpoint lacks (as the Responses route): other values stay 400s naming the field.
    safety_identifier: str | None = Field(None, max_length=1024, description="Like `user`.")
    prompt_cache_key: str | None = Field(None, max_length=1024, description="A routing hint; ignored.")
    service_tier: Literal["auto", "default"] | None = None
    modalities: list[Literal["text"]] | None = Field(None, description="Text out only (no audio answers).")
    store: Literal[False] | None = Field(
        None, description="false only: chat completions are not kept here (the Responses API keeps responses).")

    @field_validator("top_logprobs")
    @classmethod
    def _only_with_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top is not None and not info.data.get("logprobs"):
            raise ValueError("logprobs must be set to true if top_logprobs is used")
        return top

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, options: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if options is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return options

    def token_estimate(self) -> int:
        """Tokens this request may cost at most, estimated before tokenizing (4 characters a token): the
        prompt plus `n` times the completion cap it asks for."""
        chars = sum(len(m.text()) for m in self.messages)
        return chars // 4 + self.n * (self.token_budget() or 0)

    def thinks(self) -> bool:
        """False when the client switched a reasoning model's thinking off."""
        return self.reasoning_effort not in ("none", "minimal")

    def offered_tools(self) -> list[Tool]:
        """Tools the model is told about (none when `tool_choice` is `none`)."""
        return [] if not self.tools or self.tool_choice == "none" else list(self.tools)

    def tool_mode(self) -> str:
        """none, auto (the model may call), or forced (`required` or a named function: constrained)."""
        if not self.offered_tools():
            return "none"
        return "auto" if self.tool_choice in (None, "auto") else "forced"

    def constraint(self) -> Constraint | None:
        """The JSON the answer must be, decoded under a grammar; None for free text."""
        if self.tool_mode() == "forced":
            tools = self.offered_tools()
            if not isinstance(self.tool_choice, str):
                tools = [t for t in tools if t.function.name == self.tool_choice.function.name]
            # Several calls only when there are several tools to call: under the grammar, a model offered one
            # tool and an open-ended list repeats the same call until max_tokens (tests/e2e/test_responses.py)
            return Constraint(tool_calls_schema(tools, self.parallel_tool_calls and len(tools) > 1), "tool_calls")
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":  # OpenAI's JSON mode: an object, not any JSON value
            return Constraint({"type": "object"}, "json")
        return Constraint(fmt.json_schema.schema_ if fmt.json_schema.schema_ is not None else {}, "json")

    def check_tool_use(self) -> None:
        """Cross-field rules, each a 400 naming its field."""
        names = [t.function.name for t in self.tools or []]
        if len(set(names)) != len(names):
            raise InvalidRequest("Tool function names must be unique.", param="tools")
        if isinstance(self.tool_choice, BaseModel) and self.tool_choice.function.name not in names:
            raise InvalidRequest(f"tool_choice names function `{self.tool_choice.function.name}`, which is not "
                                 "among the tools.", param="tool_choice")
        if self.tool_choice not in (None, "none") and not names:
            raise InvalidRequest("tool_choice is set but no tools are given.", param="tool_choice")
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is None:
            raise InvalidRequest("response_format of type json_schema needs `json_schema`.",
                                 param="response_format.json_schema")
        if self.tool_mode() == "forced" and fmt is not None and fmt.type != "text":
            raise InvalidRequest("A required or named tool_choice cannot be combined with a JSON response_format.",
                                 param="response_format")
        if self.constraint() is not None and (self.ignore_eos or self.min_tokens):
            # A finished JSON answer can only end; holding the end back would leave no token to choose.
            raise InvalidRequest("ignore_eos and min_tokens cannot be combined with a JSON response_format or a "
                                 "required or named tool_choice.", param="ignore_eos" if self.ignore_eos
                                 else "min_tokens")
        called: set[str] = set()
        for i, message in enumerate(self.messages):
            called.update(call.id for call in message.tool_calls or [])
            if message.role == "tool" and message.tool_call_id not in called:
                raise InvalidRequest(f"messages[{i}] answers tool call `{message.tool_call_id}`, which no earlier "
                                     "assistant message made.", param=f"messages[{i}].tool_call_id")

    def token_budget(self) -> int | None:
        """Requested completion-token cap (max_completion_tokens wins, as in OpenAI's API)."""
        return self.max_completion_tokens or self.max_tokens

    def top_logprobs_wanted(self) -> int | None:
        """How many alternatives per token the answer should carry (None: no log probabilities)."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def image_count(self) -> int:
        return len(self.image_parts())

    def image_parts(self) -> list[tuple[str, ImagePart]]:
        """Every image part, in order, with its parameter path (for errors)."""
        return [(f"messages[{m}].content[{p}].image_url", part)
                for m, message in enumerate(self.messages) if isinstance(message.content, list)
                for p, part in enumerate(message.content) if isinstance(part, ImagePart)]


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def logprobs_body(entries: list[dict] | None) -> dict | None:
    return None if entries is None else {"content": entries, "refusal": None}


def completion_body(completion_id: str, model: str, answers: list, usage: dict) -> dict:
    """`answers`: per choice, an answer (with `.message()` and `.finish_reason`) and its logprobs entries."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": answer.message(), "logprobs": logprobs_body(logprobs),
             "finish_reason": answer.finish_reason}
            for i, (answer, logprobs) in enumerate(answers)
        ],
        "usage": usage,
    }


def chunk_body(
    completion_id: str, created: int, model: str, choices: list[dict], usage: dict | None, with_usage_field: bool
) -> dict:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if with_usage_field:
        body["usage"] = usage
    return body


def delta_choice(index: int, delta: dict, finish_reason: str | None, logprobs: list[dict] | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs_body(logprobs), "finish_reason": finish_reason}
