"""shap's explainers behind xai's result types, and xai's results as ``shap.Explanation``.

shap is imported on first use only. Traps this wrapper closes or documents:

* ``KernelExplainer`` regularises by default (``l1_reg="auto"``: with more than 10
  features and few samples it keeps only about 10 features, the rest get exactly 0).
  ``shap_kernel`` passes ``l1_reg=False`` unless asked otherwise.
* Maskers subsample the background to 100 rows (``maskers.Independent(data,
  max_samples=100)``), so a larger background silently plays a different game.
  ``shap_exact`` and ``shap_permutation`` keep every row.
* ``DeepExplainer`` only sees ``torch.nn`` modules: operations called as
  ``torch.nn.functional`` inside ``forward`` and modules reused within one forward pass
  get no DeepLIFT rule, and its values then break efficiency. Check
  ``base_value + values.sum() == score``, or prefer ``shap_gradient``.
* The exact explainer spends about 10 s compiling (numba) on its first call in a process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.explanation import Explanation, ShapleyResult
from xai.integrations._lazy import require

if TYPE_CHECKING:
    import shap as shap_types
    import torch

__all__ = [
    "shap_deep",
    "shap_exact",
    "shap_gradient",
    "shap_kernel",
    "shap_partition",
    "shap_permutation",
    "to_explanation",
]


def _shap() -> Any:
    return require("shap", "shap", "shap>=0.46")


def to_explanation(
    result: ShapleyResult | Explanation,
    data: Any = None,
    images: Any = None,
) -> shap_types.Explanation:
    """Convert an xai result to a ``shap.Explanation`` for ``shap.plots``.

    A ``ShapleyResult`` becomes a single-instance explanation (``waterfall``,
    ``bar``, ``force``) with the instance's feature values as ``data`` when the result
    carries them (or pass ``data``); a result over rows (``explain_rows``) becomes one
    explanation per row, values (rows, n) [x k], for ``beeswarm``, ``bar`` and
    ``scatter``. An
    image ``Explanation`` becomes a batch of channel-last values with one output,
    (N, H, W, C, 1) (its signed ``attributions``, or its maps as one channel for CAMs),
    for ``shap.plots.image``; pass the (N, C, H, W) images as ``images``.
    """
    shap = _shap()
    if isinstance(result, ShapleyResult):
        values = np.asarray(result.values, dtype=np.float64)
        base = np.asarray(result.base_value, dtype=np.float64)
        if data is None:
            data = result.data
        if result.rows:  # one row per explained row: shap's beeswarm, bar and scatter
            return shap.Explanation(
                values=values,
                base_values=np.broadcast_to(base, (len(values), *base.shape)).copy(),
                data=None if data is None else np.asarray(data, dtype=np.float64),
                feature_names=list(result.feature_names),
            )
        return shap.Explanation(
            values=values,
            base_values=float(base) if base.ndim == 0 else base,
            data=None if data is None else np.asarray(data, dtype=np.float64),
            feature_names=list(result.feature_names),
        )
    if isinstance(result, Explanation):
        source = result.attributions if result.attributions is not None else result.maps[:, None]
        values = source.numpy().transpose(0, 2, 3, 1)[..., None]  # one output: (N,H,W,C,1)
        pixels = None if images is None else np.asarray(images).transpose(0, 2, 3, 1)
        return shap.Explanation(values=values, data=pixels, output_names=[result.method])
    raise XAITypeError(f"expected a ShapleyResult or an Explanation; got {type(result).__name__}")


# ----------------------------------------------------------------- tabular explainers


def _numpy_function(f: Callable[[Any], Any]) -> Callable[[np.ndarray], np.ndarray]:
    """f on numpy rows; a torch model/function is fed float tensors without gradients."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(f, torch.nn.Module):
        return lambda rows: np.asarray(f(rows), dtype=np.float64)
    from xai.core.state import evaluation_mode

    param = next(f.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else None

    def run(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad(), evaluation_mode(f):
            out = f(torch.as_tensor(np.asarray(rows), dtype=dtype, device=device))
        return out.detach().double().cpu().numpy()

    return run


def _instance(x: Any, background: Any) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    bg = np.asarray(
        background.detach().cpu() if hasattr(background, "detach") else background,
        dtype=np.float64,
    )
    if xs.ndim != 1:
        raise XAIValueError(f"x must be one instance of shape (n,); got shape {xs.shape}")
    bg = bg[None] if bg.ndim == 1 else bg
    if bg.ndim != 2 or bg.shape[1] != xs.shape[0]:
        raise XAIValueError(
            f"background must have shape ({xs.shape[0]},) or (m, {xs.shape[0]}); got {bg.shape}"
        )
    return xs, bg


def _result(
    values: np.ndarray,
    base: Any,
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    names: Sequence[str] | None,
    method: str,
    evaluations: int = 0,
) -> ShapleyResult:
    base_arr = np.asarray(base, dtype=np.float64).reshape(np.shape(values)[1:])
    full = f(x[None])[0]
    return ShapleyResult(
        values=np.asarray(values, dtype=np.float64),
        base_value=float(base_arr) if base_arr.ndim == 0 else base_arr,
        full_value=float(full) if np.ndim(full) == 0 else np.asarray(full),
        feature_names=tuple(names) if names else tuple(f"x{i}" for i in range(len(x))),
        method=method,
        n_evaluations=evaluations,
        data=np.array(x, dtype=np.float64),
    )


def shap_exact(
    f: Callable[[Any], Any],
    x: Any,
    background: Any,
    *,
    feature_names: Sequence[str] | None = None,
) -> ShapleyResult:
    """shap's ``ExactExplainer`` on the interventional game of ``f`` at ``x``.

    Every background row is kept (no subsampling to 100), so with the same background
    this is the game ``xai.shapley.ModelGame`` plays and the values agree.
    """
    shap = _shap()
    fn = _numpy_function(f)
    xs, bg = _instance(x, background)
    masker = shap.maskers.Independent(bg, max_samples=len(bg))
    explainer = shap.explainers.Exact(fn, masker)
    out = explainer(xs[None], max_evals=max(100_000, 2 ** len(xs) + 2), silent=True)
    return _result(
        out.values[0], out.base_values[0], fn, xs, feature_names, "shap-exact", 2 ** len(xs)
    )


def shap_permutation(
    f: Callable[[Any], Any],
    x: Any,
    background: Any,
    *,
    max_evals: int = 500,
    seed: int | None = None,
    feature_names: Sequence[str] | None = None,
) -> ShapleyResult:
    """shap's ``PermutationExplainer`` (antithetic orders), every background row kept."""
    shap = _shap()
    fn = _numpy_function(f)
    xs, bg = _instance(x, background)
    explainer = shap.explainers.Permutation(
        fn, shap.maskers.Independent(bg, max_samples=len(bg)), seed=seed
    )
    out = explainer(xs[None], max_evals=max_evals, silent=True)
    return _result(
        out.values[0], out.base_values[0], fn, xs, feature_names, "shap-permutation", max_evals
    )


def shap_kernel(
    f: Callable[[Any], Any],
    x: Any,
    background: Any,
    *,
    nsamples: int | str = "auto",
    l1_reg: Any = False,
    feature_names: Sequence[str] | None = None,
) -> ShapleyResult:
    """shap's ``KernelExplainer``, without its default feature selection (``l1_reg``)."""
    shap = _shap()
    fn = _numpy_function(f)
    xs, bg = _instance(x, background)
    explainer = shap.KernelExplainer(fn, bg)
    values = explainer.shap_values(xs[None], nsamples=nsamples, l1_reg=l1_reg, silent=True)
    values = np.asarray(values, dtype=np.float64)[0]
    return _result(values, explainer.expected_value, fn, xs, feature_names, "shap-kernel")


# ------------------------------------------------------------------- image explainers


def _image_result(
    model: torch.nn.Module,
    images: torch.Tensor,
    target: Any,
    attributions: np.ndarray,
    method: str,
) -> Explanation:
    """An Explanation of signed (N, C, H, W) attributions; raw = their channel sum."""
    import torch

    from xai.core.maps import minmax
    from xai.core.state import evaluation_mode
    from xai.core.targets import resolve_target

    with torch.no_grad(), evaluation_mode(model):
        output = model(images)
    resolved = resolve_target(target, output, images.shape[0])
    scores = resolved.scores(output, torch.arange(images.shape[0])).float().cpu()
    attr = torch.as_tensor(attributions, dtype=torch.float32)
    raw = attr.sum(dim=1)
    return Explanation(
        maps=minmax(raw),
        raw=raw,
        targets=resolved.classes.clone(),
        scores=scores,
        method=method,
        layer=None,
        attributions=attr,
    )


def _targets(model: torch.nn.Module, images: torch.Tensor, target: Any) -> list[int]:
    import torch

    from xai.core.state import evaluation_mode
    from xai.core.targets import resolve_target

    with torch.no_grad(), evaluation_mode(model):
        output = model(images)
    resolved = resolve_target(target, output, images.shape[0])
    return resolved.class_indices("shap's image explainers").tolist()


def shap_deep(
    model: torch.nn.Module, images: torch.Tensor, background: torch.Tensor, target: Any = None
) -> Explanation:
    """shap's ``DeepExplainer`` (DeepLIFT-style SHAP) for a batch of images.

    See the module notes: only ``torch.nn`` modules get DeepLIFT rules.
    """
    from xai.core.state import evaluation_mode

    shap = _shap()
    classes = _targets(model, images, target)
    with evaluation_mode(model):
        values = shap.DeepExplainer(model, background).shap_values(images)
    values = np.asarray(values)  # (N, C, H, W, classes)
    picked = np.stack([values[i, ..., c] for i, c in enumerate(classes)])
    return _image_result(model, images, classes, picked, "shap-deep")


def shap_gradient(
    model: torch.nn.Module,
    images: torch.Tensor,
    background: torch.Tensor,
    target: Any = None,
    *,
    nsamples: int = 200,
    seed: int | None = None,
) -> Explanation:
    """shap's ``GradientExplainer`` (expected gradients) for a batch of images."""
    from xai.core.state import evaluation_mode

    shap = _shap()
    classes = _targets(model, images, target)
    with evaluation_mode(model):
        values = shap.GradientExplainer(model, background).shap_values(
            images, nsamples=nsamples, rseed=seed
        )
    values = np.asarray(values)
    picked = np.stack([values[i, ..., c] for i, c in enumerate(classes)])
    return _image_result(model, images, classes, picked, "shap-gradient")


def shap_partition(
    model: torch.nn.Module,
    images: torch.Tensor,
    target: Any = None,
    *,
    masker: str = "blur(8,8)",
    max_evals: int = 500,
    batch_size: int = 64,
) -> Explanation:
    """shap's ``PartitionExplainer`` with its image masker (Owen values over a pixel
    hierarchy), one class per image."""
    import torch

    from xai.core.state import evaluation_mode

    shap = _shap()
    classes = _targets(model, images, target)
    n, c, h, w = images.shape
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else images.dtype
    pixels = images.detach().cpu().permute(0, 2, 3, 1).double().numpy()
    out = np.empty((n, c, h, w))
    for i, cls in enumerate(classes):

        def score(batch: np.ndarray, cls: int = cls) -> np.ndarray:
            x = torch.as_tensor(batch, dtype=dtype).permute(0, 3, 1, 2).to(images.device)
            with torch.no_grad(), evaluation_mode(model):
                return model(x)[:, cls].double().cpu().numpy()

        explainer = shap.explainers.Partition(score, shap.maskers.Image(masker, (h, w, c)))
        result = explainer(
            pixels[i : i + 1], max_evals=max_evals, batch_size=batch_size, silent=True
        )
        out[i] = np.asarray(result.values[0]).transpose(2, 0, 1)
    return _image_result(model, images, classes, out, "shap-partition")
