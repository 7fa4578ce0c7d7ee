"""Constrained decoding for the transformers engine: JSON following a JSON Schema, enforced token by token
with xgrammar, as a mask on each constrained row's logits.

xgrammar is the library vLLM itself uses for structured outputs, so both engines accept and refuse the same
schemas; it compiles a schema once (cached here) and keeps per-sequence state in a cheap matcher.
"""

from __future__ import annotations

import functools
import json

import torch

from serve_app.errors import InvalidRequest
from serve_app.protocol.tools import Constraint


class Grammars:
    """Compiles constraints for one tokenizer; hands out a fresh matcher per sequence."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: list[int]) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._compiled = functools.lru_cache(maxsize=64)(self._compile)

    def matcher(self, constraint: Constraint, param: str):
        try:
            compiled = self._compiled(json.dumps(constraint.schema, sort_keys=True))
        except (RuntimeError, ValueError) as exc:  # a schema xgrammar cannot enforce (it names the feature)
            raise InvalidRequest(f"This JSON Schema cannot be enforced: {exc}", param=param) from None
        return self._xgr.GrammarMatcher(compiled)

    def _compile(self, schema: str):
        return self._compiler.compile_json_schema(schema, any_whitespace=False)

    def mask(self, logits: torch.Tensor, matchers: list) -> None:
        """Forbid, in place, every token the row's grammar does not allow next (rows without one untouched)."""
        rows = [r for r, m in enumerate(matchers) if m is not None and not m.is_terminated()]
        if not rows:
            return
        bitmask = self._xgr.allocate_token_bitmask(logits.shape[0], self.vocab_size)
        for r in rows:
            matchers[r].fill_next_token_bitmask(bitmask, r)
        # filled on the CPU by the matchers; applied where the logits are (xgrammar's Triton kernel on a GPU)
        self._xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device, non_blocking=True), indices=rows)


def advance(matchers: list, tokens: list[int]) -> None:
    for matcher, token in zip(matchers, tokens):
        if matcher is not None and not matcher.is_terminated():
            matcher.accept_token(token)
