"""Options and helpers shared by the commands that load a model."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai.core.errors import XAIValueError

if TYPE_CHECKING:
    import torch

    from xai.models.loading import LoadedModel

__all__ = [
    "HelpFormatter",
    "add_device_option",
    "add_model_options",
    "choose_device",
    "input_size",
    "load",
    "parse_bytes",
    "parse_size",
    "resolve_device",
]

_DEFAULT_MAX_BYTES = 4 << 30  # xai.models.loading.DEFAULT_MAX_BYTES (torch not imported here)
_MAX_CONFIG_BYTES = 16 << 20  # a --config file is a small JSON object
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)

#: The height and width tried where no image gives one (``xai layers``, ``xai classes``)
#: for a model that says its channels (its first convolution) but not its input size.
PROBE_SIZE = (224, 224)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The commands' help: the description and examples as written, and each option's
    default, ``(default: X)``, unless its help says it already or it has none (an unset
    value, an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        unset = default is None or default is False or default == argparse.SUPPRESS
        if shown and not unset and "default" not in text.lower():
            text += " (default: %(default)s)"
        return text


#: ``--device`` values: ``auto`` picks CUDA, else MPS (Apple), else the CPU.
DEVICES = ("auto", "cpu", "cuda", "mps")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|mps`` (``cuda:N`` too); ``resolve_device`` reads it."""
    parser.add_argument(
        "--device",
        default="auto",
        metavar="{auto,cpu,cuda,mps}",
        type=_device_name,
        help="where the model runs: auto picks CUDA if available, else MPS, else the CPU; "
        "cuda:N picks one GPU (default: auto)",
    )


def _device_name(text: str) -> str:
    name = text.strip().lower()
    if name in DEVICES or re.fullmatch(r"cuda:\d+", name):
        return name
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(DEVICES)} (or cuda:N, such as cuda:1); got {text!r}"
    )


def choose_device(name: str, *, cuda: bool, mps: bool) -> str:
    """The device ``--device name`` means, given what this machine has (a pure decision):
    ``auto`` is ``cuda`` if available, else ``mps``, else ``cpu``; an explicit name is
    kept. Whether that device exists is ``resolve_device``'s check."""
    if name != "auto":
        return name
    return "cuda" if cuda else "mps" if mps else "cpu"


def resolve_device(name: str) -> torch.device:
    """``--device`` -> a ``torch.device`` present on this machine, or one line saying what
    is missing and the fix (``XAIValueError``: exit status 2)."""
    import torch

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    chosen = choose_device(name, cuda=cuda, mps=mps)
    if chosen.startswith("cuda"):
        count = torch.cuda.device_count() if cuda else 0
        index = int(chosen.partition(":")[2] or 0)
        if index >= count:
            have = f"{count} CUDA device{'s' if count != 1 else ''}" if count else "no CUDA device"
            build = torch.version.cuda or "none: a CPU-only build"
            raise XAIValueError(
                f"--device {name}: this machine has {have} (torch {torch.__version__}, "
                f"CUDA {build}); use --device cpu, or auto to take the best one present"
            )
    if chosen == "mps" and not mps:
        raise XAIValueError(
            f"--device {name}: MPS (Apple's GPU) is not available here (torch "
            f"{torch.__version__}); use --device cpu, or auto to take the best one present"
        )
    return torch.device(chosen)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="SPEC",
        help="the trained model to use: builtin:NAME (default builtin:fashion-mnist), a "
        "state_dict or TorchScript file, or package.module:factory / file.py:factory for "
        "your own code (`xai train --model` instead names an architecture to train)",
    )
    group.add_argument(
        "--arch",
        help="built-in architecture (gapcnn, mlp) for a state_dict file without a model "
        "card; not needed when its card (FILE.json, as `xai train` writes) is beside it",
    )
    group.add_argument(
        "--config",
        metavar="JSON",
        help="the architecture's arguments, as JSON text or a .json file",
    )
    group.add_argument(
        "--input-size",
        metavar="C,H,W",
        type=parse_size,
        help="the input the model takes, when neither the model nor its card says it; "
        "without it, explain takes each image's own size and layers and classes try "
        f"{PROBE_SIZE[0]}x{PROBE_SIZE[1]} at the first convolution's channels, so it is "
        "needed only for a model that refuses those (or a folder in explain-dataset)",
    )
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a file holding a pickled whole model (this runs code from the file)",
    )
    group.add_argument(
        "--max-model-size",
        metavar="SIZE",
        type=parse_bytes,
        default=_DEFAULT_MAX_BYTES,
        help="refuse model files that hold or unpack to more than SIZE, such as 8G or "
        "500M (default 4G; 'none' for no limit): a guard against zip bombs",
    )


#: The most channels ``--input-size`` takes (images are gray, RGB or RGBA; 64 leaves room
#: for multispectral models of your own).
MAX_CHANNELS = 64


def parse_size(text: str) -> tuple[int, int, int]:
    """``"1,28,28"`` (or ``1x28x28``) -> ``(1, 28, 28)``."""
    parts = text.replace("x", ",").split(",")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28; got {text!r}")
    from xai.images import MAX_PIXELS  # numpy only: no torch for argument parsing

    channels, height, width = size
    if height * width > MAX_PIXELS or channels > MAX_CHANNELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is {channels} x {height * width:,} pixels; an input may have at most "
            f"{MAX_CHANNELS} channels and {MAX_PIXELS:,} pixels (the image reader's cap), "
            f"since the model's own memory grows with it"
        )
    return (channels, height, width)


def parse_bytes(text: str) -> int | None:
    """``"8G"`` (or ``8GiB``, ``8gb``) -> ``8 * 2**30``; ``"500M"``, ``"1.5G"``, ``"1024"``
    (bytes); ``"none"`` -> ``None`` (no limit). Units are binary."""
    if text.strip().lower() == "none":
        return None
    match = _SIZE.match(text)
    size = int(float(match[1]) * _UNITS[match[2].upper()]) if match else 0
    if size < 1:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 8G, 500M or 1048576 (bytes), or none; got {text!r}"
        )
    return size


def _config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    source = Path(text)
    from_file = text.endswith(".json") and source.is_file()
    if from_file and source.stat().st_size > _MAX_CONFIG_BYTES:
        raise XAIValueError(
            f"--config {text} is {source.stat().st_size:,} bytes; a configuration is a "
            f"small JSON object of the architecture's arguments"
        )
    try:
        config = json.loads(source.read_text() if from_file else text)
    except (ValueError, RecursionError) as error:  # too deeply nested: RecursionError
        raise XAIValueError(f"--config: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise XAIValueError(f"--config: expected a JSON object of arguments; got {config!r}")
    return config


def load(args: argparse.Namespace) -> LoadedModel:
    """The model the options name; with a ``--device`` option (``add_device_option``), on
    that device (checked before the model is read), recorded in ``details["device"]``."""
    from xai.models.loading import load_model

    device = resolve_device(args.device) if getattr(args, "device", None) else None
    loaded = load_model(
        args.model,
        arch=args.arch,
        config=_config(args.config),
        trust_pickle=args.trust_pickle,
        max_bytes=getattr(args, "max_model_size", _DEFAULT_MAX_BYTES),
    )
    if device is not None:
        loaded.model.to(device)
        loaded.details["device"] = str(device)
    return loaded


def input_size(
    loaded: LoadedModel, override: tuple[int, int, int] | None
) -> tuple[int | None, tuple[int, int] | None]:
    """``(channels, (H, W))`` to feed the model; ``None`` parts are not known.

    The option wins, then the model (attribute or card), then the channels of the first
    convolution (the size is then the image's own).
    """
    size = override or loaded.input_size
    if size is not None:
        return size[0], (size[1], size[2])
    for parameter in loaded.model.parameters():
        if parameter.ndim == 4:
            return int(parameter.shape[1]), None
    return None, None


def dummy_input(loaded: LoadedModel, override: tuple[int, int, int] | None) -> torch.Tensor:
    """A zero batch of one input of the model's size, for tracing its layers: the option,
    else the model's own size, else ``PROBE_SIZE`` at its first convolution's channels."""
    import torch

    channels, size = input_size(loaded, override)
    if channels is None:
        raise XAIValueError(
            f"the input size of {loaded.spec} is unknown: it says no input size and has no "
            f"convolution to take the channels from; pass --input-size C,H,W"
        )
    size = size or PROBE_SIZE
    from xai.core.inputs import prepare_inputs

    return prepare_inputs(loaded.model, torch.zeros(1, channels, *size))
