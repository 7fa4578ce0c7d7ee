"""A reasoning model's answer through the gateway (a scripted backend): `reasoning_content` apart from
`content`, whole and streamed, and tool calls read from the answer after the thinking."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from serve_app.config import APIKey, LimitsConfig
from serve_app.contract import ChoiceDelta, Completion, GenerationStep, TokenUsage
from serve_app.gateway.asgi import create_asgi_app
from serve_app.gateway.registry import ModelRegistry, ServedModel
from serve_app.security.auth import KeyStore, hash_key
from serve_app.security.rate_limit import RateLimiterServer

PIECES = ["<thi", "nk>\nTwo plus two", " is four.</th", "ink>\n\n", "It is ", "4."]


class ThinkingBackend:
    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    async def complete(self, request):
        return Completion([("".join(self.pieces), "stop", None)], TokenUsage(5, 12))

    async def stream(self, request):
        for i, piece in enumerate(self.pieces):
            last = i == len(self.pieces) - 1
            yield GenerationStep([ChoiceDelta(0, piece, "stop" if last else None)],
                                 TokenUsage(5, 12) if last else None)


def client_for(pieces: list[str]) -> TestClient:
    model = ServedModel("qwen3", "text", "me", ThinkingBackend(pieces), reasoning_parser="qwen3")
    app = create_asgi_app(ModelRegistry([model]), KeyStore([APIKey(name="k", sha256=hash_key("k"))]),
                          LimitsConfig(), RateLimiterServer())
    return TestClient(app, headers={"x-api-key": "k"})


BODY = {"model": "qwen3", "messages": [{"role": "user", "content": "2+2?"}]}


def test_whole_answer_has_reasoning_content_apart():
    message = client_for(PIECES).post("/v1/chat/completions", json=BODY).json()["choices"][0]["message"]
    assert message["reasoning_content"] == "Two plus two is four." and message["content"] == "It is 4."


def test_streamed_answer_sends_reasoning_then_content_deltas():
    r = client_for(PIECES).post("/v1/chat/completions", json={**BODY, "stream": True})
    deltas = [json.loads(line[6:])["choices"][0]["delta"] for line in r.text.splitlines()
              if line.startswith("data: {") and json.loads(line[6:])["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert reasoning.strip() == "Two plus two is four." and content.strip() == "It is 4."
    assert "think>" not in r.text


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_are_read_after_the_thinking(stream):
    call = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 2}}</tool_call>'
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    r = client_for(["<think>I should call add.</think>\n", call]).post(
        "/v1/chat/completions", json={**BODY, "tools": tools, "stream": stream})
    if stream:
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        names = [c["function"]["name"] for e in events for ch in e["choices"]
                 for c in ch["delta"].get("tool_calls") or [] if c.get("function", {}).get("name")]
        assert names == ["add"] and events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        message = r.json()["choices"][0]["message"]
        assert message["reasoning_content"] == "I should call add."
        assert message["tool_calls"][0]["function"]["name"] == "add"


class RecordingBackend(ThinkingBackend):
    def __init__(self) -> None:
        super().__init__(["It is 4."])
        self.efforts: list[str | None] = []

    async def complete(self, request):
        self.efforts.append(request.reasoning_effort)
        return await super().complete(request)


def test_reasoning_effort_reaches_the_engine_from_both_routes_and_is_refused_for_other_models():
    backend = RecordingBackend()
    models = [ServedModel("qwen3", "text", "me", backend, reasoning_parser="qwen3"),
              ServedModel("plain", "text", "me", backend)]
    app = create_asgi_app(ModelRegistry(models), KeyStore([APIKey(name="k", sha256=hash_key("k"))]),
                          LimitsConfig(), RateLimiterServer())
    with TestClient(app, headers={"x-api-key": "k"}) as client:
        assert client.post("/v1/chat/completions", json={**BODY, "reasoning_effort": "none"}).status_code == 200
        r = client.post("/v1/responses", json={"model": "qwen3", "input": "2+2?", "reasoning": {"effort": "minimal"},
                                               "store": False})
        assert r.status_code == 200, r.text
        assert backend.efforts == ["none", "minimal"]
        for path, body, param in (("/v1/chat/completions", {**BODY, "model": "plain", "reasoning_effort": "low"},
                                   "reasoning_effort"),
                                  ("/v1/responses", {"model": "plain", "input": "x", "reasoning": {"effort": "low"}},
                                   "reasoning")):
            r = client.post(path, json=body)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize("pieces, content, tool", [
    (['<tool_call>{"name": "add", "arguments": {"a": 2, "b": 2}}</tool_call>'], None, "add"),
    (["It is ", "4."], "It is 4.", None),
    ([""], "", None),  # a model that stops at once: "", as the whole answer, not null
])
def test_the_sdks_stream_helper_assembles_a_streamed_answer_with_tools_as_a_whole_one(pieces, content, tool):
    """openai-python's own stream accumulator (what `chat.completions.stream` runs) over the SSE chunks."""
    from openai.lib.streaming.chat._completions import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    model = ServedModel("m", "text", "me", ThinkingBackend(pieces))
    app = create_asgi_app(ModelRegistry([model]), KeyStore([APIKey(name="k", sha256=hash_key("k"))]),
                          LimitsConfig(), RateLimiterServer())
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    with TestClient(app, headers={"x-api-key": "k"}) as client:
        r = client.post("/v1/chat/completions", json={**BODY, "model": "m", "tools": tools, "stream": True})
    state, events = ChatCompletionStreamState(), []
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            events += [e.type for e in state.handle_chunk(ChatCompletionChunk.model_validate_json(line[6:]))]
    message = state.get_final_completion().choices[0].message
    assert message.content == content
    assert ("content.delta" in events) == (content is not None)
    assert [c.function.name for c in message.tool_calls or []] == ([tool] if tool else [])
