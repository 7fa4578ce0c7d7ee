"""Model id -> served model: its public card, what it can do, and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serve_app.errors import InvalidRequest, ModelNotFound
from serve_app.protocol.models import model_card

# What each model kind can be asked to do.
CAPABILITIES = {
    "text": {"chat"},
    "multimodal": {"chat", "image"},
    "speech": {"transcription"},
}
_ENDPOINT_NAMES = {"chat": "chat completions", "transcription": "audio transcriptions", "image": "image input"}


@dataclass(frozen=True)
class ServedModel:
    id: str
    kind: str
    owned_by: str
    backend: Any  # has complete/stream (text kinds) or transcribe (speech)

    def card(self) -> dict:
        return model_card(self.id, self.owned_by, self.kind)

    def require(self, capability: str) -> None:
        if capability not in CAPABILITIES[self.kind]:
            raise InvalidRequest(
                f"Model `{self.id}` is a {self.kind} model and does not support {_ENDPOINT_NAMES[capability]}.",
                param="model",
                code="model_not_supported",
            )


class ModelRegistry:
    def __init__(self, models: list[ServedModel]) -> None:
        self._models = {m.id: m for m in models}

    @classmethod
    def from_config(cls, models, backends: dict[str, Any]) -> "ModelRegistry":
        """Served models for config entries (serve_app.args.ModelConfig), each with its backend by id."""
        return cls([ServedModel(m.id, m.kind, m.owned_by, backends[m.id]) for m in models])

    def get(self, model_id: str) -> ServedModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    def cards(self) -> list[dict]:
        return [m.card() for m in self._models.values()]
