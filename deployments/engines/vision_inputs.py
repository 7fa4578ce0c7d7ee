"""Chat requests with images, as a transformers processor wants them: part-list messages and PIL images.

The gateway has already checked every image and rewritten it as a data URI of the checked bytes, so here
they are only decoded. An animated GIF contributes its first frame.
"""

from __future__ import annotations

import base64
import io

from deployments.engines.prompt import apply_template, refuse_far_too_long
from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest, ImagePart


def processor_messages(request: ChatCompletionRequest) -> list[dict]:
    messages = []
    for m in request.messages:
        role = "system" if m.role == "developer" else m.role
        if isinstance(m.content, str):
            parts = [{"type": "text", "text": m.content}]
        else:
            parts = [{"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
                     for p in m.content]
        messages.append({"role": role, "content": parts})
    return messages


def request_images(request: ChatCompletionRequest) -> list:
    from PIL import Image

    images = []
    for _, part in request.image_parts():
        url = part.image_url.url
        if not url.startswith("data:"):
            raise InvalidRequest("Images must reach the engine as data URIs.", param="messages")
        with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
            images.append(image.convert("RGB"))
    return images


def render_multimodal(processor, request: ChatCompletionRequest) -> str:
    return apply_template(processor, processor_messages(request))


def encode_multimodal(processor, request: ChatCompletionRequest, max_model_len: int) -> tuple[list[int], dict]:
    """Prompt token ids (image placeholders expanded) and the vision inputs the model's forward takes."""
    refuse_far_too_long(request, max_model_len)
    prompt = render_multimodal(processor, request)
    images = request_images(request)
    inputs = processor(text=prompt, images=[images] if images else None, return_tensors="pt")
    vision = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    return inputs["input_ids"][0].tolist(), vision
