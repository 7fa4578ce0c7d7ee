"""transformers text engine for CPU: concurrent requests are decoded together in one padded batch.

A worker thread owns the model. Requests queue up while a batch runs and join the next one, so N concurrent
streams cost roughly one forward pass per token instead of N (see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from deployments.engines.incremental_text import IncrementalText
from deployments.engines.prompt import context_overflow, render_chat
from deployments.engines.protocol import ChoiceDelta, GenerationStep, TokenUsage
from deployments.engines.sampling import BatchSampler, SamplingParams
from serve_app.protocol.chat import ChatCompletionRequest

log = logging.getLogger(__name__)


class HFEngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, description="Most sequences decoded in one batch.")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a new batch waits for more arrivals.")
    max_model_len: int | None = Field(None, ge=16, description="Context length cap (default: the model's).")
    default_max_tokens: int = Field(512, ge=1, description="Completion cap when the request gives none.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's).")
    dtype: str = Field("float32", pattern="^(float32|bfloat16)$", description="Weights dtype on CPU.")


@dataclass
class _Sequence:
    index: int
    prompt_ids: list[int]
    params: SamplingParams
    text: IncrementalText
    max_new_tokens: int
    finish_reason: str | None = None


@dataclass
class _Job:
    sequences: list[_Sequence]
    emit: Callable[[object], None]
    cancelled: bool = False
    completion_tokens: int = 0
    open_sequences: int = field(init=False)

    def __post_init__(self) -> None:
        self.open_sequences = len(self.sequences)


class HFTextEngine:
    def __init__(self, model_path: str, options: dict) -> None:
        self.options = HFEngineOptions.model_validate(options)
        if self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, self.options.dtype))
        self.model.eval()
        config_len = getattr(self.model.config, "max_position_embeddings", 2048)
        self.max_model_len = min(self.options.max_model_len or config_len, config_len)
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self._eos)
        self._incoming: queue.Queue[_Job] = queue.Queue()
        self._backlog: collections.deque[_Job] = collections.deque()
        self.running_sequences = 0  # rows in the batch being decoded now (observability, tests)
        self._worker = threading.Thread(target=self._serve_forever, name="hf-decode", daemon=True)
        self._worker.start()

    async def check_health(self) -> None:
        if not self._worker.is_alive():
            raise RuntimeError("decode worker thread died")

    async def generate(self, request: ChatCompletionRequest) -> AsyncIterator[GenerationStep]:
        prompt_ids = self.tokenizer(render_chat(self.tokenizer, request), add_special_tokens=False).input_ids
        room = self.max_model_len - len(prompt_ids)
        budget = request.token_budget()
        if room < 1 or (budget is not None and budget > room):
            raise context_overflow(self.max_model_len, len(prompt_ids), budget or 1)
        max_new = min(budget or self.options.default_max_tokens, room)
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue = asyncio.Queue()
        job = _Job(
            sequences=[
                _Sequence(i, prompt_ids, SamplingParams.from_request(request, i),
                          IncrementalText(self.tokenizer, request.stop_list()), max_new)
                for i in range(request.n)
            ],
            emit=lambda item: loop.call_soon_threadsafe(outputs.put_nowait, item),
        )
        self._incoming.put(job)
        try:
            while True:
                item = await outputs.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.usage is not None:
                    return
        finally:
            job.cancelled = True  # the client went away or we are done: free the batch row

    # --- worker thread -------------------------------------------------------------------------------

    def _serve_forever(self) -> None:
        while True:
            jobs = self._next_batch()
            try:
                with torch.inference_mode():
                    self._run_batch(jobs)
            except Exception as exc:  # keep the replica alive; fail only this batch
                log.exception("batch failed")
                for job in jobs:
                    if job.open_sequences:
                        job.emit(RuntimeError(f"generation failed: {type(exc).__name__}"))

    def _next_batch(self) -> list[_Job]:
        jobs = [self._backlog.popleft() if self._backlog else self._incoming.get()]
        rows = len(jobs[0].sequences)
        deadline = time.monotonic() + self.options.batch_wait_ms / 1000
        while rows < self.options.max_batch_size:
            try:
                job = self._backlog.popleft() if self._backlog else self._incoming.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if rows + len(job.sequences) > self.options.max_batch_size:
                self._backlog.appendleft(job)
                break
            jobs.append(job)
            rows += len(job.sequences)
        return [j for j in jobs if not j.cancelled]

    def _run_batch(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        rows = [(job, seq) for job in jobs for seq in job.sequences]
        width = max(len(seq.prompt_ids) for _, seq in rows)
        input_ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (_, seq) in enumerate(rows):
            input_ids[r, width - len(seq.prompt_ids):] = torch.tensor(seq.prompt_ids)
            attention[r, width - len(seq.prompt_ids):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                            past_key_values=cache, use_cache=True).logits[:, -1, :]
        next_position = positions[:, -1] + 1
        sampler = BatchSampler([s.params for _, s in rows], [s.prompt_ids for _, s in rows], logits.shape[-1])
        while True:
            self.running_sequences = len(rows)
            tokens = sampler.sample(logits)
            sampler.observe(tokens)
            keep = self._advance(rows, tokens.tolist())
            if not keep:
                self.running_sequences = 0
                return
            if len(keep) < len(rows):
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index)
                attention, next_position, tokens = attention[index], next_position[index], tokens[index]
                sampler.select(keep)
                rows = [rows[r] for r in keep]
            attention = torch.cat([attention, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
            logits = self.model(input_ids=tokens.unsqueeze(1), attention_mask=attention,
                                position_ids=next_position.unsqueeze(1), past_key_values=cache,
                                use_cache=True).logits[:, -1, :]
            next_position = next_position + 1

    def _advance(self, rows: list[tuple[_Job, _Sequence]], tokens: list[int]) -> list[int]:
        """Feed one sampled token to each row, emit per-job steps; return the rows still running."""
        steps: dict[int, tuple[_Job, list[ChoiceDelta]]] = {}
        keep = []
        for r, ((job, seq), token) in enumerate(zip(rows, tokens)):
            if job.cancelled:
                continue
            text, stopped = "", False
            if token in self._eos:
                seq.finish_reason = "stop"
            else:
                job.completion_tokens += 1
                text, stopped = seq.text.add(token)
                if stopped:
                    seq.finish_reason = "stop"
                elif len(seq.text.token_ids) >= seq.max_new_tokens:
                    seq.finish_reason = "length"
            if seq.finish_reason and not stopped:
                text += seq.text.flush()
            if text or seq.finish_reason:
                steps.setdefault(id(job), (job, []))[1].append(ChoiceDelta(seq.index, text, seq.finish_reason))
            if seq.finish_reason:
                job.open_sequences -= 1
            else:
                keep.append(r)
        for job, deltas in steps.values():
            done = job.open_sequences == 0
            usage = TokenUsage(len(job.sequences[0].prompt_ids), job.completion_tokens)
            job.emit(GenerationStep(deltas=deltas, usage=usage if done else None))
        return keep
