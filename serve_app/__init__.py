"""OpenAI-compatible gateway (the Ray Serve ingress) and its application builder."""
