"""Embedding inputs as token ids, checked against the model's window and vocabulary: one place for both
embedding engines, so they accept and refuse alike (a 400 naming the input)."""

from __future__ import annotations

import threading

from serve_app.errors import InvalidRequest
from serve_app.protocol.wire import MAX_CHARS_PER_TOKEN


class EmbeddingTokenizer:
    def __init__(self, tokenizer, window: int, vocabulary: int) -> None:
        self.tokenizer = tokenizer
        self.window = window
        self.vocabulary = vocabulary
        # A fast tokenizer is not safe to call from two threads at once ("Already borrowed" when one call
        # resets its truncation and padding settings while another encodes): requests take turns.
        self._lock = threading.Lock()

    def token_ids(self, inputs: list[str | list[int]]) -> list[list[int]]:
        """Text with the model's own special tokens; token arrays as given."""
        many = len(inputs) > 1
        out = []
        for i, item in enumerate(inputs):
            where = f"input[{i}]" if many else "input"
            if isinstance(item, str):
                if len(item) // MAX_CHARS_PER_TOKEN > self.window:  # refused before tokenizing megabytes
                    raise self._too_long(where, len(item) // MAX_CHARS_PER_TOKEN, "at least ")
                with self._lock:
                    ids = self.tokenizer(item, add_special_tokens=True)["input_ids"]
            else:
                if max(item) >= self.vocabulary:
                    raise InvalidRequest(f"{where} has token id {max(item)}, outside the model's vocabulary "
                                         f"of {self.vocabulary}.", param="input")
                ids = item
            if len(ids) > self.window:
                raise self._too_long(where, len(ids))
            out.append(ids)
        return out

    def _too_long(self, where: str, tokens: int, qualifier: str = "") -> InvalidRequest:
        return InvalidRequest(f"This model's maximum input length is {self.window} tokens; {where} has "
                              f"{qualifier}{tokens} tokens. Please shorten it.",
                              param="input", code="context_length_exceeded")
