"""A streamed response as OpenAI's semantic events, numbered by `sequence_number`, in the documented order:
`response.created`, `response.in_progress`, per output item `output_item.added`, its content (`content_part.added`,
text deltas, `output_text.done`, `content_part.done`) or arguments (`function_call_arguments.delta` / `.done`),
`output_item.done`, then `response.completed` (or `response.incomplete`; `response.failed` on an error).

Text streams as it is generated. With tools in play an answer is known to be a call only once it is complete
(as on the chat route), so it is sent whole when it ends, item by item."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from serve_app.contract import GenerationStep
from serve_app.errors import APIError
from serve_app.gateway.chat_pipeline import ChatPipeline, record_usage
from serve_app.gateway.context import Usage
from serve_app.gateway.reasoning import ReasoningSplitter
from serve_app.gateway.registry import ServedModel
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.responses_output import (
    Answer,
    finish_status,
    message_item,
    new_id,
    output_items,
    output_text_part,
    reasoning_item,
    reasoning_text_part,
    usage_body,
)

# Builds the final response object from (status, output, usage, incomplete_details) and keeps it if asked.
Finisher = Callable[[str, list[dict], dict, dict | None], Awaitable[dict]]
_TEXT = {"message": ("response.output_text", output_text_part, message_item),
         "reasoning": ("response.reasoning_text", reasoning_text_part, reasoning_item)}


@dataclass
class _OpenItem:
    kind: str  # "message" or "reasoning"
    item_id: str
    text: str = ""


@dataclass
class ResponseEvents:
    """Event bodies for one response; `output` holds each item once it is done, in order."""

    snapshot: dict  # the response object as it stood when created (status in_progress, no output)
    sequence: int = 0
    output: list[dict] = field(default_factory=list)
    open: _OpenItem | None = None

    def event(self, kind: str, **fields: object) -> dict:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return body

    def started(self) -> list[dict]:
        return [self.event("response.created", response=self.snapshot),
                self.event("response.in_progress", response=self.snapshot)]

    def text(self, kind: str, piece: str) -> list[dict]:
        """A piece of thinking ("reasoning") or answer ("message"), opening (and closing) items as it goes."""
        events = self.close() if self.open is not None and self.open.kind != kind else []
        if self.open is None:
            events += self._open(kind, new_id("msg" if kind == "message" else "rs"))
        item = self.open
        item.text += piece
        fields = {"logprobs": []} if kind == "message" else {}
        events.append(self.event(f"{_TEXT[kind][0]}.delta", item_id=item.item_id, output_index=len(self.output),
                                 content_index=0, delta=piece, **fields))
        return events

    def _open(self, kind: str, item_id: str) -> list[dict]:
        self.open = _OpenItem(kind, item_id)
        _, part, build = _TEXT[kind]
        index = len(self.output)
        return [self.event("response.output_item.added", output_index=index,
                           item=build(item_id, None, "in_progress")),
                self.event("response.content_part.added", item_id=item_id, output_index=index, content_index=0,
                           part=part(""))]

    def close(self, status: str = "completed") -> list[dict]:
        """Ends the item being streamed."""
        item, self.open = self.open, None
        if item is None:
            return []
        prefix, part, build = _TEXT[item.kind]
        index = len(self.output)
        fields = {"logprobs": []} if item.kind == "message" else {}
        done = build(item.item_id, item.text, status)
        self.output.append(done)
        return [self.event(f"{prefix}.done", item_id=item.item_id, output_index=index, content_index=0,
                           text=item.text, **fields),
                self.event("response.content_part.done", item_id=item.item_id, output_index=index, content_index=0,
                           part=part(item.text)),
                self.event("response.output_item.done", output_index=index, item=done)]

    def whole(self, item: dict) -> list[dict]:
        """A complete item's events, as if it had streamed in one piece."""
        if item["type"] != "function_call":
            kind = item["type"]
            text = item["content"][0]["text"] if item["content"] else ""
            events = self._open(kind, item["id"])
            if text:
                events += self.text(kind, text)
            return events + self.close(item["status"])
        index = len(self.output)
        self.output.append(item)
        return [self.event("response.output_item.added", output_index=index,
                           item={**item, "arguments": "", "status": "in_progress"}),
                self.event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                           delta=item["arguments"]),
                self.event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                           arguments=item["arguments"]),
                self.event("response.output_item.done", output_index=index, item=item)]

    def answered(self, answer: Answer, status: str) -> list[dict]:
        return [event for item in output_items(answer, status) for event in self.whole(item)]

    def finished(self, response: dict) -> dict:
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return self.event(kind, response=response)

    def failed(self, error: APIError) -> dict:
        """What a failure after the stream started becomes: the response as far as it got, status failed."""
        response = {**self.snapshot, "status": "failed", "output": self.output,
                    "error": {"code": error.code or "server_error", "message": error.message}}
        return self.event("response.failed", response=response)


async def response_events(events: ResponseEvents, first: GenerationStep, rest: AsyncIterator[GenerationStep],
                          chat: ChatCompletionRequest, model: ServedModel, used: Usage,
                          finish: Finisher) -> AsyncIterator[dict]:
    for event in events.started():
        yield event
    buffered = chat.tool_mode() != "none"  # a tool call is known only once the answer is complete
    splitter = ReasoningSplitter(model.reasoning_parser) if model.reasoning_parser and not buffered else None
    text, finish_reason, step = "", None, first
    while True:
        for delta in step.deltas:  # one choice: the Responses API has no `n`
            text += delta.text
            finish_reason = delta.finish_reason or finish_reason
            if buffered:
                continue
            pieces = [("content", delta.text)] if splitter is None else splitter.feed(delta.text)
            if splitter is not None and delta.finish_reason:
                pieces += splitter.flush()
            for kind, piece in pieces:
                item = "reasoning" if kind == "reasoning" else "message"
                if splitter is not None and (events.open is None or events.open.kind != item):
                    # the newlines around `<think>` blocks, trimmed as in a whole answer (split_reasoning)
                    piece = piece.lstrip() if item == "reasoning" else piece.lstrip("\n")
                if piece:
                    for event in events.text(item, piece):
                        yield event
        if step.used is not None:  # as it goes: a client that leaves mid-stream pays for what was generated
            record_usage(used, step.used)
        if step.usage is not None:
            break
        step = await anext(rest)
    record_usage(used, step.usage)
    status, incomplete = finish_status(finish_reason)
    item_status = "incomplete" if status == "incomplete" else "completed"
    if buffered:
        closing = events.answered(ChatPipeline.answer(chat, model, text, finish_reason), status)
    else:
        closing = events.close(item_status)
        if not any(item["type"] == "message" for item in events.output):  # no text at all: an empty message
            closing += events.whole(message_item(new_id("msg"), "", item_status))
    for event in closing:
        yield event
    usage = usage_body(step.usage.prompt_tokens, step.usage.completion_tokens)
    yield events.finished(await finish(status, events.output, usage, incomplete))
