"""The transformers engine on the tiny random Idefics3: images reach the model, batching changes nothing."""

from __future__ import annotations

import asyncio

from serve_app.contract import collect
from serve_app.protocol.chat import ChatCompletionRequest
from tests.support.media import data_uri, image_bytes
from tests.support.models import VISION_MODEL
from tests.support.vlm_reference import transformers_greedy_text


def image_chat(image: bytes, text: str = "What is in this picture?", **kw) -> ChatCompletionRequest:
    content = [{"type": "image_url", "image_url": {"url": data_uri(image)}}, {"type": "text", "text": text}]
    return ChatCompletionRequest(model=VISION_MODEL, messages=[{"role": "user", "content": content}],
                                 temperature=0, max_tokens=12, **kw)


def test_greedy_output_equals_transformers_generate(vlm_engine, tiny_vlm_path):
    image = image_bytes("png")
    reference = transformers_greedy_text(tiny_vlm_path, image, "What is in this picture?", 12)
    assert asyncio.run(collect(vlm_engine.generate(image_chat(image)), 1)).choices[0][0] == reference


def test_the_image_changes_the_output(vlm_engine):
    red = asyncio.run(collect(vlm_engine.generate(image_chat(image_bytes("png", color=(220, 20, 20)))), 1))
    green = asyncio.run(collect(vlm_engine.generate(image_chat(image_bytes("png", color=(20, 220, 20)))), 1))
    assert red.choices[0][0] != green.choices[0][0]
    assert red.usage.prompt_tokens > 10  # the image placeholders count as prompt tokens


def test_image_rows_batched_with_text_rows_match_solo(vlm_engine):
    requests = [image_chat(image_bytes(fmt)) for fmt in ("png", "jpeg", "gif")] + [
        ChatCompletionRequest(model=VISION_MODEL, messages=[{"role": "user", "content": "Hello"}],
                              temperature=0, max_tokens=12)]

    async def run(together: bool):
        if together:
            return await asyncio.gather(*[collect(vlm_engine.generate(r), 1) for r in requests])
        return [await collect(vlm_engine.generate(r), 1) for r in requests]

    solo = [c.choices[0][0] for c in asyncio.run(run(False))]
    assert [c.choices[0][0] for c in asyncio.run(run(True))] == solo
