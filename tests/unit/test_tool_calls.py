"""Tool-call parsing on canned model outputs, request rules for tools and JSON formats, and the constraint."""

from __future__ import annotations

import json

import pytest

from serve_app.errors import InvalidRequest
from serve_app.gateway.inputs.schemas import check_schemas
from serve_app.gateway.tool_calls import answer_deltas, assistant_answer, parse_hermes, parse_llama3_json, parse_mistral
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.validation import parse_model

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
USER = [{"role": "user", "content": "Weather in Paris and Rome?"}]


def chat(**extra) -> ChatCompletionRequest:
    request = parse_model(ChatCompletionRequest, {"model": "m", "messages": USER, **extra})
    request.check_tool_use()
    check_schemas(request)
    return request


def _nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize("schema", [
    {"type": "object", "$schema": []}, {"type": "object", "$schema": {"a": 1}}, {"type": "object", "$schema": 5},
    {"type": "object", "$schema": "http://["}, _nested(2000)])
def test_a_json_schema_that_breaks_the_validator_is_a_400_naming_it(schema):
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    for extra, param in (({"tools": [tool]}, "tools[0].function.parameters"),
                         ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}},
                          "response_format.json_schema.schema")):
        with pytest.raises(InvalidRequest) as err:
            chat(**extra)
        assert err.value.param == param and "Invalid JSON Schema" in err.value.message


def test_hermes_blocks_parallel_calls_and_the_text_around_them():
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>')
    content, calls = parse_hermes(text)
    assert content == "Let me check."
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    assert parse_hermes("<tool_call>{not json}</tool_call>") == ("<tool_call>{not json}</tool_call>", [])
    assert parse_hermes("Just text.") == ("Just text.", [])


def test_llama3_json_and_mistral_syntaxes():
    assert parse_llama3_json('<|python_tag|>{"name": "get_time", "parameters": {}}') == ("", [("get_time", {})])
    assert parse_llama3_json('{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}')[1] == [
        ("a", {"x": 1}), ("b", {})]
    assert parse_llama3_json("The answer is 4.")[1] == []
    content, calls = parse_mistral('Sure. [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Rome"}}]')
    assert content == "Sure." and calls == [("get_weather", {"city": "Rome"})]


def test_auto_answers_become_tool_calls_only_for_offered_functions():
    request = chat(tools=[WEATHER])
    answer = assistant_answer('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
                              "stop", request, "hermes")
    assert answer.finish_reason == "tool_calls" and answer.content is None
    call = answer.tool_calls[0]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    unknown = assistant_answer('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "stop", request, "hermes")
    assert unknown.tool_calls is None and unknown.finish_reason == "stop"


def test_forced_answers_follow_the_canonical_json_and_a_cut_one_is_length():
    request = chat(tools=[WEATHER, TIME], tool_choice="required")
    schema = request.constraint().schema
    assert schema["properties"]["tool_calls"]["minItems"] == 1
    text = json.dumps({"tool_calls": [{"name": "get_time", "arguments": {}}]})
    assert assistant_answer(text, "stop", request, "hermes").tool_calls[0]["function"]["name"] == "get_time"
    cut = assistant_answer(text[:20], "length", request, "hermes")
    assert cut.finish_reason == "length" and cut.tool_calls is None


def test_parallel_tool_calls_false_means_one_call_whatever_the_model_wrote():
    text = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>')
    both = assistant_answer(text, "stop", chat(tools=[WEATHER]), "hermes")
    assert [json.loads(c["function"]["arguments"])["city"] for c in both.tool_calls] == ["Paris", "Rome"]
    one = assistant_answer(text, "stop", chat(tools=[WEATHER], parallel_tool_calls=False), "hermes")
    assert [json.loads(c["function"]["arguments"])["city"] for c in one.tool_calls] == ["Paris"]


def test_required_calls_several_tools_at_once_unless_parallel_calls_are_off():
    items = chat(tools=[WEATHER, TIME], tool_choice="required").constraint().schema["properties"]["tool_calls"]
    assert "maxItems" not in items
    off = chat(tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False).constraint().schema
    assert off["properties"]["tool_calls"]["maxItems"] == 1
    one = chat(tools=[WEATHER], tool_choice="required").constraint().schema  # one tool: one call (see chat.py)
    assert one["properties"]["tool_calls"]["maxItems"] == 1


def test_named_choice_constrains_to_that_function_only():
    request = chat(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    items = request.constraint().schema["properties"]["tool_calls"]
    assert items["maxItems"] == 1 and items["items"]["properties"]["name"] == {"const": "get_weather"}


def test_stream_deltas_put_id_type_and_name_before_the_arguments():
    answer = assistant_answer(json.dumps({"tool_calls": [{"name": "get_time", "arguments": {}}]}), "stop",
                              chat(tools=[TIME], tool_choice="required"), "hermes")
    head, args = answer_deltas(answer)
    assert head["tool_calls"][0]["function"] == {"name": "get_time", "arguments": ""}
    assert head["tool_calls"][0]["id"] and args["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize("extra, param", [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function.parameters"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"messages": USER + [{"role": "tool", "tool_call_id": "call_x", "content": "20C"}]}, "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"response_format": {"type": "json_object"}, "ignore_eos": True}, "ignore_eos"),
    ({"tools": [WEATHER], "tool_choice": "required", "min_tokens": 5}, "min_tokens"),
])
def test_bad_tool_and_format_requests_are_400_naming_the_field(extra, param):
    with pytest.raises(InvalidRequest) as err:
        chat(**extra)
    assert err.value.param == param, err.value.message


def test_a_tool_round_trip_history_is_accepted():
    history = USER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C and sunny"}]
    request = chat(messages=history, tools=[WEATHER])
    assert request.tool_mode() == "auto" and request.messages[2].text() == "21 C and sunny"
