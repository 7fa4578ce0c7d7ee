"""The Batch API: JSONL input checked up front, batches run at low priority by the batch runner deployment."""
