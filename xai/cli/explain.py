"""``xai explain``: explain image files with any method and write the pictures.

Per image, in a folder of its own under ``--out``: an overlay PNG and a heatmap PNG per
method, the raw map (``.npy``), a comparison grid when several methods run, and
``manifest.json`` (what was explained, how, with which model and package versions),
written last. Every file is written whole or not at all. All inputs are checked before
anything is written: a bad image, method, layer or target stops the run with one line.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai import registry
from xai.cli._common import add_model_options, input_size, load

if TYPE_CHECKING:
    import numpy as np
    import torch

    from xai.explanation import Explanation
    from xai.models.loading import LoadedModel

__all__ = ["add_parser", "run"]

EXAMPLES = """examples:
  xai explain shirt.png                          Grad-CAM on the embedded Fashion-MNIST model
  xai explain photos/ --method all --out maps    every method, one comparison grid per image
  xai explain "scans/*.png" --method cam,gradcam++ --target Sneaker
  xai explain x.png --model net.pt --arch gapcnn --layer features.12
  xai explain x.png --model mypkg.models:build_net --input-size 3,224,224

Per image it writes OUT/NAME/: METHOD_overlay.png, METHOD_heatmap.png, METHOD_raw.npy
(the map before resizing and normalisation), comparison.png (several methods) and
manifest.json. Images are converted to the model's channels and size; pictures drawn
dark on light need --invert for MNIST-family models, which saw light on black.
"""

#: Overlays of images smaller than this (on the short side) are enlarged to stay legible.
MIN_DISPLAY = 224


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "explain",
        help="explain images: overlay and heatmap PNGs, raw maps, a manifest",
        description="Explain why the model classifies each image as it does, with CAM, "
        "the Grad-CAM family or any method listed by `xai methods`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files, folders or globs")
    p.add_argument(
        "--method",
        "-m",
        default="gradcam",
        help="a method (default gradcam), several separated by commas, or 'all'",
    )
    p.add_argument("--layer", help="the layer to explain (default: the last feature maps)")
    p.add_argument(
        "--target",
        default="top1",
        help="top1 (each image's predicted class, the default), a class index or name",
    )
    p.add_argument("--out", "-o", type=Path, default=Path("xai-out"), help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in [0, 1]")
    p.add_argument("--colormap", default="jet", help="an OpenCV colormap name (default jet)")
    p.add_argument("--invert", action="store_true", help="use 1 - pixel (dark-on-light pictures)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no table")
    add_model_options(p)


# ----------------------------------------------------------------------------- checks


def parse_methods(text: str) -> list[str]:
    """``"all"``, one name or a comma-separated list -> registry names (validated)."""
    if text.strip().lower() == "all":
        return list(registry.methods())
    names = [part for part in (p.strip() for p in text.split(",")) if part]
    if not names:
        raise ValueError("--method: give a method name, e.g. gradcam (see `xai methods`)")
    return list(dict.fromkeys(registry.resolve_name(name) for name in names))


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def parse_target(text: str, class_names: Sequence[str]) -> int | None:
    """``top1`` -> None; an index or a class name (case and punctuation ignored) -> int."""
    value = text.strip()
    if value.lower() in ("top1", "top-1", "predicted"):
        return None
    count = len(class_names)
    if re.fullmatch(r"[+-]?\d+", value):
        index = int(value)
        if not 0 <= index < count:
            raise ValueError(
                f"--target {value} is out of range: the model has {count} classes, 0..{count - 1}"
            )
        return index
    keys = [_key(n) for n in class_names]
    if _key(value) in keys:
        return keys.index(_key(value))
    close = difflib.get_close_matches(_key(value), keys, n=1, cutoff=0.5)
    hint = f" Did you mean {class_names[keys.index(close[0])]!r}?" if close else ""
    listed = ", ".join(class_names) if count <= 20 else f"{count} classes (see `xai classes`)"
    raise ValueError(
        f"--target {value!r} is not a class of this model.{hint} Use top1, an index "
        f"0..{count - 1} or a name: {listed}"
    )


def check_layer(model: Any, layer: str) -> None:
    """An unknown layer name -> one line with the nearest valid names."""
    names = [name for name, _ in model.named_modules() if name]
    if layer in names:
        return
    close = difflib.get_close_matches(layer, names, n=4, cutoff=0.4)
    nearest = ", ".join(close or names[-4:])
    raise ValueError(
        f"--layer {layer!r} is not a layer of this model; nearest: {nearest} (list them "
        f"with `xai layers`)"
    )


# ------------------------------------------------------------------------- pipeline


@dataclass
class Item:
    """One input image on its way through the command."""

    path: Path
    folder: str
    size: tuple[int, int]
    mode: str
    shape: tuple[int, int, int]  # the model input made from it, (C, H, W)
    summary: tuple[str, float, str, float] | None = None  # for the table


def _folder_names(paths: Sequence[Path]) -> list[str]:
    used: dict[str, int] = {}
    names = []
    for path in paths:
        stem = path.stem or "image"
        count = used.get(stem, 0) + 1
        used[stem] = count
        names.append(stem if count == 1 else f"{stem}-{count}")
    return names


def _survey(paths: Sequence[Path], loaded: LoadedModel, args: argparse.Namespace) -> list[Item]:
    """Decode every image once, before anything is written: a bad file stops the run."""
    from xai.images import read_image

    channels, size = input_size(loaded, args.input_size)
    items = []
    for path, folder in zip(paths, _folder_names(paths), strict=True):
        image = read_image(path)
        wanted = channels or (1 if image.mode == "gray" else 3)
        height, width = size or image.size
        items.append(Item(path, folder, image.size, image.mode, (wanted, height, width)))
    return items


def _batches(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Consecutive items of one input shape, at most ``batch_size`` at a time."""
    groups: list[list[Item]] = []
    for item in items:
        last = groups[-1] if groups else None
        if last is not None and len(last) < batch_size and last[0].shape == item.shape:
            last.append(item)
        else:
            groups.append([item])
    return groups


def _class_names(loaded: LoadedModel, count: int) -> list[str]:
    names = list(loaded.class_names) if loaded.class_names else None
    if names is None:
        return [f"class {i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(
            f"the model returns {count} scores but names {len(names)} classes; its card "
            f"or class_names attribute does not match it"
        )
    return names


def _forward(model: Any, x: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.no_grad():
        try:
            logits = model(x)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ValueError(
                f"the model cannot take inputs of shape {tuple(x.shape[1:])} ({first}); "
                f"pass --input-size C,H,W"
            ) from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(
            "the model must return (N, classes) scores for `xai explain`; wrap it in a "
            "factory that returns such a model"
        )
    return logits


def _process(
    items: list[Item],
    loaded: LoadedModel,
    methods: Sequence[str],
    args: argparse.Namespace,
) -> list[str]:
    """Explain the images batch by batch and write each batch's files; the first batch
    is complete (target and layer checked, every map computed) before any file exists."""
    import torch

    import xai
    from xai.images import read_image, to_input
    from xai.training.progress import ProgressBar

    model = loaded.model
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    bar = ProgressBar(len(items), "explaining", enabled=len(items) > 1 and not args.quiet)
    class_names: list[str] = []
    target: int | None = None
    versions = _versions()
    for number, batch in enumerate(_batches(items, max(1, args.batch_size))):
        images = [read_image(item.path) for item in batch]
        x = torch.stack(
            [
                to_input(image, item.shape[0], item.shape[1:], invert=args.invert)
                for image, item in zip(images, batch, strict=True)
            ]
        ).to(dtype)
        logits = _forward(model, x).float()
        if number == 0:
            class_names = _class_names(loaded, int(logits.shape[1]))
            target = parse_target(args.target, class_names)
            if args.layer:
                check_layer(model, args.layer)
        results = {
            method: xai.explain(model, x, method=method, layer=args.layer, target=target)
            for method in methods
        }
        probabilities = torch.softmax(logits, dim=1)
        for i, (item, image) in enumerate(zip(batch, images, strict=True)):
            explanations = {method: result[i] for method, result in results.items()}
            _write_item(
                item,
                image.rgb(),
                explanations,
                logits[i],
                probabilities[i],
                loaded,
                class_names,
                args,
                versions,
            )
        bar.update(len(batch))
    bar.close()
    return class_names


# --------------------------------------------------------------------------- output


def _display(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as RGB for drawing, enlarged by a whole factor if it is tiny."""
    import cv2

    height, width = rgb.shape[:2]
    factor = max(1, math.ceil(MIN_DISPLAY / max(1, min(height, width))))
    if factor > 1:
        rgb = cv2.resize(rgb, (width * factor, height * factor), interpolation=cv2.INTER_NEAREST)
    return rgb, (rgb.shape[0], rgb.shape[1])


def _display_map(explanation: Explanation, size: tuple[int, int]) -> np.ndarray:
    """The raw map resized once, bilinearly, to the drawing size, then min-max scaled."""
    from xai.cam.maps import minmax, upsample

    return minmax(upsample(explanation.raw[:1].float(), size))[0].numpy()


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    from xai._files import atomic_write_bytes

    ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1])
    if not ok:
        raise OSError(f"cannot encode {path}")
    atomic_write_bytes(path, encoded.tobytes())


def _versions() -> dict[str, str]:
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


def _write_item(
    item: Item,
    rgb: np.ndarray,
    explanations: dict[str, Explanation],
    logits: torch.Tensor,
    probabilities: torch.Tensor,
    loaded: LoadedModel,
    class_names: list[str],
    args: argparse.Namespace,
    versions: dict[str, str],
) -> Path:
    import numpy as np

    from xai._files import atomic_write, atomic_write_text
    from xai.viz.overlay import colorize, overlay

    folder = args.out / item.folder
    folder.mkdir(parents=True, exist_ok=True)
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
        _write_png(folder / files["overlay"], overlay(rgb, saliency, args.alpha, args.colormap))
        _write_png(folder / files["heatmap"], colorize(saliency, args.colormap))
        raw = explanation.raw[0].numpy().astype(np.float32)
        atomic_write(folder / files["raw"], partial(np.save, arr=raw))
        index = int(explanation.targets[0])
        name = class_names[index] if index >= 0 else None
        if not registry.get(method).class_specific:
            subtitles[method] = "class-agnostic"
        elif name:
            subtitles[method] = f"{name} ({float(explanation.scores[0]):.2f})"
        entries.append(
            {
                "method": method,
                "layer": explanation.layer,
                "target": index,
                "target_class": name,
                "class_specific": registry.get(method).class_specific,
                "score": float(explanation.scores[0]),
                "raw_shape": list(raw.shape),
                "raw_min": float(raw.min()),
                "raw_max": float(raw.max()),
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
        )
        save_figure(figure, folder / "comparison.png")
        manifest["comparison"] = "comparison.png"
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    first = next(iter(explanations.values()))
    index = int(first.targets[0])
    item.summary = (
        f"{class_names[int(top.indices[0])]} {float(top.values[0]):.1%}",
        float(top.values[0]),
        class_names[index] if index >= 0 else "(callable)",
        float(first.scores[0]),
    )
    return folder


def _table(items: list[Item]) -> str:
    rows = [("image", "prediction", "explained (score)")]
    for item in items:
        assert item.summary is not None
        prediction, _, explained, score = item.summary
        rows.append((item.path.name, prediction, f"{explained} ({score:.2f})"))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip() for row in rows
    )


def run(args: argparse.Namespace) -> int:
    from xai._files import check_writable_dir
    from xai.images import find_images

    methods = parse_methods(args.method)
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}")
    paths = find_images(args.images)
    from xai.viz.overlay import colormaps

    if args.colormap.lower() not in colormaps():
        close = difflib.get_close_matches(args.colormap.lower(), colormaps(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"--colormap {args.colormap!r} is unknown.{hint} Valid: {', '.join(colormaps())}"
        )
    args.colormap = args.colormap.lower()
    check_writable_dir(args.out)  # made only when the first file is written
    loaded = load(args)
    if loaded.kind == "torchscript":
        raise ValueError(
            f"--model {loaded.spec} is TorchScript: its layers run as compiled code that "
            f"no hook can see, so no map can be computed. Save model.state_dict() and pass "
            f"--arch, or pass package.module:factory"
        )
    items = _survey(paths, loaded, args)
    _process(items, loaded, methods, args)
    out = args.out
    if not args.quiet:
        print(_table(items))
        per = "method" if len(methods) == 1 else "methods"
        print(
            f"wrote {len(items)} image{'s' if len(items) != 1 else ''} x {len(methods)} "
            f"{per} to {out}{'/' if not str(out).endswith('/') else ''}",
            file=sys.stdout,
        )
    return 0
