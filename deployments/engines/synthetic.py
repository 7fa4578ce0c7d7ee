"""A synthetic text engine: emits words at a configured rate with no model, through the same replica and
gateway-replica contract as the real engines.

It measures what the serving path itself costs (at GPU token rates, on any box) and lets generated-input
tests send thousands of requests in seconds. Its answers mean nothing; token counts are estimates
(4 characters a token, a fixed count per image).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from deployments.engines.base import TextEngine
from deployments.engines.chat_prompt import TextRequest, completion_cap, refuse_far_too_long
from deployments.engines.options import SyntheticOptions
from serve_app.contract import ChoiceDelta, GenerationStep, TokenUsage, merge_steps
from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest

WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
TOKENS_PER_IMAGE = 64


class SyntheticEngine(TextEngine):
    def __init__(self, options: SyntheticOptions) -> None:
        self.options = options
        self.merges_steps_for_late_reader = options.merge_late_reads

    def prompt_tokens(self, request: TextRequest) -> int:
        if isinstance(request, CompletionRequest):
            return len(request.prompts()[0]) // 4 + 1
        chars = sum(len(m.text()) for m in request.messages)
        return chars // 4 + 4 * len(request.messages) + TOKENS_PER_IMAGE * request.image_count()

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        refuse_far_too_long(request, self.options.max_model_len)
        return self.prompt_tokens(request)

    async def generate(self, request: TextRequest) -> AsyncIterator[GenerationStep]:
        if request.top_logprobs_wanted() is not None:
            raise InvalidRequest("Log probabilities are not available from the synthetic engine.", param="logprobs")
        refuse_far_too_long(request, self.options.max_model_len)
        prompt = self.prompt_tokens(request)
        limit = completion_cap(request, self.options.max_model_len, prompt, self.options.default_max_tokens)
        interval = 1.0 / self.options.tokens_per_s if self.options.tokens_per_s else 0.0
        stops = request.stop_list()
        words = itertools.cycle(WORDS)
        finished = [False] * request.n
        texts = [""] * request.n

        def word_step(produced: int) -> GenerationStep:
            deltas = []
            for choice in range(request.n):
                if finished[choice]:
                    continue
                word = next(words) + " "
                texts[choice] += word
                hit = next((s for s in stops if s in texts[choice]), None)
                if hit is not None:
                    finished[choice] = True
                    deltas.append(ChoiceDelta(choice, "", "stop"))
                    continue
                last = produced == limit
                finished[choice] = last
                deltas.append(ChoiceDelta(choice, word, "length" if last else None))
            return GenerationStep.at(deltas, TokenUsage(prompt, produced * request.n), all(finished))

        loop = asyncio.get_running_loop()
        start, produced = loop.time(), 0
        while not all(finished):
            if interval and self.merges_steps_for_late_reader:
                await asyncio.sleep(max(0.0, start + (produced + 1) * interval - loop.time()))
                due = max(produced + 1, int((loop.time() - start) / interval))  # all words due by now
            else:
                await asyncio.sleep(interval)  # also yields to the event loop at unlimited rates
                due = produced + 1
            batch = []
            while produced < min(due, limit) and not all(finished):
                produced += 1
                batch.append(word_step(produced))
            yield merge_steps(batch)
