"""The Responses API (POST /v1/responses): the request body and its input items, as OpenAI defines them.

Only what the gateway can honour is accepted: function tools (no hosted tools), text and image inputs, and
the item types a client sends back to continue a conversation (assistant messages, `function_call`,
`function_call_output`, `reasoning`). Anything else is a 400 naming the field, like the chat route.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from serve_app.errors import InvalidRequest
from serve_app.protocol.validation import param_path, parse_model
from serve_app.protocol.wire import FUNCTION_NAME, MAX_TOOLS, Wire

MIN_OUTPUT_TOKENS = 16  # OpenAI refuses smaller `max_output_tokens`
MAX_METADATA_KEYS, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS = 16, 64, 512  # OpenAI's metadata caps
ItemStatus = Literal["in_progress", "completed", "incomplete"]
# What POST /v1/responses/input_tokens takes (OpenAI's list, less `conversation` and `personality`, which create
# does not take either): what shapes the input, not how an answer would be generated or kept.
INPUT_TOKENS_FIELDS = frozenset({"model", "input", "instructions", "previous_response_id", "tools", "tool_choice",
                                 "parallel_tool_calls", "text", "reasoning", "truncation"})


class InputText(Wire):
    type: Literal["input_text"]
    text: str


class InputImage(Wire):
    type: Literal["input_image"]
    image_url: str = Field(description="A data URI or an http(s) URL (uploaded `file_id`s are not supported).")
    detail: Literal["auto", "low", "high", "original"] = "auto"


class OutputText(Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None


class Refusal(Wire):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[InputText | InputImage | OutputText | Refusal, Field(discriminator="type")]
_ASSISTANT_PARTS = (OutputText, Refusal)


class MessageItem(Wire):
    type: Literal["message"] = "message"
    id: str | None = None
    status: ItemStatus | None = None
    role: Literal["user", "system", "developer", "assistant"]
    # What OpenAI's assistant messages carry and the SDKs send back (`model_dump()`): accepted, unused here.
    phase: Literal["commentary", "final_answer"] | None = None
    content: str | list[ContentPart]  # after `role`, so its check can read it

    @field_validator("content")
    @classmethod
    def _parts_fit_the_role(cls, content: str | list, info: ValidationInfo) -> str | list:
        assistant = info.data.get("role") == "assistant"
        if isinstance(content, list) and any(isinstance(p, _ASSISTANT_PARTS) != assistant for p in content):
            raise ValueError("assistant messages take `output_text` and `refusal` parts; user, system and "
                             "developer messages take `input_text` and `input_image` parts")
        return content

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text if isinstance(p, InputText | OutputText) else p.refusal
                       for p in self.content if not isinstance(p, InputImage))


class CallerDirect(Wire):
    type: Literal["direct"]


class CallerProgram(Wire):
    type: Literal["program"]
    caller_id: str


class FunctionCallItem(Wire):
    type: Literal["function_call"]
    id: str | None = None
    status: ItemStatus | None = None
    call_id: str
    name: str
    arguments: str = Field(description="The arguments as a JSON string.")
    # OpenAI's execution details of a call, sent back by the SDKs with the item: accepted, unused here.
    async_: bool | None = Field(None, alias="async", validation_alias=AliasChoices("async", "async_"))
    caller: CallerDirect | CallerProgram | None = Field(None, discriminator="type")
    namespace: str | None = None


class FunctionCallOutputItem(Wire):
    type: Literal["function_call_output"]
    id: str | None = None
    status: ItemStatus | None = None
    call_id: str
    output: str | list[InputText]

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


class SummaryText(Wire):
    type: Literal["summary_text"]
    text: str


class ReasoningText(Wire):
    type: Literal["reasoning_text"]
    text: str


class ReasoningItem(Wire):
    """A reasoning model's earlier thinking, sent back as it came: accepted, not shown to the model again (open
    models' chat templates drop earlier turns' thinking)."""

    type: Literal["reasoning"]
    id: str
    status: ItemStatus | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None


def _item_type(item: Any) -> str | None:
    # Messages may leave out `type` (OpenAI's "easy" input message).
    if isinstance(item, dict):
        return item.get("type", "message")
    return getattr(item, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")] | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]
INPUT_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


class FunctionTool(Wire):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments object.")
    strict: bool | None = None


class FunctionToolChoice(Wire):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)


ToolChoice = Literal["none", "auto", "required"] | FunctionToolChoice


class FormatText(Wire):
    type: Literal["text"]


class FormatJSONObject(Wire):
    type: Literal["json_object"]


class FormatJSONSchema(Wire):
    type: Literal["json_schema"]
    name: str = Field(pattern=FUNCTION_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[FormatText | FormatJSONObject | FormatJSONSchema, Field(discriminator="type")]


class TextConfig(Wire):
    format: TextFormat = Field(default_factory=lambda: FormatText(type="text"))


class ReasoningConfig(Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(Wire):
    include_obfuscation: bool | None = None  # OpenAI pads events against length side channels; nothing to pad


class ResponsesRequest(Wire):
    model: str
    input: str | list[InputItem] | None = None
    instructions: str | None = Field(None, description="A system message first; not carried over to responses "
                                                       "that continue this one.")
    max_output_tokens: int | None = Field(None, ge=MIN_OUTPUT_TOKENS)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)  # 0: only the most likely token (chat.sampling)
    tools: list[FunctionTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = Field(None, description="Only for models with a reasoning parser.")
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = Field(None, description="Keep the response for GET and `previous_response_id` "
                                                 "(default true).")
    stream: bool | None = False
    previous_response_id: str | None = None
    # Accepted at the values that ask for nothing (what clients echo back from a response); other values
    # ask for what this endpoint does not do and are refused by name.
    truncation: Literal["disabled"] | None = None
    background: Literal[False] | None = None
    include: list[str] | None = Field(None, max_length=0, description="No extra output fields are available.")
    max_tool_calls: None = Field(None, description="Only function tools, which the client runs.")
    top_logprobs: Literal[0] | None = None
    service_tier: Literal["auto", "default"] | None = None
    stream_options: StreamOptions | None = None
    prompt_cache_key: str | None = Field(None, max_length=1024, description="A routing hint; ignored.")
    safety_identifier: str | None = Field(None, max_length=1024, description="Like `user`.")

    @field_validator("metadata")
    @classmethod
    def _metadata_caps(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata is not None and (
                len(metadata) > MAX_METADATA_KEYS or any(len(k) > MAX_METADATA_KEY_CHARS for k in metadata)
                or any(len(v) > MAX_METADATA_VALUE_CHARS for v in metadata.values())):
            raise ValueError(f"metadata holds at most {MAX_METADATA_KEYS} keys of up to {MAX_METADATA_KEY_CHARS} "
                             f"characters, with values of up to {MAX_METADATA_VALUE_CHARS}")
        return metadata

    def stored(self) -> bool:
        return self.store is not False

    def streamed(self) -> bool:
        return bool(self.stream)

    def input_items(self) -> list[InputItem]:
        """The input as items: a string is one user message."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def format(self) -> FormatText | FormatJSONObject | FormatJSONSchema:
        return self.text.format if self.text is not None else FormatText(type="text")


# pydantic puts a union member's name or a discriminator's tag into error locations where OpenAI names the field.
_BRANCH_IN_PARAM = re.compile(r"^(text\.format)\.(?:text|json_object|json_schema)\b"
                              r"|^(tool_choice)\.FunctionToolChoice\b")


def parse_request(data: object) -> ResponsesRequest:
    """The request, or a 400 naming the field as OpenAI does (`input[0].type` for an unknown item type)."""
    try:
        return ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        bad_tag = next((e for e in exc.errors(include_url=False) if e["type"] == "union_tag_invalid"), None)
    if bad_tag is not None:
        param = param_path(tuple(bad_tag["loc"])) + ".type"
        raise InvalidRequest(f"Invalid value: '{bad_tag['ctx']['tag']}'. Supported values are: "
                             f"{bad_tag['ctx']['expected_tags']}.", param=param)
    try:
        parse_model(ResponsesRequest, data)
    except InvalidRequest as exc:
        if exc.param:
            param = _BRANCH_IN_PARAM.sub(lambda m: m.group(1) or m.group(2), exc.param)
            exc.message, exc.param = exc.message.replace(exc.param, param), param
            exc.args = (exc.message,)
        raise
    raise AssertionError("validation failed once and passed once")  # pragma: no cover
