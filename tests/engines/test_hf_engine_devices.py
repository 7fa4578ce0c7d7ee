"""The transformers engine on each device torch offers (`engine_options.device`): the CPU always, and a GPU where
there is one. Tiny random models built here, so a GPU box needs no download; run it there alone, without the
session's fixtures, with torch, transformers, pydantic, pyyaml, numpy and pillow (xgrammar for the schema test):
    HF_ENGINE_TOKENIZER=<folder> python -m pytest -o addopts= --noconftest tests/engines/test_hf_engine_devices.py
The tokenizer is SmolLM2's: from the folder `HF_ENGINE_TOKENIZER` names (its tokenizer files and config.json),
else converted from the embedded model (which needs the project's own install).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import torch

from deployments.engines.chat_prompt import encode_chat
from deployments.engines.options import HFEngineOptions
from serve_app.contract import collect
from serve_app.protocol.chat import ChatCompletionRequest

DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
PROMPTS = ["What is the capital of France?", "Name three colours.", "Write one word: hello"]


def _tokenizer_path() -> str:
    if os.environ.get("HF_ENGINE_TOKENIZER"):
        return os.environ["HF_ENGINE_TOKENIZER"]
    from deployments import model_source
    from tests.support.models import SMOLLM2_SOURCE

    return model_source.as_transformers_checkpoint(model_source.resolve(SMOLLM2_SOURCE))


@pytest.fixture(scope="module")
def tokenizer_path() -> str:
    return _tokenizer_path()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, tokenizer_path) -> str:
    """A 2-layer Llama with SmolLM2's tokenizer; a wide initialisation keeps its logits far apart, so greedy
    choices do not flip on the last bits of a GPU kernel's rounding."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    target = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         initializer_range=0.5, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


def _engine(path: str, device: str, multimodal: bool = False, **options):
    from deployments.engines.hf.engine import HFTextEngine

    return HFTextEngine(path, HFEngineOptions(device=device, max_batch_size=8, torch_threads=2, **options),
                        multimodal=multimodal)


@pytest.fixture(scope="module", params=DEVICES)
def engine(request, tiny_llama):
    engine = _engine(tiny_llama, request.param, dtype="float32")
    yield engine
    engine.shutdown()


def greedy(content: str, max_tokens: int = 12, **kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": content}], temperature=0,
                                 max_tokens=max_tokens, ignore_eos=True, **kw)


def reference_text(engine, request: ChatCompletionRequest) -> str:
    """transformers' own greedy generate() on the engine's model and device, from the engine's prompt ids."""
    ids = encode_chat(engine.tokenizer, request, engine.max_model_len)
    with torch.inference_mode():
        out = engine.model.generate(torch.tensor([ids], device=engine.device), do_sample=False,
                                    max_new_tokens=request.max_tokens, min_new_tokens=request.max_tokens)
    return engine.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def test_weights_and_decoding_are_on_the_device_named(engine):
    assert engine.model.device.type == engine.options.device and engine.model.dtype == torch.float32
    done = asyncio.run(collect(engine.generate(greedy(PROMPTS[0])), 1))
    assert done.usage.completion_tokens == 12 and done.choices[0][1] == "length"


def test_a_batch_and_a_request_joining_it_match_transformers_generate_on_the_device(engine):
    """Left padding, per-row positions, a row joining mid-flight and rows leaving, on the device's tensors."""
    first = [greedy(p, 48) for p in PROMPTS]
    late = greedy("Tell me about the sea.", 8)

    async def overlapped():
        running = asyncio.gather(*[collect(engine.generate(r), 1) for r in first])
        deadline = time.monotonic() + 60
        while engine.running_sequences < len(first):
            assert time.monotonic() < deadline, "the first requests never ran together"
            await asyncio.sleep(0.001)
        joined = await collect(engine.generate(late), 1)  # joins, then leaves before the others end
        return [c.choices[0][0] for c in await running] + [joined.choices[0][0]]

    got = asyncio.run(overlapped())
    assert got == [reference_text(engine, r) for r in [*first, late]]


def sampling_requests(tokenizer) -> dict[str, ChatCompletionRequest]:
    token = tokenizer.convert_tokens_to_ids("ĠParis")
    return {
        "seeded": ChatCompletionRequest(model="m", messages=[{"role": "user", "content": PROMPTS[0]}],
                                        temperature=0.9, top_p=0.9, top_k=50, min_p=0.05, seed=5, max_tokens=10,
                                        ignore_eos=True),
        "penalties": greedy(PROMPTS[1], 10, repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.5),
        "bias": greedy(PROMPTS[2], 6, logit_bias={str(token): 100}),
        "held": ChatCompletionRequest(model="m", messages=[{"role": "user", "content": PROMPTS[0]}], temperature=0,
                                      max_tokens=8, min_tokens=8, stop_token_ids=[token], n=2),
    }


def run_together(engine, requests: dict[str, ChatCompletionRequest]) -> dict:
    async def together():
        return await asyncio.gather(*[collect(engine.generate(r), r.n) for r in requests.values()])

    return dict(zip(requests, asyncio.run(together())))


def test_every_sampling_control_runs_on_the_devices_tensors(engine):
    requests = sampling_requests(engine.tokenizer)
    first, second = run_together(engine, requests), run_together(engine, requests)
    assert first == second  # a seed reproduces on each device; the rest is greedy
    assert first["bias"].choices[0][0] == " Paris" * 6
    assert first["penalties"].usage.completion_tokens == 10
    held = first["held"]
    assert [f for _, f, _ in held.choices] == ["length", "length"] and held.usage.completion_tokens == 16
    assert " Paris" not in held.choices[0][0]


@pytest.mark.skipif(DEVICES == ["cpu"], reason="needs a CUDA GPU")
def test_the_gpu_decides_as_the_cpu_does(tiny_llama):
    """The same weights in float32 on each device: every greedy row chooses the same tokens."""
    answers = {}
    for device in DEVICES:
        engine = _engine(tiny_llama, device, dtype="float32")
        try:
            answers[device] = run_together(engine, sampling_requests(engine.tokenizer))
        finally:
            engine.shutdown()
    for name in ("penalties", "bias", "held"):
        assert answers["cuda"][name].choices == answers["cpu"][name].choices, name


def test_a_json_schema_is_enforced_with_the_mask_on_the_device(engine):
    pytest.importorskip("xgrammar")
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green"]}}, "required": ["colour"],
              "additionalProperties": False}
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": PROMPTS[1]}], temperature=0,
                                    max_tokens=20, response_format={"type": "json_schema",
                                                                    "json_schema": {"name": "c", "schema": schema}})
    done = asyncio.run(collect(engine.generate(request), 1))
    assert done.choices[0][1] == "stop" and json.loads(done.choices[0][0])["colour"] in ("red", "green")


@pytest.mark.parametrize("device", DEVICES)
def test_a_vision_language_model_takes_its_images_on_the_device_in_its_dtype(tmp_path, tokenizer_path, device):
    from deployments.tiny_vlm import build_tiny_idefics3
    from tests.support.media import data_uri, image_bytes

    build_tiny_idefics3(tmp_path, tokenizer_path)
    engine = _engine(str(tmp_path), device, multimodal=True)  # dtype auto: bfloat16 on a GPU, float32 on the CPU
    try:
        on_gpu = device == "cuda"
        assert engine.model.dtype == (torch.bfloat16 if on_gpu else torch.float32)
        assert engine.options.compute_nice == (0 if on_gpu else 4)

        def ask(colour):
            content = [{"type": "image_url", "image_url": {"url": data_uri(image_bytes("png", color=colour))}},
                       {"type": "text", "text": "What is in this picture?"}]
            return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": content}], temperature=0,
                                         max_tokens=12, ignore_eos=True)

        async def both():
            return await asyncio.gather(*[collect(engine.generate(ask(c)), 1) for c in ((220, 20, 20), (20, 220, 20))])

        red, green = asyncio.run(both())
        assert red.usage.completion_tokens == green.usage.completion_tokens == 12
        assert red.usage.prompt_tokens > 10 and red.choices[0][0] != green.choices[0][0]
    finally:
        engine.shutdown()


def test_an_embedding_model_encodes_on_each_device_and_the_gpu_agrees_with_the_cpu(tmp_path, tokenizer_path):
    """A tiny random BERT (plain checkpoint: mean pooling, normalised); float32 on every device."""
    import numpy as np
    from transformers import AutoTokenizer, BertConfig, BertModel

    from deployments.engines.hf.embedding import HFEmbeddingEngine
    from deployments.engines.options import HFEmbeddingOptions
    from serve_app.protocol.embeddings import EmbeddingRequest

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    request = EmbeddingRequest(model="m", input=["hello world", "a longer sentence about the sea and its ships"])
    vectors = {}
    for device in DEVICES:
        engine = HFEmbeddingEngine(str(tmp_path), HFEmbeddingOptions(device=device, torch_threads=2))
        try:
            assert engine.model.device.type == device and engine.options.compute_nice == (0 if device == "cuda" else 4)
            done = asyncio.run(engine.embed(request))
        finally:
            engine.shutdown()
        vectors[device] = np.stack([np.frombuffer(v, dtype="<f4") for v in done.vectors])
        assert vectors[device].shape == (2, 32) and np.allclose(np.linalg.norm(vectors[device], axis=1), 1, atol=1e-5)
    if "cuda" in vectors:
        assert np.allclose(vectors["cuda"], vectors["cpu"], atol=1e-4)
