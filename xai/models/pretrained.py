"""The embedded pretrained models: weights, model card and sample images ship inside the
package, so they load offline."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from xai.core.errors import XAIOSError, XAITypeError, XAIValueError
from xai.models.gapcnn import GAPCNN
from xai.models.mlp import MLP
from xai.models.registry import build

__all__ = ["available", "model_card", "pretrained", "sample_batch", "sample_images"]

_FILES = {"fashion-mnist": "fashion-mnist-gapcnn"}


def available() -> tuple[str, ...]:
    """Names accepted by ``pretrained``."""
    return tuple(_FILES)


def _weights_dir() -> Path:
    return Path(str(resources.files("xai.models") / "weights"))


def _stem(name: str) -> str:
    key = name.strip().lower()
    if key not in _FILES:
        raise XAIValueError(f"unknown pretrained model {name!r}; available: {', '.join(_FILES)}")
    return _FILES[key]


def model_card(name: str = "fashion-mnist") -> dict[str, Any]:
    """The model card: data, command, seed, training time, accuracies, explanations."""
    path = _weights_dir() / f"{_stem(name)}.json"
    return dict(json.loads(path.read_text()))


def pretrained(name: str = "fashion-mnist") -> GAPCNN | MLP:
    """The embedded model ``name``, trained by ``scripts/train_pretrained.py``.

    It takes images scaled to [0, 1] (its normalisation is a layer inside it), is returned
    in eval mode, and carries ``class_names``, ``input_size`` (C, H, W) and ``card``.
    Weights are read with ``torch.load(weights_only=True)``: no code is unpickled.
    """
    card = model_card(name)
    model = build(card["architecture"]["name"], card["architecture"]["config"])
    if not isinstance(model, GAPCNN | MLP):
        raise XAITypeError(f"the card of {name!r} names an unknown architecture")
    state = torch.load(_weights_dir() / card["weights"], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    model.class_names = tuple(card["class_names"])
    model.input_size = tuple(card["input_size"])
    model.card = card
    return model


def sample_images(name: str = "fashion-mnist") -> list[tuple[str, Path]]:
    """The shipped test images, one per class: (class name, PNG path), in class order."""
    card = model_card(name)
    folder = _weights_dir()
    return [(s["class_name"], folder / s["file"]) for s in card["samples"]]


def sample_batch(name: str = "fashion-mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped sample images as one batch, (10, 1, 28, 28) in [0, 1], and their labels.

    Reads the PNGs with OpenCV (imported here, not by ``import xai``).
    """
    import cv2

    images, labels = [], []
    for index, (_, path) in enumerate(sample_images(name)):
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise XAIOSError(f"cannot read the sample image {path}")
        images.append(torch.from_numpy(pixels).float()[None] / 255)
        labels.append(index)
    return torch.stack(images), torch.tensor(labels)
