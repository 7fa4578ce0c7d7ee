"""GET /v1/models shapes."""

from __future__ import annotations

CREATED = 1_700_000_000  # fixed: ids are stable across restarts, so is their creation stamp


def model_card(model_id: str, owned_by: str, kind: str) -> dict:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": owned_by, "kind": kind}


def model_list(cards: list[dict]) -> dict:
    return {"object": "list", "data": cards}
