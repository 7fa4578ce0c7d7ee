"""Reasoning models' thinking kept apart from their answer: `reasoning_content`, as vLLM returns it.

Models such as Qwen3 and DeepSeek-R1 write their thinking between `<think>` and `</think>` before the answer.
The parser a model's config names (`reasoning_parser`) splits the two, whole or while streaming:
- `qwen3`: thinking only when the answer opens with `<think>` (thinking can be switched off);
- `deepseek_r1`: the chat template opens the `<think>` itself, so the answer starts inside the thinking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPEN, CLOSE = "<think>", "</think>"
PARSERS = ("qwen3", "deepseek_r1")


def split_reasoning(text: str, parser: str | None) -> tuple[str | None, str]:
    """(reasoning or None, content) of a whole answer."""
    if parser is None:
        return None, text
    splitter = ReasoningSplitter(parser)
    pieces = splitter.feed(text) + splitter.flush()
    reasoning = "".join(p for kind, p in pieces if kind == "reasoning")
    content = "".join(p for kind, p in pieces if kind == "content")
    return (reasoning.strip() or None) if splitter.saw_reasoning else None, content.lstrip("\n")


@dataclass
class ReasoningSplitter:
    """Feeds streamed text in, gives ("reasoning" | "content", text) pieces out; a tag split across two pieces
    is held back until it can be told apart from text."""

    parser: str
    state: str = field(init=False)  # "start" (qwen3: undecided), "reasoning", "content"
    held: str = ""
    saw_reasoning: bool = False

    def __post_init__(self) -> None:
        self.state = "reasoning" if self.parser == "deepseek_r1" else "start"
        self.saw_reasoning = self.state == "reasoning"

    def feed(self, text: str) -> list[tuple[str, str]]:
        self.held += text
        out: list[tuple[str, str]] = []
        while self.held:
            if self.state == "start":
                stripped = self.held.lstrip()
                if stripped.startswith(OPEN):
                    self.held, self.state, self.saw_reasoning = stripped[len(OPEN):], "reasoning", True
                elif OPEN.startswith(stripped):
                    break  # could still become <think>
                else:
                    self.state = "content"
            elif self.state == "reasoning":
                at = self.held.find(CLOSE)
                if at >= 0:
                    out.append(("reasoning", self.held[:at]))
                    self.held, self.state = self.held[at + len(CLOSE):], "content"
                    continue
                keep = _partial_tag_length(self.held, CLOSE)
                if len(self.held) > keep:
                    out.append(("reasoning", self.held[:len(self.held) - keep]))
                    self.held = self.held[len(self.held) - keep:]
                break
            else:
                out.append(("content", self.held))
                self.held = ""
        return [(kind, piece) for kind, piece in out if piece]

    def flush(self) -> list[tuple[str, str]]:
        """What is held back once the answer has ended."""
        held, self.held = self.held, ""
        if not held:
            return []
        return [("reasoning" if self.state == "reasoning" else "content", held)]


def _partial_tag_length(text: str, tag: str) -> int:
    """How many trailing characters of `text` could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
