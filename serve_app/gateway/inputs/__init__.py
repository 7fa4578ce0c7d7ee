"""Checks of client-sent images, decided by their bytes, before any model work (audio: protocol/audio.py)."""
