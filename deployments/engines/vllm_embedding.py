"""vLLM engine for embedding models on its pooling runner (AsyncLLM.encode), for GPU nodes.

Inputs are tokenized here so an input over the window gets its 400 naming the input, and usage counts the
tokens the model saw. vLLM applies the model's own pooling and normalisation (its pooler config)."""

from __future__ import annotations

import asyncio
import os
import uuid

from deployments.engines.base import EmbeddingEngine
from deployments.engines.compute_priority import lowered_processes_started_within
from deployments.engines.embedding_inputs import EmbeddingTokenizer
from deployments.engines.options import VLLMOptions
from deployments.engines.vllm_engine import engine_args
from serve_app.contract import Embeddings
from serve_app.errors import InvalidRequest
from serve_app.protocol.embeddings import EmbeddingRequest


class VLLMEmbeddingEngine(EmbeddingEngine):
    def __init__(self, model_path: str, options: VLLMOptions) -> None:
        from transformers import AutoTokenizer
        from vllm.v1.engine.async_llm import AsyncLLM

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        args = engine_args(model_path, options)
        args.runner = "pooling"
        # The engine core runs in a child process of its own, started here.
        with lowered_processes_started_within(options.compute_nice) as self.engine_processes:
            self.engine = AsyncLLM.from_engine_args(args)
        config = self.engine.model_config
        self.window = config.max_model_len
        self.dimensions = config.get_hidden_size()
        self.matryoshka = bool(getattr(config, "is_matryoshka", False))
        self.inputs = EmbeddingTokenizer(AutoTokenizer.from_pretrained(model_path), self.window,
                                         config.get_vocab_size())

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        self.engine.shutdown()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        from vllm import PoolingParams

        if request.dimensions not in (None, self.dimensions) and not self.matryoshka:
            raise InvalidRequest(f"This model's embeddings have {self.dimensions} dimensions and it does not "
                                 "support shortening them; omit `dimensions`.", param="dimensions")
        token_ids = await asyncio.to_thread(self.inputs.token_ids, request.inputs())
        params = PoolingParams(task="embed", dimensions=request.dimensions if self.matryoshka else None)
        vectors = await asyncio.gather(*(self._one(ids, params) for ids in token_ids))
        return Embeddings(vectors, sum(len(ids) for ids in token_ids))

    async def _one(self, ids: list[int], params) -> bytes:
        from vllm.exceptions import VLLMClientError

        final = None
        try:
            async for output in self.engine.encode({"prompt_token_ids": ids}, params, f"embd-{uuid.uuid4().hex}"):
                final = output
        except (VLLMClientError, ValueError) as exc:  # vLLM's own checks (dimensions out of range, ...)
            raise InvalidRequest(str(exc), param="dimensions" if "dimension" in str(exc) else "input") from None
        return final.outputs.data.float().cpu().numpy().astype("<f4").tobytes()
