"""Model text -> OpenAI's assistant message: the canonical JSON of a constrained (`required` or named)
answer, or, with `tool_choice` `auto`, the model's own tool-call syntax read by the parser its config names.

Parsing happens here, once, for every engine: vLLM and transformers return the same text for the same
tokens, so one parser per syntax serves both (the syntaxes are vLLM's `hermes`, `llama3_json`, `mistral`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.gateway.reasoning import split_reasoning
from serve_app.protocol.chat import ChatCompletionRequest

ParsedCall = tuple[str, object]  # function name, arguments (object or JSON text)


@dataclass
class AssistantAnswer:
    content: str | None
    tool_calls: list[dict] | None
    finish_reason: str | None
    reasoning: str | None = None  # a reasoning model's thinking (`reasoning_content`)

    def message(self) -> dict:
        message: dict = {"role": "assistant", "content": self.content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def _json_values(text: str) -> list:
    """Every JSON value in `text` one after another (separated by whitespace, `;` or `,`); [] if any part fails."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        while at < len(text) and text[at] in " \t\r\n;,":
            at += 1
        if at == len(text):
            break
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            return []
        values.append(value)
    return values


def _calls_from(objects: list, arguments_key: str = "arguments") -> list[ParsedCall]:
    calls = []
    for item in objects:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return []
        calls.append((item["name"], item.get(arguments_key, item.get("arguments", {}))))
    return calls


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_hermes(text: str) -> tuple[str, list[ParsedCall]]:
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (Hermes, Qwen 2.5 and 3, our fallback)."""
    calls: list[ParsedCall] = []
    for block in _HERMES.findall(text):
        found = _calls_from(_json_values(block))
        if not found:
            return text, []
        calls += found
    return _HERMES.sub("", text).strip(), calls


def parse_llama3_json(text: str) -> tuple[str, list[ParsedCall]]:
    """A whole answer of `{"name": ..., "parameters": {...}}` objects (Llama 3.1+), `<|python_tag|>` allowed."""
    body = text.strip().removeprefix("<|python_tag|>").strip()
    if not body.startswith("{"):
        return text, []
    calls = _calls_from(_json_values(body), "parameters")
    return ("", calls) if calls else (text, [])


def parse_mistral(text: str) -> tuple[str, list[ParsedCall]]:
    """`[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]` (Mistral)."""
    content, marker, rest = text.partition("[TOOL_CALLS]")
    if not marker:
        return text, []
    values = _json_values(rest.strip())
    objects = values[0] if len(values) == 1 and isinstance(values[0], list) else values
    calls = _calls_from(objects)
    return (content.strip(), calls) if calls else (text, [])


PARSERS: dict[str, Callable[[str], tuple[str, list[ParsedCall]]]] = {
    "hermes": parse_hermes, "llama3_json": parse_llama3_json, "mistral": parse_mistral}


def tool_call(name: str, arguments: object) -> dict:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": text}}


def assistant_answer(text: str, finish: str | None, request: ChatCompletionRequest, parser: str,
                     reasoning_parser: str | None = None) -> AssistantAnswer:
    """The message for one choice's whole text: thinking apart (when the model has a reasoning parser), then
    tool calls read from the rest."""
    reasoning, text = split_reasoning(text, reasoning_parser)
    answer = _tool_answer(text, finish, request, parser)
    answer.reasoning = reasoning
    return answer


def _tool_answer(text: str, finish: str | None, request: ChatCompletionRequest, parser: str) -> AssistantAnswer:
    mode = request.tool_mode()
    if mode == "forced":
        if finish == "length":  # cut off mid-JSON: never presented as complete calls
            return AssistantAnswer(text, None, "length")
        try:
            calls = json.loads(text)["tool_calls"]  # the grammar guarantees this shape when the answer completed
        except (ValueError, KeyError, TypeError):  # cut short by one of the request's stop strings
            return AssistantAnswer(text, None, finish)
        return AssistantAnswer(None, [tool_call(c["name"], c["arguments"]) for c in calls], "tool_calls")
    if mode == "auto":
        offered = {t.function.name for t in request.offered_tools()}
        content, calls = PARSERS[parser](text)
        calls = [c for c in calls if c[0] in offered]
        if not request.parallel_tool_calls:
            calls = calls[:1]  # the client takes one call per turn: the first, as the model wrote them
        if calls:
            return AssistantAnswer(content or None, [tool_call(name, args) for name, args in calls], "tool_calls")
    return AssistantAnswer(text, None, finish)


def answer_deltas(answer: AssistantAnswer) -> list[dict]:
    """A complete answer as stream deltas: its content, or per call first `id`, `type` and `name` (arguments
    empty), then the arguments, which is how OpenAI streams them and what the SDKs reassemble."""
    deltas = [{"reasoning_content": answer.reasoning}] if answer.reasoning else []
    if answer.content or not answer.tool_calls:  # an empty text answer is "", as the whole answer says
        deltas.append({"content": answer.content or ""})
    if not answer.tool_calls:
        return deltas
    for index, call in enumerate(answer.tool_calls):
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        deltas += [{"tool_calls": [head]},
                   {"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]}]
    return deltas
