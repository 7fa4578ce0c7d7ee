"""GET /v1/models shapes: OpenAI's model object plus what each model accepts and its input limits."""

from __future__ import annotations

CREATED = 1_700_000_000  # fixed: ids are stable across restarts, so is their creation stamp


def model_card(model_id: str, owned_by: str, kind: str, inputs: list[str], limits: dict,
               features: dict[str, bool], outputs: list[str]) -> dict:
    """`kind`, `capabilities` and `limits` are extras (OpenAI clients ignore them; the playground adapts).
    `features`: tools, structured_outputs, reasoning (and translation for speech models)."""
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": owned_by, "kind": kind,
            "capabilities": {"input": inputs, "output": outputs, **features}, "limits": limits}


def model_list(cards: list[dict]) -> dict:
    return {"object": "list", "data": cards}
