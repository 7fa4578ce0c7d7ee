"""Per-row logits processing and sampling for a batch whose rows each carry their own OpenAI/vLLM parameters."""

from __future__ import annotations

import torch

from deployments.engines.hf.grammar import Grammars, advance
from serve_app.protocol.sampling import SamplingParams


class BatchSampler:
    """Holds each row's parameters and token history; rows can be dropped as sequences finish."""

    def __init__(self, params: list[SamplingParams], prompts: list[list[int]], vocab_size: int,
                 matchers: list | None = None, grammars: Grammars | None = None,
                 eos_ids: tuple[int, ...] = (), device: torch.device | str = "cpu") -> None:
        # Row parameters live as tensors on the logits' device; what decides which path a step takes is read from
        # `_params` in Python, so deciding never waits for the GPU.
        self._device = torch.device(device)
        self._params = list(params)
        self._eos_ids = eos_ids
        self._produced = torch.zeros(len(params), dtype=torch.long)  # tokens sampled per row so far (CPU)
        # Whether any row has a logit_bias or holds its end back: the per-row pass is skipped otherwise.
        self._adjusted = any(p.logit_bias or p.ignore_eos or p.min_tokens for p in params)
        # Per row: a grammar matcher (constrained JSON) or None; `grammars` masks the rows that have one.
        self._matchers = list(matchers) if matchers is not None else [None] * len(params)
        self._grammars = grammars
        column = {"device": self._device}
        self._temperature = torch.tensor([p.temperature for p in params], **column).unsqueeze(1)
        self._top_p = torch.tensor([p.top_p for p in params], **column).unsqueeze(1)
        self._top_k = torch.tensor([p.top_k for p in params], **column)
        self._min_p = torch.tensor([p.min_p for p in params], **column).unsqueeze(1)
        self._rep = torch.tensor([p.repetition_penalty for p in params], **column).unsqueeze(1)
        self._presence = torch.tensor([p.presence_penalty for p in params], **column).unsqueeze(1)
        self._frequency = torch.tensor([p.frequency_penalty for p in params], **column).unsqueeze(1)
        self._generators = [_generator(p.seed, self._device) for p in params]
        self._penalized = any(p.repetition_penalty != 1 or p.presence_penalty or p.frequency_penalty for p in params)
        self._seen = self._counts = None
        if self._penalized:
            # repetition_penalty looks at prompt and output (as vLLM); presence/frequency at output only (OpenAI).
            seen = torch.zeros(len(params), vocab_size, dtype=torch.bool)
            for row, ids in enumerate(prompts):
                seen[row, torch.tensor([i for i in ids if i < vocab_size], dtype=torch.long)] = True
            self._seen = seen.to(self._device)
            self._counts = torch.zeros(len(params), vocab_size, **column)

    _ROW_TENSORS = ("_temperature", "_top_p", "_top_k", "_min_p", "_rep", "_presence", "_frequency")

    def extend(self, other: BatchSampler) -> None:
        """Append `other`'s rows (requests joining a running batch)."""
        for name in self._ROW_TENSORS:
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        if self._penalized or other._penalized:
            vocab = (self._seen if self._penalized else other._seen).shape[1]
            # Rows without penalties never read this state, so zeros stand in for what they did not track.
            for name, dtype in (("_seen", torch.bool), ("_counts", torch.float32)):
                mine = getattr(self, name) if self._penalized else torch.zeros(len(self._params), vocab, dtype=dtype,
                                                                                device=self._device)
                theirs = getattr(other, name) if other._penalized else torch.zeros(len(other._params), vocab,
                                                                                  dtype=dtype, device=self._device)
                setattr(self, name, torch.cat([mine, theirs]))
            self._penalized = True
        self._params += other._params
        self._produced = torch.cat([self._produced, other._produced])
        self._adjusted = self._adjusted or other._adjusted
        self._eos_ids = self._eos_ids or other._eos_ids
        self._generators += other._generators
        self._matchers += other._matchers
        self._grammars = self._grammars or other._grammars

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long)
        self._params = [self._params[r] for r in rows]
        self._produced = self._produced.index_select(0, index)
        index = index.to(self._device)
        self._generators = [self._generators[r] for r in rows]
        self._matchers = [self._matchers[r] for r in rows]
        for name in (*self._ROW_TENSORS, "_seen", "_counts"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))

    def observe(self, tokens: torch.Tensor) -> None:
        self._produced += 1
        if self._grammars is not None:
            advance(self._matchers, tokens.tolist())
        if self._penalized:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            self._counts[rows, tokens] += 1
            self._seen[rows, tokens] = True

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self._adjusted:
            self._apply_bias_and_holds(logits)
        if self._grammars is not None:
            self._grammars.mask(logits, self._matchers)
        if self._penalized:
            logits = self._penalize(logits)
        greedy = [p.temperature < 1e-5 for p in self._params]
        chosen = logits.argmax(dim=-1)
        if all(greedy):
            return chosen
        logits = logits / self._temperature.clamp(min=1e-5)
        needs_filter = any(p.top_k > 0 or p.top_p < 1 or p.min_p > 0 for p in self._params)
        probs = self._filtered_probs(logits) if needs_filter else logits.softmax(dim=-1)
        # One multinomial call for unseeded rows; seeded rows draw from their own generator to be reproducible.
        shared = [r for r, g in enumerate(greedy) if not g and self._generators[r] is None]
        if shared:
            index = torch.tensor(shared, device=logits.device)
            chosen[index] = torch.multinomial(probs[index], 1).squeeze(1)
        for r, g in enumerate(greedy):
            if not g and self._generators[r] is not None:
                chosen[r] = torch.multinomial(probs[r], 1, generator=self._generators[r])[0]
        return chosen

    def _apply_bias_and_holds(self, logits: torch.Tensor) -> None:
        """logit_bias, then the end-of-sequence and stop tokens forbidden to rows that must go on (ignore_eos, or
        fewer than min_tokens so far), in place."""
        for row, params in enumerate(self._params):
            if params.logit_bias:
                ids, biases = zip(*params.logit_bias, strict=True)
                logits[row, list(ids)] += torch.tensor(biases, device=logits.device)
            held = list(self._eos_ids) if params.ignore_eos else []
            if int(self._produced[row]) < params.min_tokens:
                held = list(self._eos_ids) + list(params.stop_token_ids)
            if held:
                logits[row, held] = float("-inf")

    def _penalize(self, logits: torch.Tensor) -> torch.Tensor:
        penalized = torch.where(logits > 0, logits / self._rep, logits * self._rep)
        logits = torch.where(self._seen, penalized, logits)
        return logits - self._frequency * self._counts - self._presence * (self._counts > 0)

    def _filtered_probs(self, logits: torch.Tensor) -> torch.Tensor:
        # A full sort of the vocabulary is the expensive part; top_k alone only needs the k best candidates.
        full = any(p.top_p < 1 or p.min_p > 0 or p.top_k == 0 for p in self._params)
        width = logits.shape[-1] if full else min(max(p.top_k for p in self._params), logits.shape[-1])
        sorted_logits, order = logits.topk(width, dim=-1)
        ranks = torch.arange(width, device=logits.device).unsqueeze(0)
        k = torch.where(self._top_k > 0, self._top_k, width).unsqueeze(1)
        # top_k first, then top_p and min_p on the renormalised survivors (vLLM's order).
        sorted_logits = sorted_logits.masked_fill(ranks >= k, float("-inf"))
        sorted_probs = sorted_logits.softmax(dim=-1)
        # top_p: keep the smallest prefix whose mass reaches top_p (the first token always stays).
        drop = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self._top_p
        drop |= sorted_probs < self._min_p * sorted_probs[:, :1]
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        filtered = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        return filtered.softmax(dim=-1)


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed % (2**63))
