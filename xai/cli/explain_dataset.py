"""``xai explain-dataset``: explain a whole dataset into a zarr store (``xai.explain_dataset``)."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from xai.cli._common import (
    HelpFormatter,
    add_device_option,
    add_model_options,
    dummy_input,
    input_size,
    load,
)
from xai.cli.explain import check_layer, parse_methods, parse_target
from xai.core.errors import XAIValueError

EXAMPLES = """examples:
  xai explain-dataset fashion-mnist:test --store test.zarr
        Grad-CAM for the 10,000 Fashion-MNIST test images, on the embedded model
  xai explain-dataset fashion-mnist:test --method gradcam,cam --store test.zarr --resume
        continue a run that was stopped: only the missing chunks are computed
  xai explain-dataset photos/ --model net.pt --arch gapcnn --input-size 1,28,28 --store p.zarr
  xai explain-dataset fashion-mnist:test --store test.zarr --engine ray
        the same run on Ray (a local cluster, or $RAY_ADDRESS / --ray-address)
  xai report test.zarr --out report/          per-class mean maps, most/least confident

DATA is a folder of PNG/JPEG images, an MNIST-family IDX image file (its labels file
beside it is used) or a data set name: fashion-mnist:test, mnist:train, kmnist:test.
"""


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "explain-dataset",
        help="explain a whole dataset into a zarr store (resumable; local or Ray)",
        description="Explain every sample of a dataset, batch by batch, into a zarr store "
        "that anything reading zarr can open (xai.open_store gives a typed view).",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="a folder, an IDX file or a data set name")
    p.add_argument("--store", "-s", type=Path, required=True, help="the store, e.g. OUT.zarr")
    p.add_argument(
        "--method", "-m", default="gradcam", help="a method, or several separated by commas"
    )
    p.add_argument("--layer", help="the layer to explain (default: each method's default)")
    p.add_argument(
        "--target",
        default="top1",
        help="top1 (the default), label (each sample's own label), a class index or name",
    )
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch and chunk")
    p.add_argument("--resume", action="store_true", help="compute only a store's missing chunks")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument(
        "--map-dtype", choices=("float32", "float16"), default="float32", help="maps' dtype"
    )
    p.add_argument("--invert", action="store_true", help="1 - pixel for a folder's images")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="where to run")
    p.add_argument("--workers", type=int, help="Ray actors (default: the cluster's CPUs)")
    p.add_argument("--ray-address", help="the Ray cluster (default $RAY_ADDRESS, else local)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    add_device_option(p)
    add_model_options(p)


def _rebuild(spec: str | None, arch: str | None, config: Any, trust: bool, limit: Any) -> Any:
    """Build the command's model again on a Ray worker (its weights are sent apart)."""
    from xai.models.loading import load_model

    return load_model(spec, arch=arch, config=config, trust_pickle=trust, max_bytes=limit).model


def run(args: argparse.Namespace) -> int:
    import xai
    from xai.cli._common import _config

    methods = parse_methods(args.method)
    if args.batch_size < 1:
        raise XAIValueError(f"--batch-size must be at least 1; got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        raise XAIValueError(f"--workers must be at least 1; got {args.workers}")
    if args.engine == "ray":
        if args.device not in ("auto", "cpu"):
            raise XAIValueError(
                f"--device {args.device} applies to --engine local; Ray's workers build the "
                f"model again where they run, on the CPU. Drop --device, or use --engine local"
            )
        args.device = "cpu"  # the driver's copy stays where the workers' are
    loaded = load(args)
    if loaded.kind == "torchscript":
        raise XAIValueError(
            f"--model {loaded.spec} is TorchScript: no hook can see its layers; save "
            f"model.state_dict() and pass --arch, or pass package.module:factory"
        )
    if args.layer:
        check_layer(loaded.model, args.layer)
    channels, size = input_size(loaded, args.input_size)
    shape = (channels, *size) if channels is not None and size is not None else None
    target: Any = args.target.strip()
    if target.lower() == "label":
        target = "label"
    elif target.lower() not in ("top1", "top-1", "predicted"):  # top1 needs no class count
        names = loaded.class_names or tuple(str(i) for i in range(_classes(loaded, args)))
        target = parse_target(target, names)
    else:
        target = None
    factory = None
    if args.engine == "ray":
        factory = functools.partial(
            _rebuild,
            args.model,
            args.arch,
            _config(args.config),
            args.trust_pickle,
            args.max_model_size,
        )
    from xai.data.sources import as_source

    source = as_source(args.data, input_shape=shape, invert=args.invert)
    store = xai.explain_dataset(
        loaded.model,
        source,
        methods,
        store=args.store,
        layer=args.layer,
        target=target,
        batch_size=args.batch_size,
        resume=args.resume,
        overwrite=args.overwrite,
        engine=args.engine,
        map_dtype=args.map_dtype,
        progress=not args.quiet,
        model_factory=factory,
        workers=args.workers,
        ray_address=args.ray_address,
    )
    if not args.quiet:
        seconds = store.attrs.get("seconds_last_run") or 0.0
        print(
            f"explained {len(store):,} samples x {len(methods)} method"
            f"{'s' if len(methods) != 1 else ''} into {args.store} ({seconds:.1f} s); "
            f"open it with xai.open_store({str(args.store)!r}) or `xai report {args.store}`",
            file=sys.stdout,
        )
    return 0


def _classes(loaded: Any, args: argparse.Namespace) -> int:
    """The model's number of classes, from one forward pass on a zero input (its size as
    `xai classes` finds it), for --target checks."""
    import torch

    from xai.core.targets import logits_of

    x = dummy_input(loaded, args.input_size)  # on the model's device
    with torch.no_grad():
        try:
            out = logits_of(loaded.model(x))
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "refused"
            raise XAIValueError(
                f"the model cannot take inputs of shape {tuple(x.shape[1:])} ({first}); "
                f"pass --input-size C,H,W with the size it takes"
            ) from None
    if out is None or out.ndim != 2:
        raise XAIValueError("the model must return (N, classes) scores for --target")
    return int(out.shape[1])
