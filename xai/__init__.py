"""xai-toolkit: explain PyTorch image classifiers with CAM, the Grad-CAM family and
Shapley values (exact, sampled, or through shap and captum).

    >>> import torch, xai
    >>> model = xai.models.GAPCNN(in_channels=1, num_classes=10)
    >>> x = torch.rand(4, 1, 28, 28)                   # images scaled to [0, 1]
    >>> e = xai.explain(model, x, method="gradcam")
    >>> tuple(e.maps.shape), e.layer                   # maps in [0, 1] at input size
    ((4, 28, 28), 'features.19')

Importing ``xai`` is light: torch and the method modules load on first use, and shap,
captum, matplotlib and OpenCV are never imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xai.registry import methods

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "explain": "xai.api:explain",
    "explainer": "xai.api:explainer",
    "Explanation": "xai.explanation:Explanation",
    "CAM": "xai.cam.cam:CAM",
    "GradCAM": "xai.cam.gradcam:GradCAM",
    "GradCAMPlusPlus": "xai.cam.gradcampp:GradCAMPlusPlus",
    "XGradCAM": "xai.cam.xgradcam:XGradCAM",
    "HiResCAM": "xai.cam.hirescam:HiResCAM",
    "LayerCAM": "xai.cam.layercam:LayerCAM",
    "ScoreCAM": "xai.cam.scorecam:ScoreCAM",
    "AblationCAM": "xai.cam.ablationcam:AblationCAM",
    "EigenCAM": "xai.cam.eigencam:EigenCAM",
    "GuidedBackprop": "xai.cam.guided:GuidedBackprop",
    "GuidedGradCAM": "xai.cam.guided:GuidedGradCAM",
    "models": "xai.models",
    "data": "xai.data",
    "training": "xai.training",
    "shapley": "xai.shapley",
    "metrics": "xai.metrics",
    "exact_shapley": "xai.shapley.exact:exact_shapley",
    "ShapleyResult": "xai.explanation:ShapleyResult",
}

__all__ = [
    "CAM",
    "AblationCAM",
    "EigenCAM",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "ShapleyResult",
    "XGradCAM",
    "__version__",
    "data",
    "exact_shapley",
    "explain",
    "explainer",
    "methods",
    "metrics",
    "models",
    "shapley",
    "training",
]

if TYPE_CHECKING:
    from xai import data, metrics, models, shapley, training
    from xai.api import explain, explainer
    from xai.cam.ablationcam import AblationCAM
    from xai.cam.cam import CAM
    from xai.cam.eigencam import EigenCAM
    from xai.cam.gradcam import GradCAM
    from xai.cam.gradcampp import GradCAMPlusPlus
    from xai.cam.guided import GuidedBackprop, GuidedGradCAM
    from xai.cam.hirescam import HiResCAM
    from xai.cam.layercam import LayerCAM
    from xai.cam.scorecam import ScoreCAM
    from xai.cam.xgradcam import XGradCAM
    from xai.explanation import Explanation, ShapleyResult
    from xai.shapley.exact import exact_shapley


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'xai' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
