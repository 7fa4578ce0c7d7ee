"""Images through the gateway reach vLLM: greedy output equals transformers' greedy output for the input."""

from __future__ import annotations

import pytest

from deployments import model_source
from tests.support.media import IMAGE_FORMATS, data_uri, image_bytes
from tests.support.models import CHAT_MODEL, TINY_VLM_SOURCE, VISION_MODEL
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


@pytest.mark.parametrize("model, with_image", [(VISION_MODEL, True), (VISION_MODEL, False), (CHAT_MODEL, False)])
def test_input_tokens_counts_what_vllm_reports(client, model, with_image):
    """POST /v1/responses/input_tokens on the vLLM engine: the count vLLM's own usage gives for the same input,
    each image's placeholder expanded as vLLM's processor does."""
    content = [{"type": "input_text", "text": PROMPT}]
    if with_image:
        content.insert(0, {"type": "input_image", "image_url": data_uri(image_bytes("png"))})
    asked = {"model": model, "input": [{"role": "user", "content": content}]}
    counted = client.responses.input_tokens.count(**asked).input_tokens
    used = client.responses.create(**asked, max_output_tokens=16, store=False).usage.input_tokens
    assert counted == used > 5
