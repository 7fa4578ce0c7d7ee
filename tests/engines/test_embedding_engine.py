"""The transformers embedding engine on all-MiniLM-L6-v2: vectors equal the plain-transformers reference,
concurrent requests share forward passes without changing results, and inputs over the window are refused."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from deployments import model_source
from deployments.engines.options import HFEmbeddingOptions
from serve_app.errors import InvalidRequest
from serve_app.protocol.embeddings import EmbeddingRequest
from tests.support.embedding_reference import (
    PARAPHRASES,
    TOLERANCE,
    UNRELATED,
    cosine,
    reference_embeddings,
    token_ids,
)
from tests.support.models import MINILM_SOURCE


@pytest.fixture(scope="module")
def engine():
    from deployments.engines.hf.embedding import HFEmbeddingEngine

    engine = HFEmbeddingEngine(model_source.resolve(MINILM_SOURCE),
                               HFEmbeddingOptions(max_batch_size=8, batch_wait_ms=20, torch_threads=2))
    yield engine
    engine.shutdown()


def vectors(result) -> list[np.ndarray]:
    return [np.frombuffer(v, dtype="<f4") for v in result.vectors]


def embed(engine, **fields):
    return asyncio.run(engine.embed(EmbeddingRequest(model="m", **fields)))


def test_reads_pooling_normalisation_and_window_from_the_models_own_files(engine):
    assert (engine.layout.pooling, engine.layout.normalize, engine.window, engine.dimensions) == ("mean", True, 256,
                                                                                                 384)


def test_vectors_equal_the_reference_and_paraphrases_score_closer(engine):
    texts = [*PARAPHRASES, UNRELATED, "short", "a much longer sentence " * 20]
    result = embed(engine, input=texts)
    got = np.stack(vectors(result))
    assert np.abs(got - reference_embeddings(texts)).max() < TOLERANCE
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosine(got[0], got[1]) > cosine(got[0], got[2]) + 0.3
    assert result.prompt_tokens == sum(len(token_ids(t)) for t in texts)


def test_concurrent_requests_batch_together_with_the_same_vectors_as_alone(engine):
    texts = [f"sentence number {i} about {'cats' if i % 2 else 'the weather'}" for i in range(24)]
    alone = [vectors(embed(engine, input=t))[0] for t in texts[:3]]

    async def together():
        return await asyncio.gather(*(engine.embed(EmbeddingRequest(model="m", input=t)) for t in texts))

    passes = engine.forward_passes
    concurrent = [vectors(r)[0] for r in asyncio.run(together())]
    assert engine.forward_passes - passes <= len(texts) // 2  # requests shared passes (8 inputs at most each)
    for a, b in zip(alone, concurrent):
        assert np.abs(a - b).max() < TOLERANCE  # padding in a shared batch changes nothing
    assert np.abs(np.stack(concurrent) - reference_embeddings(texts)).max() < TOLERANCE


def test_token_arrays_are_fed_as_given(engine):
    ids = token_ids(PARAPHRASES[0])  # with the [CLS] and [SEP] the tokenizer adds to text
    from_ids, from_text = vectors(embed(engine, input=[ids])) + vectors(embed(engine, input=PARAPHRASES[0]))
    assert np.abs(from_ids - from_text).max() < TOLERANCE
    assert embed(engine, input=ids).prompt_tokens == len(ids)


@pytest.mark.parametrize("fields, param, code, fragment", [
    ({"input": ["fine", "word " * 300]}, "input", "context_length_exceeded", "input[1] has 302 tokens"),
    ({"input": "x" * 100_000}, "input", "context_length_exceeded", "at least"),
    ({"input": [[1, 2, 999_999]]}, "input", None, "outside the model's vocabulary"),
    ({"input": "hi", "dimensions": 128}, "dimensions", None, "384 dimensions"),
])
def test_refusals_name_the_input(engine, fields, param, code, fragment):
    with pytest.raises(InvalidRequest) as info:
        embed(engine, **fields)
    assert (info.value.param, info.value.code) == (param, code)
    assert fragment in info.value.message


def test_a_failing_input_fails_only_its_own_request(engine, monkeypatch):
    original = engine._encode

    def encode(sequences):
        if any(ids[1:2] == [666] for ids in sequences):  # this input breaks the model, here on purpose
            raise RuntimeError("bad input")
        return original(sequences)

    monkeypatch.setattr(engine, "_encode", encode)

    async def together():
        return await asyncio.gather(*(engine.embed(EmbeddingRequest(model="m", input=[ids]))
                                      for ids in ([101, 666, 102], [101, 7592, 102], [101, 2088, 102])),
                                    return_exceptions=True)

    bad, good, other = asyncio.run(together())
    assert isinstance(bad, RuntimeError)
    assert len(vectors(good)[0]) == 384 and len(vectors(other)[0]) == 384


def test_dimensions_equal_to_the_models_own_are_accepted(engine):
    assert len(vectors(embed(engine, input="hi", dimensions=384))[0]) == 384


def test_matryoshka_models_shorten_and_renormalise():
    from deployments.engines.hf.embedding import HFEmbeddingEngine

    engine = HFEmbeddingEngine(model_source.resolve(MINILM_SOURCE), HFEmbeddingOptions(matryoshka=True))
    try:
        full, short = (vectors(embed(engine, input=PARAPHRASES[0], dimensions=d))[0] for d in (None, 64))
        assert len(short) == 64 and abs(np.linalg.norm(short) - 1) < 1e-5
        assert np.abs(short - full[:64] / np.linalg.norm(full[:64])).max() < 1e-6
        with pytest.raises(InvalidRequest, match="at most 384"):
            embed(engine, input="hi", dimensions=1000)
    finally:
        engine.shutdown()


def test_worker_runs_below_the_event_loop(engine):
    embed(engine, input="warm")  # the worker has started and lowered itself by now
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker_nice = os.getpriority(os.PRIO_PROCESS, engine._worker.native_id)
    assert worker_nice == min(19, loop_nice + engine.options.compute_nice) > loop_nice
