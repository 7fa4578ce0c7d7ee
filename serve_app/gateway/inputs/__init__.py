"""Checks of client-sent images and audio, decided by their bytes, before any model work."""
