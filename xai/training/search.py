"""Hyper-parameter search over GAPCNN and MLP configurations and training options: grid or
random, each trial trained with early stopping, resumable from its own JSON-lines file."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.validate import Integer, check
from xai.training.search_space import (
    _FIT_ARGS,
    _MODEL_ARGS,
    SPACE_KEYS,
    _entry,
    _key,
    _normalise,
    trials_of,
)

__all__ = ["SPACE_KEYS", "SearchResult", "Trial", "check_search", "search", "trials_of"]

_FORMAT = "xai-search/1"


@dataclass(frozen=True)
class Trial:
    """One trained configuration. ``best_epoch`` counts from 1; ``resumed``: read back
    from the results file, not trained in this run."""

    index: int
    config: dict[str, Any]
    parameters: int
    best_epoch: int
    epochs_run: int
    val_accuracy: float
    test_accuracy: float
    seconds: float
    resumed: bool = field(default=False, compare=False)

    @property
    def label(self) -> str:
        """The trial's ``name``, else its number in the search (``#3``)."""
        return str(self.config.get("name") or f"#{self.index + 1}")

    def describe(self) -> str:
        """``gapcnn channels=10/20/40 kernel_size=3 lr=0.001``: the configuration."""
        parts = [str(self.config["model"])]
        for key, value in self.config.items():
            if key in ("model", "name"):
                continue
            shown = "/".join(str(v) for v in value) if isinstance(value, list) else value
            parts.append(f"{key}={shown if shown != '' else '-'}")
        return " ".join(parts)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The trials of a search, best first: highest validation accuracy (the selection
    criterion; the test accuracy is reported, never used to choose), then higher test
    accuracy, then fewer parameters."""

    trials: list[Trial]
    strategy: str
    seed: int
    path: Path | None = None

    @property
    def best(self) -> Trial:
        return self.trials[0]

    def table(self) -> str:
        """A markdown table: rank, name, configuration, parameters, best epoch, epochs
        run, validation and test accuracy, training seconds."""
        lines = [
            "| rank | name | configuration | parameters | best epoch | epochs | "
            "val accuracy | test accuracy | s |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for rank, t in enumerate(self.trials, 1):
            lines.append(
                f"| {rank} | {t.label} | {t.describe()} | {t.parameters:,} | {t.best_epoch} "
                f"| {t.epochs_run} | {t.val_accuracy:.4f} | {t.test_accuracy:.4f} "
                f"| {t.seconds:.1f} |"
            )
        return "\n".join(lines)


def _sorted(trials: list[Trial]) -> list[Trial]:
    return sorted(trials, key=lambda t: (-t.val_accuracy, -t.test_accuracy, t.parameters))


def _fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _read(path: Path, header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The finished trials of an existing results file (by configuration), after checking
    that it is the same search; an interrupted last line is cut off."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):  # the write of a trial was interrupted: drop it
        raw = raw[: raw.rfind(b"\n") + 1]
        with open(path, "r+b") as handle:
            handle.truncate(len(raw))
    lines = raw.decode("utf-8", errors="replace").splitlines()
    fix = "use another results file, or delete this one to start again"
    try:
        found = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        found = {}
    if not isinstance(found, dict) or found.get("format") != _FORMAT:
        raise XAIValueError(f"{path} is not an xai search results file ({_FORMAT}); {fix}")
    for what in ("space", "strategy", "seed", "settings", "data"):
        if found.get(what) != header[what]:
            raise XAIValueError(
                f"{path} holds a search with a different {what} (file: "
                f"{json.dumps(found.get(what))[:120]}; now: {json.dumps(header[what])[:120]}); "
                f"its trials would not compare: {fix}"
            )
    done = {}
    for number, line in enumerate(lines[1:], 2):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise XAIValueError(f"{path}, line {number}: not JSON; {fix}") from None
        done[_key(row["config"])] = row
    return done


def _build(
    config: Mapping[str, Any], shape: Sequence[int], classes: int, mean: float, std: float
) -> nn.Module:
    from xai.models import build

    arguments = {k: config[k] for k in _MODEL_ARGS[config["model"]] if k in config}
    common = {"num_classes": classes, "mean": mean, "std": std}
    if config["model"] == "gapcnn":
        return build("gapcnn", {"in_channels": int(shape[0]), **common, **arguments})
    return build("mlp", {"in_features": int(np.prod(shape)), **common, **arguments})


def _prepare(
    space: Any, strategy: str, trials: int | None, seed: int, training: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The trials, the normalised space and the checked fixed options: every check that
    needs no data, so that a bad search fails before any data is loaded."""
    check(seed, [Integer(0)], "seed", "search")
    configs = trials_of(space, strategy, trials, seed)
    subspaces = _normalise(space, strategy)
    if "seed" in training:
        raise XAIValueError("search: give seed once, as its own argument")
    unknown = sorted(set(training) - set(_FIT_ARGS))
    if unknown:
        raise XAIValueError(
            f"search: unknown training option(s) {', '.join(unknown)}; the options that "
            f"apply to every trial are {', '.join(_FIT_ARGS)}"
        )
    clash = sorted(set(training) & {k for sub in subspaces for k in sub})
    if clash:
        raise XAIValueError(
            f"search: {', '.join(clash)} given both in the space and as a fixed training "
            f"option; give each once"
        )
    checked = {key: _entry(key, value, f"training[{key!r}]") for key, value in training.items()}
    return configs, subspaces, checked


def check_search(
    space: Any,
    strategy: str = "grid",
    trials: int | None = None,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Check a search's space and options without data (as ``search`` does first) and
    return its trials; raises ``XAIValueError`` naming the bad key and the fix."""
    return _prepare(space, strategy, trials, seed, training or {})[0]


def search(
    space: Any,
    data: Any,
    strategy: str = "grid",
    trials: int | None = None,
    *,
    seed: int = 0,
    results: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    log: Any = None,
    **training: Any,
) -> SearchResult:
    """Train every trial of a hyper-parameter search and rank them by validation accuracy.

    Each trial builds its model (``GAPCNN`` or ``MLP`` for the data's image size and
    classes, normalised in-model with the training images' mean and standard deviation,
    initialised after ``torch.manual_seed(seed)``), trains it with ``xai.training.fit``
    on ``data.train`` with early stopping on ``data.val`` (the weights of the best epoch
    restored), and scores it on ``data.val`` and ``data.test``.

    Args:
        space: the search space, see ``trials_of`` (keys, choices, ranges).
        data: an ``xai.data.Splits`` (train, val, test).
        strategy: ``"grid"`` or ``"random"``.
        trials: the number of trials (random: required; grid: the first ``trials``).
        seed: seeds the random draws, the models' initialisation and ``fit``.
        results: a JSON-lines file: a header (the space, strategy, seed, settings and a
            fingerprint of the data), then one line per finished trial, written as it
            finishes. Run again with the same file, trials already in it are read back,
            not trained (an interrupted run resumes); a file from a different search is
            refused with an ``XAIValueError``.
        device: where to train.
        progress: ``fit``'s progress bars.
        log: called with one line of text per trial (e.g. ``print``); default silent.
        **training: ``fit`` options for every trial (``epochs``, ``patience``...) that
            the space does not vary.
    """
    from xai.training.evaluate import evaluate
    from xai.training.fit import _tensors, fit

    configs, subspaces, training = _prepare(space, strategy, trials, seed, training)
    x, y = _tensors(data.train, "data.train")
    xv, yv = _tensors(data.val, "data.val")
    test = getattr(data, "test", None)
    classes = len(getattr(data.train, "class_names", ())) or int(y.max()) + 1
    mean, std = round(float(x.mean()), 4), round(float(x.std()), 4)
    header = {
        "format": _FORMAT,
        "space": subspaces,
        "strategy": strategy,
        "seed": seed,
        "settings": dict(sorted(training.items())),
        "data": {
            "train": len(x),
            "val": len(xv),
            "test": len(test) if test is not None else 0,
            "sha1": _fingerprint(x, y),
        },
    }
    path = Path(results) if results is not None else None
    done = _read(path, header) if path is not None else {}
    if path is not None and not done and (not path.is_file() or path.stat().st_size == 0):
        path.write_text(json.dumps(header) + "\n")
    finished: list[Trial] = []
    for index, config in enumerate(configs):
        row = done.get(_key(config))
        if row is not None:
            finished.append(Trial(**{**row, "index": index, "resumed": True}))
            if log is not None:
                log(f"trial {index + 1}/{len(configs)} {finished[-1].label}: read back")
            continue
        torch.manual_seed(seed)
        model: nn.Module = _build(config, x.shape[1:], classes, mean, std).to(device)
        options = {**training, **{k: config[k] for k in _FIT_ARGS if k in config}}
        run = fit(model, (x, y), (xv, yv), seed=seed, progress=progress, **options)
        test_accuracy = evaluate(model, test).accuracy if test is not None else math.nan
        trial = Trial(
            index=index,
            config=config,
            parameters=sum(p.numel() for p in model.parameters()),
            best_epoch=run.best_epoch + 1,
            epochs_run=run.epochs_run,
            val_accuracy=run.best_val_accuracy,
            test_accuracy=test_accuracy,
            seconds=round(run.seconds, 2),
        )
        finished.append(trial)
        if path is not None:
            row = {k: v for k, v in asdict(trial).items() if k not in ("index", "resumed")}
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        if log is not None:
            log(
                f"trial {index + 1}/{len(configs)} {trial.label} ({trial.describe()}): val "
                f"{trial.val_accuracy:.4f}, test {trial.test_accuracy:.4f}, {trial.seconds:.1f} s"
            )
    return SearchResult(_sorted(finished), strategy, seed, path)
