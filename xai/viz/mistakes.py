"""Wrong samples: which images a classifier gets wrong, what it believed instead (its top
three classes and their probabilities), and where it looked, for the true class and for the
class it predicted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.validate import Integer, check
from xai.viz._mpl import pyplot

__all__ = ["Mistakes", "find_mistakes", "plot_mistakes"]


@dataclass(frozen=True, eq=False)
class Mistakes:
    """The first misclassified samples, in data order.

    ``indices`` (K,) are their positions in the data; ``true`` and ``predicted`` (K,)
    their true and top-1 classes; ``top`` (K, t) the t most probable classes, most
    probable first (``top[:, 0] == predicted``), with their probabilities
    ``top_probabilities`` (K, t) (the softmax of the outputs). ``total`` counts every
    misclassified sample of the data, ``seen`` the samples looked at.
    """

    indices: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    top: np.ndarray
    top_probabilities: np.ndarray
    total: int
    seen: int

    def __len__(self) -> int:
        return len(self.indices)


def _tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...] | None]:
    if hasattr(data, "tensors"):
        x, y = data.tensors()
        return x, y, tuple(data.class_names)
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
        return torch.as_tensor(x).float(), torch.as_tensor(y).long(), None
    raise XAIValueError(
        f"data must be an xai.data.Dataset or an (images, labels) pair; got {type(data).__name__}"
    )


def find_mistakes(
    model: nn.Module, data: Any, count: int = 8, *, top: int = 3, batch_size: int = 500
) -> Mistakes:
    """The first ``count`` samples of ``data`` that ``model`` misclassifies (top-1 class
    not the label), with the ``top`` most probable classes of each.

    Args:
        model: a classifier; run in eval mode without gradients, its modes restored.
        data: an ``xai.data.Dataset`` or an ``(images, labels)`` pair.
        count: how many mistakes to keep (fewer if there are fewer).
        top: how many classes to list per mistake (at most the number of classes).
        batch_size: images per forward pass.
    """
    from xai.training.evaluate import predict_proba

    count = int(check(count, [Integer(1)], "count", "find_mistakes"))
    top = int(check(top, [Integer(1)], "top", "find_mistakes"))
    x, y, _ = _tensors(data)
    if not len(x):
        raise XAIValueError("find_mistakes: data holds no samples")
    probabilities = predict_proba(model, x, batch_size)
    labels = y.numpy().astype(np.int64)
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    chosen = wrong[:count]
    t = min(top, probabilities.shape[1])
    # Most probable first; a stable sort keeps the lower class first among equals, as
    # argmax does, so top[:, 0] is the prediction.
    order = np.argsort(-probabilities[chosen], axis=1, kind="stable")[:, :t]
    return Mistakes(
        indices=chosen,
        true=labels[chosen],
        predicted=predicted[chosen],
        top=order,
        top_probabilities=np.take_along_axis(probabilities[chosen], order, axis=1),
        total=len(wrong),
        seen=len(labels),
    )


def _shown(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    array = image.detach().cpu().float().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.clip(array[:3].transpose(1, 2, 0), 0, 1), None


def plot_mistakes(
    model: nn.Module,
    data: Any,
    count: int = 6,
    *,
    method: str = "gradcam",
    layer: Any = None,
    class_names: Sequence[str] | None = None,
    top: int = 3,
    title: str = "",
    alpha: float = 0.5,
    positions: Sequence[int] | None = None,
) -> Any:
    """A gallery of the first ``count`` misclassified images, one row each: the image
    (its position in the data, true and predicted class), the ``method``'s map for the
    true class, the map for the predicted class, and the top-``top`` classes with their
    probabilities.

    The maps are ``xai.explain(model, images, method, layer, target=...)``'s ``maps``
    (each min-max normalised on its own, so the two show where, not how much), with the
    true classes, then the predicted classes, as per-sample targets; drawn with the
    ``jet`` colormap at ``alpha`` over the grey image, 0 to 1. The figure's
    ``mistakes`` attribute holds the ``Mistakes`` drawn.

    Args:
        model: a CNN classifier (CAM methods need feature maps: not an MLP).
        data: an ``xai.data.Dataset`` or an ``(images, labels)`` pair, images scaled as
            the model expects.
        count: how many mistakes to show.
        method: an explanation method (``xai.methods()``).
        layer: the explained layer (default: the method's).
        class_names: the classes' names (default: the data set's, the model's, or the
            class indices).
        top: how many classes to list.
        title: an optional title over the figure.
        alpha: opacity of the maps over the images.
        positions: the number shown for each sample of ``data`` (``image #k``), when
            ``data`` was drawn from a larger set (default: its position in ``data``).
    """
    import xai

    mistakes = find_mistakes(model, data, count, top=top)
    x, _, names = _tensors(data)
    if positions is not None and len(positions) != len(x):
        raise XAIValueError(
            f"positions must give one number per sample: {len(x)} samples, got "
            f"{len(positions)} positions"
        )
    shown_as = np.asarray(positions if positions is not None else range(len(x)))
    names = tuple(class_names or names or getattr(model, "class_names", None) or ())
    if not names:
        classes = int(mistakes.top.max()) + 1 if len(mistakes) else 0
        names = tuple(str(c) for c in range(max(classes, int(mistakes.true.max(initial=0)) + 1)))
    plt = pyplot()
    rows = max(1, len(mistakes))
    fig, axes = plt.subplots(
        rows, 4, figsize=(11, 2.7 * rows), gridspec_kw={"width_ratios": [1, 1, 1, 1.25]}
    )
    axes = np.atleast_2d(axes)
    fig.mistakes = mistakes
    if not len(mistakes):
        for ax in axes.ravel():
            ax.axis("off")
        axes[0, 0].text(0, 0.5, f"no mistakes in {mistakes.seen} samples", fontsize=11)
        return fig
    images = x[torch.as_tensor(mistakes.indices)]
    true_maps = xai.explain(model, images, method, layer, target=mistakes.true.tolist()).maps
    predicted_maps = xai.explain(
        model, images, method, layer, target=mistakes.predicted.tolist()
    ).maps
    for row in range(len(mistakes)):
        image, cmap = _shown(images[row])
        true_class = names[mistakes.true[row]]
        predicted_class = names[mistakes.predicted[row]]
        panels = [
            (None, f"image #{shown_as[mistakes.indices[row]]}\ntrue: {true_class}"),
            (true_maps[row], f"{method} for the true class\n{true_class}"),
            (predicted_maps[row], f"{method} for the predicted class\n{predicted_class}"),
        ]
        for column, (overlay, label) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(image, cmap=cmap, vmin=0, vmax=1)
            if overlay is not None:
                ax.imshow(overlay.detach().cpu().numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1)
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        text = axes[row, 3]
        text.axis("off")
        lines = [f"true: {true_class}", f"predicted: {predicted_class}", "", "top classes:"]
        for rank, (c, p) in enumerate(
            zip(mistakes.top[row], mistakes.top_probabilities[row], strict=True), 1
        ):
            lines.append(f"{rank}. {names[c]}  {p:.3f}")
        text.text(0.02, 0.95, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace")
    heading = title or (
        f"{mistakes.total} of {mistakes.seen} samples misclassified; the first "
        f"{len(mistakes)}. Maps: {method}, each scaled from 0 (blue) to 1 (red)"
    )
    fig.suptitle(heading, fontsize=11)
    fig.tight_layout()
    return fig
