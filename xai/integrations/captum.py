"""captum's attribution methods behind xai's result types.

Image inputs (N, C, H, W) give an ``Explanation`` (signed ``attributions``,
``raw`` = their channel sum, or the layer map for Grad-CAM); one tabular instance (n,)
gives a ``ShapleyResult``. captum is imported on first use only. Every call
runs the model in eval mode and restores each submodule's flag afterwards.

Notes: captum's ``ShapleyValues`` enumerates all n! orders (use it for n <= 7 or so), and
accumulates in float32 whatever the model's dtype, so with 8 features (40,320 orders)
its values carry errors near 1e-5; group features with ``feature_mask`` for fewer orders.
``ShapleyValueSampling`` samples orders (``n_samples`` of them); ``FeatureAblation``
gives occlusion effects, which are not Shapley values (efficiency does not hold). With a
``feature_mask``, captum gives every feature of a group the group's whole value: the
values of one member per group, not of all features, add up to the score gap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from xai.core.default_layer import default_layer
from xai.core.errors import XAIValueError
from xai.core.inputs import prepare_inputs
from xai.core.layers import resolve_layer
from xai.core.maps import minmax, upsample
from xai.core.state import evaluation_mode
from xai.core.targets import resolve_target
from xai.explanation import Explanation, ShapleyResult
from xai.integrations._lazy import require

__all__ = [
    "feature_ablation",
    "guided_gradcam",
    "integrated_gradients",
    "kernel_shap",
    "layer_gradcam",
    "shapley_value_sampling",
    "shapley_values",
]


def _captum() -> Any:
    return require("captum.attr", "captum", "captum>=0.9")


def _classes(model: nn.Module, x: torch.Tensor, target: Any) -> tuple[list[int], torch.Tensor]:
    with torch.no_grad():
        output = model(x)
    resolved = resolve_target(target, output, x.shape[0])
    classes = resolved.class_indices("captum's attribution methods")
    scores = resolved.scores(output, torch.arange(x.shape[0])).float().cpu()
    return classes.tolist(), scores


def _image(
    raw: torch.Tensor,
    classes: list[int],
    scores: torch.Tensor,
    method: str,
    attributions: torch.Tensor | None,
    size: tuple[int, int],
    layer: str | None = None,
) -> Explanation:
    raw = raw.detach().float().cpu()
    return Explanation(
        maps=minmax(upsample(raw, size)),
        raw=raw,
        targets=torch.tensor(classes, dtype=torch.int64),
        scores=scores,
        method=method,
        layer=layer,
        attributions=None if attributions is None else attributions.detach().float().cpu(),
    )


def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    target: Any = None,
    *,
    baselines: float | torch.Tensor = 0.0,
    n_steps: int = 50,
) -> Explanation:
    """captum's ``IntegratedGradients`` (Sundararajan et al. 2017) for a batch."""
    attr = _captum()
    x = prepare_inputs(model, images)
    with evaluation_mode(model):
        classes, scores = _classes(model, x, target)
        a = attr.IntegratedGradients(model).attribute(
            x, baselines=baselines, target=classes, n_steps=n_steps
        )
    return _image(
        a.sum(1), classes, scores, "captum-integrated-gradients", a, (x.shape[2], x.shape[3])
    )


def _layer(model: nn.Module, x: torch.Tensor, layer: str | nn.Module | None) -> tuple[str, Any]:
    ref = default_layer(model, x) if layer is None else resolve_layer(model, layer)
    if ref.key is not None:
        raise XAIValueError(
            f"captum hooks a whole module; layer {ref.name!r} selects one tensor of its "
            f"output, which captum cannot; pass a module that returns a tensor."
        )
    return ref.path, ref.module


def layer_gradcam(
    model: nn.Module, images: torch.Tensor, layer: str | nn.Module | None = None, target: Any = None
) -> Explanation:
    """captum's ``LayerGradCam`` with ``relu_attributions=True`` (equals ``xai.GradCAM``)."""
    attr = _captum()
    x = prepare_inputs(model, images)
    with evaluation_mode(model):
        name, module = _layer(model, x, layer)
        classes, scores = _classes(model, x, target)
        a = attr.LayerGradCam(model, module).attribute(x, target=classes, relu_attributions=True)
    return _image(a[:, 0], classes, scores, "captum-gradcam", None, (x.shape[2], x.shape[3]), name)


def guided_gradcam(
    model: nn.Module, images: torch.Tensor, layer: str | nn.Module | None = None, target: Any = None
) -> Explanation:
    """captum's ``GuidedGradCam`` with bilinear upsampling (equals ``xai.GuidedGradCAM``)."""
    attr = _captum()
    x = prepare_inputs(model, images)
    with evaluation_mode(model):
        name, module = _layer(model, x, layer)
        classes, scores = _classes(model, x, target)
        a = attr.GuidedGradCam(model, module).attribute(
            x, target=classes, interpolate_mode="bilinear"
        )
    return _image(
        a.abs().amax(1), classes, scores, "captum-guided-gradcam", a, (x.shape[2], x.shape[3]), name
    )


# ------------------------------------------------------- perturbation-based, both kinds


def _perturbation(
    method: str,
    cls_name: str,
    f: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    baseline: Any,
    target: Any,
    feature_mask: Any,
    feature_names: Sequence[str] | None,
    **options: Any,
) -> ShapleyResult | Explanation:
    attr = _captum()
    module = f if isinstance(f, nn.Module) else None
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        return _perturb_images(
            attr, method, cls_name, f, x, baseline, target, feature_mask, options
        )
    xt = torch.as_tensor(x)
    if xt.ndim != 1:
        raise XAIValueError(
            f"x must be one tabular instance (n,) or images (N, C, H, W); got shape "
            f"{tuple(xt.shape)}"
        )
    param = next(module.parameters(), None) if module is not None else None
    dtype = (
        param.dtype
        if param is not None
        else (xt.dtype if xt.is_floating_point() else torch.float64)
    )
    xt = xt.to(dtype)[None]
    base = torch.as_tensor(baseline, dtype=dtype).expand_as(xt).clone()
    mask = None if feature_mask is None else torch.as_tensor(feature_mask)[None]

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        explainer = getattr(attr, cls_name)(f)
        a = explainer.attribute(xt, baselines=base, target=target, feature_mask=mask, **options)
        with torch.no_grad():
            full, empty = f(xt), f(base)
        return a, full, empty

    if module is not None:
        with evaluation_mode(module):
            a, full, empty = run()
    else:
        a, full, empty = run()

    def pick(out: torch.Tensor) -> float:
        out = out.detach().double()
        return float(out.reshape(-1)[0] if target is None else out[0, target])

    n = xt.shape[1]
    names = tuple(feature_names) if feature_names else tuple(f"x{i}" for i in range(n))
    return ShapleyResult(
        values=a[0].detach().double().cpu().numpy(),
        base_value=pick(empty),
        full_value=pick(full),
        feature_names=names,
        method=method,
    )


def _perturb_images(
    attr: Any,
    method: str,
    cls_name: str,
    model: Any,
    x: torch.Tensor,
    baseline: Any,
    target: Any,
    feature_mask: Any,
    options: dict[str, Any],
) -> Explanation:
    x = prepare_inputs(model, x)
    if isinstance(feature_mask, torch.Tensor):
        feature_mask = feature_mask.contiguous()  # captum views it
    with evaluation_mode(model):
        classes, scores = _classes(model, x, target)
        a = getattr(attr, cls_name)(model).attribute(
            x, baselines=baseline, target=classes, feature_mask=feature_mask, **options
        )
    return _image(a.sum(1), classes, scores, method, a, (x.shape[2], x.shape[3]))


def shapley_values(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    baseline: Any = 0.0,
    *,
    target: Any = None,
    feature_mask: Any = None,
    perturbations_per_eval: int = 1,
    feature_names: Sequence[str] | None = None,
) -> Any:
    """captum's ``ShapleyValues``: exact, by all n! orders of the (masked) features.

    ``perturbations_per_eval`` (captum's option, default 1) sets how many perturbed
    copies go through the model in one call: larger is faster for a batched model and
    gives the same values. The same option is on every perturbation wrapper here.
    """
    return _perturbation(
        "captum-shapley-values",
        "ShapleyValues",
        f,
        x,
        baseline,
        target,
        feature_mask,
        feature_names,
        perturbations_per_eval=perturbations_per_eval,
    )


def shapley_value_sampling(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    baseline: Any = 0.0,
    *,
    target: Any = None,
    feature_mask: Any = None,
    n_samples: int = 25,
    perturbations_per_eval: int = 1,
    feature_names: Sequence[str] | None = None,
) -> Any:
    """captum's ``ShapleyValueSampling`` (``n_samples`` random orders)."""
    return _perturbation(
        "captum-shapley-sampling",
        "ShapleyValueSampling",
        f,
        x,
        baseline,
        target,
        feature_mask,
        feature_names,
        perturbations_per_eval=perturbations_per_eval,
        n_samples=n_samples,
    )


def kernel_shap(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    baseline: Any = 0.0,
    *,
    target: Any = None,
    feature_mask: Any = None,
    n_samples: int = 200,
    perturbations_per_eval: int = 1,
    feature_names: Sequence[str] | None = None,
) -> Any:
    """captum's ``KernelShap`` (``n_samples`` coalitions)."""
    return _perturbation(
        "captum-kernel-shap",
        "KernelShap",
        f,
        x,
        baseline,
        target,
        feature_mask,
        feature_names,
        perturbations_per_eval=perturbations_per_eval,
        n_samples=n_samples,
    )


def feature_ablation(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    baseline: Any = 0.0,
    *,
    target: Any = None,
    feature_mask: Any = None,
    perturbations_per_eval: int = 1,
    feature_names: Sequence[str] | None = None,
) -> Any:
    """captum's ``FeatureAblation``: the score drop when each feature (group) takes the
    baseline value. Not Shapley values: efficiency does not hold."""
    return _perturbation(
        "captum-feature-ablation",
        "FeatureAblation",
        f,
        x,
        baseline,
        target,
        feature_mask,
        feature_names,
        perturbations_per_eval=perturbations_per_eval,
    )
