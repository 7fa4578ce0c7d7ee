"""Engine option schemas (`engine_options` in the YAML): pydantic only, so the builder checks them before any
replica starts; the engines import them from here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def compute_nice_field(default: int, whose: str, why_default: str):
    """Nice levels added to an engine's compute (deployments/engines/compute_priority.py)."""
    return Field(default, ge=0, le=19, description=(
        f"Added to the nice value of {whose}, so on shared CPU cores the request path (Serve's proxy, the gateway, "
        f"replica event loops) runs ahead of it; 0 keeps Ray's worker priority. Default {default}: {why_default}."))


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TorchDeviceOptions(_Options):
    """Where a transformers engine runs, and its compute thread's priority there."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs. auto: the GPU Ray gives the replica when its "
        "`ray_actor_options` ask for `num_gpus` (the CPU, with a warning, where torch then sees none), else the "
        "CPU (Ray leaves every GPU of a node visible to a replica that asked for none, so seeing one is no sign "
        "that it is ours).")
    compute_nice: int | None = Field(None, ge=0, le=19, description=(
        "Added to the nice value of the compute thread (and torch's workers for it), so on shared CPU cores the "
        "request path (Serve's proxy, the gateway, replica event loops) runs ahead of it; 0 keeps Ray's worker "
        "priority. Default: 4 on the CPU, 0 on a GPU (there the thread only launches the GPU's work)."))

    def resolved(self, given_gpu: bool, gpu_bfloat16: bool = True):
        """These options with every `auto` and default made concrete for a replica given a GPU or not (and
        whether that GPU computes in bfloat16 natively: Ampere and later)."""
        device = self.device if self.device != "auto" else ("cuda" if given_gpu else "cpu")
        return self.model_copy(update={
            "device": device,
            "compute_nice": self.compute_nice if self.compute_nice is not None else (0 if device == "cuda" else 4),
            **self._resolved_for(device, gpu_bfloat16),
        })

    def _resolved_for(self, device: str, gpu_bfloat16: bool) -> dict:
        return {}


class HFEngineOptions(_TorchDeviceOptions):
    """transformers engine (text and vision-language models, on the CPU or a GPU)."""

    max_batch_size: int = Field(16, ge=1, description="Most sequences decoded in one batch.")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a new batch waits for more arrivals.")
    # A burst of requests reaches the engine spread out by the serving path (bench/RESULTS.md): gathering it
    # into one prefill pays only after concurrent load, so a lone user's requests never wait for it.
    burst_gap_ms: float = Field(0.0, ge=0, description="After a busy period that decoded several requests "
                                "together, an idle engine waits while arrivals come this close (0: off).")
    burst_max_wait_ms: float = Field(100.0, ge=0, description="Most an idle engine waits for a burst to gather.")
    max_model_len: int | None = Field(None, ge=16, description="Context length cap (default: the model's).")
    default_max_tokens: int = Field(512, ge=1, description="Completion cap when the request gives none.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype. auto: float32 on the CPU, bfloat16 on a GPU (float16 on one older "
        "than Ampere, which has no native bfloat16, as vLLM chooses). float16 only with device cuda (CPU kernels "
        "for it are slow or missing).")

    @model_validator(mode="after")
    def _float16_on_a_gpu(self) -> HFEngineOptions:
        if self.dtype == "float16" and self.device != "cuda":
            raise ValueError("dtype float16 needs device: cuda (on the CPU use float32 or bfloat16)")
        return self

    def _resolved_for(self, device: str, gpu_bfloat16: bool) -> dict:
        if self.dtype != "auto":
            return {}
        return {"dtype": "float32" if device == "cpu" else "bfloat16" if gpu_bfloat16 else "float16"}


class HFEmbeddingOptions(_TorchDeviceOptions):
    """transformers engine for embedding models (sentence-transformers layout: pooling and normalisation are
    read from the model's own files), on the CPU or a GPU, in float32 on both."""

    max_batch_size: int = Field(32, ge=1, description="Most inputs encoded in one forward pass.")
    batch_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits for inputs of other requests.")
    max_model_len: int | None = Field(None, ge=8, description="Input window cap (default: the model's).")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's).")
    matryoshka: bool = Field(False, description="Trained with Matryoshka loss: `dimensions` may shorten vectors.")


class VLLMOptions(BaseModel):
    """vLLM engine: our own options; every other name goes to vLLM's AsyncEngineArgs, which checks it when
    the replica starts (checking it here would need vLLM installed where the builder runs)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    default_max_tokens: int = Field(512, ge=1, description="Completion cap when the request gives none.")
    compute_nice: int = compute_nice_field(0, "the engine core's process", "on a GPU node it launches the kernels")

    def engine_args(self) -> dict:
        """The options meant for vLLM's AsyncEngineArgs."""
        return dict(self.model_extra or {})


class WhisperOptions(_Options):
    """faster-whisper engine (speech recognition)."""

    device: str = Field("cpu", description="cpu or cuda")
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, float16, int8_float16, ...")
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads (0: its default)")
    num_workers: int = Field(1, ge=1, description="Chunks this replica transcribes in parallel.")
    beam_size: int = Field(5, ge=1)
    vad_filter: bool = Field(True, description="Skip silence (without it silence turns into invented words).")
    compute_nice: int = compute_nice_field(0, "CTranslate2's threads", "with device cuda they launch the GPU's work")


class SyntheticOptions(_Options):
    """synthetic engine (no model: measurement and generated-input tests)."""

    tokens_per_s: float = Field(0.0, ge=0, description="Words emitted per second per request (0: no pause).")
    default_max_tokens: int = Field(16, ge=1, description="Completion length when the request gives none.")
    max_model_len: int = Field(2048, ge=16, description="Context length it pretends to have.")
    merge_late_reads: bool = Field(
        True, description="Like vLLM: a step read late holds every word due by then. False: one word per step "
                          "however late it is read, like the transformers engine.")


OPTIONS_BY_ENGINE: dict[str, type[BaseModel]] = {
    "synthetic": SyntheticOptions,
    "transformers": HFEngineOptions,
    "vllm": VLLMOptions,
    "faster-whisper": WhisperOptions,
}


def parse_engine_options(engine: str, options: dict, kind: str = "text") -> BaseModel:
    """The engine's typed options for this kind of model; a ValueError naming the bad field otherwise."""
    schema = HFEmbeddingOptions if (kind, engine) == ("embedding", "transformers") else OPTIONS_BY_ENGINE[engine]
    return schema.model_validate(options)
