"""Model id -> served model: its public card, what it can do, and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serve_app.cold_start import ColdStart
from serve_app.errors import InvalidRequest, ModelNotFound
from serve_app.protocol.models import model_card
from serve_app.replica_status import AlwaysReady

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
    backend: Any  # has complete/stream (text kinds) or transcribe (speech), and wake
    limits: dict = field(default_factory=dict)  # input limits, shown in /v1/models
    deployment: str = ""  # its Serve deployment's name
    cold_start: ColdStart | None = None  # set when the deployment can scale to zero

    def card(self) -> dict:
        return model_card(self.id, self.owned_by, self.kind, self.limits)

    def require(self, capability: str) -> None:
        if capability not in CAPABILITIES[self.kind]:
            raise InvalidRequest(
                f"Model `{self.id}` is a {self.kind} model and does not support {_ENDPOINT_NAMES[capability]}.",
                param="model",
                code="model_not_supported",
            )


class ModelRegistry:
    def __init__(self, models: list[ServedModel], status=None) -> None:
        self._models = {m.id: m for m in models}
        self.status = status or AlwaysReady()  # running replicas per deployment (serve_app.replica_status)

    @classmethod
    def from_config(cls, models, backends: dict[str, Any], limits, status=None) -> "ModelRegistry":
        """Served models for config entries (serve_app.args.ModelConfig), each with its backend by id;
        `limits` is the gateway's LimitsConfig."""
        return cls([ServedModel(m.id, m.kind, m.owned_by, backends[m.id], _input_limits(m, limits), m.deployment_name,
                                ColdStart(m.id, m.cold_start.max_hold_s, m.cold_start.expected_s)
                                if m.scales_to_zero else None) for m in models], status)

    async def warm(self, model: ServedModel) -> None:
        """Hold the request while a scaled-to-zero model starts its first replica (bounded; 503 past it)."""
        if model.cold_start is not None and await self.status.running(model.deployment) == 0:
            await model.cold_start.hold(model.backend.wake)

    async def state(self, model: ServedModel) -> str:
        """`cold` (no replica: the next request starts one) or `ready`, for /v1/models."""
        return "cold" if await self.status.running(model.deployment) == 0 else "ready"

    def get(self, model_id: str) -> ServedModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    def models(self) -> list[ServedModel]:
        return list(self._models.values())


IMAGE_FORMATS = ["jpeg", "png", "webp", "gif"]
AUDIO_FORMATS = ["mp3", "mp4", "mpeg", "mpga", "m4a", "wav", "webm", "ogg", "flac"]


def _input_limits(model, limits) -> dict:
    if model.kind == "multimodal":
        return {"max_images_per_request": model.max_images_per_request, "max_image_bytes": limits.max_image_bytes,
                "max_image_pixels": limits.max_image_pixels, "image_formats": IMAGE_FORMATS,
                "max_request_bytes": limits.max_request_bytes}
    if model.kind == "speech":
        return {"max_audio_bytes": limits.max_audio_bytes, "max_audio_seconds": model.splitting.max_audio_seconds,
                "audio_formats": AUDIO_FORMATS}
    return {"max_request_bytes": limits.max_request_bytes}
