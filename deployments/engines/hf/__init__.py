"""The transformers engine: continuous batching, per-row sampling and incremental detokenisation."""
