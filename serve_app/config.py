"""Configuration schema: the YAML `args` of the Serve application, validated once on the way in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ModelKind = Literal["text", "multimodal", "speech", "embedding"]
EngineName = Literal["transformers", "vllm", "faster-whisper", "synthetic"]


@dataclass(frozen=True)
class Kind:
    """What a kind of model is served by, can be asked to do, and accepts (shown in /v1/models)."""

    engines: frozenset[str]
    capabilities: frozenset[str]  # chat, image (chat with images), transcription, translation, embedding
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ("text",)


KINDS: dict[str, Kind] = {
    "text": Kind(frozenset({"transformers", "vllm", "synthetic"}), frozenset({"chat"}), ("text",)),
    "multimodal": Kind(frozenset({"transformers", "vllm", "synthetic"}), frozenset({"chat", "image"}),
                       ("text", "image")),
    # translation (to English) needs a multilingual model: ModelConfig.multilingual says which
    "speech": Kind(frozenset({"faster-whisper"}), frozenset({"transcription", "translation"}), ("audio",)),
    "embedding": Kind(frozenset({"transformers", "vllm"}), frozenset({"embedding"}), ("text",), ("embedding",)),
}
# Accepted upload formats, decided by the bytes (the guide's lists; ogg and flac decode as well).
IMAGE_FORMATS = ("jpeg", "png", "webp", "gif")
AUDIO_FORMATS = ("mp3", "mp4", "mpeg", "mpga", "m4a", "wav", "webm", "ogg", "flac")
STREAM_INTERVAL_MS = 20.0  # bench/RESULTS.md, gateway overhead
STREAM_ITEMS_PER_S = 1000  # per model replica, all its streams together (bench/RESULTS.md, gateway overhead)
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Where the weights come from: exactly one of `hub`, `path` or `package`."""

    hub: str | None = Field(None, description="Model hub repository id, e.g. Qwen/Qwen2.5-7B-Instruct.")
    path: str | None = Field(
        None, description="Local file or folder; with `package`, a path inside that package's folder."
    )
    package: str | list[str] | None = Field(
        None, description="Importable name of an installed Python package that ships the weights; a list when "
        "they are split across packages (the `path` folders are merged and `<name>.partN` files joined in order).",
    )
    builder: Literal["tiny-random-idefics3"] | None = Field(
        None, description="Build a tiny random model from configs at first start (tests and CPU demos only)."
    )
    seed: int = Field(0, description="With `builder`: the random seed (same seed, same weights).")

    @model_validator(mode="after")
    def _one_origin(self) -> ModelSource:
        if isinstance(self.package, list) and (len(self.package) < 2 or len(set(self.package)) != len(self.package)):
            raise ValueError("a list of packages names two or more different packages (else give one name)")
        origins = [self.hub is not None, self.package is not None or self.path is not None, self.builder is not None]
        if sum(origins) != 1:
            raise ValueError("give exactly one of `hub`, `path` and/or `package`, or `builder`")
        return self


class DeploymentOptions(_Strict):
    """Ray Serve options for one model deployment; passed to `Deployment.options`."""

    num_replicas: int | Literal["auto"] | None = Field(None, description="Fixed replica count (omit to autoscale).")
    autoscaling_config: dict[str, Any] | None = Field(
        None, description="Ray Serve autoscaling_config: min_replicas, max_replicas, target_ongoing_requests, ..."
    )
    max_ongoing_requests: int | None = Field(None, ge=1, description="Requests one replica runs at once.")
    max_queued_requests: int | None = Field(
        None, description="Requests queued per caller before rejection (-1: no cap).")
    ray_actor_options: dict[str, Any] | None = Field(
        None, description="num_cpus, num_gpus, memory, resources, runtime_env for each replica."
    )
    health_check_period_s: float | None = Field(None, gt=0, description="Seconds between replica health checks.")
    health_check_timeout_s: float | None = Field(None, gt=0, description="Seconds before a health check fails.")

    def as_serve_options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SpeechSplitting(_Strict):
    """How a speech model's coordinator cuts uploads into chunks that its replicas transcribe in parallel."""

    chunk_seconds: float = Field(300.0, ge=60, description="Target chunk length; cuts land in nearby pauses.")
    max_chunks_in_flight: int = Field(8, ge=1, description="Chunks dispatched ahead (bounds coordinator memory).")
    max_audio_seconds: float = Field(4 * 3600, gt=0, description="Longest audio accepted (the guide: 4 hours).")
    max_decode_seconds: float = Field(
        600.0, gt=0, description="Most time spent probing and decoding one upload (a crafted file gets a 400).")
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(
            ray_actor_options={"num_cpus": 0.1},
            autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8},
            max_ongoing_requests=32,
        ),
        description="Serve options of the coordinator deployment (CPU only: decoding and cutting).",
    )


class ColdStartConfig(_Strict):
    """Scale to zero (`autoscaling_config.min_replicas: 0`): how long a request may wait for the first replica."""

    max_hold_s: float = Field(120.0, gt=0, description="Longest a request is held while a replica starts; then 503.")
    expected_s: float = Field(60.0, gt=0, description="Cold-start time assumed for Retry-After until one is seen.")


class ResponseCacheConfig(_Strict):
    """Exact-match cache of deterministic answers (temperature 0, or a `seed` given), kept in the state store."""

    ttl_s: float = Field(3600.0, gt=0, description="Seconds an answer is served from the cache.")
    shared: bool = Field(False, description="One cache for all keys (default: each key has its own).")


class ModelConfig(_Strict):
    """One served model: one Serve deployment."""

    id: str = Field(description="Stable public model id, as listed by GET /v1/models.")
    kind: ModelKind = Field(
        description="text, multimodal (text+image), speech (transcription, translation) or embedding.")
    engine: EngineName = Field(description="Inference engine that runs the model.")
    source: ModelSource | None = Field(None, description="Where to load the weights from (not for `synthetic`).")
    owned_by: str = Field("self-hosted", description="`owned_by` shown in /v1/models.")
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="Engine-specific options, passed to the engine unchanged."
    )
    deployment: DeploymentOptions = Field(
        default_factory=DeploymentOptions, description="Ray Serve options for this model's deployment."
    )
    splitting: SpeechSplitting | None = Field(
        None, description="Speech models only: long-audio chunking and its coordinator deployment."
    )
    max_images_per_request: int = Field(
        4, ge=1, description="Multimodal models only: most images in one chat request."
    )
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    tool_parser: Literal["hermes", "llama3_json", "mistral"] = Field(
        "hermes", description="How this model writes tool calls when it may choose (`tool_choice: auto`): "
        "hermes (Qwen, Hermes, and the fallback prompt for templates without tools), llama3_json, mistral.")
    reasoning_parser: Literal["qwen3", "deepseek_r1"] | None = Field(
        None, description="For reasoning models: returns their <think> section as `reasoning_content`.")
    response_cache: ResponseCacheConfig | None = Field(
        None, description="Text models: answer repeated deterministic requests from the cache (x-cache: hit).")
    stream_interval_ms: float = Field(
        STREAM_INTERVAL_MS, ge=0, le=1000, description="Text models: after the first token (sent at once), merge "
        "what the engine produces for this long into one streamed item: fewer Ray items per token at GPU rates "
        "(bench/RESULTS.md, gateway overhead); slower steps pass one by one. 0: every engine step is its own item.")
    stream_items_per_s: int | None = Field(
        STREAM_ITEMS_PER_S, ge=1, description="Text models: with many streams in flight the merge interval grows "
        "(up to 100 ms) so that one replica's streams together send about this many items a second; each item "
        "costs the same Ray and gateway work whatever it holds. null: the interval stays `stream_interval_ms`.")
    multilingual: bool = Field(
        False, description="Speech models: the model knows languages besides English, so it detects the spoken "
        "language and translates to English (/v1/audio/translations). Checked against the model at start.")

    @property
    def capabilities(self) -> frozenset[str]:
        """What this model can be asked to do: its kind's capabilities, less translation if English-only."""
        caps = KINDS[self.kind].capabilities
        return caps if self.multilingual or self.kind != "speech" else caps - {"translation"}

    @property
    def scales_to_zero(self) -> bool:
        autoscaling = self.deployment.autoscaling_config or {}
        return self.deployment.num_replicas is None and autoscaling.get("min_replicas", 1) == 0

    @property
    def wants_gpus(self) -> bool:
        return bool((self.deployment.ray_actor_options or {}).get("num_gpus"))

    @property
    def deployment_name(self) -> str:
        return "model-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in self.id)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if not _MODEL_ID.match(self.id):
            raise ValueError(f"model id {self.id!r} must be 1-128 chars of letters, digits and . _ : / -")
        if self.engine not in KINDS[self.kind].engines:
            raise ValueError(f"engine {self.engine!r} cannot serve kind {self.kind!r}")
        if (self.source is None) != (self.engine == "synthetic"):
            raise ValueError("`source` is required, except for the synthetic engine (which loads no weights)")
        if self.kind == "speech" and self.splitting is None:
            object.__setattr__(self, "splitting", SpeechSplitting())
        if self.kind != "speech" and self.splitting is not None:
            raise ValueError("`splitting` applies to speech models only")
        if self.kind not in ("text", "multimodal") and self.response_cache is not None:
            raise ValueError("`response_cache` applies to text and multimodal models only")
        # (compared with the default, not `model_fields_set`: replicas validate a dump carrying every field)
        if self.kind not in ("text", "multimodal") and (self.stream_interval_ms != STREAM_INTERVAL_MS
                                                        or self.stream_items_per_s != STREAM_ITEMS_PER_S):
            raise ValueError("`stream_interval_ms` and `stream_items_per_s` apply to text and multimodal models only")
        if self.kind != "speech" and self.multilingual:
            raise ValueError("`multilingual` applies to speech models only")
        return self


class ImageFetchConfig(_Strict):
    """How the gateway fetches `https://` image URLs (data URIs need no fetching)."""

    timeout_s: float = Field(10.0, gt=0, description="Whole fetch, redirects included.")
    max_redirects: int = Field(3, ge=0, description="Redirects followed; each hop is checked again.")
    allow: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) or host names that may be fetched even though they are loopback, private "
        "or link-local (refused otherwise, against SSRF). E.g. an internal image store: ['10.1.2.0/24'].",
    )


class LimitsConfig(_Strict):
    """Request-size and time limits enforced by the gateway before any model work."""

    max_audio_bytes: int = Field(26_214_400, gt=0, description="Largest audio upload (OpenAI: 25 MB).")
    max_request_bytes: int = Field(
        52_428_800, gt=0, description="Largest JSON request body (50 MB: room for two base64 images at the cap)."
    )
    max_image_bytes: int = Field(20_971_520, gt=0, description="Largest image, after base64 decoding (20 MB).")
    max_image_pixels: int = Field(
        50_000_000, gt=0, description="Most pixels per image (48 MP phone photos pass; decompression bombs do not)."
    )
    max_json_elements: int = Field(
        500_000, gt=0, description="Most containers and values in a JSON body (bounds its size once parsed).")
    max_request_pixels: int = Field(
        100_000_000, gt=0, description="Most pixels of all images in one request together (decoded-size budget).")
    body_idle_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the next piece of a request body.")
    body_timeout_s: float = Field(600.0, gt=0, description="Longest time to receive a whole request body (408).")
    image_fetch: ImageFetchConfig = Field(default_factory=ImageFetchConfig)


class RateLimits(_Strict):
    """Per-key budgets per minute; a missing field means no limit on that dimension."""

    requests_per_minute: int | None = Field(None, ge=1, description="Requests of any kind.")
    tokens_per_minute: int | None = Field(None, ge=1, description="Chat prompt + completion tokens.")
    audio_seconds_per_minute: int | None = Field(None, ge=1, description="Seconds of audio transcribed.")
    images_per_minute: int | None = Field(None, ge=1, description="Images sent in chat messages.")
    max_concurrent_requests: int | None = Field(
        None, ge=1, description="Requests of one key running at once (more get 429 until one finishes).")

    def merged_over(self, base: RateLimits) -> RateLimits:
        return RateLimits(**{**base.model_dump(), **self.model_dump(exclude_none=True)})


class Budgets(_Strict):
    """Spend budgets per key over UTC calendar days and months, checked against the usage ledger (429 when spent).
    A missing field means no budget; answers served from the cache do not count."""

    tokens_per_day: int | None = Field(None, ge=1, description="Prompt + completion tokens per UTC day.")
    tokens_per_month: int | None = Field(None, ge=1, description="Prompt + completion tokens per UTC month.")
    audio_seconds_per_day: int | None = Field(None, ge=1, description="Seconds of audio per UTC day.")
    audio_seconds_per_month: int | None = Field(None, ge=1, description="Seconds of audio per UTC month.")

    def merged_over(self, base: Budgets) -> Budgets:
        return Budgets(**{**base.model_dump(), **self.model_dump(exclude_none=True)})

    def any(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


class APIKey(_Strict):
    """A named API key, stored only as the sha256 hex digest of the secret (`make key` prints one)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Shown in logs and metrics.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex digest of the secret.")
    models: list[str] | None = Field(None, description="Model ids this key may use (default: all).")
    expires_at: datetime | None = Field(None, description="After this instant (UTC if no zone) the key fails.")
    limits: RateLimits | None = Field(None, description="Overrides of the default rate limits for this key.")
    budgets: Budgets | None = Field(None, description="Overrides of the default spend budgets for this key.")
    admin: bool = Field(False, description="Reads every key's usage in GET /v1/usage (other keys see their own).")


class StateConfig(_Strict):
    """The durable state store (usage ledger, files, batches, response cache) and where file bytes live."""

    url: str | None = Field(
        None, description="Database URL. PostgreSQL for clusters and several gateway replicas "
        "(postgresql://user:password@host:5432/db; or set ENDPOINT_STATE_URL). Default: SQLite in "
        "$ENDPOINT_STATE_DIR/endpoint.db (~/.cache/ray-openai-endpoint/state), created on first start.")
    files_url: str | None = Field(
        None, description="Folder or fsspec URL (e.g. s3://bucket/prefix) for uploaded and batch output files, "
        "readable from every gateway replica. Default: the `files` folder beside the SQLite database.")
    usage_flush_interval_s: float = Field(1.0, gt=0, description="Usage rows are written in batches this often.")
    usage_buffer_rows: int = Field(
        100_000, ge=1000, description="Usage rows kept while the store is down; the oldest are dropped beyond.")
    cache_max_entries: int = Field(10_000, ge=1, description="Response cache size; the oldest entries go first.")
    max_file_bytes: int = Field(209_715_200, gt=0, description="Largest batch input file (OpenAI: 200 MB).")
    max_batch_lines: int = Field(50_000, gt=0, description="Most requests in one batch file (OpenAI: 50,000).")
    max_files_per_key: int = Field(100, ge=1, description="Files one key may keep.")
    max_batches_in_flight_per_key: int = Field(4, ge=1, description="Batches one key may have unfinished.")
    responses_ttl_days: float = Field(
        30.0, gt=0, description="Days a stored response (Responses API `store`) is kept (OpenAI: 30).")
    batch_concurrency: int = Field(
        1, ge=1, description="Batch lines sent to one model at once, only while it has no interactive request "
        "(bench/batch_priority.py: 1 keeps interactive TTFT within ~1.2x on the CPU default, 2 costs 1.6x).")


class IngressConfig(_Strict):
    """Ray Serve options for the gateway deployment (CPU only)."""

    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)
    local_admission: bool = Field(
        True, description="Each gateway replica admits a key on its own while the key is far from its limits "
                          "(exact for one replica, within a tenth of a limit per extra replica); false asks the "
                          "shared rate limiter before every request.")


class AppArgs(_Strict):
    """The whole application: served models, limits and the gateway's own deployment options."""

    models: list[ModelConfig] = Field(min_length=1, description="Models served behind the endpoint.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    api_keys: list[APIKey] = Field(
        default_factory=list, description="Named keys, in addition to the secrets in ENDPOINT_API_KEYS."
    )
    rate_limits: RateLimits = Field(
        default_factory=RateLimits, description="Default per-key limits (ENDPOINT_API_KEYS keys get these)."
    )
    budgets: Budgets = Field(default_factory=Budgets, description="Default per-key spend budgets.")
    state: StateConfig = Field(default_factory=StateConfig)

    @model_validator(mode="after")
    def _consistent(self) -> AppArgs:
        """Unique model ids and deployment names, unique key names, and keys that name served models."""
        ids = [m.id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model ids: {dupes}")
        names = [m.deployment_name for m in self.models]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"model ids map to the same deployment name {clashes}: rename one")
        names = [k.name for k in self.api_keys]
        if len(set(names)) != len(names):
            raise ValueError("api_keys names must be unique")
        known = set(ids)
        for key in self.api_keys:
            unknown = sorted(set(key.models or []) - known)
            if unknown:
                raise ValueError(f"api key {key.name!r} names unknown models {unknown}")
        return self
