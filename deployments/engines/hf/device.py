"""Where a transformers engine runs: its options made concrete for this replica, and the torch device."""

from __future__ import annotations

import torch


def placed(options, given_gpu: bool):
    """(options with every `auto` resolved, torch device). `given_gpu`: Ray gave this replica a GPU
    (deployments/engines/factory.py), which `device: auto` takes."""
    on_gpu = options.device == "cuda" or (options.device == "auto" and given_gpu)
    # asked only for a GPU it will use: asking starts CUDA, also in a CPU replica that sees a node's GPUs
    resolved = options.resolved(given_gpu, on_gpu and torch.cuda.is_bf16_supported(including_emulation=False))
    device = torch.device(resolved.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("engine_options.device is cuda, but torch sees no GPU in this replica")
    return resolved, device
