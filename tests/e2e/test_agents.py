"""Chat completions for agents, with the OpenAI Python SDK: tools (required, named, auto), streamed tool
calls, a tool round trip, structured outputs (`json_object`, `json_schema`, `parse()`), and their bad inputs.

SmolLM2's chat template knows no tools, so these also cover the documented fallback (tools described in the
system prompt); constrained decoding makes the arguments valid whatever the model would have written.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.support.models import CHAT_MODEL

pytestmark = pytest.mark.e2e

WEATHER_PARAMETERS = {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                      "parameters": WEATHER_PARAMETERS}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a time zone.",
                                      "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                                                     "required": ["zone"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def schema_of(name: str) -> dict:
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


def test_required_tool_choice_gives_calls_whose_arguments_validate(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=80, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    for call in choice.message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), schema_of(call.function.name))


def test_a_named_function_is_the_one_called(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=ASK, tools=TOOLS, max_tokens=120, temperature=0,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), schema_of("get_time"))


def test_streamed_tool_calls_reassemble_in_the_sdk(client):
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(model=CHAT_MODEL, messages=ASK, tools=TOOLS, max_tokens=120,
                                                tool_choice="required", stream=True, temperature=0):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls" and calls
    for call in calls.values():
        assert call["id"] and call["name"] in {"get_weather", "get_time"}
        jsonschema.validate(json.loads(call["arguments"]), schema_of(call["name"]))


def test_a_tool_round_trip_ends_in_an_answer(client):
    first = client.chat.completions.create(model=CHAT_MODEL, messages=ASK, tools=TOOLS, max_tokens=120,
                                           temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18 degrees celsius and sunny"}]
    final = client.chat.completions.create(model=CHAT_MODEL, messages=history, tools=TOOLS, tool_choice="none",
                                           max_tokens=30, temperature=0)
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


class Forecast(BaseModel):
    city: str
    temperature_celsius: int
    sunny: bool


def test_parse_returns_the_pydantic_object(client):
    r = client.chat.completions.parse(model=CHAT_MODEL, response_format=Forecast, max_tokens=60, temperature=0,
                                      messages=[{"role": "user", "content": "Forecast for Paris as JSON."}])
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Forecast) and parsed.city


def test_json_object_answers_are_json_objects(client):
    r = client.chat.completions.create(model=CHAT_MODEL, response_format={"type": "json_object"}, max_tokens=200,
                                       temperature=0, messages=[{"role": "user", "content":
                                       'Answer in JSON: an object with the keys "city" and "country" for Paris.'}])
    # answers cut short have their own test below
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_a_constrained_answer_cut_by_max_tokens_says_length(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=3)
    assert r.choices[0].finish_reason == "length" and not r.choices[0].message.tool_calls


@pytest.mark.parametrize("extra, param", [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "launch"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
     "tools[0].function.parameters"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     "response_format.json_schema.schema"),
    ({"messages": ASK + [{"role": "tool", "tool_call_id": "call_none", "content": "x"}]},
     "messages[1].tool_call_id"),
])
def test_bad_tool_and_schema_inputs_are_400_naming_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, **{"messages": ASK, "max_tokens": 5, **extra})
    assert err.value.body["param"] == param


def test_models_say_they_take_tools_and_structured_outputs(client):
    card = client.models.retrieve(CHAT_MODEL).model_dump()
    assert card["capabilities"]["tools"] and card["capabilities"]["structured_outputs"]


def test_a_schema_feature_that_cannot_be_enforced_is_a_400_never_free_text(client):
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=ASK, max_tokens=5, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert "Lookbehind" in err.value.body["message"]
