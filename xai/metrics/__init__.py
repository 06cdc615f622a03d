"""Evaluating explanations: faithfulness (does the model's score follow the map?) and
localisation (does the map fall on the object?).

Faithfulness runs the model on perturbed copies of the images:

* ``deletion`` and ``insertion`` (Petsiuk et al. 2018, RISE): remove, or put
  back, pixels in order of saliency; area under the target's probability curve.
* ``average_drop`` (Chattopadhay et al. 2018, Grad-CAM++): probability lost, and how
  often gained, when the image is multiplied by its map.
* ``road`` (Rong et al. 2022, ROAD): MoRF and LeRF curves, the removed pixels filled
  from their neighbours by ``noisy_linear_imputation`` instead of a constant.

Localisation compares the map with ground-truth masks or boxes, without the model:

* ``pointing_game`` (Zhang et al. 2016): is the map's maximum on the object?
* ``energy_pointing_game`` (Wang et al. 2020, Score-CAM): the share of the map's
  energy on the object.

Sanity, on the model itself:

* ``cascading_randomization`` (Adebayo et al. 2018): re-initialise the layers from the
  output down and measure, by ``spearman`` rank correlation, how much the maps change.

Every function takes the saliency as an ``Explanation`` (its ``maps``) or as
``(N, H, W)`` maps, and returns a small frozen record of numpy arrays. The model is left
as it was: evaluated under ``torch.no_grad()`` in eval mode, each submodule's flag
restored after. See ``docs/metrics.md`` for how to read the numbers and their traps.
"""

from __future__ import annotations

from xai.metrics.confidence import ConfidenceChange, average_drop
from xai.metrics.faithfulness import Curve, deletion, insertion, perturbation_curve
from xai.metrics.localisation import (
    EnergyResult,
    PointingResult,
    energy_pointing_game,
    pointing_game,
)
from xai.metrics.road import RoadResult, noisy_linear_imputation, road
from xai.metrics.sanity import SanityResult, cascading_randomization, spearman

__all__ = [
    "ConfidenceChange",
    "Curve",
    "EnergyResult",
    "PointingResult",
    "RoadResult",
    "SanityResult",
    "average_drop",
    "cascading_randomization",
    "deletion",
    "energy_pointing_game",
    "insertion",
    "noisy_linear_imputation",
    "perturbation_curve",
    "pointing_game",
    "road",
    "spearman",
]
