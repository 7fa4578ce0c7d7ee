"""transformers engine for embedding models in the sentence-transformers layout (all-MiniLM, bge, e5, ...).

The pooling and normalisation come from the model's own files (modules.json, 1_Pooling/config.json), so the
vectors equal sentence-transformers' without depending on it. A worker thread owns the model; inputs of
concurrent requests are encoded together, sorted by length so padding stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from deployments.engines.base import EmbeddingEngine
from deployments.engines.compute_priority import lower_this_thread
from deployments.engines.embedding_inputs import EmbeddingTokenizer
from deployments.engines.hf.device import placed
from deployments.engines.options import HFEmbeddingOptions
from serve_app.contract import Embeddings
from serve_app.errors import InvalidRequest
from serve_app.protocol.embeddings import EmbeddingRequest

log = logging.getLogger(__name__)
POOLING_MODES = ("cls", "mean", "max", "lasttoken")


@dataclass(frozen=True)
class SentenceLayout:
    """What sentence-transformers does after the transformer: pooling, normalisation, input window."""

    pooling: str
    normalize: bool
    max_seq_length: int | None

    @classmethod
    def read(cls, folder: Path) -> SentenceLayout:
        modules_file = folder / "modules.json"
        if not modules_file.exists():  # a plain transformers checkpoint: the common defaults
            return cls("mean", True, None)
        modules = json.loads(modules_file.read_text())
        pooling = "mean"
        for module in modules:
            if module["type"].endswith(".Pooling"):
                config = json.loads((folder / module["path"] / "config.json").read_text())
                chosen = [m for m in POOLING_MODES if config.get(f"pooling_mode_{m}_token")
                          or config.get(f"pooling_mode_{m}_tokens") or config.get(f"pooling_mode_{m}")]
                if len(chosen) != 1 or any(config.get(k) for k in ("pooling_mode_mean_sqrt_len_tokens",
                                                                      "pooling_mode_weightedmean_tokens")):
                    raise ValueError(f"{folder}: unsupported pooling configuration {config}")
                pooling = chosen[0]
        normalize = any(m["type"].endswith(".Normalize") for m in modules)
        bert_config = folder / "sentence_bert_config.json"
        window = json.loads(bert_config.read_text()).get("max_seq_length") if bert_config.exists() else None
        return cls(pooling, normalize, window)


@dataclass
class _Input:
    ids: list[int]
    done: asyncio.Future
    loop: asyncio.AbstractEventLoop


class HFEmbeddingEngine(EmbeddingEngine):
    def __init__(self, model_path: str, options: HFEmbeddingOptions, given_gpu: bool = False) -> None:
        options, self.device = placed(options, given_gpu)  # `device: auto` takes a GPU Ray gave the replica
        self.options = options
        if options.torch_threads:
            torch.set_num_threads(options.torch_threads)
        folder = Path(model_path)
        self.layout = SentenceLayout.read(folder)
        self.model = AutoModel.from_pretrained(model_path, dtype=torch.float32).to(self.device).eval()
        config = self.model.config
        windows = [w for w in (options.max_model_len, self.layout.max_seq_length,
                               getattr(config, "max_position_embeddings", None)) if w]
        self.window = min(windows)
        self.dimensions = int(config.hidden_size)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # ids past the embedding table would index nothing
        self.inputs = EmbeddingTokenizer(tokenizer, self.window, self.model.get_input_embeddings().num_embeddings)
        self.forward_passes = 0  # batches encoded: fewer than inputs when requests share passes
        self._inbox: queue.Queue[_Input | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="embedding-worker", daemon=True)
        self._worker.start()

    async def check_health(self) -> None:
        if not self._worker.is_alive():
            raise RuntimeError("the embedding worker thread has stopped")

    def shutdown(self) -> None:
        if getattr(self, "_worker", None) is not None and self._worker.is_alive():
            self._inbox.put(None)
            self._worker.join(10)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        dimensions = self._check_dimensions(request.dimensions)
        token_ids = await asyncio.to_thread(self.inputs.token_ids, request.inputs())
        loop = asyncio.get_running_loop()
        items = [_Input(ids, loop.create_future(), loop) for ids in token_ids]
        for item in items:
            self._inbox.put(item)
        vectors = await asyncio.gather(*(item.done for item in items))
        out = []
        for vector in vectors:
            if dimensions < self.dimensions:  # Matryoshka: the leading dimensions, normalised again
                vector = vector[:dimensions]
                vector = vector / max(float(np.linalg.norm(vector)), 1e-12) if self.layout.normalize else vector
            out.append(vector.astype("<f4").tobytes())
        return Embeddings(out, sum(len(ids) for ids in token_ids))

    def _check_dimensions(self, requested: int | None) -> int:
        if requested is None or requested == self.dimensions:
            return self.dimensions
        if not self.options.matryoshka:
            raise InvalidRequest(f"This model's embeddings have {self.dimensions} dimensions and it does not "
                                 "support shortening them; omit `dimensions`.", param="dimensions")
        if requested > self.dimensions:
            raise InvalidRequest(f"`dimensions` must be at most {self.dimensions} for this model.",
                                 param="dimensions")
        return requested

    def _run(self) -> None:
        lower_this_thread(self.options.compute_nice)
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            # Inputs arriving within batch_wait_ms (other requests, other items of this one) share the pass.
            deadline = self.options.batch_wait_ms / 1000
            while len(batch) < self.options.max_batch_size:
                try:
                    item = self._inbox.get(timeout=deadline) if deadline else self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)
                    break
                batch.append(item)
            live = [item for item in batch if not item.done.cancelled()]
            if live:
                self._answer(live)

    def _answer(self, batch: list[_Input]) -> None:
        """Encode a batch and settle its futures; if it fails, each input alone, so that one input's failure
        is only its own request's."""
        try:
            results = [(vector, None) for vector in self._encode([item.ids for item in batch])]
        except Exception as exc:  # noqa: BLE001 any model failure is the requests' failure, not the thread's
            if len(batch) > 1:
                for item in batch:
                    self._answer([item])
                return
            log.exception("embedding failed")
            results = [(None, exc)]
        for item, (vector, error) in zip(batch, results):
            try:
                item.loop.call_soon_threadsafe(_settle, item.done, vector, error)
            except RuntimeError:  # the request's event loop has closed: nobody is waiting for it
                pass

    @torch.inference_mode()
    def _encode(self, sequences: list[list[int]]) -> list[np.ndarray]:
        self.forward_passes += 1
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        width = len(sequences[order[-1]])
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, i in enumerate(order):  # right padding, as sentence-transformers
            input_ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, :len(sequences[i])] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)  # built on the CPU, moved in one copy
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        pooled = _pool(hidden, mask, self.layout.pooling)
        if self.layout.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        rows = pooled.float().cpu().numpy()
        out: list[np.ndarray] = [np.empty(0)] * len(sequences)
        for row, i in enumerate(order):
            out[i] = rows[row].copy()
        return out


def _pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.sum(1) - 1]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _settle(future: asyncio.Future, value, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
