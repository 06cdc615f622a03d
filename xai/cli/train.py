"""``xai train``: train a built-in model on an MNIST-family data set and save it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xai._files import atomic_write, check_writable_file
from xai.cli._common import HelpFormatter, add_device_option

__all__ = ["add_parser", "run"]

HELP = """examples:
  xai train --model gapcnn --fraction 0.1 --out gapcnn.pt
  xai train --data ~/data/kmnist --dataset kmnist --model mlp --epochs 10 --out mlp.pt
  xai train --model mlp --fraction 0.1 --cv 5 --out mlp.pt     5-fold cross-validation

Saves the state_dict to OUT and a JSON card beside it (OUT.json: architecture and its
configuration, class names, history, test metrics, device, and input_statistics, the
training images' pixel statistics that `xai explain` checks inputs against), so
`xai explain --model OUT` loads it again (the card beside it names the architecture), and so does
xai.models.build(card["architecture"]["name"], card["architecture"]["config"]).
"""


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "train",
        help="train GAPCNN or MLP on MNIST-family data, with early stopping",
        description="Train a built-in model with Adam and early stopping on validation "
        "accuracy; report per-class metrics on the test split.",
        epilog=HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data", type=Path, help="folder of the data set's files (default: found)")
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        choices=["fashion-mnist", "mnist", "kmnist"],
        help="the data set to train on",
    )
    p.add_argument(
        "--model",
        required=True,
        choices=["gapcnn", "mlp"],
        metavar="ARCH",
        help="the architecture to build and train: gapcnn or mlp (not a model file, unlike "
        "`xai explain --model`, which takes the trained result)",
    )
    p.add_argument(
        "--fraction", type=float, default=1.0, help="stratified share of the data to use, e.g. 0.1"
    )
    p.add_argument("--epochs", type=int, default=20, help="the most epochs to train")
    p.add_argument(
        "--patience",
        type=int,
        default=3,
        help="epochs without validation improvement before stopping (0: never)",
    )
    p.add_argument("--batch-size", type=int, default=128, help="samples per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, shuffles and weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--cv",
        type=_folds,
        metavar="K",
        help="cross-validate instead: K folds (stratified; 'loo': leave-one-out) over the "
        "kept training data, each with early stopping on a validation split of its training "
        "part; prints the per-fold table and mean ± std and writes OUT.cv.json (no weights)",
    )
    add_device_option(p)
    p.add_argument("--out", type=Path, required=True, help="where to save the weights (.pt)")


def run(args: argparse.Namespace) -> int:
    # Both files are checked before any work: a bad destination costs nothing, not a
    # training run (os.access would not do: it says yes to root on a read-only disk).
    out = check_writable_file(args.out, "--out", example=f"{args.model}.pt")
    card_path = out.with_name(out.name + ".json")
    check_writable_file(card_path, "--out (the model card beside it)")
    from xai.cli._common import resolve_device

    device = resolve_device(args.device)  # a missing GPU: one line, before any work
    if args.cv is not None:
        return _cross_validate(args, out, device)

    import torch

    from xai.core.ood import input_statistics
    from xai.data import splits
    from xai.models import build
    from xai.training import evaluate, fit

    data = splits(args.dataset, args.data, fraction=args.fraction, seed=args.seed)
    config = _architecture(args.model, data.train.images, data.train.class_names)
    height, width = data.train.images.shape[1:]
    torch.manual_seed(args.seed)
    model = build(args.model, config).to(device)
    print(
        f"{args.model}: {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{args.dataset}: {len(data.train):,} train, {len(data.val):,} validation, "
        f"{len(data.test):,} test images; on {device}"
    )
    result = fit(
        model,
        data.train,
        data.val,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        progress=not args.quiet,
    )
    test = evaluate(model, data.test)
    card = {
        "architecture": {"name": args.model, "config": model.config},
        "class_names": list(data.test.class_names),
        "input_size": [1, int(height), int(width)],
        "data": {
            "dataset": args.dataset,
            "fraction": args.fraction,
            "train": len(data.train),
            "validation": len(data.val),
            "test": len(data.test),
        },
        "training": {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch + 1,
            "best_val_accuracy": result.best_val_accuracy,
            "seconds": round(result.seconds, 1),
            "seed": args.seed,
            "device": str(device),
            "history": [vars(r) for r in result.history],
        },
        "test_accuracy": test.accuracy,
        "per_class_accuracy": test.per_class_accuracy(),
        # The training images' pixel statistics: `xai explain` warns when an input is far
        # from them (xai.core.ood).
        "input_statistics": input_statistics(data.train.images),
    }
    weights = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    atomic_write(out, lambda tmp: torch.save(weights, tmp))  # loads on any machine
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2) + "\n"))
    print(result.summary())
    print(test.table())
    print(f"saved {out} and {card_path}")
    return 0


def _folds(text: str) -> int | str:
    """``--cv``: an int >= 2, or ``loo`` (checked here, so a bad one is one line)."""
    if text.strip().lower() == "loo":
        return "loo"
    try:
        folds = int(text)
    except ValueError:
        folds = 0
    if folds < 2:
        raise argparse.ArgumentTypeError(
            f"expected a number of folds >= 2 (5 or 10 are usual) or 'loo'; got {text!r}"
        )
    return folds


def _architecture(model: str, images: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """The configuration ``xai.models.build(model, ...)`` gets for training on ``images``
    ((N, H, W) uint8): the classes, the pixels' mean and standard deviation in [0, 1] (the
    model's own normalisation layer), and one input channel (GAPCNN) or H * W features
    (MLP)."""
    import numpy as np

    pixels = images.astype(np.float32) / 255
    height, width = images.shape[1:]
    common = {
        "num_classes": len(class_names),
        "mean": round(float(pixels.mean()), 4),
        "std": round(float(pixels.std()), 4),
    }
    if model == "gapcnn":
        return {"in_channels": 1, **common}
    return {"in_features": height * width, **common}


def _cross_validate(args: argparse.Namespace, out: Path, device: Any) -> int:
    """``xai train --cv K``: k-fold cross-validation; the result in OUT.cv.json."""
    result_path = out.with_name(out.name + ".cv.json")
    check_writable_file(result_path, "--out (the cross-validation result beside it)")

    from xai.data import load, stratified_subsample
    from xai.models import build
    from xai.training import cross_validate

    data = load(args.dataset, args.data, "train")
    if args.fraction != 1.0:
        data = data.subset(stratified_subsample(data.labels, args.fraction, args.seed))
    config = _architecture(args.model, data.images, data.class_names)
    folds = len(data) if args.cv == "loo" else args.cv
    print(
        f"{args.model}, {folds}-fold cross-validation on {len(data):,} {args.dataset} "
        f"training images; on {device}"
    )
    result = cross_validate(
        lambda: build(args.model, config),
        data,
        args.cv,
        seed=args.seed,
        device=device,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        progress=not args.quiet,
    )
    record = {
        "architecture": {"name": args.model, "config": config},
        "data": {"dataset": args.dataset, "fraction": args.fraction, "samples": len(data)},
        "training": {
            "epochs": args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "device": str(device),
        },
        "cross_validation": result.to_dict(),
    }
    atomic_write(result_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
    print(result.table())
    print(f"saved {result_path}")
    return 0
