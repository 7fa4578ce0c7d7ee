"""Images through the gateway reach vLLM: greedy output equals transformers' greedy output for the input."""

from __future__ import annotations

import pytest

from deployments import model_source
from tests.support.media import IMAGE_FORMATS, data_uri, image_bytes
from tests.support.models import TINY_VLM_SOURCE, VISION_MODEL
from tests.support.vlm_reference import transformers_greedy_text

pytestmark = pytest.mark.e2e
PROMPT = "What is in this picture?"


def ask(client, image: bytes, max_tokens: int = 12) -> str:
    content = [{"type": "image_url", "image_url": {"url": data_uri(image)}}, {"type": "text", "text": PROMPT}]
    r = client.chat.completions.create(model=VISION_MODEL, messages=[{"role": "user", "content": content}],
                                       temperature=0, max_tokens=max_tokens)
    assert r.usage.prompt_tokens > 10
    return r.choices[0].message.content


@pytest.mark.parametrize("color", [(220, 20, 20), (20, 20, 220)])
def test_greedy_output_equals_transformers(client, color):
    image = image_bytes("png", color=color)
    path = model_source.resolve(TINY_VLM_SOURCE)
    assert ask(client, image) == transformers_greedy_text(path, image, PROMPT, 12)


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_every_format_reaches_vllm(client, fmt):
    assert ask(client, image_bytes(fmt), max_tokens=3) is not None
