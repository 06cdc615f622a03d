"""Models: the GAP-headed CNN that CAM needs, a plain MLP baseline, in-model
normalisation so that users pass images scaled to [0, 1], and the embedded pretrained
Fashion-MNIST model (``xai.models.pretrained("fashion-mnist")``)."""

from xai.models.gapcnn import GAPCNN
from xai.models.mlp import MLP
from xai.models.normalize import Normalize
from xai.models.pretrained import (
    available,
    model_card,
    pretrained,
    sample_batch,
    sample_images,
)
from xai.models.registry import ARCHITECTURES, build

__all__ = [
    "ARCHITECTURES",
    "GAPCNN",
    "MLP",
    "Normalize",
    "available",
    "build",
    "model_card",
    "pretrained",
    "sample_batch",
    "sample_images",
]
