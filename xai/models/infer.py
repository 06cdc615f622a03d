"""A built-in architecture's arguments, read back from a ``state_dict``'s names and
shapes, so that ``xai explain --model weights.pt --arch gapcnn`` needs no configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from xai.models.registry import build

__all__ = ["config_from_weights"]


def config_from_weights(name: str, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The architecture's arguments, as far as the weights themselves reveal them."""
    key = name.strip().lower()
    config: dict[str, Any] = {}
    head = state.get("head.weight")
    if head is not None and head.ndim == 2:
        config["num_classes"] = int(head.shape[0])
    if "normalize.mean" in state and "normalize.std" in state:
        config["mean"] = state["normalize.mean"].flatten().tolist()
        config["std"] = state["normalize.std"].flatten().tolist()
    weights = [v for k, v in state.items() if k.endswith("weight")]
    if key == "gapcnn":
        return _gapcnn(config, state)
    if key == "mlp" and weights and weights[0].ndim == 2:
        config["in_features"] = int(weights[0].shape[1])
        config["hidden"] = [int(w.shape[0]) for w in weights[:-1] if w.ndim == 2]
    return config


def _gapcnn(config: dict[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Channels, convolutions per block, kernel, batch norm and pooling of a GAPCNN: the
    first configuration whose parameter names and shapes match the weights."""
    convs = [v for k, v in state.items() if k.startswith("features.") and v.ndim == 4]
    if not convs:
        return config
    widths = [int(w.shape[0]) for w in convs]
    base = {
        **config,
        "in_channels": int(convs[0].shape[1]),
        "kernel_size": int(convs[0].shape[-1]),
        "batch_norm": any(k.endswith("running_mean") for k in state),
    }
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    for per_block in range(1, len(widths) + 1):
        if len(widths) % per_block:
            continue
        blocks = [widths[i : i + per_block] for i in range(0, len(widths), per_block)]
        if any(len(set(block)) != 1 for block in blocks):
            continue
        channels = [block[0] for block in blocks]
        for pools in range(len(channels)):
            candidate = {
                **base,
                "channels": channels,
                "convs_per_block": per_block,
                "pool_blocks": pools,
            }
            try:
                shapes = {
                    k: tuple(v.shape) for k, v in build("gapcnn", candidate).state_dict().items()
                }
            except ValueError:
                continue
            if shapes == wanted:
                return candidate
    return base
