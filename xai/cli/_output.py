"""What ``xai explain`` writes for one image: the pictures, the raw maps, the manifest,
and the summary table it prints."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai import registry
from xai.core.errors import XAIOSError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from xai.models.loading import LoadedModel
    from xai.viz.map_pictures import MapPictures

__all__ = [
    "NEAR_EMPTY",
    "Item",
    "Result",
    "picture_title",
    "strength",
    "table",
    "versions",
    "weak_note",
    "write_item",
]

#: Overlays of images smaller than this (on the short side) are enlarged to stay legible.
MIN_DISPLAY = 224


#: A map whose maximum is at most this share of the top-1 class's map (same image and
#: method) is reported as near-empty: min-max scaling would make it look strong.
NEAR_EMPTY = 0.05


@dataclass
class Item:
    """One input image on its way through the command."""

    path: Path
    folder: str
    size: tuple[int, int]
    mode: str
    shape: tuple[int, int, int]  # the model input made from it, (C, H, W)
    summary: tuple[str, float, str, float, str] | None = None  # for the table
    # why the input looks unlike the training images (xai.core.ood), for the manifest
    input_warnings: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """One method's explanation of one image, all the command keeps until it writes."""

    raw: torch.Tensor  # (h, w) float32, the map before resizing and normalisation
    target: int  # the class explained (-1: none named)
    score: float
    layer: str | None
    relative: float | None  # raw max / the top-1 class's raw max (None: that one is 0)

    @property
    def near_empty(self) -> bool:
        """Whether the map is (almost) all zero next to the top-1 class's map."""
        peak = float(self.raw.max())
        return peak <= 0.0 or (self.relative is not None and self.relative <= NEAR_EMPTY)


def strength(result: Result) -> str:
    """The map's scale next to the top-1 class's, for the table: ``"100%"``,
    ``"0.3% near-empty"``, ``"all zero"``."""
    if float(result.raw.max()) <= 0.0:
        return "all zero"
    if result.relative is None:
        return "-"
    text = f"{100 * result.relative:.3g}%"
    return f"{text} near-empty" if result.near_empty else text


def weak_note(result: Result) -> str | None:
    """The title's note on a weak map: ``"near-empty: 3 % of the top-1 map"``,
    ``"all zero"``, or ``None``."""
    if float(result.raw.max()) <= 0.0:
        return "all zero: no evidence for this class"
    if result.near_empty and result.relative is not None:
        return f"near-empty: {100 * result.relative:.2g} % of the top-1 map"
    return None


def picture_title(
    method: str, result: Result, class_names: list[str], probability: float | None
) -> str:
    """A picture's title: ``"Bag  99.8 %  — gradcam"`` (the explained class and its
    softmax probability)."""
    if result.target < 0:
        return method
    score = f"{100 * probability:.1f} %" if probability is not None else f"{result.score:.2f}"
    return f"{class_names[result.target]}  {score}  \u2014 {method}"


def _display(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as RGB for drawing, enlarged by a whole factor if it is tiny."""
    import cv2

    height, width = rgb.shape[:2]
    factor = max(1, math.ceil(MIN_DISPLAY / max(1, min(height, width))))
    if factor > 1:
        rgb = cv2.resize(rgb, (width * factor, height * factor), interpolation=cv2.INTER_NEAREST)
    return rgb, (rgb.shape[0], rgb.shape[1])


def _display_map(result: Result, size: tuple[int, int]) -> np.ndarray:
    """The raw map resized once, bilinearly, to the drawing size, then min-max scaled."""
    from xai.core.maps import minmax, upsample

    return minmax(upsample(result.raw[None].float(), size))[0].numpy()


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    from xai._files import atomic_write_bytes

    ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1])
    if not ok:
        raise XAIOSError(f"cannot encode {path}")
    atomic_write_bytes(path, encoded.tobytes())


def versions() -> dict[str, str]:
    import platform

    import cv2
    import numpy
    import torch

    from xai import __version__

    return {
        "xai-toolkit": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "python": platform.python_version(),
    }


def write_item(
    folder: Path,
    item: Item,
    rgb: np.ndarray,
    explanations: dict[str, Result],
    logits: torch.Tensor,
    probabilities: torch.Tensor,
    loaded: LoadedModel,
    class_names: list[str],
    args: argparse.Namespace,
    versions: dict[str, str],
    *,
    model_input: torch.Tensor | None = None,
    pictures: MapPictures | None = None,
) -> None:
    """Write one image's files into ``folder`` (a fresh, partial folder: see _folders).

    The overlay and heatmap PNGs are titled figures with a colour bar (``map_figure``,
    drawn by ``pictures``, a run's ``MapPictures``, or one of its own), or, with
    ``args.bare``, the bare pixels; ``model_input`` (what the model was given) is shown
    beside the original in the comparison grid."""
    if pictures is None:
        from xai.viz.map_pictures import MapPictures

        with MapPictures() as own:
            return write_item(folder, item, rgb, explanations, logits, probabilities, loaded,
                              class_names, args, versions, model_input=model_input,
                              pictures=own)  # fmt: skip
    import numpy as np

    from xai._files import atomic_write, atomic_write_text
    from xai.viz.overlay import colorize, overlay

    bare = bool(getattr(args, "bare", False))

    rgb, size = _display(rgb)
    top = probabilities.topk(min(5, len(class_names)))
    entries = []
    maps: dict[str, np.ndarray] = {}
    subtitles: dict[str, str] = {}
    for method, explanation in explanations.items():
        saliency = _display_map(explanation, size)
        maps[method] = saliency
        files = {
            "overlay": f"{method}_overlay.png",
            "heatmap": f"{method}_heatmap.png",
            "raw": f"{method}_raw.npy",
        }
        index = explanation.target
        name = class_names[index] if index >= 0 else None
        chance = float(probabilities[index]) if index >= 0 else None
        heading = picture_title(method, explanation, class_names, chance)
        remark = weak_note(explanation)
        if not registry.get(method).class_specific:
            remark = "class-agnostic: same for all classes"
        drawn = {
            "overlay": overlay(rgb, saliency, args.alpha, args.colormap),
            "heatmap": colorize(saliency, args.colormap),
        }
        for kind, pixels in drawn.items():
            if bare:
                _write_png(folder / files[kind], pixels)
            else:
                pictures.save(
                    pixels, folder / files[kind], title=heading, colormap=args.colormap,
                    note=remark,
                )  # fmt: skip
        raw = explanation.raw.numpy().astype(np.float32)
        atomic_write(folder / files["raw"], partial(np.save, arr=raw))
        if not registry.get(method).class_specific:
            subtitles[method] = "class-agnostic"
        elif name:
            subtitles[method] = f"{name} ({explanation.score:.2f})"
        entries.append(
            {
                "method": method,
                "layer": explanation.layer,
                "options": getattr(args, "method_options", {}).get(method, {}),
                "target": index,
                "target_class": name,
                "class_specific": registry.get(method).class_specific,
                "score": explanation.score,
                "raw_shape": list(raw.shape),
                "raw_min": float(raw.min()),
                "raw_max": float(raw.max()),
                # The scale min-max scaling hides: this map's maximum over the maximum of
                # the same method's map for the image's top-1 class (1 when it is that one).
                "raw_max_relative_to_top1": explanation.relative,
                "near_empty": explanation.near_empty,
                "title": heading,
                "note": remark,
                "files": files,
            }
        )
    manifest: dict[str, Any] = {
        "image": {
            "path": str(item.path),
            "height": item.size[0],
            "width": item.size[1],
            "mode": item.mode,
        },
        "input_size": list(item.shape),
        # why the image looks unlike the training images (colour, aspect, size, intensity,
        # background): xai.core.ood; the run still explains it
        "input_warnings": item.input_warnings,
        "preprocessing": {
            "channels": "gray: BT.601 luma" if item.shape[0] == 1 else "RGB",
            "resize": "stretched to the input size (area when shrinking, bilinear else)",
            "scale": "pixel / max value, to [0, 1]",
            "invert": bool(args.invert),
        },
        "model": {"spec": loaded.spec, "kind": loaded.kind, **loaded.details},
        "prediction": [
            {
                "index": int(i),
                "class": class_names[int(i)],
                "probability": round(float(p), 6),
                "logit": round(float(logits[int(i)]), 6),
            }
            for p, i in zip(top.values, top.indices, strict=True)
        ],
        "explanations": entries,
        "display": {
            "height": size[0],
            "width": size[1],
            "alpha": args.alpha,
            "colormap": args.colormap,
            "bare": bare,
        },
        "versions": versions,
    }
    if len(maps) > 1:
        from xai.viz.grids import method_grid, save_figure

        guess = class_names[int(top.indices[0])]
        title = f"{item.path.name}: predicted {guess} ({float(top.values[0]):.1%})"
        figure = method_grid(
            rgb,
            maps,
            title=title,
            alpha=args.alpha,
            colormap=args.colormap,
            subtitles=subtitles,
            model_input=model_input,
        )
        save_figure(figure, folder / "comparison.png")
        manifest["comparison"] = "comparison.png"
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    first = next(iter(explanations.values()))
    index = first.target
    item.summary = (
        f"{class_names[int(top.indices[0])]} {float(top.values[0]):.1%}",
        float(top.values[0]),
        class_names[index] if index >= 0 else "(callable)",
        first.score,
        strength(first),
    )


def table(items: list[Item]) -> str:
    """The printed summary: one row per image, for the first method."""
    from xai._tables import text_table

    rows = []
    for item in items:
        assert item.summary is not None
        prediction, _, explained, score, relative = item.summary
        rows.append((item.path.name, prediction, f"{explained} ({score:.2f})", relative))
    return text_table(("image", "prediction", "explained (score)", "map vs top-1"), rows)
