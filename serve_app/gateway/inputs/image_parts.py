"""Turn a chat request's image parts into checked images before any model work.

Each `image_url` (a data URI or an http(s) address) is decoded or fetched, checked by its bytes, and written
back as a data URI of the checked bytes, so engines only ever see images the gateway has validated.
"""

from __future__ import annotations

import asyncio

from serve_app.errors import InvalidRequest
from serve_app.gateway.inputs.image_fetch import ImageFetcher
from serve_app.gateway.inputs.images import CheckedImage, ImageLimits, check_image, decode_data_uri
from serve_app.protocol.chat import ChatCompletionRequest


class ImageInputs:
    def __init__(self, limits: ImageLimits, fetcher: ImageFetcher) -> None:
        self.limits = limits
        self.fetcher = fetcher

    async def resolve(self, chat: ChatCompletionRequest, max_images: int) -> ChatCompletionRequest:
        resolved = chat.model_copy(deep=True)
        parts = resolved.image_parts()
        if len(parts) > max_images:
            raise InvalidRequest(f"Model `{chat.model}` accepts at most {max_images} images per request; "
                                 f"this request has {len(parts)}.", param="messages", code="too_many_images")
        checked = await asyncio.gather(*(self._load(part.image_url.url, param) for param, part in parts))
        for (_, part), image in zip(parts, checked):
            part.image_url.url = image.data_uri()
        return resolved

    async def _load(self, url: str, param: str) -> CheckedImage:
        if url[:5].lower() == "data:":
            data = decode_data_uri(url, self.limits.max_bytes, param)
        else:
            data = await self.fetcher.fetch(url, param)
        # Header parsing and checksums of a 20 MB file take a while: keep the event loop free meanwhile.
        return await asyncio.to_thread(check_image, data, self.limits, param)
