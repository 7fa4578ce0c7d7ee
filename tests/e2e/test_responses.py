"""The Responses API (/v1/responses) through the OpenAI SDK: text, streaming events, tools, structured output,
stored responses and conversations, images, and bad inputs, on the real SmolLM2 and the test VLM."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.support.keys import OTHER_KEY
from tests.support.media import data_uri, image_bytes
from tests.support.models import CHAT_MODEL, VISION_MODEL

pytestmark = pytest.mark.e2e
QUESTION = "What is the capital of France?"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
FORECAST = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
            "required": ["city", "sunny"], "additionalProperties": False}


def other_client(client: OpenAI) -> OpenAI:
    return OpenAI(api_key=OTHER_KEY, base_url=str(client.base_url), max_retries=0, timeout=120)


def test_a_string_input_gets_a_stored_completed_response(client):
    r = client.responses.create(model=CHAT_MODEL, input=QUESTION, temperature=0, max_output_tokens=20)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == CHAT_MODEL
    assert r.status == "completed" and r.incomplete_details is None and r.error is None
    [message] = r.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert "Paris" in r.output_text
    assert r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 20
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.store is True and r.temperature == 0 and r.max_output_tokens == 20
    assert client.responses.retrieve(r.id).output_text == r.output_text


def test_item_list_input_and_instructions(client):
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]
    pirate = "You are a pirate. Always answer like a pirate."
    plain = client.responses.create(model=CHAT_MODEL, input=items, temperature=0, max_output_tokens=20)
    told = client.responses.create(model=CHAT_MODEL, input=items, temperature=0, max_output_tokens=20,
                                   instructions=pirate)
    as_system = client.responses.create(model=CHAT_MODEL, temperature=0, max_output_tokens=20,
                                        input=[{"role": "system", "content": pirate}, *items])
    assert "Paris" in plain.output_text and told.instructions == pirate
    # instructions are a system message before the input, in place of the chat template's default one
    assert told.usage.input_tokens == as_system.usage.input_tokens != plain.usage.input_tokens
    assert told.output_text == as_system.output_text


def test_max_output_tokens_makes_an_incomplete_response(client):
    r = client.responses.create(model=CHAT_MODEL, input="Write a long story about a dragon.",
                                max_output_tokens=16, temperature=0)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16 and r.output[0].status == "incomplete" and r.output_text


def test_stream_sends_the_documented_events_in_order(client):
    with client.responses.stream(model=CHAT_MODEL, input=QUESTION, temperature=0, max_output_tokens=20) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert kinds.count("response.output_text.delta") >= 3 and "Paris" in deltas
    assert final.output_text == deltas == events[-4].text
    assert final.status == "completed" and final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == deltas


def test_create_with_stream_true_has_event_names_and_no_done_marker(client):
    with client.responses.with_streaming_response.create(model=CHAT_MODEL, input=QUESTION, stream=True,
                                                         max_output_tokens=16) as raw:
        body = raw.read().decode()
    names = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert names == [d["type"] for d in datas] and "[DONE]" not in body
    assert names[-1] in ("response.completed", "response.incomplete")
    streamed = list(client.responses.create(model=CHAT_MODEL, input=QUESTION, stream=True, max_output_tokens=16))
    assert streamed[0].type == "response.created" and streamed[-1].response.output_text


def test_a_function_call_round_trip(client):
    first = client.responses.create(model=CHAT_MODEL, input="What is the weather in Paris?", tools=[WEATHER],
                                    tool_choice="required", temperature=0, max_output_tokens=60)
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_") and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    answer = client.responses.create(
        model=CHAT_MODEL, previous_response_id=first.id, tools=[WEATHER], tool_choice="none", temperature=0,
        max_output_tokens=30,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"}])
    assert answer.output_text and not [i for i in answer.output if i.type == "function_call"]
    # the same round trip, the history sent back by the client instead of stored: the same prompt
    again = client.responses.create(
        model=CHAT_MODEL, store=False, temperature=0, max_output_tokens=30, tools=[WEATHER], tool_choice="none",
        input=[{"role": "user", "content": "What is the weather in Paris?"}, call.model_dump(),  # all its fields
               {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"}])
    question_only = client.responses.create(model=CHAT_MODEL, store=False, max_output_tokens=16,
                                            input="What is the weather in Paris?")
    assert again.usage.input_tokens == answer.usage.input_tokens > question_only.usage.input_tokens + 10
    assert again.output_text == answer.output_text


def test_streamed_named_function_call(client):
    # greedy, with room for the whole call: a sampled call can ramble past the cap (then `response.incomplete`)
    with client.responses.stream(model=CHAT_MODEL, input="Weather in Rome?", tools=[WEATHER], max_output_tokens=200,
                                 temperature=0, tool_choice={"type": "function", "name": "get_weather"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[-5:] == ["response.output_item.added", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    [call] = final.output
    assert call.type == "function_call" and call.arguments == events[-3].arguments
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_json_schema_output_parses_and_validates(client):
    r = client.responses.create(model=CHAT_MODEL, input="Forecast for Paris as JSON.", temperature=0,
                                max_output_tokens=60, text={"format": {"type": "json_schema", "name": "forecast",
                                                                       "schema": FORECAST, "strict": True}})
    assert r.text.format.type == "json_schema" and r.status == "completed"
    jsonschema.validate(json.loads(r.output_text), FORECAST)


def test_previous_response_id_continues_the_conversation(client):
    first = client.responses.create(model=CHAT_MODEL, input="My name is Zorblax. Say hello.", temperature=0,
                                    max_output_tokens=20, instructions="Answer in one sentence.")
    second = client.responses.create(model=CHAT_MODEL, input="What is my name?", previous_response_id=first.id,
                                     temperature=0, max_output_tokens=20)
    alone = client.responses.create(model=CHAT_MODEL, input="What is my name?", temperature=0, max_output_tokens=20)
    assert second.previous_response_id == first.id and second.instructions is None
    # the first exchange (but not its instructions) is in the second prompt
    assert second.usage.input_tokens >= alone.usage.input_tokens + first.usage.output_tokens
    assert "Zorblax" in second.output_text
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert items[0].content[0].text.startswith("My name is Zorblax") and items[2].content[0].text == "What is my name?"


def test_get_delete_and_other_keys(client):
    r = client.responses.create(model=CHAT_MODEL, input="Hi", max_output_tokens=16, metadata={"topic": "greeting"})
    stranger = other_client(client)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(r.id)
    with pytest.raises(openai.BadRequestError) as err:  # nor continue it
        stranger.responses.create(model=CHAT_MODEL, input="Hi", previous_response_id=r.id, max_output_tokens=16)
    assert err.value.body["code"] == "previous_response_not_found"
    assert client.responses.retrieve(r.id).metadata == {"topic": "greeting"}
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_store_false_is_not_kept(client):
    r = client.responses.create(model=CHAT_MODEL, input="Hi", store=False, max_output_tokens=16)
    assert r.store is False and r.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_an_image_input_on_the_vision_model(client):
    image = data_uri(image_bytes("png"), "image/png")
    r = client.responses.create(model=VISION_MODEL, max_output_tokens=16, temperature=0, input=[{
        "role": "user", "content": [{"type": "input_text", "text": "What is in this image?"},
                                    {"type": "input_image", "image_url": image, "detail": "auto"}]}])
    assert r.status in ("completed", "incomplete") and r.output[0].type == "message"
    assert r.usage.input_tokens > 10 and r.model == VISION_MODEL


def test_input_tokens_counts_what_create_would_use(client):
    """`client.responses.input_tokens.count`: the same count the answer's usage.input_tokens reports, with
    instructions, tools, a previous response and an image in it; nothing generated or kept."""
    asked = {"model": CHAT_MODEL, "instructions": "Be brief.", "tools": [WEATHER], "input": QUESTION}
    counted = client.responses.input_tokens.count(**asked)
    assert counted.object == "response.input_tokens"
    answered = client.responses.create(**asked, max_output_tokens=16, temperature=0)
    assert counted.input_tokens == answered.usage.input_tokens > 20
    follow_up = {"model": CHAT_MODEL, "previous_response_id": answered.id, "input": "And of Italy?"}
    alone = client.responses.input_tokens.count(model=CHAT_MODEL, input="And of Italy?").input_tokens
    assert client.responses.input_tokens.count(**follow_up).input_tokens == client.responses.create(
        **follow_up, max_output_tokens=16, temperature=0, store=False).usage.input_tokens > alone + 10
    image = [{"role": "user", "content": [{"type": "input_text", "text": "What is in this image?"},
                                          {"type": "input_image", "image_url": data_uri(image_bytes("png"),
                                                                                        "image/png")}]}]
    assert client.responses.input_tokens.count(model=VISION_MODEL, input=image).input_tokens == \
        client.responses.create(model=VISION_MODEL, input=image, max_output_tokens=16, store=False).usage.input_tokens
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input=QUESTION)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.input_tokens.count(model=CHAT_MODEL, input=[{"type": "function_call_output",
                                                                      "call_id": "call_x", "output": "1"}])
    assert err.value.param == "input[0].call_id"
    with pytest.raises(openai.BadRequestError) as err:  # nothing is generated: nothing to stream
        client.responses.input_tokens.count(model=CHAT_MODEL, input=QUESTION, extra_body={"stream": True})
    assert err.value.param == "stream"


@pytest.mark.parametrize("extra, param", [
    ({"frequency": 3}, "frequency"),
    ({"input": [{"type": "computer_call_output", "call_id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}}, "text.format.schema"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": 5}}]}, "tools[0].parameters"),
    ({"previous_response_id": "resp_doesnotexist"}, "previous_response_id"),
    ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, "input[0].call_id"),
    ({"max_output_tokens": 5}, "max_output_tokens"),
    ({"tool_choice": {"type": "function", "name": "launch"}, "tools": [WEATHER]}, "tool_choice"),
])
def test_bad_inputs_are_400_naming_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=CHAT_MODEL, input="Hi", max_output_tokens=16, extra_body=extra)
    assert err.value.body["param"] == param, err.value.body
    if param == "previous_response_id":
        assert err.value.body["code"] == "previous_response_not_found"
