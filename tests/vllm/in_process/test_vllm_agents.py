"""Tools and structured outputs on the vLLM engine: vLLM's own structured outputs enforce the same schemas."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.e2e.test_agents import ASK, TOOLS, schema_of
from tests.support.models import CHAT_MODEL

pytestmark = pytest.mark.e2e


def test_required_tool_calls_validate_on_vllm(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=80, temperature=0)
    assert r.choices[0].finish_reason == "tool_calls"
    for call in r.choices[0].message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), schema_of(call.function.name))


class City(BaseModel):
    name: str
    country: str


def test_parse_with_a_pydantic_model_on_vllm(client):
    r = client.chat.completions.parse(model=CHAT_MODEL, response_format=City, max_tokens=60, temperature=0,
                                      messages=[{"role": "user", "content": "Which city is the capital of France?"}])
    assert isinstance(r.choices[0].message.parsed, City)


def test_a_schema_vllm_cannot_enforce_is_400(client):
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=CHAT_MODEL, messages=ASK, max_tokens=5, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})


def test_legacy_completion_with_logprobs_on_vllm(client):
    r = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", max_tokens=4,
                                  temperature=0, logprobs=2)
    logprobs = r.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == r.usage.completion_tokens
    assert all(len(alternatives) <= 2 for alternatives in logprobs.top_logprobs)
    assert "".join(logprobs.tokens) == r.choices[0].text
