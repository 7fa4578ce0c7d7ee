"""The reference the served embeddings must equal: all-MiniLM-L6-v2 computed with plain transformers, as
its model card does it (mean of the token states under the attention mask, then L2 normalisation)."""

from __future__ import annotations

from functools import cache

import numpy as np

from deployments import model_source
from tests.support.models import MINILM_SOURCE

TOLERANCE = 1e-4
PARAPHRASES = ("A man is playing a guitar.", "Someone is strumming an acoustic guitar.")
UNRELATED = "The central bank raised interest rates by half a point."


@cache
def _model():
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = model_source.resolve(MINILM_SOURCE)
    torch.manual_seed(0)
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def reference_embeddings(texts: list[str]) -> np.ndarray:
    import torch

    tokenizer, model = _model()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def token_ids(text: str) -> list[int]:
    return _model()[0](text)["input_ids"]


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
