"""A running decode batch for transformers models: left-padded KV cache that rows can join and leave.

Joining mid-flight is what makes this continuous batching: a new request is prefilled on its own, then its
cache is padded on the left to the batch's length (or the batch's to its) and stacked in. Positions are
tracked per row, so padding never shifts rotary positions; the attention mask hides the pads.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from deployments.engines.hf.grammar import Grammars
from deployments.engines.hf.sampling import BatchSampler
from serve_app.protocol.sampling import SamplingParams


class RunningBatch:
    def __init__(self, cache: DynamicCache, attention: torch.Tensor, next_position: torch.Tensor,
                 logits: torch.Tensor, sampler: BatchSampler) -> None:
        self.cache = cache
        self.attention = attention  # [rows, cached length]: 1 where a real token sits
        self.next_position = next_position  # [rows]
        self.logits = logits  # [rows, vocab]: next-token logits not yet sampled
        self.sampler = sampler

    @property
    def size(self) -> int:
        return self.attention.shape[0]

    @classmethod
    def prefill(cls, model, prompts: list[list[int]], params: list[SamplingParams], pad_id: int,
                vision: dict | None = None, matchers: list | None = None,
                grammars: Grammars | None = None, eos_ids: tuple[int, ...] = ()) -> RunningBatch:
        """`vision`: pixel inputs of the one distinct prompt given (a vision-language model's image placeholders).

        Identical prompts (a request's `n` choices) are prefilled once and their cache copied: `n` costs one
        prefill, not `n`."""
        device = model.device
        distinct = list(dict.fromkeys(tuple(p) for p in prompts))
        width = max(len(p) for p in distinct)
        input_ids = torch.full((len(distinct), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(distinct), width), dtype=torch.long)
        for r, prompt in enumerate(distinct):
            input_ids[r, width - len(prompt):] = torch.tensor(prompt)
            attention[r, width - len(prompt):] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)  # built on the CPU, moved in one copy
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        # The processor's pixels are float32 on the CPU: the vision tower wants them where and as its weights are.
        vision = {k: v.to(device, dtype=model.dtype if v.is_floating_point() else None)
                  if isinstance(v, torch.Tensor) else v for k, v in (vision or {}).items()}
        cache = DynamicCache()
        # logits_to_keep=1: only the last position's logits (all of them would be rows x width x vocab floats).
        logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
                       use_cache=True, logits_to_keep=1, **vision).logits[:, -1, :].float()
        if len(distinct) < len(prompts):  # one row per sequence again, copies sharing their prefill
            index = torch.tensor([distinct.index(tuple(p)) for p in prompts], dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            attention, positions, logits = attention[index], positions[index], logits[index]
        sampler = BatchSampler(params, prompts, logits.shape[-1], matchers, grammars, eos_ids, device)
        return cls(cache, attention, positions[:, -1] + 1, logits, sampler)

    def merge(self, other: RunningBatch) -> None:
        """Stack `other`'s rows under ours, left-padding whichever cache is shorter."""
        width = max(self.attention.shape[1], other.attention.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width, -2), _left_pad(theirs.keys, width, -2)])
            mine.values = torch.cat([_left_pad(mine.values, width, -2), _left_pad(theirs.values, width, -2)])
        self.attention = torch.cat([_left_pad(self.attention, width, -1), _left_pad(other.attention, width, -1)])
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.logits = torch.cat([self.logits, other.logits])
        self.sampler.extend(other.sampler)

    def select(self, rows: list[int]) -> None:
        """Keep only `rows`, then drop leading columns that are padding in every remaining row."""
        index = torch.tensor(rows, dtype=torch.long, device=self.attention.device)
        self.cache.batch_select_indices(index)
        self.attention = self.attention[index]
        self.next_position = self.next_position[index]
        self.logits = self.logits[index]
        self.sampler.select(rows)
        first_used = int(self.attention.any(dim=0).long().argmax())
        if first_used:
            for layer in self.cache.layers:
                layer.keys = layer.keys[..., first_used:, :]
                layer.values = layer.values[..., first_used:, :]
            self.attention = self.attention[:, first_used:]

    def decode(self, model, tokens: torch.Tensor) -> None:
        """Feed one sampled token per row; leaves the next logits in `self.logits`."""
        self.attention = torch.cat([self.attention, self.attention.new_ones((self.size, 1))], dim=1)
        self.logits = model(input_ids=tokens.unsqueeze(1), attention_mask=self.attention,
                            position_ids=self.next_position.unsqueeze(1), past_key_values=self.cache,
                            use_cache=True).logits[:, -1, :].float()
        self.next_position = self.next_position + 1


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
