"""Embeddings: the request body (OpenAI's fields) and the response, vectors as floats or base64 float32."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_INPUTS = 2048  # OpenAI's cap on inputs per request
TOKEN_ID_MAX = 2**31 - 1


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    # One string, strings, one token array or token arrays (OpenAI's four shapes); token ids are fed as they
    # are, without the special tokens the tokenizer would add around text.
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Shorter vectors, for models trained to allow it.")
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value):
        items = _as_items(value)
        if not items:
            raise ValueError("must not be empty")
        if len(items) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        for i, item in enumerate(items):
            if len(item) == 0:
                raise ValueError(f"input[{i}] is empty" if len(items) > 1 else "must not be empty")
            if not isinstance(item, str) and not all(0 <= t <= TOKEN_ID_MAX for t in item):
                raise ValueError(f"input[{i}] has a token id out of range" if len(items) > 1
                                 else "has a token id out of range")
        return value

    def inputs(self) -> list[str | list[int]]:
        """The inputs as a list, each a string or a token array."""
        return _as_items(self.input)

    def token_estimate(self) -> int:
        """Tokens this request may cost, before tokenizing (4 characters a token), for the rate limiter."""
        return sum(len(item) // 4 + 1 if isinstance(item, str) else len(item) for item in self.inputs())


def _as_items(value: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    """One string or one token array is one input; otherwise each element is."""
    if isinstance(value, str) or (value and isinstance(value[0], int)):
        return [value]
    return list(value)


def embedding_body(model: str, vectors: list[bytes], encoding_format: str, prompt_tokens: int) -> dict:
    """OpenAI's list of embeddings; `vectors` are float32 little-endian bytes, one per input in order."""

    def encoded(vector: bytes) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(vector).decode()
        floats = array("f", vector)  # the standard library's float32 (the kernel imports no numpy)
        if sys.byteorder == "big":
            floats.byteswap()
        return floats.tolist()

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
