"""Legacy text completions (POST /v1/completions): a raw prompt, no chat template, OpenAI's response shapes."""

from __future__ import annotations

import time

from pydantic import Field

from serve_app.protocol.chat import StreamOptions
from serve_app.protocol.sampling import SamplingRequest

MAX_PROMPTS = 16  # prompts in one request, each answered with `n` choices
MAX_LOGPROBS = 5  # OpenAI's cap for the legacy route


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] = Field(description="A prompt, or a list of prompts (each gets `n` choices).")
    max_tokens: int | None = Field(16, ge=1, description="OpenAI's default for this route is 16.")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS,
                                 description="Log probability of each token and of this many alternatives.")
    echo: bool = Field(False, description="Put the prompt before each choice's text.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def for_prompt(self, prompt: str) -> CompletionRequest:
        """This request with one prompt: what a model replica is sent."""
        return self.model_copy(update={"prompt": prompt})

    # What the engines ask of any text request (see ChatCompletionRequest).
    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs

    def constraint(self) -> None:
        return None

    def token_estimate(self) -> int:
        return sum(len(p) for p in self.prompts()) // 4 + len(self.prompts()) * self.n * (self.max_tokens or 0)


def legacy_logprobs(entries: list[dict] | None, offset: int) -> dict | None:
    """Chat-style logprob entries as the legacy route's `logprobs` object."""
    if entries is None:
        return None
    tokens = [e["token"] for e in entries]
    offsets, at = [], offset
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {"tokens": tokens, "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets}


def completion_body(completion_id: str, model: str, choices: list[dict], usage: dict) -> dict:
    return {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage}


def text_choice(index: int, text: str, finish_reason: str | None, logprobs: dict | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
