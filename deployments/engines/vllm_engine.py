"""vLLM engine for text and vision-language models, embedded in the replica (AsyncLLM, not `vllm serve`).

The engine core runs in a child process of the replica; requests stream back as deltas. Closing the
iterator (client gone) aborts the request inside vLLM, so generation stops and its KV cache is freed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator

from deployments.engines.base import TextEngine
from deployments.engines.chat_prompt import (
    completion_cap,
    encode_chat,
    encode_multimodal,
    refuse_far_too_long,
    render_multimodal,
    request_images,
)
from deployments.engines.compute_priority import lowered_processes_started_within
from deployments.engines.options import VLLMOptions
from serve_app.contract import ChoiceDelta, GenerationStep, TokenUsage
from serve_app.errors import InvalidRequest, ServerError
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest


def engine_args(model_path: str, options: VLLMOptions):
    """AsyncEngineArgs from the config's engine_options, with unknown names refused by name at start."""
    from vllm import AsyncEngineArgs

    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    passed = options.engine_args()
    unknown = sorted(set(passed) - known)
    if unknown:
        raise ValueError(f"unknown vLLM engine options {unknown}; see vllm.AsyncEngineArgs")
    return AsyncEngineArgs(model=model_path, **passed)


class VLLMEngine(TextEngine):
    # AsyncLLM's RequestOutputCollector merges DELTA outputs that the reader has not taken yet.
    merges_steps_for_late_reader = True

    def __init__(self, model_path: str, options: VLLMOptions, multimodal: bool = False) -> None:
        from transformers import AutoProcessor, AutoTokenizer
        from vllm.v1.engine.async_llm import AsyncLLM

        # vLLM's CPU backend reads its KV-cache size (GiB) from the environment; 4 GiB by default is a lot
        # on a small box, so configs set it per deployment (runtime_env) and this is only the fallback.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.default_max_tokens = options.default_max_tokens
        # The engine core runs in a child process of its own, started here.
        with lowered_processes_started_within(options.compute_nice) as self.engine_processes:
            self.engine = AsyncLLM.from_engine_args(engine_args(model_path, options))
        self.max_model_len = self.engine.model_config.max_model_len
        # Prompts are rendered here with the model's own chat template, so both engines see the same text.
        self.processor = AutoProcessor.from_pretrained(model_path) if multimodal else None
        self.tokenizer = self.processor.tokenizer if multimodal else AutoTokenizer.from_pretrained(model_path)

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        self.engine.shutdown()

    async def generate(self, request: ChatCompletionRequest) -> AsyncIterator[GenerationStep]:
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind

        prompt, prompt_len = await self._prompt(request)
        top = request.top_logprobs_wanted()
        completion_tokens = 0
        try:
            params = SamplingParams(
                **_sampling_fields(request),
                n=request.n,
                stop=request.stop_list() or None,
                max_tokens=completion_cap(request, self.max_model_len, prompt_len, self.default_max_tokens),
                logprobs=top,
                output_kind=RequestOutputKind.DELTA,
                structured_outputs=_structured(request),
            )
            async for output in self.engine.generate(prompt, params, f"chat-{uuid.uuid4().hex}"):
                deltas = []
                for choice in output.outputs:
                    completion_tokens += len(choice.token_ids)
                    # Tokens whose text vLLM holds back (a possible stop string, a partial character) still
                    # carry their logprobs: the entries go now, the text with a later delta.
                    entries = _logprob_entries(choice, top) if top is not None and choice.token_ids else None
                    if choice.text or choice.finish_reason or entries:
                        deltas.append(ChoiceDelta(choice.index, choice.text, _finish(choice.finish_reason), entries))
                if deltas or output.finished:
                    so_far = TokenUsage(len(output.prompt_token_ids or []), completion_tokens)
                    yield GenerationStep.at(deltas, so_far, output.finished)
        except VLLMClientError as exc:  # vLLM's own checks of the prompt and parameters
            raise _client_error(exc) from None

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        if self.processor is not None and request.image_count():
            # images: expanded as vLLM's multimodal processor does, by the model's own HF processor (straight
            # away: _prompt would render the template and decode the images only to leave the count to vLLM)
            ids, _ = await asyncio.to_thread(encode_multimodal, self.processor, request, self.max_model_len)
            return len(ids)
        return (await self._prompt(request))[1]

    async def _prompt(self, request: ChatCompletionRequest) -> tuple[dict, int | None]:
        """vLLM prompt and its length in tokens (None when vLLM expands image placeholders itself)."""
        if self.processor is None or isinstance(request, CompletionRequest):
            ids = encode_chat(self.tokenizer, request, self.max_model_len)
            return {"prompt_token_ids": ids}, len(ids)
        refuse_far_too_long(request, self.max_model_len)
        text = render_multimodal(self.processor, request)  # a template's refusal is a 400 here too
        images = await asyncio.to_thread(request_images, request)
        if not images:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            return {"prompt_token_ids": ids}, len(ids)
        return {"prompt": text, "multi_modal_data": {"image": images}}, None


def _sampling_fields(request: ChatCompletionRequest) -> dict:
    """The request's sampling settings in vLLM's SamplingParams terms."""
    sampling = request.sampling()
    fields = dataclasses.asdict(sampling)
    fields["stop_token_ids"] = list(sampling.stop_token_ids) or None
    fields["logit_bias"] = dict(sampling.logit_bias) or None
    if fields["seed"] is not None and fields["seed"] + request.n - 1 >= 2**64:
        # vLLM seeds choice i with seed + i, sent as a msgpack integer: wrap before it overflows 64 bits.
        fields["seed"] -= 2**64
    return fields


def _structured(request: ChatCompletionRequest):
    """vLLM's structured outputs (xgrammar, as the transformers engine uses) for a constrained answer."""
    from vllm.sampling_params import StructuredOutputsParams

    constraint = request.constraint()
    return None if constraint is None else StructuredOutputsParams(json=constraint.schema)


def _logprob_entries(choice, top: int) -> list[dict]:
    """OpenAI `logprobs.content` entries for the tokens of one delta: the sampled token's logprob and the
    `top` most likely alternatives (vLLM returns the sampled token plus the top `top` at each position)."""
    entries = []
    for token_id, candidates in zip(choice.token_ids, choice.logprobs or []):
        chosen = candidates[token_id]
        ranked = sorted(candidates.values(), key=lambda c: c.rank or 0)[:top] if top else []
        entries.append({**_token_entry(chosen), "top_logprobs": [_token_entry(c) for c in ranked]})
    return entries


def _token_entry(candidate) -> dict:
    token = candidate.decoded_token or ""
    return {"token": token, "logprob": max(float(candidate.logprob), -9999.0), "bytes": list(token.encode("utf-8"))}


def _finish(reason: str | None) -> str | None:
    """OpenAI's finish reason for vLLM's. "error" is the engine failing the request (a grammar it could not
    compile, a KV load that failed): a server error, never an answer that looks complete. "abort" (cut short)
    and "repetition" become "stop": OpenAI clients know stop / length only."""
    if reason == "error":
        raise ServerError()
    return None if reason is None else ("length" if reason == "length" else "stop")


def _client_error(exc: Exception) -> InvalidRequest:
    message = str(exc)
    too_long = "maximum model length" in message or "context length" in message or "too long" in message
    return InvalidRequest(message, param="messages" if too_long else None,
                          code="context_length_exceeded" if too_long else None)
