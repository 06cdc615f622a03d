"""Models: the GAP-headed CNN that CAM needs, a plain MLP baseline, and in-model
normalisation so that users pass images scaled to [0, 1]."""

from xai.models.gapcnn import GAPCNN
from xai.models.mlp import MLP
from xai.models.normalize import Normalize

__all__ = ["GAPCNN", "MLP", "Normalize"]
