"""The Responses API's pure logic: requests as chat requests (and 400s naming Responses fields), output items,
and the streamed events' order; then a reasoning model through the gateway (a scripted backend)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.testclient import TestClient

from serve_app.config import APIKey, LimitsConfig
from serve_app.contract import ChoiceDelta, GenerationStep, TokenUsage
from serve_app.errors import InvalidRequest, model_unavailable
from serve_app.gateway.asgi import create_asgi_app
from serve_app.gateway.context import Usage
from serve_app.gateway.registry import ModelRegistry, ServedModel
from serve_app.gateway.responses_stream import ResponseEvents, response_events
from serve_app.gateway.tool_calls import AssistantAnswer
from serve_app.protocol.responses import INPUT_ITEMS, parse_request
from serve_app.protocol.responses_chat import to_chat
from serve_app.protocol.responses_output import output_items, stored_input
from serve_app.security.auth import KeyStore, hash_key
from serve_app.security.rate_limit import RateLimiterServer
from tests.unit.test_reasoning_route import PIECES, ThinkingBackend

TOOL = {"type": "function", "name": "add", "parameters": {"type": "object"}}


def request(**fields):
    return parse_request({"model": "m", **fields})


def test_a_request_becomes_the_chat_request_it_means():
    req = request(instructions="Be brief.", max_output_tokens=32, temperature=0.5, top_p=0.9, user="u",
                  tools=[TOOL], tool_choice={"type": "function", "name": "add"}, parallel_tool_calls=False,
                  input=[{"role": "user", "content": [{"type": "input_text", "text": "2+2?"},
                                                      {"type": "input_image", "image_url": "data:x", "detail": "low"}]},
                         {"type": "function_call", "call_id": "c1", "name": "add", "arguments": "{}"},
                         {"type": "function_call_output", "call_id": "c1", "output": "4"},
                         {"type": "reasoning", "id": "rs_1", "summary": []}])
    form = to_chat(req, [])
    chat = form.chat
    assert [m.role for m in chat.messages] == ["system", "user", "assistant", "tool"]
    assert chat.messages[0].content == "Be brief." and chat.messages[3].content == "4"
    assert chat.messages[1].content[1].image_url.detail == "low"
    assert chat.messages[2].tool_calls[0].id == "c1" and chat.messages[2].content is None
    assert (chat.max_completion_tokens, chat.temperature, chat.top_p, chat.user) == (32, 0.5, 0.9, "u")
    assert chat.tool_choice.function.name == "add" and chat.parallel_tool_calls is False
    assert chat.tools[0].function.parameters == {"type": "object"}
    assert form.origins == ["instructions", "input[0]", "input[1]", "input[2]"]


def test_output_items_sent_back_as_the_python_sdk_dumps_them_continue_the_conversation():
    """`input += [item.model_dump() for item in response.output]`: the SDK's items carry OpenAI's newer fields
    (a message's `phase`, a call's `async`, `caller`, `namespace`), null or set; accepted, the same chat."""
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    message = ResponseOutputMessage(id="msg_1", type="message", role="assistant", status="completed",
                                    content=[ResponseOutputText(type="output_text", text="ok", annotations=[])])
    call = ResponseFunctionToolCall(type="function_call", call_id="c1", name="add", arguments="{}", id="fc_1")
    asked = {"role": "user", "content": "2+2?"}
    answer = {"type": "function_call_output", "call_id": "c1", "output": "4"}
    bare = to_chat(request(input=[asked, message.to_dict(), call.to_dict(), answer]), []).chat
    for dumped in ([message.model_dump(), call.model_dump()],
                   [message.model_dump(by_alias=True, mode="json"), call.model_dump(by_alias=True, mode="json")],
                   [{**message.model_dump(), "phase": "final_answer"},
                    {**call.model_dump(by_alias=True), "async": False, "caller": {"type": "direct"},
                     "namespace": "math"}]):
        assert to_chat(request(input=[asked, *dumped, answer]), []).chat == bare
    with pytest.raises(InvalidRequest) as err:
        request(input=[asked, {**call.to_dict(), "caller": {"type": "robot"}}])
    assert err.value.param.startswith("input[1].caller")
    # kept as sent: GET .../input_items gives the call back with OpenAI's `async` key, which the SDK reads
    kept = stored_input(request(input=[asked, {**call.to_dict(), "async": True}]).input_items())
    assert ResponseFunctionToolCall.model_validate(kept[1]).async_ is True and "async_" not in kept[1]


def test_top_p_zero_keeps_only_the_most_likely_token():
    chat = to_chat(request(input="hi", top_p=0), []).chat
    assert (chat.sampling().top_p, chat.sampling().top_k) == (1.0, 1)


def test_text_after_an_assistant_message_joins_its_calls_and_history_comes_first():
    history = INPUT_ITEMS.validate_python([{"role": "user", "content": "hi"},
                                           {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}])
    req = request(input=[{"type": "function_call", "call_id": "c", "name": "add", "arguments": "{}"}])
    chat = to_chat(req, history).chat
    assert [m.role for m in chat.messages] == ["user", "assistant"]
    assert chat.messages[1].content == "ok" and chat.messages[1].tool_calls[0].id == "c"


def test_text_formats_become_response_formats():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = to_chat(request(input="x", text={"format": {"type": "json_schema", "name": "s", "schema": schema,
                                                       "strict": True}}), []).chat
    assert chat.response_format.json_schema.schema_ == schema and chat.constraint().schema == schema
    assert to_chat(request(input="x", text={"format": {"type": "json_object"}}), []).chat.constraint() is not None
    assert to_chat(request(input="x"), []).chat.response_format is None


@pytest.mark.parametrize("body, param", [
    ({"input": "x", "unknown": 1}, "unknown"),
    ({"input": [{"type": "web_search_call"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "input[0].content"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}}, "text.format.schema"),
    ({"input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "x", "max_output_tokens": 15}, "max_output_tokens"),
    ({"input": "x", "metadata": {"k" * 65: "v"}}, "metadata"),
    ({}, "input"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "1"}]}, "input[0].call_id"),
])
def test_bad_requests_name_the_responses_field(body, param):
    with pytest.raises(InvalidRequest) as err:
        to_chat(request(**body), [])
    assert err.value.param == param, err.value.message


@pytest.mark.parametrize("chat_param, param", [
    ("messages[1].content[0].image_url", "input[0].content[0].image_url"),
    ("response_format.json_schema.schema", "text.format.schema"),
    ("tools[0].function.parameters", "tools[0].parameters"),
    ("messages[0].content", "instructions"),
])
def test_chat_errors_are_mapped_back(chat_param, param):
    form = to_chat(request(instructions="i", input=[{"role": "user", "content": "x"}]), [])
    with pytest.raises(InvalidRequest) as err, form.responses_params():
        raise InvalidRequest(f"bad {chat_param}", param=chat_param)
    assert err.value.param == param and err.value.message == f"bad {param}"


def test_output_items_per_answer():
    items = output_items(AssistantAnswer("Let me add.", [{"id": "call_1", "type": "function", "function": {
        "name": "add", "arguments": "{}"}}], "tool_calls", reasoning="Adding."), "completed")
    assert [i["type"] for i in items] == ["reasoning", "message", "function_call"]
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "Adding."}]
    assert items[1]["content"][0] == {"type": "output_text", "text": "Let me add.", "annotations": [], "logprobs": []}
    assert items[2]["call_id"] == "call_1" and items[2]["id"].startswith("fc_")
    [empty] = output_items(AssistantAnswer(None, None, "length"), "incomplete")
    assert empty["type"] == "message" and empty["status"] == "incomplete" and empty["content"][0]["text"] == ""


def test_stored_input_gives_ids_and_parts_and_parses_back():
    kept = stored_input(request(input="hi").input_items())
    assert kept[0]["id"].startswith("msg_") and kept[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert INPUT_ITEMS.validate_python(kept)[0].text() == "hi"


def steps(*pieces: str, finish: str = "stop") -> list[GenerationStep]:
    out = [GenerationStep([ChoiceDelta(0, p)]) for p in pieces[:-1]]
    return out + [GenerationStep([ChoiceDelta(0, pieces[-1], finish)], TokenUsage(3, len(pieces)))]


def stream_events(chat_fields: dict, script: list[GenerationStep], parser: str | None = None) -> list[dict]:
    req = request(input="x", **chat_fields)
    chat = to_chat(req, []).chat
    model = ServedModel("m", "text", "me", None, reasoning_parser=parser)
    events = ResponseEvents({"id": "resp_1", "status": "in_progress", "output": []})

    async def finish(status, output, usage, incomplete):
        return {"id": "resp_1", "status": status, "output": output, "usage": usage, "incomplete_details": incomplete}

    async def rest():
        for step in script[1:]:
            yield step

    async def collect():
        return [e async for e in response_events(events, script[0], rest(), chat, model, Usage(), finish)]

    return asyncio.run(collect())


def test_streamed_text_events_in_order_with_consecutive_numbers():
    events = stream_events({}, steps("The capital", " is", " Paris."))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[7]["text"] == "The capital is Paris." == events[-1]["response"]["output"][0]["content"][0]["text"]
    assert events[2]["item"]["status"] == "in_progress" and events[9]["item"]["status"] == "completed"


def test_a_cut_off_stream_ends_incomplete():
    events = stream_events({}, steps("Once", " upon", finish="length"))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"


def test_streamed_function_calls_are_sent_whole_with_arguments_events():
    answer = '{"tool_calls": [{"name": "add", "arguments": {"a": 1}}]}'
    events = stream_events({"tools": [TOOL], "tool_choice": "required"}, steps(answer[:10], answer[10:]))
    assert [e["type"] for e in events[2:]] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert events[2]["item"]["arguments"] == "" and events[4]["arguments"] == '{"a": 1}'
    assert events[-1]["response"]["output"] == [events[5]["item"]]


def test_thinking_streams_as_a_reasoning_item_before_the_message():
    events = stream_events({}, steps(*PIECES), parser="qwen3")
    items = events[-1]["response"]["output"]
    assert [i["type"] for i in items] == ["reasoning", "message"]
    assert items[0]["content"][0]["text"] == "Two plus two is four." and items[1]["content"][0]["text"] == "It is 4."
    assert "response.reasoning_text.delta" in [e["type"] for e in events]


def test_a_failure_after_the_start_is_a_failed_response():
    events = ResponseEvents({"id": "resp_1", "status": "in_progress", "output": []})
    events.started()
    failed = events.failed(model_unavailable("m"))
    assert failed["type"] == "response.failed" and failed["sequence_number"] == 2
    assert failed["response"]["status"] == "failed" and failed["response"]["error"]["code"] == "model_unavailable"


def gateway_client(tmp_path, monkeypatch, model: ServedModel) -> TestClient:
    """The gateway in-process, serving `model`, called with key `k`; its state kept in tmp_path."""
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    app = create_asgi_app(ModelRegistry([model]), KeyStore([APIKey(name="k", sha256=hash_key("k"))]),
                          LimitsConfig(), RateLimiterServer())
    return TestClient(app, headers={"x-api-key": "k"})


@pytest.fixture
def reasoning_gateway(tmp_path, monkeypatch):
    model = ServedModel("qwen3", "text", "me", ThinkingBackend(PIECES), reasoning_parser="qwen3")
    with gateway_client(tmp_path, monkeypatch, model) as client:
        yield client


def test_a_reasoning_model_answers_with_a_reasoning_item_whole_and_streamed(reasoning_gateway):
    body = {"model": "qwen3", "input": "2+2?", "reasoning": {"effort": "low"}}
    whole = reasoning_gateway.post("/v1/responses", json=body).json()
    assert [i["type"] for i in whole["output"]] == ["reasoning", "message"]
    assert whole["output"][0]["content"][0]["text"] == "Two plus two is four." and whole["reasoning"]["effort"] == "low"
    streamed = reasoning_gateway.post("/v1/responses", json={**body, "stream": True})
    last = json.loads(streamed.text.strip().splitlines()[-1][6:])
    assert last["type"] == "response.completed"
    assert [i["content"] for i in last["response"]["output"]] == [i["content"] for i in whole["output"]]


class FailingBackend:
    """A replica lost after the first piece of the answer."""

    async def stream(self, request):
        yield GenerationStep([ChoiceDelta(0, "It is")])
        raise model_unavailable(request.model)


def test_a_stream_that_fails_midway_ends_with_response_failed(tmp_path, monkeypatch):
    with gateway_client(tmp_path, monkeypatch, ServedModel("m", "text", "me", FailingBackend())) as client:
        r = client.post("/v1/responses", json={"model": "m", "input": "2+2?", "stream": True})
        lines = r.text.strip().splitlines()
        assert lines[-2] == "event: response.failed" and "[DONE]" not in r.text
        failed = json.loads(lines[-1][6:])
        assert failed["response"]["error"]["code"] == "model_unavailable"
        assert failed["sequence_number"] == r.text.count("event: ") - 1
        response_id = failed["response"]["id"]
        assert client.get(f"/v1/responses/{response_id}").status_code == 404  # a failed stream is not kept


def test_fields_a_client_echoes_back_at_their_no_op_values_are_accepted():
    echoed = {"truncation": "disabled", "background": False, "include": [], "max_tool_calls": None,
              "top_logprobs": 0, "service_tier": "auto", "stream_options": {"include_obfuscation": False},
              "prompt_cache_key": "conversation-7", "safety_identifier": "user-7"}
    assert parse_request({"model": "m", "input": "hi", **echoed}).input_items()


@pytest.mark.parametrize("field, value", [("truncation", "auto"), ("background", True),
                                          ("include", ["reasoning.encrypted_content"]), ("top_logprobs", 3),
                                          ("service_tier", "flex"), ("max_tool_calls", 3)])
def test_fields_asking_for_what_is_not_served_are_refused_by_name(field, value):
    with pytest.raises(InvalidRequest) as info:
        parse_request({"model": "m", "input": "hi", field: value})
    assert info.value.param == field


class CountingBackend:
    async def count_tokens(self, request):
        return 7 * len(request.messages)


def test_input_tokens_checks_the_request_as_create_does(tmp_path, monkeypatch):
    with gateway_client(tmp_path, monkeypatch, ServedModel("m", "text", "me", CountingBackend())) as client:
        counted = client.post("/v1/responses/input_tokens", json={"model": "m", "input": "hi", "instructions": "x"})
        assert counted.json() == {"object": "response.input_tokens", "input_tokens": 14}
        for extra, param in (({"reasoning": {"effort": "low"}}, "reasoning"),
                             ({"reasoning": {"summary": "auto"}}, "reasoning"), ({"stream": True}, "stream"),
                             ({"tool_choice": "required"}, "tool_choice")):
            r = client.post("/v1/responses/input_tokens", json={"model": "m", "input": "hi", **extra})
            assert (r.status_code, r.json()["error"]["param"]) == (400, param), r.text
