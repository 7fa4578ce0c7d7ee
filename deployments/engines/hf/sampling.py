"""Per-row logits processing and sampling for a batch whose rows each carry their own OpenAI/vLLM parameters.

Row parameters live as tensors on the logits' device, built when rows join or leave; a step applies them with a few
whole-batch operations. Indexing a GPU tensor with a Python list copies the list to the GPU first, which waits for
the GPU's queued work, so a step does not index that way; which path a step takes is read from the Python
parameters. (A constrained row's grammar mask is filled on the CPU and copied over: grammar.py.)
"""

from __future__ import annotations

import torch

from deployments.engines.hf.grammar import Grammars, advance
from serve_app.protocol.sampling import SamplingParams


class BatchSampler:
    """Holds each row's parameters and token history; rows can be dropped as sequences finish."""

    # [rows] parameters; [rows, vocab] penalty state and [rows, k] token lists (logit_bias, the stop tokens held
    # before min_tokens), each kept only while some row needs it (the rows that do not never change a logit).
    _ROW_TENSORS = ("_temperature", "_top_p", "_top_k", "_min_p", "_rep", "_presence", "_frequency", "_produced",
                    "_min_tokens", "_ignore_eos")
    _DENSE = {"_seen": torch.bool, "_counts": torch.float32}
    _LISTS = ("_bias_ids", "_bias_values", "_stop_ids", "_stop_live")

    def __init__(self, params: list[SamplingParams], prompts: list[list[int]], vocab_size: int,
                 matchers: list | None = None, grammars: Grammars | None = None,
                 eos_ids: tuple[int, ...] = (), device: torch.device | str = "cpu") -> None:
        self._device = torch.device(device)
        self._params = list(params)
        self._vocab = vocab_size
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
        self._produced = torch.zeros(len(params), dtype=torch.long, **column)  # tokens sampled per row so far
        self._min_tokens = torch.tensor([p.min_tokens for p in params], dtype=torch.long, **column)
        self._ignore_eos = torch.tensor([p.ignore_eos for p in params], dtype=torch.bool, **column)
        self._eos_ids = eos_ids
        self._eos = torch.tensor(sorted({i for i in eos_ids if 0 <= i < vocab_size}), dtype=torch.long, **column)
        self._generators = [_generator(p.seed, self._device) for p in params]
        # repetition_penalty looks at prompt and output (as vLLM); presence/frequency at output only (OpenAI).
        penalized = any(p.repetition_penalty != 1 or p.presence_penalty or p.frequency_penalty for p in params)
        self._seen = _token_mask(prompts, vocab_size).to(self._device) if penalized else None
        self._counts = torch.zeros(len(params), vocab_size, **column) if penalized else None
        self._bias_ids, self._bias_values = _token_lists([list(p.logit_bias) for p in params], vocab_size, 0.0,
                                                         self._device)
        # stop_token_ids are held back, like the end of sequence, until a row has its min_tokens
        self._stop_ids, self._stop_live = _token_lists(
            [[(i, True) for i in p.stop_token_ids] if p.min_tokens else [] for p in params], vocab_size, False,
            self._device)
        self._refresh()

    def _refresh(self) -> None:
        """What each step's path depends on, read from the rows' parameters when rows join or leave."""
        params = self._params
        self._greedy = [p.temperature < 1e-5 for p in params]
        self._holds = any(p.ignore_eos or p.min_tokens for p in params)
        self._filtered = any(p.top_k > 0 or p.top_p < 1 or p.min_p > 0 for p in params)
        self._full_sort = any(p.top_p < 1 or p.min_p > 0 or p.top_k == 0 for p in params)
        self._widest_k = max((p.top_k for p in params), default=0)
        # One multinomial call for unseeded rows; seeded rows draw from their own generator to be reproducible.
        shared = [r for r, g in enumerate(self._greedy) if not g and self._generators[r] is None]
        self._shared = None if not shared else torch.tensor(shared, device=self._device)
        self._seeded = [r for r, g in enumerate(self._greedy) if not g and self._generators[r] is not None]

    def extend(self, other: BatchSampler) -> None:
        """Append `other`'s rows (requests joining a running batch)."""
        for name in self._ROW_TENSORS:
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        for name, dtype in self._DENSE.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None and theirs is None:
                continue
            size = (len(self._params), self._vocab)
            mine = torch.zeros(size, dtype=dtype, device=self._device) if mine is None else mine
            theirs = torch.zeros((len(other._params), self._vocab), dtype=dtype, device=self._device) \
                if theirs is None else theirs
            setattr(self, name, torch.cat([mine, theirs]))
        for ids, values in (("_bias_ids", "_bias_values"), ("_stop_ids", "_stop_live")):
            mine, theirs = (getattr(self, ids), getattr(self, values)), (getattr(other, ids), getattr(other, values))
            if mine[0] is None and theirs[0] is None:
                continue
            mine = _no_tokens(len(self._params), theirs) if mine[0] is None else mine
            theirs = _no_tokens(len(other._params), mine) if theirs[0] is None else theirs
            width = max(mine[0].shape[1], theirs[0].shape[1])
            for name, a, b in zip((ids, values), mine, theirs, strict=True):
                setattr(self, name, torch.cat([_widen(a, width), _widen(b, width)]))
        if not self._eos_ids:
            self._eos_ids, self._eos = other._eos_ids, other._eos
        self._params += other._params
        self._generators += other._generators
        self._matchers += other._matchers
        self._grammars = self._grammars or other._grammars
        self._refresh()

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self._device)
        self._params = [self._params[r] for r in rows]
        self._generators = [self._generators[r] for r in rows]
        self._matchers = [self._matchers[r] for r in rows]
        for name in (*self._ROW_TENSORS, *self._DENSE, *self._LISTS):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))
        self._refresh()

    def observe(self, tokens: torch.Tensor) -> None:
        self._produced += 1
        if self._grammars is not None:
            advance(self._matchers, tokens.tolist())
        if self._counts is not None:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            self._counts[rows, tokens] += 1
            self._seen[rows, tokens] = True

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        # Each row's listed tokens are read, changed and written back (a list pads with copies of its first entry,
        # which write the same value).
        if self._bias_ids is not None:
            logits.scatter_(1, self._bias_ids, logits.gather(1, self._bias_ids) + self._bias_values)
        if self._holds:  # the end (and held stop tokens) forbidden to rows that must go on
            waiting = self._produced < self._min_tokens
            if self._eos.numel():
                held = (waiting | self._ignore_eos).unsqueeze(1)
                logits.index_copy_(1, self._eos, logits.index_select(1, self._eos).masked_fill(held, float("-inf")))
            if self._stop_ids is not None:
                held = waiting.unsqueeze(1) & self._stop_live
                logits.scatter_(1, self._stop_ids, logits.gather(1, self._stop_ids).masked_fill(held, float("-inf")))
        if self._grammars is not None:
            self._grammars.mask(logits, self._matchers)
        if self._counts is not None:
            logits = self._penalize(logits)
        chosen = logits.argmax(dim=-1)
        if all(self._greedy):
            return chosen
        logits = logits / self._temperature.clamp(min=1e-5)
        probs = self._filtered_probs(logits) if self._filtered else logits.softmax(dim=-1)
        if self._shared is not None:
            chosen[self._shared] = torch.multinomial(probs[self._shared], 1).squeeze(1)
        for r in self._seeded:
            chosen[r] = torch.multinomial(probs[r], 1, generator=self._generators[r])[0]
        return chosen

    def _penalize(self, logits: torch.Tensor) -> torch.Tensor:
        penalized = torch.where(logits > 0, logits / self._rep, logits * self._rep)
        logits = torch.where(self._seen, penalized, logits)
        return logits - self._frequency * self._counts - self._presence * (self._counts > 0)

    def _filtered_probs(self, logits: torch.Tensor) -> torch.Tensor:
        # A full sort of the vocabulary is the expensive part; top_k alone only needs the k best candidates.
        width = logits.shape[-1] if self._full_sort else min(self._widest_k, logits.shape[-1])
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


def _token_lists(rows: list[list[tuple[int, object]]], vocab_size: int, none, device: torch.device):
    """Per row, (token id, value) pairs as [rows, k] ids and values, padded with copies of the row's first pair;
    a row without pairs gets (0, `none`), which changes nothing. (None, None) when no row has any."""
    rows = [[(i, v) for i, v in pairs if 0 <= i < vocab_size] for pairs in rows]
    width = max((len(pairs) for pairs in rows), default=0)
    if not width:
        return None, None
    padded = [(pairs + pairs[:1] * (width - len(pairs))) if pairs else [(0, none)] * width for pairs in rows]
    ids = torch.tensor([[i for i, _ in pairs] for pairs in padded], dtype=torch.long, device=device)
    values = torch.tensor([[v for _, v in pairs] for pairs in padded], device=device)
    return ids, values


def _no_tokens(rows: int, like: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists for `rows` rows that change nothing, shaped and typed as `like`'s."""
    ids, values = like
    return ids.new_zeros((rows, 1)), values.new_zeros((rows, 1))


def _widen(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Pad [rows, k] to [rows, width] with copies of the first column."""
    return torch.cat([tensor, tensor[:, :1].expand(-1, width - tensor.shape[1])], dim=1)


def _token_mask(rows: list[list[int]], vocab_size: int) -> torch.Tensor:
    """[rows, vocab] booleans, True at each row's token ids (ids beyond the vocabulary ignored), on the CPU."""
    mask = torch.zeros(len(rows), vocab_size, dtype=torch.bool)
    for row, ids in enumerate(rows):
        kept = [i for i in ids if 0 <= i < vocab_size]
        if kept:
            mask[row, torch.tensor(kept, dtype=torch.long)] = True
    return mask


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed % (2**63))
