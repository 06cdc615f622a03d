"""Train the embedded Fashion-MNIST model and write its weights, model card and samples.

    python scripts/train_pretrained.py [--data DIR] [--epochs 15] [--seed 0]
                                       [--out xai/models/weights]

Seeded and reproducible on one machine and torch build (floating-point summation order
may differ on others). It writes, in ``--out``:

* ``fashion-mnist-gapcnn.pt``: the ``state_dict`` (loaded with ``weights_only=True``);
* ``fashion-mnist-gapcnn.json``: the model card: architecture, data, command, seed,
  training time and history, test accuracy and per-class accuracy on the full 10,000-image
  test set, and how much of the CAM's mass falls on the garment;
* ``samples/<class>.png``: for each class, the first test image the model gets right.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import xai
from xai.core.ood import input_statistics
from xai.data import splits as make_splits
from xai.training import evaluate, fit

NAME = "fashion-mnist-gapcnn"


def cam_mass_on_item(model: torch.nn.Module, images: torch.Tensor, threshold: float) -> dict:
    """The share of each CAM's mass on the item's pixels (intensity > threshold).

    CAM for the predicted class, resized to 28 x 28 (``Explanation.maps``). Reported: the
    mean share, the fraction of images where it is over one half, and for comparison the
    mean share of the image the item covers (what a uniform map would score).
    """
    shares, areas = [], []
    explainer = xai.CAM(model)
    for start in range(0, len(images), 500):
        x = images[start : start + 500]
        maps = explainer(x).maps.double()
        item = (x[:, 0] > threshold).double()
        total = maps.sum(dim=(1, 2)).clamp_min(1e-12)
        shares.append(((maps * item).sum(dim=(1, 2)) / total).numpy())
        areas.append(item.mean(dim=(1, 2)).numpy())
    share, area = np.concatenate(shares), np.concatenate(areas)
    return {
        "definition": (
            "sum of Explanation.maps (CAM, predicted class, 28x28) over the item's pixels "
            f"(intensity > {threshold}) / its sum over the image, per test image"
        ),
        "mean_share": round(float(share.mean()), 4),
        "median_share": round(float(np.median(share)), 4),
        "fraction_of_images_over_half": round(float((share > 0.5).mean()), 4),
        "mean_item_area": round(float(area.mean()), 4),
        "images": len(share),
    }


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Fashion-MNIST folder")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("xai/models/weights"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    data = make_splits("fashion-mnist", args.data, val_fraction=1 / 12, seed=args.seed)
    train_images = data.train.images.astype(np.float32) / 255
    mean, std = round(float(train_images.mean()), 4), round(float(train_images.std()), 4)
    config = {
        "in_channels": 1,
        "num_classes": 10,
        "channels": [16, 32, 64],
        "convs_per_block": 2,
        "kernel_size": 3,
        "batch_norm": True,
        "dropout": 0.0,
        "mean": mean,
        "std": std,
        "pool_blocks": 1,
    }  # 14 x 14 maps for CAM
    model = xai.models.build("gapcnn", config)
    options = {
        "epochs": args.epochs,
        "batch_size": 128,
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "schedule": "onecycle",
        "flip": True,
        "patience": 0,
        "seed": args.seed,
    }
    result = fit(model, data.train, data.val, **options)
    print(result.summary())

    test = evaluate(model, data.test)
    print(test.table())
    x_test, y_test = data.test.tensors()
    explanations = cam_mass_on_item(model, x_test, threshold=0.05)
    print("CAM mass on the item:", explanations)

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{NAME}.pt"
    torch.save(model.state_dict(), weights)
    predicted = xai.training.predict(model, x_test)
    samples = []
    (args.out / "samples").mkdir(exist_ok=True)
    import cv2

    for cls, name in enumerate(data.test.class_names):
        index = int(np.flatnonzero((y_test == cls).numpy() & (predicted == cls).numpy())[0])
        file = f"samples/{cls}-{slug(name)}.png"
        if not cv2.imwrite(str(args.out / file), data.test.images[index]):
            raise OSError(f"could not write {args.out / file}")
        samples.append({"class_index": cls, "class_name": name, "file": file, "test_index": index})

    card = {
        "name": "fashion-mnist",
        "summary": "A GAPCNN (three blocks of two 3x3 convolutions, one 2x2 max pooling so "
        "the last maps are 14x14, global average pooling, one linear layer) "
        "trained on Fashion-MNIST; takes 1x28x28 images scaled to [0, 1].",
        "architecture": {"name": "gapcnn", "config": config},
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "class_names": list(data.test.class_names),
        "input_size": [1, 28, 28],
        # what `xai explain` compares an input with (xai.core.ood): all 60,000 images
        "input_statistics": input_statistics(
            xai.data.load("fashion-mnist", args.data, split="train").images
        ),
        "input_scale": "pixels / 255, in [0, 1]; normalisation (mean, std) is inside the model",
        "data": {
            "name": "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017)",
            "source": "Debian package dataset-fashion-mnist, /usr/share/datasets/fashion-mnist",
            "train": len(data.train),
            "validation": len(data.val),
            "test": len(data.test),
            "split": f"stratified, seed {args.seed}: 1/12 of the 60,000 training images "
            "for validation; the official 10,000-image test set for testing",
        },
        "training": {
            **options,
            "optimizer": "Adam, cross-entropy",
            "augmentation": "random horizontal flips",
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch + 1,
            "best_val_accuracy": round(result.best_val_accuracy, 4),
            "seconds": round(result.seconds, 1),
            "history": [
                {
                    "epoch": r.epoch + 1,
                    "train_loss": round(r.train_loss, 4),
                    "train_accuracy": round(r.train_accuracy, 4),
                    "val_loss": round(r.val_loss, 4),
                    "val_accuracy": round(r.val_accuracy, 4),
                    "seconds": round(r.seconds, 1),
                }
                for r in result.history
            ],
        },
        "test_accuracy": round(test.accuracy, 4),
        "per_class_accuracy": {k: round(v, 4) for k, v in test.per_class_accuracy().items()},
        "macro_f1": round(test.macro_f1, 4),
        "cam_mass_on_item": explanations,
        "samples": samples,
        "seed": args.seed,
        "command": " ".join(["python", *map(shlex.quote, sys.argv)]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, python {platform.python_version()}",
        "created": time.strftime("%Y-%m-%d"),
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {weights}, {args.out / f'{NAME}.json'} and {len(samples)} samples")


if __name__ == "__main__":
    main()
