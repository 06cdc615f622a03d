"""The one registry of explanation methods: name -> class, read by the API, CLI and docs.

The registry holds import paths, not classes, so that listing methods (``xai.methods()``,
``xai methods``) imports neither torch nor any method module. It is the one place a
method is named: ``xai``'s exports (``xai.GradCAM``), each class's ``name`` (reported as
``Explanation.method``), the command line's ``--method`` and the docs all read it. A new
method is one file in ``xai/cam/``, one entry here and one oracle test.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["MethodInfo", "exports", "get", "methods", "name_of", "resolve_name"]


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about one method."""

    name: str
    target: str  # "module:ClassName", imported on first use
    summary: str
    paper: str
    gradients: bool  # does the method back-propagate?
    class_specific: bool = True  # False: the same map whatever the target class

    @property
    def class_name(self) -> str:
        """The explainer class's name, exported as ``xai.<class_name>``."""
        return self.target.partition(":")[2]

    def load(self) -> type[Any]:
        """Import and return the explainer class."""
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


_METHODS: tuple[MethodInfo, ...] = (
    MethodInfo(
        "cam",
        "xai.cam.cam:CAM",
        "final-layer weights of a GAP-headed network times the last feature maps; no gradients",
        "Zhou et al. 2016, Learning Deep Features for Discriminative Localization",
        False,
    ),
    MethodInfo(
        "gradcam",
        "xai.cam.gradcam:GradCAM",
        "channel weights = spatial mean of the score's gradient; works on any conv layer",
        "Selvaraju et al. 2017, Grad-CAM",
        True,
    ),
    MethodInfo(
        "gradcam++",
        "xai.cam.gradcampp:GradCAMPlusPlus",
        "pixel-wise alpha from second and third derivatives weights the positive gradients",
        "Chattopadhay et al. 2018, Grad-CAM++",
        True,
    ),
    MethodInfo(
        "xgradcam",
        "xai.cam.xgradcam:XGradCAM",
        "gradients averaged with the normalised activations as weights (axiom-based)",
        "Fu et al. 2020, Axiom-based Grad-CAM",
        True,
    ),
    MethodInfo(
        "hirescam",
        "xai.cam.hirescam:HiResCAM",
        "element-wise gradient times activation, summed over channels",
        "Draelos & Carin 2020, HiResCAM",
        True,
    ),
    MethodInfo(
        "layercam",
        "xai.cam.layercam:LayerCAM",
        "element-wise positive gradient times activation, summed over channels",
        "Jiang et al. 2021, LayerCAM",
        True,
    ),
    MethodInfo(
        "gradcam-elementwise",
        "xai.cam.gradcam_elementwise:GradCAMElementWise",
        "positive part of gradient times activation, element by element, summed over channels",
        "Gildenblat et al., pytorch-grad-cam (GradCAMElementWise)",
        True,
    ),
    MethodInfo(
        "scorecam",
        "xai.cam.scorecam:ScoreCAM",
        "each channel's upsampled map masks the input; weight = the masked input's score gain",
        "Wang et al. 2020, Score-CAM",
        False,
    ),
    MethodInfo(
        "sscam",
        "xai.cam.sscam:SSCAM",
        "Score-CAM with each masked input's score averaged over Gaussian-noised copies",
        "Wang et al. 2020, SS-CAM: Smoothed Score-CAM",
        False,
    ),
    MethodInfo(
        "iscam",
        "xai.cam.iscam:ISCAM",
        "Score-CAM with each mask's score integrated along a path from zero to the mask",
        "Naidu et al. 2020, IS-CAM: Integrated Score-CAM",
        False,
    ),
    MethodInfo(
        "ablationcam",
        "xai.cam.ablationcam:AblationCAM",
        "weight = relative drop of the score when the channel is zeroed",
        "Desai & Ramaswamy 2020, Ablation-CAM",
        False,
    ),
    MethodInfo(
        "eigencam",
        "xai.cam.eigencam:EigenCAM",
        "projection of the feature maps on their first principal direction; class-agnostic",
        "Muhammad & Yeasin 2020, Eigen-CAM",
        False,
        class_specific=False,
    ),
    MethodInfo(
        "eigengradcam",
        "xai.cam.eigengradcam:EigenGradCAM",
        "first principal component of gradient times activation; class-specific Eigen-CAM",
        "Muhammad & Yeasin 2020, Eigen-CAM (applied to gradient x activation)",
        True,
    ),
    MethodInfo(
        "guided-backprop",
        "xai.cam.guided:GuidedBackprop",
        "input gradient with only positive gradients passed back through every ReLU",
        "Springenberg et al. 2015, Striving for Simplicity",
        True,
    ),
    MethodInfo(
        "guided-gradcam",
        "xai.cam.guided:GuidedGradCAM",
        "guided backpropagation times the upsampled Grad-CAM map",
        "Selvaraju et al. 2017, Grad-CAM",
        True,
    ),
    MethodInfo(
        "fullgrad",
        "xai.cam.fullgrad:FullGrad",
        "input-gradient term plus every conv and batch-norm layer's bias-gradient term",
        "Srinivas & Fleuret 2019, Full-Gradient Representation for Neural Network Visualization",
        True,
    ),
)

_BY_NAME: dict[str, MethodInfo] = {m.name: m for m in _METHODS}
_ALIASES: dict[str, str] = {"gradcampp": "gradcam++", "guidedbp": "guided-backprop"}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")


_BY_KEY: dict[str, str] = {_key(m.name): m.name for m in _METHODS}
_BY_KEY.update({_key(alias): name for alias, name in _ALIASES.items()})


_BY_TARGET: dict[str, str] = {m.target: m.name for m in _METHODS}


def exports() -> dict[str, str]:
    """Public class name -> ``"module:Class"`` of every method, for ``xai``'s exports."""
    return {m.class_name: m.target for m in _METHODS}


def name_of(cls: type) -> str | None:
    """The registry name of an explainer class, or ``None`` if it is not registered."""
    return _BY_TARGET.get(f"{cls.__module__}:{cls.__qualname__}")


def methods() -> tuple[str, ...]:
    """The names of all registered explanation methods, in a stable order."""
    return tuple(m.name for m in _METHODS)


def resolve_name(name: str) -> str:
    """Map a user-typed method name to its registry name.

    Case, ``-``, ``_`` and spaces are ignored (``"Grad-CAM"`` is ``"gradcam"``).

    Raises:
        ValueError: naming the valid methods and the closest match.
    """
    from xai.core.errors import XAITypeError, XAIValueError

    if not isinstance(name, str):
        raise XAITypeError(f"method must be a string such as 'gradcam'; got {type(name).__name__}")
    key = _key(name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    close = difflib.get_close_matches(key, list(_BY_KEY), n=1, cutoff=0.5)
    hint = f" Did you mean {_BY_KEY[close[0]]!r}?" if close else ""
    raise XAIValueError(f"unknown method {name!r}.{hint} Valid methods: {', '.join(methods())}.")


def get(name: str) -> MethodInfo:
    """The registry entry for ``name`` (aliases and spelling variants accepted)."""
    return _BY_NAME[resolve_name(name)]
