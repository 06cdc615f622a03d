"""``xai grid``: one example of every class, its maps under each method, one class per
column (``xai.viz.class_columns.class_columns``): the coursework's per-class figure as one PNG."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai.cli._common import HelpFormatter, add_device_option, add_model_options, input_size, load
from xai.core.errors import XAIValueError

if TYPE_CHECKING:
    import torch

    from xai.models.loading import LoadedModel

EXAMPLES = """examples:
  xai grid --out grid.png
        CAM and Grad-CAM of the embedded model's ten shipped samples, one per column
  xai grid --data fashion-mnist:test --methods gradcam,scorecam,eigencam --out test.png
        the first test image of each class, under three methods
  xai grid --data photos/ --model net.pt --arch gapcnn --out photos.png
        a folder of images whose file names start with their class index (3-dress.png)
  xai grid --data fashion-mnist:test --mistakes 6 --out mistakes.png
        the first six misclassified test images: Grad-CAM for the true and the
        predicted class side by side, and the top three classes

Each column is one class: the input on top, then one row per method with the map of the
predicted class over the image; its title gives the true and the predicted class and
the predicted probability, in red where the model is wrong. DATA is a folder (file names
starting with the class index, like `xai samples` writes), an MNIST-family IDX image file
with its labels file beside it, or a data set name: fashion-mnist:test, mnist:train.
"""

#: A folder's file name gives its image's class: leading digits, as in ``7-sneaker.png``.
_CLASS_INDEX = re.compile(r"^(\d+)")

#: Samples read at a time while looking for the first image of each class in a data set.
_CHUNK = 1024


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "grid",
        help="one example per class and its maps, one class per column, as one PNG",
        description="The per-class figure: the first example of each class (by default "
        "the embedded model's shipped samples), its maps for the predicted class under "
        "each method, true and predicted class and probability above each column.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--data",
        metavar="DATA",
        help="a folder of images named by class index (3-dress.png), an IDX file or a data "
        "set name such as fashion-mnist:test (default: the embedded model's ten samples)",
    )
    p.add_argument(
        "--methods",
        "-m",
        help="the methods, one row each, separated by commas (see `xai methods`), or all "
        "(default: cam,gradcam; with --mistakes one method, default gradcam)",
    )
    p.add_argument(
        "--mistakes",
        type=_positive,
        metavar="N",
        help="draw instead the first N misclassified samples of DATA, one row each: the "
        "method's map for the true and for the predicted class, and the top 3 classes",
    )
    p.add_argument("--layer", help="the layer to explain (default: each method's default)")
    p.add_argument("--out", "-o", type=Path, default=Path("grid.png"), help="the PNG to write")
    add_device_option(p)
    add_model_options(p)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _folder(
    paths: list[Path], what: str, loaded: LoadedModel, args: argparse.Namespace
) -> tuple[torch.Tensor, list[int]]:
    """The images of ``paths`` as the model's inputs, and their classes from their names."""
    import torch

    from xai.images import read_image, to_input

    labels = []
    for path in paths:
        match = _CLASS_INDEX.match(path.name)
        if match is None:
            raise XAIValueError(
                f"{what}: the file name {path.name} does not start with its class index; "
                f"name each image INDEX-anything.png, such as 3-dress.png"
            )
        labels.append(int(match[1]))
    channels, size = input_size(loaded, args.input_size)
    images = [read_image(path) for path in paths]
    if channels is None:
        channels = 1 if images[0].mode == "gray" else 3
    size = size or images[0].size
    return torch.stack([to_input(image, channels, size) for image in images]), labels


def _data_set(spec: str, loaded: LoadedModel, args: argparse.Namespace) -> tuple[Any, list[int]]:
    """The first sample of each class of a data set (an IDX file or a name), read in
    chunks until every class has one."""
    import torch

    from xai.data.sources import as_source

    channels, size = input_size(loaded, args.input_size)
    shape = (channels, *size) if channels is not None and size is not None else None
    source = as_source(spec, input_shape=shape)
    if not source.has_labels:
        raise XAIValueError(
            f"--data {spec} has no labels (an IDX file needs its labels file beside it); "
            f"pass a data set name or a folder of images named by class index"
        )
    names = loaded.class_names or source.class_names
    wanted = len(names) if names else None
    first: dict[int, Any] = {}
    for start in range(0, len(source), _CHUNK):
        batch = source.batch(start, min(start + _CHUNK, len(source)))
        assert batch.labels is not None
        for x, label in zip(batch.x, batch.labels.tolist(), strict=True):
            first.setdefault(int(label), x)
        if wanted is not None and len(first) >= wanted:
            break
    if not first:
        raise XAIValueError(f"--data {spec} holds no samples")
    labels = sorted(first)
    return torch.stack([first[label] for label in labels]), labels


def _mistakes(
    loaded: LoadedModel, args: argparse.Namespace, paths: list[Path], what: str
) -> tuple[torch.Tensor, torch.Tensor, list[int], int]:
    """The first ``args.mistakes`` misclassified samples (images, labels, their positions
    in the data) and how many samples were looked at: up to the last one kept, or all.
    A data set is read in chunks and only its mistakes kept, so memory stays bounded."""
    import torch

    from xai.core.inputs import prepare_inputs
    from xai.training.evaluate import predict_proba

    if paths:
        x, labels = _folder(paths, what, loaded, args)
        chunks = iter([(0, x, torch.tensor(labels))])
    else:
        from xai.data.sources import as_source

        channels, size = input_size(loaded, args.input_size)
        shape = (channels, *size) if channels is not None and size is not None else None
        source = as_source(args.data, input_shape=shape)
        if not source.has_labels:
            raise XAIValueError(
                f"--data {args.data} has no labels (an IDX file needs its labels file "
                f"beside it); pass a data set name or a folder of images named by class index"
            )

        def read() -> Any:
            for start in range(0, len(source), _CHUNK):
                batch = source.batch(start, min(start + _CHUNK, len(source)))
                yield start, batch.x, torch.as_tensor(batch.labels)

        chunks = read()
    images: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    positions: list[int] = []
    seen = 0
    for start, x, y in chunks:
        x = prepare_inputs(loaded.model, x)
        wrong = (predict_proba(loaded.model, x).argmax(1) != y.numpy()).nonzero()[0]
        wrong = wrong[: args.mistakes - len(positions)]
        images.append(x[torch.as_tensor(wrong, dtype=torch.long, device=x.device)])
        kept.append(y[torch.as_tensor(wrong, dtype=torch.long)])
        positions += [start + int(i) for i in wrong]
        seen = start + len(x)
        if len(positions) == args.mistakes:
            seen = positions[-1] + 1
            break
    if not seen:
        raise XAIValueError(f"--data {args.data} holds no samples")
    return torch.cat(images), torch.cat(kept), positions, seen


def _mistakes_figure(loaded: LoadedModel, args: argparse.Namespace, methods: list[str],
                     paths: list[Path], what: str, source: str) -> Any:  # fmt: skip
    from xai.viz.mistakes import plot_mistakes

    if len(methods) != 1:
        raise XAIValueError(
            f"--mistakes draws one method's maps for the true and the predicted class; got "
            f"{len(methods)} methods ({','.join(methods)}): pass one, such as --methods gradcam"
        )
    images, labels, positions, seen = _mistakes(loaded, args, paths, what)
    found = len(positions)
    if not found:
        return None
    title = (
        f"{source}: {found} misclassified in the first {seen:,} samples"
        if found < args.mistakes
        else f"{source}: the first {found} misclassified samples (of the first {seen:,})"
    ) + f"; {methods[0]} maps, each from 0 (blue) to 1 (red)"
    return plot_mistakes(
        loaded.model,
        (images, labels),
        max(found, 1),
        method=methods[0],
        layer=args.layer,
        class_names=loaded.class_names,
        title=title,
        positions=positions,
    )


def run(args: argparse.Namespace) -> int:
    import torch

    import xai
    from xai._files import check_writable_file
    from xai.cli.explain import check_layer, parse_methods
    from xai.core.inputs import prepare_inputs
    from xai.viz.class_columns import class_columns
    from xai.viz.grids import save_figure

    default = "gradcam" if args.mistakes else "cam,gradcam"
    methods = parse_methods(args.methods or default)
    out = check_writable_file(args.out, "--out", example="grid.png")
    if args.data is not None and Path(args.data).is_dir():
        from xai.images import find_images

        paths, source = find_images([args.data]), f"the images of {args.data}"
    elif args.data is None:
        paths, source = [path for _, path in xai.models.sample_images()], "the shipped samples"
    else:
        paths, source = [], f"{args.data}"
    loaded = load(args)
    if args.layer:
        check_layer(loaded.model, args.layer)
    what = "--data" if args.data is not None else "the shipped samples"
    if args.mistakes:
        figure = _mistakes_figure(loaded, args, methods, paths, what, source)
        if figure is None:
            print(f"{source}: no sample is misclassified; nothing written")
            return 0
        print(f"wrote {save_figure(figure, out)}")
        return 0
    if paths:
        x, labels = _folder(paths, what, loaded, args)
    else:
        x, labels = _data_set(args.data, loaded, args)
    x = prepare_inputs(loaded.model, x)  # on the model's device, in its dtype
    figure = class_columns(
        loaded.model,
        x,
        torch.tensor(labels),
        loaded.class_names,
        methods=methods,
        layer=args.layer,
        model_name=loaded.spec,
        data_name=source,
    )
    print(f"wrote {save_figure(figure, out)}")
    return 0
