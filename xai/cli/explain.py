"""``xai explain``: explain image files with any method and write the pictures.

Per image, in a folder of its own under ``--out`` named after the image's file name
(``x.png`` -> ``OUT/x.png/``; two inputs with one file name in a run are refused): an
overlay PNG and a heatmap PNG per method, the raw map (``.npy``), a comparison grid when
several methods run, and ``manifest.json`` (what was explained, how, how strong each map
is next to the top-1 class's, with which model and package versions).

What is written when: every image is decoded and explained first, so a bad image,
method, layer, target or a shape the model refuses, in any batch, stops the run with
one line and nothing on disk. Then each image's folder is written into a hidden partial
folder and renamed into place whole; an earlier run's folder of the same name is
replaced as a whole. Ctrl-C (exit 130) and SIGTERM (143) remove the partial folder; a
killed process leaves only a hidden one, removed by the next run. A failure while
writing (a full disk) says how many folders were written, each whole.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai import registry
from xai.cli._common import (
    HelpFormatter,
    add_device_option,
    add_model_options,
    input_size,
    load,
)
from xai.cli._folders import folder_names, write_folder
from xai.cli._output import Item, Result, table, versions, write_item
from xai.core.errors import XAIValueError

if TYPE_CHECKING:
    import torch

    from xai.models.loading import LoadedModel
    from xai.viz.map_pictures import MapPictures

__all__ = ["add_parser", "run"]

EXAMPLES = """examples:
  xai explain shirt.png                          Grad-CAM on the embedded Fashion-MNIST model
  xai explain photos/ --method all --out maps    every method, one comparison grid per image
  xai explain "scans/*.png" --method cam,gradcam++ --target Sneaker
  xai explain x.png --model net.pt --arch gapcnn --layer features.12
  xai explain x.png --model mypkg.models:build_net --input-size 3,224,224

Per image it writes OUT/NAME/: METHOD_overlay.png, METHOD_heatmap.png (titled with the
class, its probability and a note on a near-empty map, with a colour bar; --bare: the
pixels alone), METHOD_raw.npy (the map before resizing and normalisation),
comparison.png (several methods: the original, the model's input, the overlays) and
manifest.json; OUT/index.html shows the run's images, predictions and maps in a browser
(offline: it links only the files beside it). Images are converted to the model's
channels and size; pictures drawn dark on light need --invert for MNIST-family models,
which saw light on black. An input unlike the training images (colour turned gray, a
far aspect ratio or size, an odd brightness or background) gets one warning line per
reason, recorded in its manifest (input_warnings); it is explained all the same.
"""


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "explain",
        help="explain images: overlay and heatmap PNGs, raw maps, a manifest",
        description="Explain why the model classifies each image as it does, with CAM, "
        "the Grad-CAM family or any method listed by `xai methods`.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files, folders or globs")
    p.add_argument(
        "--method",
        "-m",
        default="gradcam",
        help="a method, several separated by commas, or 'all'",
    )
    p.add_argument(
        "--layer",
        help="the layer to explain, a dotted name as `xai layers` lists (default: the last "
        "feature maps; a transformer's last attention input); 'name[0]' or \"name['key']\" "
        "picks one tensor of a layer returning a tuple or dict; several separated by "
        "commas are fused into one map (see --fuse)",
    )
    p.add_argument(
        "--fuse",
        choices=("mean", "max"),
        default="mean",
        help="how the maps of several --layer are fused: each normalised and resized to "
        "the finest, then their mean (default) or maximum",
    )
    p.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="each map is the first principal component of the method's per-channel "
        "terms instead of their sum (CAM-family methods)",
    )
    p.add_argument(
        "--aug-smooth",
        action="store_true",
        help="each map is the mean over six flipped and rescaled copies of the image, "
        "brought back to its frame (CAM-family methods; six times slower)",
    )
    p.add_argument(
        "--target",
        default="top1",
        help="top1 (each image's predicted class, the default), a class index or name",
    )
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("xai-out"),
        help="output folder: a folder per image and index.html",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in [0, 1]")
    p.add_argument("--colormap", default="jet", help="an OpenCV colormap name")
    p.add_argument("--invert", action="store_true", help="use 1 - pixel (dark-on-light pictures)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images larger than this many pixels, read from the file's header "
        "before decoding (default 89,478,485, Pillow's limit)",
    )
    p.add_argument(
        "--allow-damaged",
        action="store_true",
        help="read images whose data the decoder reports as damaged (a warning each) "
        "instead of refusing them",
    )
    p.add_argument(
        "--bare",
        action="store_true",
        help="write METHOD_overlay.png and METHOD_heatmap.png as bare pixels (the image's "
        "own size, or enlarged to 224 when smaller), without the title and colour bar",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no table")
    add_device_option(p)
    add_model_options(p)


# ----------------------------------------------------------------------------- checks


def parse_methods(text: str) -> list[str]:
    """``"all"``, one name or a comma-separated list -> registry names (validated)."""
    if text.strip().lower() == "all":
        return list(registry.methods())
    names = [part for part in (p.strip() for p in text.split(",")) if part]
    if not names:
        raise XAIValueError("--method: give a method name, e.g. gradcam (see `xai methods`)")
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
            raise XAIValueError(
                f"--target {value} is out of range: the model has {count} classes, 0..{count - 1}"
            )
        return index
    keys = [_key(n) for n in class_names]
    if _key(value) in keys:
        return keys.index(_key(value))
    close = difflib.get_close_matches(_key(value), keys, n=1, cutoff=0.5)
    hint = f" Did you mean {class_names[keys.index(close[0])]!r}?" if close else ""
    listed = ", ".join(class_names) if count <= 20 else f"{count} classes (see `xai classes`)"
    raise XAIValueError(
        f"--target {value!r} is not a class of this model.{hint} Use top1, an index "
        f"0..{count - 1} or a name: {listed}"
    )


def parse_layers(text: str | None) -> str | list[str] | None:
    """``--layer``: one name, or several separated by commas (fused into one map)."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise XAIValueError(f"--layer {text!r} has an empty name; separate names by commas")
    return names[0] if len(names) == 1 else names


def method_options(methods: Sequence[str], args: argparse.Namespace) -> dict[str, dict]:
    """Each method's options from --fuse/--eigen-smooth/--aug-smooth; a method that has no
    such option is explained without it, said in one warning line."""
    import inspect

    wanted: dict[str, Any] = {}
    if args.eigen_smooth:
        wanted["eigen_smooth"] = True
    if args.aug_smooth:
        wanted["aug_smooth"] = True
    if isinstance(parse_layers(args.layer), list) and args.fuse != "mean":
        wanted["fuse"] = args.fuse
    options: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}
    for method in methods:
        accepted = inspect.signature(registry.get(method).load().__init__).parameters
        options[method] = {k: v for k, v in wanted.items() if k in accepted}
        for key in wanted:
            if key not in accepted:
                skipped.setdefault("--" + key.replace("_", "-"), []).append(method)
    for flag, names in skipped.items():
        if len(names) == len(methods):
            raise XAIValueError(
                f"{flag} does not apply to {', '.join(names)}; use it with a CAM-family "
                f"method such as gradcam"
            )
        print(
            f"warning: {flag} does not apply to {', '.join(names)}; explained without it",
            file=sys.stderr,
        )
    return options


def check_layer(model: Any, layer: str | list[str]) -> None:
    """An unknown layer name -> one line with the nearest valid names."""
    from xai.core.layers import nearest_layers, parse_layer

    if isinstance(layer, list):
        for name in layer:
            check_layer(model, name)
        return

    path, _ = parse_layer(layer)  # "name['key']" selects a tensor of the layer's output
    if path not in dict(model.named_modules(remove_duplicate=False)):
        raise XAIValueError(
            f"--layer {path!r} is not a layer of this model; nearest: "
            f"{', '.join(nearest_layers(model, path, n=4))} (list them with `xai layers`)"
        )


# ------------------------------------------------------------------------- pipeline


def _survey(paths: Sequence[Path], loaded: LoadedModel, args: argparse.Namespace) -> list[Item]:
    """Decode every image once, before anything is written: a bad file stops the run."""
    import warnings

    from xai.images import DamagedImageWarning

    channels, size = input_size(loaded, args.input_size)
    items = []
    for path, folder in zip(paths, folder_names(paths), strict=True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DamagedImageWarning)
            image = _read(path, args)
        for warning in caught:  # --allow-damaged: read, and said once per file
            print(f"xai: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
        wanted = channels or (1 if image.mode == "gray" else 3)
        height, width = size or image.size
        items.append(Item(path, folder, image.size, image.mode, (wanted, height, width)))
    return items


def _read(path: Path, args: argparse.Namespace, *, quiet: bool = False) -> Any:
    """``read_image`` with the command's --max-pixels and --allow-damaged; ``quiet``: a
    damaged file's warning was printed already, when it was first read."""
    import warnings

    from xai.images import MAX_PIXELS, DamagedImageWarning, read_image

    limit = MAX_PIXELS if args.max_pixels is None else args.max_pixels
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", DamagedImageWarning)
        return read_image(path, max_pixels=limit, allow_damaged=args.allow_damaged)


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
        raise XAIValueError(
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
            raise XAIValueError(
                f"the model cannot take inputs of shape {tuple(x.shape[1:])} ({first}); "
                f"pass --input-size C,H,W"
            ) from None
    from xai.core.targets import logits_of

    logits = logits_of(logits)  # a tensor, an output's .logits, or a "logits" key
    if logits is None or logits.ndim != 2:
        raise XAIValueError(
            "the model must return (N, classes) scores for `xai explain`; wrap it in a "
            "factory that returns such a model"
        )
    return logits


def training_statistics(loaded: LoadedModel) -> dict[str, Any] | None:
    """The training images' pixel statistics from the model's card (``input_statistics``,
    as the embedded model's card and ``xai train``'s cards record them), or ``None``."""
    import json

    card = getattr(loaded.model, "card", None)
    if not isinstance(card, dict) and loaded.details.get("card"):
        try:
            card = json.loads(Path(loaded.details["card"]).read_text())
        except (OSError, ValueError):
            card = None
    stats = card.get("input_statistics") if isinstance(card, dict) else None
    return stats if isinstance(stats, dict) else None


def _check_input(
    item: Item,
    pixels: Any,
    model_input: torch.Tensor,
    statistics: dict[str, Any] | None,
    args: argparse.Namespace,
) -> None:
    """Warn, one line per reason, when the image is far from the training images
    (``xai.core.ood``); the reasons go into the image's manifest."""
    from xai.core.ood import check_input

    found = check_input(pixels, model_input, statistics, inverted=args.invert)
    item.input_warnings = [w.to_dict() for w in found]
    for warning in found:
        print(f"xai: warning: {item.path}: {warning.message} [{warning.reason}]", file=sys.stderr)


@dataclass
class Computed:
    """What the command keeps of one image until every image is explained."""

    item: Item
    logits: torch.Tensor  # (classes,) float32
    results: dict[str, Result]


def _compute(
    items: list[Item],
    loaded: LoadedModel,
    methods: Sequence[str],
    args: argparse.Namespace,
    options: dict[str, dict] | None = None,
) -> tuple[list[Computed], list[str]]:
    """Explain every image, batch by batch, before anything is written: a bad input in
    any batch (a layer, a target, a shape the model refuses) stops the run with nothing
    on disk. Only the small raw maps are kept (the pictures are drawn when writing).

    Besides the target, each method explains every image's top-1 class too when the
    target is another class, so that each map's scale can be reported against it.
    """
    import torch

    import xai
    from xai.core.inputs import prepare_inputs
    from xai.images import to_input
    from xai.training.progress import ProgressBar

    model = loaded.model
    layer = parse_layers(args.layer)
    options = options or {}
    statistics = training_statistics(loaded)
    bar = ProgressBar(len(items), "explaining", enabled=len(items) > 1 and not args.quiet)
    class_names: list[str] = []
    target: int | None = None
    computed: list[Computed] = []
    for number, batch in enumerate(_batches(items, args.batch_size)):
        inputs = []
        for item in batch:
            image = _read(item.path, args, quiet=True)
            inputs.append(to_input(image, item.shape[0], item.shape[1:], invert=args.invert))
            _check_input(item, image.pixels, inputs[-1], statistics, args)
            del image
        x = prepare_inputs(model, torch.stack(inputs))  # on the model's device, in its dtype
        del inputs
        logits = _forward(model, x).float()
        if number == 0:
            class_names = _class_names(loaded, int(logits.shape[1]))
            target = parse_target(args.target, class_names)
            if layer:
                check_layer(model, layer)
        top1 = logits.argmax(dim=1)
        per_method = {}
        for method in methods:
            chosen = options.get(method, {})
            e = xai.explain(model, x, method=method, layer=layer, target=target, **chosen)
            peaks = e.raw.flatten(1).amax(dim=1)
            if target is None or not registry.get(method).class_specific:
                reference = peaks  # the map of the top-1 class itself
            else:
                top = xai.explain(model, x, method=method, layer=layer, target=top1, **chosen)
                reference = top.raw.flatten(1).amax(dim=1)
            per_method[method] = (e, peaks, reference)
        for i, item in enumerate(batch):
            results = {}
            for method, (e, peaks, reference) in per_method.items():
                relative = float(peaks[i] / reference[i]) if float(reference[i]) > 0 else None
                results[method] = Result(
                    raw=e.raw[i].clone(),
                    target=int(e.targets[i]),
                    score=float(e.scores[i]),
                    layer=e.layer,
                    relative=relative,
                )
            computed.append(Computed(item, logits[i].clone(), results))
        bar.update(len(batch))
    bar.close()
    return computed, class_names


def _fill(
    folder: Path,
    *,
    record: Computed,
    rgb: Any,
    model_input: torch.Tensor,
    probabilities: torch.Tensor,
    loaded: LoadedModel,
    class_names: list[str],
    args: argparse.Namespace,
    packages: dict[str, str],
    pictures: MapPictures,
) -> None:
    write_item(
        folder,
        record.item,
        rgb,
        record.results,
        record.logits,
        probabilities,
        loaded,
        class_names,
        args,
        packages,
        model_input=model_input,
        pictures=pictures,
    )


def _write(
    computed: list[Computed],
    class_names: list[str],
    loaded: LoadedModel,
    args: argparse.Namespace,
) -> int:
    """Write each image's folder whole (``write_folder``); returns how many replaced an
    earlier run's folder. A failure here (a full disk) is reported with what was written."""
    import torch

    from xai.images import to_input
    from xai.viz.map_pictures import MapPictures

    packages = versions()
    replaced = 0
    with MapPictures() as pictures:  # one figure per picture layout, reused
        for done, record in enumerate(computed):
            image = _read(record.item.path, args, quiet=True)
            shape = record.item.shape
            fill = partial(
                _fill,
                record=record,
                rgb=image.rgb(),
                model_input=to_input(image, shape[0], shape[1:], invert=args.invert),
                probabilities=torch.softmax(record.logits, dim=0),
                loaded=loaded,
                class_names=class_names,
                args=args,
                packages=packages,
                pictures=pictures,
            )
            try:
                replaced += write_folder(args.out / record.item.folder, fill)
            except OSError as error:
                raise type(error)(
                    f"{error} ({done} of {len(computed)} image folders were written, each whole; "
                    f"the rest were not)"
                ) from error
    return replaced


def run(args: argparse.Namespace) -> int:
    from xai._files import check_writable_dir
    from xai.images import find_images

    methods = parse_methods(args.method)
    if not 0.0 <= args.alpha <= 1.0:
        raise XAIValueError(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.batch_size < 1:
        raise XAIValueError(f"--batch-size must be at least 1; got {args.batch_size}")
    paths = find_images(args.images)
    from xai.viz.overlay import resolve_colormap

    args.colormap = resolve_colormap(args.colormap)
    check_writable_dir(args.out)  # made only when the first file is written
    loaded = load(args)
    if loaded.kind == "torchscript":
        raise XAIValueError(
            f"--model {loaded.spec} is TorchScript: its layers run as compiled code that "
            f"no hook can see, so no map can be computed. Save model.state_dict() and pass "
            f"--arch, or pass package.module:factory"
        )
    options = method_options(methods, args)
    args.method_options = options  # recorded in each manifest
    items = _survey(paths, loaded, args)
    computed, class_names = _compute(items, loaded, methods, args, options)
    from xai.viz.page import PAGE, write_explain_page

    (args.out / PAGE).unlink(missing_ok=True)  # the page shows a whole run, or is absent
    replaced = _write(computed, class_names, loaded, args)
    write_explain_page(args.out, [item.folder for item in items])  # the run is whole: its page
    out = args.out
    if not args.quiet:
        print(table(items))
        per = "method" if len(methods) == 1 else "methods"
        again = f" ({replaced} replaced an earlier run's folder)" if replaced else ""
        print(
            f"wrote {len(items)} image{'s' if len(items) != 1 else ''} x {len(methods)} "
            f"{per} to {out}{'/' if not str(out).endswith('/') else ''}{again}",
            file=sys.stdout,
        )
    return 0
