"""transformers engine for text and vision-language models, on the CPU or one GPU, with continuous batching.

A worker thread owns the model and decodes every running request in one padded batch, one token per step.
New requests join the running batch at the next step (see batch.py) and finished ones leave it, so N
concurrent streams cost about one forward pass per token instead of N (numbers in bench/RESULTS.md).
Images only matter at prefill (they become cached keys and values), so a vision-language model's requests
are prefilled with their images and then decode in the same batch as any other.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from deployments.engines.base import TextEngine
from deployments.engines.chat_prompt import TextRequest, completion_cap, encode_chat, encode_multimodal
from deployments.engines.compute_priority import lower_this_thread
from deployments.engines.hf.batch import RunningBatch
from deployments.engines.hf.device import placed
from deployments.engines.hf.grammar import Grammars
from deployments.engines.hf.incremental_text import IncrementalText
from deployments.engines.options import HFEngineOptions
from serve_app.contract import ChoiceDelta, GenerationStep, TokenUsage
from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest
from serve_app.protocol.sampling import SamplingParams
from serve_app.protocol.tools import Constraint

log = logging.getLogger(__name__)


@dataclass
class _Sequence:
    index: int
    prompt_ids: list[int]
    params: SamplingParams
    text: IncrementalText
    max_new_tokens: int
    vision: dict | None = None  # pixel inputs for the prefill of a prompt with images
    matcher: Any = None  # grammar state when the answer is constrained (JSON, tool calls)
    finish_reason: str | None = None


@dataclass
class _Job:
    sequences: list[_Sequence]
    loop: asyncio.AbstractEventLoop  # the request's event loop, where `outputs` is read
    outputs: asyncio.Queue
    cancelled: bool = False
    completion_tokens: int = 0
    open_sequences: int = field(init=False)

    def __post_init__(self) -> None:
        self.open_sequences = len(self.sequences)

    def emit(self, item: object) -> None:
        _send([(self, item)])


def _send(items: list[tuple[_Job, object]]) -> None:
    """Hand items from the worker thread to their requests' event loops: one wake-up of each loop for all of its
    requests (each call_soon_threadsafe writes to the loop's self-pipe), not one per request per step."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, object]]] = {}
    for job, item in items:
        by_loop.setdefault(job.loop, []).append((job.outputs, item))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, batch)
        except RuntimeError:  # a closed loop: nobody listens
            pass


def _put_all(batch: list[tuple[asyncio.Queue, object]]) -> None:
    for outputs, item in batch:
        outputs.put_nowait(item)


class HFTextEngine(TextEngine):
    def __init__(self, model_path: str, options: HFEngineOptions, multimodal: bool = False,
                 given_gpu: bool = False) -> None:
        """`given_gpu`: Ray gave this replica a GPU (deployments/engines/factory.py), which `device: auto` takes."""
        self.options, self.device = placed(options, given_gpu)
        if self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        # Prompts are encoded on the event loop (text) or a helper thread (images) by the processor/tokenizer.
        self.processor = AutoProcessor.from_pretrained(model_path) if multimodal else None
        self.tokenizer = self.processor.tokenizer if multimodal else AutoTokenizer.from_pretrained(model_path)
        # The worker decodes with its own instance: a fast tokenizer used from two threads at once can fail
        # with "Already borrowed".
        self._decoder = AutoTokenizer.from_pretrained(model_path)
        model_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
        self.model = model_class.from_pretrained(model_path, dtype=getattr(torch, self.options.dtype))
        self.model.to(self.device).eval()
        config_len = getattr(self.model.config.get_text_config(), "max_position_embeddings", 2048)
        self.max_model_len = min(self.options.max_model_len or config_len, config_len)
        eos = self.model.generation_config.eos_token_id
        self._eos = (set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}) - {None}
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self._eos)
        self._incoming: queue.Queue[_Job | None] = queue.Queue()  # None asks the worker to stop
        self._backlog: collections.deque[_Job] = collections.deque()
        self.running_sequences = 0  # rows in the batch being decoded now (observability, tests)
        self._busy_peak_jobs = 0  # most requests decoded together since the engine was last idle
        self._stopping = False
        # generate's "still running? then queue" against the worker's final drain: a job queued after the drain
        # would wait forever
        self._closing = threading.Lock()
        self._closed = False
        self._grammars: Grammars | None = None
        self._batch: RunningBatch | None = None
        self._rows: list[tuple[_Job, _Sequence]] = []
        self._worker = threading.Thread(target=self._serve_forever, name="hf-decode", daemon=True)
        self._worker.start()

    def _matcher(self, constraint: Constraint):
        if self._grammars is None:  # built on first use: xgrammar reads the whole vocabulary once
            self._grammars = Grammars(self._decoder, self.model.get_output_embeddings().weight.shape[0],
                                      sorted(self._eos))
        param = "tools" if constraint.kind == "tool_calls" else "response_format"
        return self._grammars.matcher(constraint, param)

    async def check_health(self) -> None:
        if not self._worker.is_alive():
            raise RuntimeError("decode worker thread died")

    def shutdown(self) -> None:
        """Stop the decode thread once it finishes the current step (replica teardown, tests); requests still
        running or waiting fail with "engine stopped"."""
        self._stopping = True  # read after every step: a full batch never reads the queue's stop marker
        self._incoming.put(None)  # wakes an idle worker
        self._worker.join(timeout=30)

    async def _prompt(self, request: TextRequest) -> tuple[list[int], dict | None]:
        """Prompt token ids, and the vision inputs of a multimodal request (None without a processor)."""
        if self.processor is None or isinstance(request, CompletionRequest):  # raw prompts need no processor
            return encode_chat(self.tokenizer, request, self.max_model_len), None
        # image decoding and resizing take a while: not on the event loop
        return await asyncio.to_thread(encode_multimodal, self.processor, request, self.max_model_len)

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        return len((await self._prompt(request))[0])

    async def generate(self, request: TextRequest) -> AsyncIterator[GenerationStep]:
        if self._stopping or not self._worker.is_alive():
            raise RuntimeError("text engine is not running")
        if request.top_logprobs_wanted() is not None:
            raise InvalidRequest("Log probabilities are not available from the transformers engine "
                                 "(models served with `engine: vllm` return them).", param="logprobs")
        vocab = self.model.get_output_embeddings().weight.shape[0]
        for param, ids in (("logit_bias", [int(k) for k in request.logit_bias or {}]),
                           ("stop_token_ids", request.stop_token_ids or [])):
            if any(i >= vocab for i in ids):
                raise InvalidRequest(f"{param} names a token id beyond this model's vocabulary of {vocab}.",
                                     param=param)
        prompt_ids, vision = await self._prompt(request)
        max_new = completion_cap(request, self.max_model_len, len(prompt_ids), self.options.default_max_tokens)
        sampling = request.sampling()
        constraint = request.constraint()
        matchers = [self._matcher(constraint) for _ in range(request.n)] if constraint else [None] * request.n
        outputs: asyncio.Queue = asyncio.Queue()
        job = _Job(
            sequences=[
                _Sequence(i, prompt_ids, sampling.for_choice(i),
                          IncrementalText(self._decoder, request.stop_list()), max_new, vision or None, matchers[i])
                for i in range(request.n)
            ],
            loop=asyncio.get_running_loop(),
            outputs=outputs,
        )
        with self._closing:
            if self._closed:
                raise RuntimeError("text engine is not running")
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

    # Everything below runs on the worker thread, which alone touches the model, _batch and _rows.

    def _serve_forever(self) -> None:
        lower_this_thread(self.options.compute_nice)
        while not self._stopping:
            joining: list[_Job] = []
            try:
                with torch.inference_mode():
                    joining = self._admit(room=self.options.max_batch_size - len(self._rows), idle=not self._rows)
                    if joining:
                        self._join(joining)
                    if self._rows:
                        self._step()
            except Exception as exc:  # keep the replica alive; fail only the requests in flight
                log.exception("decode step failed")
                self._fail([job for job, _ in self._rows] + joining, f"generation failed: {type(exc).__name__}")
        with self._closing:
            self._closed = True
            waiting = list(self._backlog)
            while not self._incoming.empty():
                waiting.append(self._incoming.get_nowait())
        self._fail([job for job, _ in self._rows] + [j for j in waiting if j is not None], "engine stopped")

    def _join(self, jobs: list[_Job]) -> None:
        new_rows = [(job, seq) for job in jobs for seq in job.sequences]
        # Text-only prompts prefill together; a prompt with images prefills alone with its own pixel inputs (its
        # request's `n` copies together: they share one prefill).
        groups = [[r for r in new_rows if r[1].vision is None]] + [
            [r for r in new_rows if r[0] is job] for job in jobs
            if any(seq.vision is not None for seq in job.sequences)]
        for group in groups:
            for batch, rows in self._prefilled(group):
                if self._batch is None:
                    self._batch = batch
                else:
                    self._batch.merge(batch)
                self._rows += rows
        self._busy_peak_jobs = max(self._busy_peak_jobs, len({id(job) for job, _ in self._rows}))

    def _prefilled(self, group: list[tuple[_Job, _Sequence]]) -> list[tuple[RunningBatch, list]]:
        """The group prefilled together; if that fails, each request alone, so only the one at fault fails (the
        running batch is untouched either way)."""
        if not group:
            return []
        try:
            return [(RunningBatch.prefill(self.model, [s.prompt_ids for _, s in group], [s.params for _, s in group],
                                          self._pad, group[0][1].vision, [s.matcher for _, s in group],
                                          self._grammars, tuple(sorted(self._eos))), group)]
        except Exception as exc:  # noqa: BLE001 - reported to the requests it concerns, never the whole engine
            jobs = list({id(job): job for job, _ in group}.values())
            if len(jobs) > 1:
                return [done for job in jobs for done in self._prefilled([row for row in group if row[0] is job])]
            log.exception("prefill failed")
            jobs[0].emit(RuntimeError(f"generation failed: {type(exc).__name__}"))
            return []

    def _step(self) -> None:
        """Sample one token for every row, emit text, drop finished rows, run the next forward pass."""
        batch = self._batch
        tokens = batch.sampler.sample(batch.logits)
        batch.sampler.observe(tokens)
        keep = self._advance(self._rows, tokens.tolist())
        if not keep:
            self._batch, self._rows, self.running_sequences = None, [], 0
            return
        if len(keep) < len(self._rows):
            self._rows = [self._rows[r] for r in keep]
            batch.select(keep)
            tokens = tokens[keep]
        batch.decode(self.model, tokens)
        self.running_sequences = len(self._rows)

    def _fail(self, jobs: list[_Job], message: str) -> None:
        for job in {id(job): job for job in jobs}.values():
            job.emit(RuntimeError(message))
        self._batch, self._rows, self.running_sequences = None, [], 0

    def _admit(self, room: int, idle: bool) -> list[_Job]:
        """Jobs that join now. When idle, block for the first one and give a burst a moment to gather."""
        jobs: list[_Job] = []
        deadline = gather_until = None
        if idle:
            first = self._next_job(timeout=None)
            if first is None:
                return []
            jobs.append(first)
            room -= len(first.sequences)
            gap = most = self.options.batch_wait_ms / 1000
            if self._busy_peak_jobs > 1 and self.options.burst_gap_ms > 0:  # concurrent load just ended
                gap = max(gap, self.options.burst_gap_ms / 1000)
                most = max(gap, self.options.burst_max_wait_ms / 1000)
            self._busy_peak_jobs = 0
            now = time.monotonic()
            gather_until, deadline = now + most, now + gap
        while room > 0:
            job = self._next_job(timeout=0.0 if deadline is None else max(0.0, deadline - time.monotonic()))
            if job is None:
                break
            if len(job.sequences) > room:
                self._backlog.appendleft(job)
                break
            jobs.append(job)
            room -= len(job.sequences)
            if gather_until is not None:  # a burst still arriving: wait for its next request, within the cap
                deadline = min(gather_until, time.monotonic() + gap)
        return [j for j in jobs if not j.cancelled]

    def _next_job(self, timeout: float | None) -> _Job | None:
        """The next live job (backlog first); None when none came in time or a stop was asked for."""
        while True:
            if self._backlog:
                job = self._backlog.popleft()
            else:
                try:
                    job = self._incoming.get_nowait() if timeout == 0.0 else self._incoming.get(timeout=timeout)
                except queue.Empty:
                    return None
                if job is None:
                    self._stopping = True
                    return None
            if not job.cancelled:  # abandoned while waiting: it must not hold a place
                return job

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
            elif token in seq.params.stop_token_ids:  # counted, as vLLM counts it, but not shown as text
                job.completion_tokens += 1
                seq.finish_reason = "stop"
            else:
                job.completion_tokens += 1
                text, stopped = seq.text.add(token)
                if stopped:
                    seq.finish_reason = "stop"
                elif len(seq.text.token_ids) >= seq.max_new_tokens:
                    seq.finish_reason = "length"
            if seq.finish_reason and not stopped:
                tail, stopped = seq.text.flush()
                text += tail
                seq.finish_reason = "stop" if stopped else seq.finish_reason
            if text or seq.finish_reason:
                steps.setdefault(id(job), (job, []))[1].append(ChoiceDelta(seq.index, text, seq.finish_reason))
            if seq.finish_reason:
                job.open_sequences -= 1
            else:
                keep.append(r)
        _send([(job, GenerationStep.at(deltas, TokenUsage(len(job.sequences[0].prompt_ids), job.completion_tokens),
                                       job.open_sequences == 0))
               for job, deltas in steps.values()])
        return keep
