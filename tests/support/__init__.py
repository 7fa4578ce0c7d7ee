"""Test helpers shared by tests and benches: servers, media, keys and model ids (no fixtures here)."""
