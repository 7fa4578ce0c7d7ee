"""Chat completions: the request body (OpenAI fields plus vLLM's sampling extras) and response shapes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_CHOICES = 8  # bounds the work one request can ask for
MAX_STOP_CHARS = 256  # stop strings are matched against the text on every token
MAX_TOP_LOGPROBS = 20  # OpenAI's cap


@dataclass(frozen=True)
class SamplingParams:
    """A request's sampling settings with every default filled in: the one mapping both engines and the
    access log use (OpenAI's defaults, vLLM's for its extras; top_k 0 disables)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    def for_choice(self, index: int) -> SamplingParams:
        # n seeded choices must differ from each other yet repeat across calls.
        if self.seed is None or index == 0:
            return self
        return SamplingParams(**{**asdict(self), "seed": self.seed + index})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageURL(_Wire):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class StreamOptions(_Wire):
    include_usage: bool = False


class ResponseFormat(_Wire):
    type: Literal["text"] = Field(description="Only plain text; JSON modes are not supported.")


class ChatCompletionRequest(_Wire):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, le=2**31 - 1, description="vLLM extra; -1 or 0 disables")
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = Field(False, description="Return each output token's log probability (vLLM engine).")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS,
                                     description="Also return this many most likely tokens at each position.")
    response_format: ResponseFormat | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > 4 or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"stop must be up to 4 non-empty strings of at most {MAX_STOP_CHARS} characters")
        return stop

    @field_validator("top_logprobs")
    @classmethod
    def _only_with_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top is not None and not info.data.get("logprobs"):
            raise ValueError("logprobs must be set to true if top_logprobs is used")
        return top

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, options: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if options is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return options

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=max(self.top_k or 0, 0),
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            seed=self.seed,
        )

    def token_estimate(self) -> int:
        """Tokens this request may cost at most, estimated before tokenizing (4 characters a token): the
        prompt plus `n` times the completion cap it asks for."""
        chars = sum(len(m.text()) for m in self.messages)
        return chars // 4 + self.n * (self.token_budget() or 0)

    def sampling_summary(self) -> dict:
        """What the access log records about sampling (never message content)."""
        return {**asdict(self.sampling()), "max_tokens": self.token_budget(), "n": self.n}

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def token_budget(self) -> int | None:
        """Requested completion-token cap (max_completion_tokens wins, as in OpenAI's API)."""
        return self.max_completion_tokens or self.max_tokens

    def image_count(self) -> int:
        return len(self.image_parts())

    def image_parts(self) -> list[tuple[str, ImagePart]]:
        """Every image part, in order, with its parameter path (for errors)."""
        return [(f"messages[{m}].content[{p}].image_url", part)
                for m, message in enumerate(self.messages) if not isinstance(message.content, str)
                for p, part in enumerate(message.content) if isinstance(part, ImagePart)]


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def logprobs_body(entries: list[dict] | None) -> dict | None:
    return None if entries is None else {"content": entries, "refusal": None}


def completion_body(
    completion_id: str, model: str, choices: list[tuple[str, str | None, list[dict] | None]], usage: dict
) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs_body(logprobs),
                "finish_reason": finish,
            }
            for i, (text, finish, logprobs) in enumerate(choices)
        ],
        "usage": usage,
    }


def chunk_body(
    completion_id: str, created: int, model: str, choices: list[dict], usage: dict | None, with_usage_field: bool
) -> dict:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if with_usage_field:
        body["usage"] = usage
    return body


def delta_choice(index: int, delta: dict, finish_reason: str | None, logprobs: list[dict] | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs_body(logprobs), "finish_reason": finish_reason}
