"""Audio transcriptions: the multipart form fields and the response formats OpenAI defines."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


class TranscriptionRequest(BaseModel):
    """Every form field but `file`, which travels separately as bytes."""

    model_config = ConfigDict(extra="forbid")

    model: str
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$", description="ISO-639-1 code")
    prompt: str | None = Field(None, max_length=4096)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=lambda: ["segment"])
    stream: bool = False
    filename: str | None = Field(None, description="Name the client gave the upload (informational).")

    def wants_words(self) -> bool:
        return "word" in self.timestamp_granularities
