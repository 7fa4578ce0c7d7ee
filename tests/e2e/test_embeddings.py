"""Embeddings through the OpenAI SDK: vectors equal the plain-transformers reference in both encodings, usage
is counted, and every bad input gets its 400 naming the parameter."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from tests.support.embedding_reference import PARAPHRASES, TOLERANCE, UNRELATED, cosine, reference_embeddings
from tests.support.errors import assert_error
from tests.support.models import CHAT_MODEL, EMBEDDING_MODEL

pytestmark = pytest.mark.e2e


def test_vectors_equal_the_reference_and_paraphrases_score_closer(client):
    texts = [*PARAPHRASES, UNRELATED]
    result = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)  # the SDK asks for base64
    assert [d.index for d in result.data] == [0, 1, 2] and result.model == EMBEDDING_MODEL
    got = np.array([d.embedding for d in result.data])
    assert got.shape == (3, 384)
    assert np.abs(got - reference_embeddings(texts)).max() < TOLERANCE
    assert cosine(got[0], got[1]) > cosine(got[0], got[2]) + 0.3
    assert result.usage.prompt_tokens == result.usage.total_tokens > 3 * 2


def test_float_and_base64_encodings_carry_the_same_vector(http):
    body = {"model": EMBEDDING_MODEL, "input": PARAPHRASES[0]}
    floats = http.post("/v1/embeddings", json={**body, "encoding_format": "float"}).json()["data"][0]["embedding"]
    encoded = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert isinstance(floats, list) and np.array_equal(np.array(floats, dtype=np.float32), decoded)


def test_token_arrays_are_accepted(client):
    one = client.embeddings.create(model=EMBEDDING_MODEL, input=[101, 7592, 2088, 102])  # [CLS] hello world [SEP]
    text = client.embeddings.create(model=EMBEDDING_MODEL, input="hello world")
    assert np.abs(np.array(one.data[0].embedding) - np.array(text.data[0].embedding)).max() < TOLERANCE
    two = client.embeddings.create(model=EMBEDDING_MODEL, input=[[101, 7592, 102], [101, 2088, 102]])
    assert len(two.data) == 2 and two.usage.prompt_tokens == 6


def test_many_inputs_come_back_in_order(client):
    texts = [f"document number {i}" for i in range(100)]
    result = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)
    got = np.array([d.embedding for d in result.data])
    assert np.abs(got - reference_embeddings(texts)).max() < TOLERANCE


@pytest.mark.parametrize("body, status, code, param, text", [
    ({"input": ""}, 400, None, "input", "empty"),
    ({"input": []}, 400, None, "input", "empty"),
    ({"input": ["ok", ""]}, 400, None, "input", "input[1] is empty"),
    ({"input": ["ok", "word " * 300]}, 400, "context_length_exceeded", "input", "input[1] has 302 tokens"),
    ({"input": ["ok"] * 2049}, 400, None, "input", "2048"),
    ({"input": [[1, -5]]}, 400, None, "input", "out of range"),
    ({"input": [1.5]}, 400, None, "input[0]", ""),
    ({"input": "hi", "dimensions": 64}, 400, None, "dimensions", "384 dimensions"),
    ({"input": "hi", "dimensions": 0}, 400, None, "dimensions", ""),
    ({"input": "hi", "encoding_format": "int8"}, 400, None, "encoding_format", ""),
    ({"input": "hi", "colour": "red"}, 400, None, "colour", "unrecognized"),
    ({}, 400, None, "input", "missing"),
])
def test_bad_inputs_get_a_400_naming_the_parameter(http, body, status, code, param, text):
    r = http.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, **body})
    assert_error(r, status, code, param, text)


def test_models_of_other_kinds_are_refused_both_ways(http, client):
    r = http.post("/v1/embeddings", json={"model": CHAT_MODEL, "input": "hi"})
    assert_error(r, 400, "model_not_supported", "model", "does not support embeddings")
    r = http.post("/v1/chat/completions", json={"model": EMBEDDING_MODEL,
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert_error(r, 400, "model_not_supported", "model", "does not support chat")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")


def test_models_list_shows_the_embedding_model(client):
    card = next(m for m in client.models.list().data if m.id == EMBEDDING_MODEL).model_extra
    assert card["kind"] == "embedding" and card["capabilities"]["output"] == ["embedding"]
