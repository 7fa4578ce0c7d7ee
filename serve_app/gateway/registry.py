"""Model id -> served model: its public card, what it can do, and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serve_app.config import AUDIO_FORMATS, IMAGE_FORMATS, KINDS, LimitsConfig, ModelConfig
from serve_app.errors import InvalidRequest, ModelNotFound
from serve_app.gateway.context import RequestContext
from serve_app.gateway.response_cache import CachePolicy, cache_policy
from serve_app.gateway.scale_to_zero import AlwaysReady, ColdStart, ReplicaCounts
from serve_app.protocol.models import model_card

_ENDPOINT_NAMES = {"chat": "chat completions", "transcription": "audio transcriptions", "image": "image input",
                   "translation": "audio translations", "embedding": "embeddings"}


@dataclass(frozen=True)
class ServedModel:
    id: str
    kind: str
    owned_by: str
    backend: Any  # gateway/backends.py: TextBackend or SpeechBackend (or a replica object in-process)
    limits: dict = field(default_factory=dict)  # input limits, shown in /v1/models
    deployment: str = ""  # its Serve deployment's name
    cold_start: ColdStart | None = None  # set when the deployment can scale to zero
    tool_parser: str = "hermes"  # the model's own tool-call syntax (gateway/tool_calls.py)
    reasoning_parser: str | None = None  # how it marks its thinking (gateway/reasoning.py)
    cache: CachePolicy | None = None  # answers repeated deterministic requests from the response cache
    capabilities: frozenset[str] | None = None  # ModelConfig.capabilities (default: all of its kind's)
    context_tokens: int | None = None  # its context length, where the config's engine options say it

    def reservation(self, estimate: int, sequences: int) -> int:
        """Tokens to hold before model work: the request's estimate, but no more than `sequences` full contexts
        (a max_tokens far beyond the context would otherwise be refused as over a key's per-minute limit)."""
        return estimate if self.context_tokens is None else min(estimate, sequences * self.context_tokens)

    def __post_init__(self) -> None:
        if self.capabilities is None:
            object.__setattr__(self, "capabilities", KINDS[self.kind].capabilities)

    def card(self) -> dict:
        chat = "chat" in self.capabilities
        features = {"tools": chat, "structured_outputs": chat, "reasoning": self.reasoning_parser is not None}
        if self.kind == "speech":
            features["translation"] = "translation" in self.capabilities
        kind = KINDS[self.kind]
        return model_card(self.id, self.owned_by, self.kind, list(kind.inputs), self.limits, features,
                          list(kind.outputs))

    def require(self, capability: str) -> None:
        if capability not in self.capabilities:
            english_only = capability == "translation" and self.kind == "speech"
            what = "an English-only speech" if english_only else ("an" if self.kind[0] in "aeiou" else "a") + \
                f" {self.kind}"
            raise InvalidRequest(
                f"Model `{self.id}` is {what} model and does not support {_ENDPOINT_NAMES[capability]}.",
                param="model",
                code="model_not_supported",
            )


class ModelRegistry:
    def __init__(self, models: list[ServedModel], status: ReplicaCounts | None = None) -> None:
        self._models = {m.id: m for m in models}
        self.status = status or AlwaysReady()

    @classmethod
    def from_config(cls, models: list[ModelConfig], backends: dict[str, Any], limits: LimitsConfig,
                    status: ReplicaCounts | None = None) -> ModelRegistry:
        """Served models for config entries, each with its backend by id."""
        return cls([_served(m, backends[m.id], limits) for m in models], status)

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

    def for_caller(self, context: RequestContext, model_id: str, capability: str) -> ServedModel:
        """The model a route was asked for, if the caller's key may use it and it can do `capability`."""
        context.authenticated().require_model(model_id)
        model = self.get(model_id)
        context.model = model_id
        model.require(capability)
        return model

    def models(self) -> list[ServedModel]:
        return list(self._models.values())


def _served(config: ModelConfig, backend: Any, limits: LimitsConfig) -> ServedModel:
    cold_start = None
    if config.scales_to_zero:
        cold_start = ColdStart(config.id, config.cold_start.max_hold_s, config.cold_start.expected_s)
    return ServedModel(config.id, config.kind, config.owned_by, backend, _input_limits(config, limits),
                       config.deployment_name, cold_start, config.tool_parser, config.reasoning_parser,
                       cache_policy(config), config.capabilities, config.engine_options.get("max_model_len"))


def _input_limits(model: ModelConfig, limits: LimitsConfig) -> dict:
    if model.kind == "multimodal":
        return {"max_images_per_request": model.max_images_per_request, "max_image_bytes": limits.max_image_bytes,
                "max_image_pixels": limits.max_image_pixels, "image_formats": list(IMAGE_FORMATS),
                "max_request_bytes": limits.max_request_bytes}
    if model.kind == "speech":
        return {"max_audio_bytes": limits.max_audio_bytes, "max_audio_seconds": model.splitting.max_audio_seconds,
                "audio_formats": list(AUDIO_FORMATS)}
    return {"max_request_bytes": limits.max_request_bytes}
