"""Build the engine a model config asks for, importing only that engine's library."""

from __future__ import annotations

from deployments import model_source
from serve_app.args import ModelConfig


def create_text_engine(config: ModelConfig):
    path = model_source.as_transformers_checkpoint(model_source.resolve(config.source))
    if config.engine == "transformers":
        from deployments.engines.hf_engine import HFTextEngine

        return HFTextEngine(path, config.engine_options, multimodal=config.kind == "multimodal")
    if config.engine == "vllm":
        from deployments.engines.vllm_engine import VLLMEngine

        return VLLMEngine(path, config.engine_options, multimodal=config.kind == "multimodal")
    raise ValueError(f"engine {config.engine!r} cannot serve {config.kind} models")


def create_speech_engine(config: ModelConfig):
    from deployments.engines.whisper_engine import WhisperEngine

    return WhisperEngine(model_source.resolve(config.source), config.engine_options)
