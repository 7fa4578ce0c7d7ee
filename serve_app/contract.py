"""The gateway-replica contract: the typed results model replicas send back to the gateway.

Pure dataclasses (part of the kernel replicas import): nothing here may import an engine or Starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class ChoiceDelta:
    """New text for one choice; `finish_reason` set on that choice's last delta."""

    index: int
    text: str
    finish_reason: str | None = None
    # OpenAI `logprobs.content` entries for the tokens of this delta, when the request asked for them
    logprobs: list[dict] | None = None


@dataclass
class GenerationStep:
    """One engine step's output for a request; the last step carries `usage`. Earlier steps may carry
    `progress`, the usage so far: what a streamed request whose client goes away has used, and is charged."""

    deltas: list[ChoiceDelta] = field(default_factory=list)
    usage: TokenUsage | None = None
    progress: TokenUsage | None = None

    @classmethod
    def at(cls, deltas: list[ChoiceDelta], so_far: TokenUsage, last: bool) -> GenerationStep:
        """A step with the request's usage so far: its `usage` on the last step, its `progress` before."""
        return cls(deltas, usage=so_far) if last else cls(deltas, progress=so_far)

    @property
    def used(self) -> TokenUsage | None:
        """The request's usage as of this step (final on the last), if the engine said."""
        return self.usage or self.progress


@dataclass
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None


@dataclass
class ChunkTranscript:
    """What one replica made of one chunk of a file (times relative to the file)."""

    segments: list[Segment]
    language: str
    seconds: float  # length of the chunk


@dataclass
class Transcription:
    text: str
    language: str
    duration: float
    segments: list[Segment]


@dataclass
class Embeddings:
    """Vectors for an embeddings request, in input order, as float32 little-endian bytes (compact over Ray)."""

    vectors: list[bytes]
    prompt_tokens: int


@dataclass
class Completion:
    """A whole (non-streamed) chat completion: (text, finish_reason, logprobs entries or None) per choice."""

    choices: list[tuple[str, str | None, list[dict] | None]]
    usage: TokenUsage


def merge_steps(steps: list[GenerationStep]) -> GenerationStep:
    """Consecutive steps as one: each choice's text joined, its finish and logprobs kept, the last usage."""
    merged: dict[int, ChoiceDelta] = {}
    usage = progress = None
    for step in steps:
        for d in step.deltas:
            seen = merged.get(d.index)
            if seen is None:
                merged[d.index] = ChoiceDelta(d.index, d.text, d.finish_reason,
                                              list(d.logprobs) if d.logprobs is not None else None)
                continue
            seen.text += d.text
            seen.finish_reason = d.finish_reason or seen.finish_reason
            if d.logprobs is not None:
                seen.logprobs = (seen.logprobs or []) + d.logprobs
        usage = step.usage or usage
        progress = step.progress or progress
    return GenerationStep(list(merged.values()), usage, None if usage else progress)


async def collect(steps: AsyncIterator[GenerationStep], n: int) -> Completion:
    """Fold a step stream into a Completion; the one place streamed and whole answers meet."""
    texts = [""] * n
    finishes: list[str | None] = [None] * n
    logprobs: list[list[dict] | None] = [None] * n
    usage = TokenUsage(0, 0)
    async for step in steps:
        for delta in step.deltas:
            texts[delta.index] += delta.text
            finishes[delta.index] = delta.finish_reason or finishes[delta.index]
            if delta.logprobs is not None:
                logprobs[delta.index] = (logprobs[delta.index] or []) + delta.logprobs
        usage = step.usage or usage
    return Completion(list(zip(texts, finishes, logprobs)), usage)
