"""The result type every image explainer returns.

One small immutable record that the API, the command line, the plots and the docs all
consume. Its tensors live on the CPU, detached, in float32 (``targets`` in int64), so a
result can be plotted, saved or compared without touching the model again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Explanation"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """Saliency maps for a batch of N images, and what they explain.

    Attributes:
        maps: ``(N, H, W)`` float32 in [0, 1] at the input's resolution: ``raw`` resized
            bilinearly (``align_corners=False``) and min-max normalised per sample. A
            constant map normalises to zeros, never NaN.
        raw: ``(N, h, w)`` float32, the unnormalised map at the explained layer's
            resolution, after the method's own ReLU (if it has one). For the guided
            methods, which work at the input, ``h, w == H, W``.
        targets: ``(N,)`` int64, the class explained for each sample; ``-1`` where the
            target was given as a callable (no single class is explained then).
        scores: ``(N,)`` float32, the explained score of each sample: the model's output
            for the target class (a logit for most classifiers), or the callable's value.
        method: the registry name of the method, e.g. ``"gradcam"``.
        layer: the dotted name (from ``model.named_modules()``) of the explained layer;
            ``None`` for guided backpropagation, which explains the input directly.
        attributions: ``(N, C, H, W)`` float32 signed input attributions for the guided
            methods (guided backpropagation, Guided Grad-CAM); ``None`` for CAMs.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    method: str
    layer: str | None
    attributions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.maps.shape[0]
        if self.maps.ndim != 3 or self.raw.ndim != 3:
            raise ValueError(
                f"Explanation.maps and .raw must be (N, H, W) and (N, h, w); "
                f"got {tuple(self.maps.shape)} and {tuple(self.raw.shape)}"
            )
        for name in ("raw", "targets", "scores"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(
                    f"Explanation.{name} has {getattr(self, name).shape[0]} rows, maps has {n}"
                )

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def __getitem__(self, index: int | slice) -> Explanation:
        """The explanation of one sample (kept as a batch of one) or of a slice."""
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} is out of range for {len(self)} samples")
            index = slice(index, index + 1 if index != -1 else None)
        attributions = None if self.attributions is None else self.attributions[index]
        return Explanation(
            maps=self.maps[index],
            raw=self.raw[index],
            targets=self.targets[index],
            scores=self.scores[index],
            method=self.method,
            layer=self.layer,
            attributions=attributions,
        )

    def __repr__(self) -> str:
        n, h, w = self.maps.shape
        rh, rw = self.raw.shape[1:]
        return (
            f"Explanation(method={self.method!r}, layer={self.layer!r}, n={n}, "
            f"maps={h}x{w}, raw={rh}x{rw}, targets={self.targets.tolist()})"
        )
