"""What the request models share: a strict base (an unknown field is a 400 naming it, not silently dropped),
OpenAI's function-name rule and tool cap, and the text bound that refuses over-long input before tokenizing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function (tool) names
MAX_TOOLS = 128  # OpenAI's cap
# No tokenizer packs more characters than this into one token in practice, so longer text cannot fit a
# model's window and is refused before time goes into tokenizing it.
MAX_CHARS_PER_TOKEN = 32


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")
