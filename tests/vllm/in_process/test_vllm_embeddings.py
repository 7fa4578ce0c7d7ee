"""Embeddings on vLLM's pooling runner (CPU build), through the gateway with the OpenAI SDK: the same vectors
as the plain-transformers reference, and the same refusals as the transformers engine."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.support.embedding_reference import PARAPHRASES, TOLERANCE, UNRELATED, cosine, reference_embeddings
from tests.support.models import EMBEDDING_MODEL


def test_vectors_equal_the_reference(client):
    texts = [*PARAPHRASES, UNRELATED]
    result = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)
    got = np.array([d.embedding for d in result.data])
    assert np.abs(got - reference_embeddings(texts)).max() < TOLERANCE
    assert cosine(got[0], got[1]) > cosine(got[0], got[2])
    assert result.usage.prompt_tokens > len(texts)


def test_an_input_over_the_window_is_refused_by_index(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=EMBEDDING_MODEL, input=["ok", "word " * 400])
    assert info.value.code == "context_length_exceeded" and info.value.param == "input"
    assert "input[1]" in info.value.message


def test_dimensions_on_a_model_without_matryoshka_is_refused(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=EMBEDDING_MODEL, input="hi", dimensions=64)
    assert info.value.param == "dimensions"
