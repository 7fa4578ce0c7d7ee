"""Turn a chat request's image parts into checked images before any model work.

Each `image_url` (a data URI or an http(s) address) is decoded or fetched, checked by its bytes, and written
back as a data URI of the checked bytes, so engines only ever see images the gateway has validated.
"""

from __future__ import annotations

import asyncio

from serve_app.errors import InvalidRequest
from serve_app.gateway.fan_out import gather_or_cancel
from serve_app.gateway.inputs.image_fetch import ImageFetcher
from serve_app.gateway.inputs.images import CheckedImage, ImageLimits, decode_data_uri, decode_image, inspect_image
from serve_app.protocol.chat import ChatCompletionRequest


class ImageInputs:
    def __init__(self, limits: ImageLimits, fetcher: ImageFetcher, max_parallel_decodes: int = 2) -> None:
        self.limits = limits
        self.fetcher = fetcher
        # A full decode of a 50 MP image holds ~200 MB for a moment: a few at a time per gateway replica.
        self._decoding = asyncio.Semaphore(max_parallel_decodes)

    async def resolve(self, chat: ChatCompletionRequest, max_images: int) -> ChatCompletionRequest:
        resolved = chat.model_copy(deep=True)
        parts = resolved.image_parts()
        if len(parts) > max_images:
            raise InvalidRequest(f"Model `{chat.model}` accepts at most {max_images} images per request; "
                                 f"this request has {len(parts)}.", param="messages", code="too_many_images")
        checked = await gather_or_cancel(*(self._load(part.image_url.url, param) for param, part in parts))
        pixels = sum(image.width * image.height for image in checked)
        if pixels > self.limits.max_request_pixels:
            raise InvalidRequest(f"The images of this request have {pixels:,} pixels together; the maximum is "
                                 f"{self.limits.max_request_pixels:,}. Please downscale them.",
                                 param="messages", code="image_too_large")
        for image, (param, _) in zip(checked, parts):
            async with self._decoding:  # off the event loop: a 20 MB file takes a while
                await asyncio.to_thread(decode_image, image, self.limits, param)
        for (_, part), image in zip(parts, checked):
            part.image_url.url = image.data_uri()
        return resolved

    async def _load(self, url: str, param: str) -> CheckedImage:
        if url[:5].lower() == "data:":
            data = decode_data_uri(url, self.limits.max_bytes, param)
        else:
            data = await self.fetcher.fetch(url, param)
        return await asyncio.to_thread(inspect_image, data, self.limits, param)
