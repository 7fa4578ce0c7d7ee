"""Token-by-token detokenization with stop strings: emit only text that can no longer change or be cut."""

from __future__ import annotations


class IncrementalText:
    """Each token is decoded in a window of the few tokens since the last complete character, so a step costs the
    same at the thousandth token as at the first (decoding the whole output each step made a long answer's
    detokenising quadratic: 150 us per row per step at 1,000 tokens, bench/RESULTS.md)."""

    def __init__(self, tokenizer, stops: list[str]) -> None:
        self._tokenizer = tokenizer
        self._stops = stops
        self._longest_stop = max((len(s) for s in stops), default=0)
        self.token_ids: list[int] = []
        self._text = ""  # the text of token_ids[:_read], which ends on a complete character
        # The window starts one piece of text back (at _prefix): a SentencePiece decoder drops the leading space
        # of what it decodes, so each new piece is read as what the window adds to that previous piece.
        self._prefix = self._read = 0
        self._emitted = 0  # characters of the decoded text already sent

    def add(self, token_id: int) -> tuple[str, bool]:
        """Append one token; returns (new text to send, whether a stop string ended the output)."""
        self.token_ids.append(token_id)
        text, incomplete = self._decoded()
        if incomplete:  # a multi-byte character is still incomplete: nothing new to send yet
            return self._cut_at_stop(text) or ("", False)
        return self._cut_at_stop(text) or (self._take(text, len(text) - self._held_back(text)), False)

    def flush(self) -> tuple[str, bool]:
        """Everything not yet sent, at the end of generation; (text, whether a stop string cut it)."""
        text, _ = self._decoded()
        return self._cut_at_stop(text) or (self._take(text, len(text)), False)

    def _decoded(self) -> tuple[str, bool]:
        """The text so far, less the bytes of a character still incomplete, and whether there are such bytes."""
        before = self._decode(self.token_ids[self._prefix:self._read])
        piece = self._decode(self.token_ids[self._prefix:])[len(before):]
        if piece.endswith("\ufffd"):
            return self._text + piece.rstrip("\ufffd"), True
        self._text += piece
        if piece:  # a piece that decodes to nothing (special tokens) is no context: the window keeps the last one
            self._prefix = self._read
        self._read = len(self.token_ids)
        return self._text, False

    def _cut_at_stop(self, text: str) -> tuple[str, bool] | None:
        # Only the unsent tail (plus room for a stop straddling it) can hold a new match.
        start = max(0, self._emitted - self._longest_stop)
        hits = [i for i in (text.find(s, start) for s in self._stops) if i >= 0]
        if not hits:
            return None
        return self._take(text, max(min(hits), self._emitted)), True

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _held_back(self, text: str) -> int:
        # Hold the longest tail that could still grow into a stop string.
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-size:]):
                    longest = size
                    break
        return longest

    def _take(self, text: str, end: int) -> str:
        piece = text[self._emitted:end] if end > self._emitted else ""
        self._emitted = max(self._emitted, end)
        return piece
