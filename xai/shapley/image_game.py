"""An image as a game: patches are players, absent patches are replaced by a baseline."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.state import evaluation_mode
from xai.core.validate import (
    Boolean,
    CallableOf,
    Constraint,
    Integer,
    check_each,
    collect,
    validate,
)
from xai.shapley.game import Game

__all__ = ["ImagePatchGame", "gaussian_blur"]


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur a (C, H, W) image with a separable Gaussian (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(image.dtype).to(image.device)
    c = image.shape[0]
    x = image[None].float() if image.dtype in (torch.float16, torch.bfloat16) else image[None]
    k = kernel.to(x.dtype)
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x[0].to(image.dtype)


def _edges(size: int, parts: int) -> list[int]:
    return [round(i * size / parts) for i in range(parts + 1)]


class ImagePatchGame(Game):
    """Players are the cells of a grid over the image; v(S) is the model's target score
    for the image with the patches outside S replaced by a baseline.

    Exact Shapley values over the patches (16 players for the default 4 x 4 grid, 65,536
    masked images) are an image explanation in their own right, and the ground truth that
    sampled SHAP maps can be judged against.

    Args:
        model: an image classifier, (B, C, H, W) -> (B, classes); run without gradients,
            in eval mode, every submodule's mode restored.
        image: (C, H, W) or (1, C, H, W), scaled as the model expects.
        target: the class whose score is the value, or a callable mapping the model's
            output to (B,) scores.
        grid: (rows, columns) of patches; edges are spread as evenly as the size allows.
        baseline: what replaces an absent patch: ``"blur"`` (a Gaussian blur of the
            image, sigma = half the larger patch side), ``"mean"`` (each channel's mean),
            a number, or a (C, H, W) tensor.
        softmax: score with the class probability instead of the logit.
        batch_size: masked images per forward pass.
    """

    # ``grid`` is checked entry by entry (rows, columns), then against the image's size.
    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "target": [Integer(0), CallableOf("a callable mapping the model's output to (B,) scores")],
        "grid": [Integer(1)],
        "softmax": [Boolean()],
        "batch_size": [Integer(1)],
    }

    def __init__(
        self,
        model: nn.Module,
        image: torch.Tensor,
        target: int | Callable[[Any], torch.Tensor],
        grid: tuple[int, int] = (4, 4),
        baseline: str | float | torch.Tensor = "blur",
        *,
        softmax: bool = False,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise XAITypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(image, torch.Tensor):
            raise XAITypeError(f"image must be a (C, H, W) tensor; got {type(image).__name__}")
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or not image.is_floating_point():
            raise XAIValueError(
                f"image must be a floating (C, H, W) tensor; got {image.dtype} of shape "
                f"{tuple(image.shape)}"
            )
        where, constraints = type(self).__name__, collect(type(self))
        options = validate(
            where, constraints, target=target, softmax=softmax, batch_size=batch_size
        )
        rows, cols = check_each(grid, constraints["grid"], "grid", where, length=2)
        _, height, width = image.shape
        if not (1 <= rows <= height and 1 <= cols <= width):
            raise XAIValueError(
                f"{where}: grid must be between (1, 1) and {(height, width)}; got {grid}"
            )
        self.model = model
        param = next(model.parameters(), None)
        device = param.device if param is not None else image.device
        dtype = param.dtype if param is not None and param.is_floating_point() else image.dtype
        self.image = image.detach().to(device=device, dtype=dtype)
        self.target: int | Callable[[Any], torch.Tensor] = options["target"]
        self.softmax: bool = options["softmax"]
        self.batch_size: int = options["batch_size"]
        self.grid = (rows, cols)
        self.baseline = self._baseline(baseline, max(height / rows, width / cols))
        row_edges, col_edges = _edges(height, rows), _edges(width, cols)
        patch = torch.empty(height, width, dtype=torch.long)
        for r in range(rows):
            for c in range(cols):
                patch[row_edges[r] : row_edges[r + 1], col_edges[c] : col_edges[c + 1]] = (
                    r * cols + c
                )
        self.patch_of_pixel = patch.to(device)
        super().__init__([f"r{r}c{c}" for r in range(rows) for c in range(cols)])

    def _baseline(self, baseline: Any, patch_side: float) -> torch.Tensor:
        if isinstance(baseline, torch.Tensor):
            if baseline.shape != self.image.shape:
                raise XAIValueError(
                    f"a baseline tensor must match the image's shape {tuple(self.image.shape)}"
                    f"; got {tuple(baseline.shape)}"
                )
            return baseline.detach().to(self.image)
        if baseline == "blur":
            return gaussian_blur(self.image, sigma=patch_side / 2)
        if baseline == "mean":
            return self.image.mean(dim=(1, 2), keepdim=True).expand_as(self.image).clone()
        if isinstance(baseline, int | float) and not isinstance(baseline, bool):
            return torch.full_like(self.image, float(baseline))
        raise XAIValueError(
            f"baseline must be 'blur', 'mean', a number or a (C, H, W) tensor; got {baseline!r}"
        )

    @property
    def preferred_chunk(self) -> int:
        return 4 * self.batch_size

    def value(self, masks: np.ndarray) -> np.ndarray:
        keep = torch.as_tensor(masks, device=self.image.device)[:, self.patch_of_pixel]
        scores = []
        with torch.no_grad(), evaluation_mode(self.model):
            for start in range(0, len(keep), self.batch_size):
                chunk = keep[start : start + self.batch_size, None]
                images = torch.where(chunk, self.image[None], self.baseline[None])
                scores.append(self._score(self.model(images)))
        return torch.cat(scores).double().cpu().numpy()

    def _score(self, output: Any) -> torch.Tensor:
        if callable(self.target):
            return self.target(output).detach()
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise XAIValueError(
                "an int target needs a model that returns (B, classes) scores; pass "
                "target=callable(output) -> (B,) scores"
            )
        if not 0 <= self.target < output.shape[1]:
            raise XAIValueError(
                f"target {self.target} is out of range for {output.shape[1]} classes"
            )
        logits = torch.softmax(output.float(), dim=1) if self.softmax else output
        return logits[:, self.target]

    def to_map(self, values: Any) -> np.ndarray:
        """Spread per-patch values (n,) over the pixels: an (H, W) map."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape[0] != self.n:
            raise XAIValueError(f"expected {self.n} patch values; got {values.shape[0]}")
        return values[self.patch_of_pixel.cpu().numpy()]
