"""Build the engine a model config asks for, importing only that engine's library."""

from __future__ import annotations

import logging

from deployments import model_source
from deployments.engines.base import EmbeddingEngine, SpeechEngine, TextEngine
from deployments.engines.options import parse_engine_options
from serve_app.config import ModelConfig

log = logging.getLogger(__name__)


def given_gpu(config: ModelConfig) -> bool:
    """Whether this replica has a GPU for a transformers engine's `device: auto`. Ray shows a replica the GPUs it
    was given for `num_gpus`; a node that only declares a GPU resource (a simulated cluster, a misconfigured
    node) has none to show, and the model then runs on the CPU rather than not at all."""
    if not config.wants_gpus:
        return False
    import torch

    if torch.cuda.is_available():
        return True
    log.warning("model %r asks Ray for num_gpus, but torch sees no GPU in this replica: it runs on the CPU",
                config.id)
    return False


def create_text_engine(config: ModelConfig) -> TextEngine:
    options = parse_engine_options(config.engine, config.engine_options, config.kind)
    if config.engine == "synthetic":
        from deployments.engines.synthetic import SyntheticEngine

        return SyntheticEngine(options)
    path = model_source.as_transformers_checkpoint(model_source.resolve(config.source))
    multimodal = config.kind == "multimodal"
    if config.engine == "vllm":
        from deployments.engines.vllm_engine import VLLMEngine

        return VLLMEngine(path, options, multimodal=multimodal)
    from deployments.engines.hf.engine import HFTextEngine

    return HFTextEngine(path, options, multimodal=multimodal, given_gpu=given_gpu(config))


def create_speech_engine(config: ModelConfig) -> SpeechEngine:
    from deployments.engines.whisper_engine import WhisperEngine

    options = parse_engine_options(config.engine, config.engine_options, config.kind)
    return WhisperEngine(model_source.resolve(config.source), options, config.multilingual)


def create_embedding_engine(config: ModelConfig) -> EmbeddingEngine:
    options = parse_engine_options(config.engine, config.engine_options, config.kind)
    path = model_source.resolve(config.source)
    if config.engine == "vllm":
        from deployments.engines.vllm_embedding import VLLMEmbeddingEngine

        return VLLMEmbeddingEngine(path, options)
    from deployments.engines.hf.embedding import HFEmbeddingEngine

    return HFEmbeddingEngine(path, options, given_gpu=given_gpu(config))
