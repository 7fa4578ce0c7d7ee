"""OpenAI wire models: what clients send and receive, free of any engine."""
