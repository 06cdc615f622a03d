"""``xai layers`` and ``xai classes``: what a model offers to explain."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from xai.cli._common import HelpFormatter, add_model_options, dummy_input, load
from xai.core.errors import XAIValueError

if TYPE_CHECKING:
    import torch

__all__ = ["add_parsers", "classes", "layers", "samples"]

LAYERS_HELP = """examples:
  xai layers                                   the embedded Fashion-MNIST model
  xai layers --all                             every layer with spatial maps, not only convs
  xai layers --model mypkg.nets:resnet --input-size 3,224,224

Any name listed can be passed to `xai explain --layer`. The marked one is the default:
the last spatial feature maps (the maps a global-average-pooling head pools).
"""


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "layers",
        help="list the conv layers (explainable with --layer) and their output shapes",
        description="Trace one forward pass and list the layers whose output is a "
        "feature map, with its shape (channels x height x width).",
        epilog=LAYERS_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="list every module returning spatial maps (activations, blocks), not only convs",
    )
    add_model_options(p)
    p = commands.add_parser(
        "samples",
        help="copy the embedded model's test images (one per class) to a folder",
        description="Write the shipped Fashion-MNIST test images, one per class, as PNG "
        "files: inputs to try `xai explain` on.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", "-o", default="samples", help="folder (default: samples)")
    p = commands.add_parser(
        "classes",
        help="list the model's classes: index and name",
        description="List the classes the model predicts; --target takes an index or a name.",
        formatter_class=HelpFormatter,
    )
    add_model_options(p)


def _model(args: argparse.Namespace) -> Any:
    loaded = load(args)
    if loaded.kind == "torchscript":
        raise XAIValueError(
            f"--model {loaded.spec} is TorchScript: its layers run as compiled code that "
            f"no hook can see; load the Python model (state_dict + --arch, or a factory)"
        )
    return loaded


_CHANNELS = re.compile(r"to have (\d+) channels, but got \d+ channels")


def _input_error(
    error: RuntimeError, x: torch.Tensor, override: tuple[int, int, int] | None
) -> XAIValueError:
    """The model failed on the dummy input: one line saying what does not fit and the fix,
    in the command's terms (``--input-size``), not torch's traceback."""
    from xai.core.inputs import channel_mismatch

    size = ",".join(str(d) for d in x.shape[1:])
    source = f"--input-size {size}" if override else f"the input size {size} (from the model)"
    found = _CHANNELS.search(str(error))
    if found and channel_mismatch(error, x) is not None:  # about the input, not a layer
        channels = int(found.group(1))
        wanted = ",".join(str(d) for d in (channels, *x.shape[2:]))
        return XAIValueError(
            f"{source}: the model's first convolution expects {channels} input "
            f"channel{'s' if channels != 1 else ''}, not {x.shape[1]}; pass --input-size "
            f"{wanted}"
        )
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return XAIValueError(
        f"the model cannot take inputs of shape {tuple(x.shape[1:])} ({first}); pass "
        f"--input-size C,H,W with the size it takes"
    )


def layers(args: argparse.Namespace) -> int:
    from torch import nn

    from xai.core.default_layer import default_layer
    from xai.core.state import evaluation_mode
    from xai.core.trace import trace

    loaded = _model(args)
    x = dummy_input(loaded, args.input_size)
    try:
        calls, _ = trace(loaded.model, x)
    except RuntimeError as error:
        raise _input_error(error, x, args.input_size) from None
    try:
        with evaluation_mode(loaded.model):
            default = default_layer(loaded.model, x).name
    except XAIValueError:
        default = None
    rows: list[tuple[str, str, str]] = []
    seen = set()
    for call in calls:
        output = call.output
        spatial = hasattr(output, "ndim") and output.ndim == 4
        tokens = hasattr(output, "ndim") and output.ndim == 3  # (N, T, C): a transformer's
        conv = isinstance(call.module, nn.modules.conv._ConvNd)
        shown = conv or args.all or call.name == default
        if call.name in seen or not (spatial or tokens) or not shown:
            continue
        seen.add(call.name)
        if tokens:
            shape = f"{output.shape[1]} tokens x {output.shape[2]}"
        else:
            shape = " x ".join(str(d) for d in output.shape[1:])
        mark = "  <- default" if call.name == default else ""
        rows.append((call.name, type(call.module).__name__, shape + mark))
    if not rows:
        raise XAIValueError(
            f"{loaded.spec} has no layer returning (N, C, H, W) feature maps or (N, tokens, "
            f"C) for an input of {tuple(x.shape[1:])}; CAM methods need such layers"
        )
    from xai._tables import text_table

    print(text_table(("layer", "type", "output (C x H x W)"), rows))
    size = "x".join(str(d) for d in x.shape[1:])
    print(f"(traced with one {size} input; default: {default or 'none found'})")
    return 0


def classes(args: argparse.Namespace) -> int:
    import torch

    loaded = load(args)
    names = loaded.class_names
    if names is None:
        x = dummy_input(loaded, args.input_size)
        with torch.no_grad():
            try:
                output = loaded.model(x)
            except RuntimeError as error:
                raise _input_error(error, x, args.input_size) from None
        count = int(output.shape[1]) if isinstance(output, torch.Tensor) else 0
        print(
            f"{loaded.spec} has {count} outputs and no class names (model card or "
            f"class_names attribute); --target takes an index 0..{count - 1}"
        )
        return 0
    width = len(str(len(names) - 1))
    for index, name in enumerate(names):
        print(f"{index:>{width}}  {name}")
    return 0


def samples(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xai._files import atomic_write_bytes, check_writable_dir, check_writable_file
    from xai.models.pretrained import sample_images

    out = check_writable_dir(Path(args.out))
    images = sample_images()
    if out.is_dir():  # each file it would replace, before any is written
        for _, path in images:
            check_writable_file(out / path.name, "--out", example=path.name)
    out.mkdir(parents=True, exist_ok=True)
    for class_name, path in images:
        target = atomic_write_bytes(out / path.name, path.read_bytes())
        print(f"{target}  ({class_name})")
    return 0
