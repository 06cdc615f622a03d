"""Hyper-parameter search over GAPCNN and MLP configurations and training options: grid or
random, each trial trained with early stopping, resumable from its own JSON-lines file."""

from __future__ import annotations

import hashlib
import itertools
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

from xai.core.errors import XAIError, XAIValueError
from xai.core.validate import (
    Boolean,
    Constraint,
    Integer,
    Interval,
    Literal,
    NoneValue,
    Real,
    check,
    check_each,
)

__all__ = ["SPACE_KEYS", "SearchResult", "Trial", "check_search", "search", "trials_of"]

#: What each key of a search space takes: its entries' constraints and what it applies to
#: (an architecture's argument, a ``fit`` option, or the trial's label).
_ENTRY: dict[str, Sequence[Constraint]] = {
    "model": [Literal("gapcnn", "mlp")],
    "name": [Literal()],  # any string: checked apart
    "channels": [Integer(1)],  # a list of ints per entry
    "hidden": [Integer(1)],  # a list of ints per entry (may be empty)
    "kernel_size": [Integer(1)],
    "convs_per_block": [Integer(1)],
    "pool_blocks": [Integer(0), NoneValue()],
    "batch_norm": [Boolean()],
    "dropout": [Interval(0.0, 1.0, high_open=True)],
    "lr": [Real(0.0, low_open=True)],
    "batch_size": [Integer(1)],
    "optimizer": [Literal("adam", "sgd")],
    "weight_decay": [Real(0.0)],
    "epochs": [Integer(1)],
    "patience": [Integer(0)],
    "schedule": [Literal("constant", "onecycle")],
    "flip": [Boolean()],
}
_MODEL_ARGS = {
    "gapcnn": (
        "channels",
        "kernel_size",
        "convs_per_block",
        "pool_blocks",
        "batch_norm",
        "dropout",
    ),
    "mlp": ("hidden", "dropout"),
}
_FIT_ARGS: tuple[str, ...] = (
    "lr",
    "batch_size",
    "optimizer",
    "weight_decay",
    "epochs",
    "patience",
    "schedule",
    "flip",
)
_LISTS = ("channels", "hidden")
_DRAWN = ("lr", "dropout", "weight_decay")  # the keys a random search may draw from a range
_DISTRIBUTIONS = ("log_uniform", "uniform")

#: The keys a search space may have.
SPACE_KEYS: tuple[str, ...] = tuple(_ENTRY)

_FORMAT = "xai-search/1"
_EXAMPLE = '{"model": ["gapcnn"], "channels": [[10, 20, 40], [20, 40]], "lr": [0.001, 0.003]}'


def _bad(message: str) -> XAIValueError:
    return XAIValueError(f"search: {message}")


def _entry(key: str, value: Any, where: str) -> Any:
    """One choice of ``key``, checked and normalised (lists become lists of ints)."""
    try:
        if key == "name":
            if not isinstance(value, str) or not value:
                raise _bad(f"{where} must be a non-empty string (a label); got {value!r}")
            return value
        if key in _LISTS:
            if isinstance(value, int | float) and not isinstance(value, bool):
                raise _bad(
                    f"{where} must be a list of layer widths, such as [10, 20, 40]; got "
                    f"{value!r} (each choice of {key!r} is a list: write "
                    f"[[10, 20, 40]] for one choice)"
                )
            widths = list(check_each(value, _ENTRY[key], where, "search"))
            if key == "channels" and not widths:
                raise _bad(f"{where} must hold at least one width; got []")
            return widths
        if key == "kernel_size" and isinstance(value, int) and value > 0 and value % 2 == 0:
            raise _bad(f"{where} must be a positive odd int (3, 5, 7); got {value}")
        return check(value, _ENTRY[key], where, "search")
    except XAIError as error:  # a type error too: a bad space is one kind of error
        if isinstance(error, XAIValueError):
            raise
        raise XAIValueError(str(error)) from None


def _distribution(key: str, value: Mapping[str, Any], where: str, strategy: str) -> dict:
    if strategy != "random":
        raise _bad(
            f"{where} is a range {dict(value)!r}; a grid search needs a list of choices "
            f"(ranges are drawn from by strategy='random' only)"
        )
    if key not in _DRAWN:
        raise _bad(
            f"{where}: only {', '.join(_DRAWN)} may be drawn from a range; give {key!r} "
            f"as a list of choices"
        )
    if len(value) != 1 or next(iter(value)) not in _DISTRIBUTIONS:
        raise _bad(
            f"{where} must be a list of choices or one of "
            f'{{"log_uniform": [low, high]}}, {{"uniform": [low, high]}}; got {dict(value)!r}'
        )
    kind, bounds = next(iter(value.items()))
    if (
        not isinstance(bounds, list | tuple)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    ):
        raise _bad(f"{where}[{kind!r}] must be [low, high], two numbers; got {bounds!r}")
    low, high = (float(b) for b in bounds)
    for b in (low, high):
        _entry(key, b, f"{where}[{kind!r}] bound")
    if not low < high or (kind == "log_uniform" and low <= 0):
        raise _bad(
            f"{where}[{kind!r}] must have low < high (and low > 0 for log_uniform); got "
            f"{[low, high]}"
        )
    return {kind: [low, high]}


def _normalise(space: Any, strategy: str) -> list[dict[str, Any]]:
    """The space as a list of sub-spaces, every key known and every entry checked."""
    if strategy not in ("grid", "random"):
        raise XAIValueError(f"strategy must be 'grid' or 'random'; got {strategy!r}")
    subspaces = [space] if isinstance(space, Mapping) else space
    if not isinstance(subspaces, list | tuple) or not subspaces:
        raise _bad(
            f"expected a mapping of key -> list of choices (or a non-empty list of such "
            f"mappings), such as {_EXAMPLE}; got {type(space).__name__} {space!r}"[:400]
        )
    normalised = []
    for s, sub in enumerate(subspaces):
        prefix = f"[{s}]" if len(subspaces) > 1 else ""
        if not isinstance(sub, Mapping):
            raise _bad(f"space{prefix} must be a mapping of key -> list of choices; got {sub!r}")
        out: dict[str, Any] = {}
        for key, values in sub.items():
            where = f"space{prefix}[{key!r}]"
            if key not in _ENTRY:
                raise _bad(
                    f"unknown key {key!r} in space{prefix}; known keys: {', '.join(SPACE_KEYS)}"
                )
            if isinstance(values, Mapping):
                out[key] = _distribution(key, values, where, strategy)
                continue
            if not isinstance(values, list | tuple):
                raise _bad(
                    f"{where} must be a list of choices, such as [{values!r}] for one; got "
                    f"{type(values).__name__} {values!r}"
                )
            if not values:
                raise _bad(f"{where} is an empty list; give at least one choice (or drop it)")
            out[key] = [_entry(key, v, f"{where}[{i}]") for i, v in enumerate(values)]
        out.setdefault("model", ["gapcnn"])
        models = out["model"]
        for key in out:
            applies = key in ("model", "name", *_FIT_ARGS) or any(
                key in _MODEL_ARGS[m] for m in models
            )
            if not applies:
                raise _bad(
                    f"space{prefix}[{key!r}] is an argument of none of its models "
                    f"({', '.join(models)}); it applies to "
                    f"{', '.join(m for m, a in _MODEL_ARGS.items() if key in a)}"
                )
        normalised.append(out)
    return normalised


def _config(choice: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's configuration: the keys its model takes, in a fixed order."""
    model = choice["model"]
    keep = ("name", "model", *_MODEL_ARGS[model], *_FIT_ARGS)
    return {k: choice[k] for k in keep if k in choice}


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def _grid(subspaces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    trials, seen = [], set()
    for sub in subspaces:
        keys = list(sub)
        for values in itertools.product(*(sub[k] for k in keys)):
            config = _config(dict(zip(keys, values, strict=True)))
            if _key(config) not in seen:
                seen.add(_key(config))
                trials.append(config)
    return trials


def _draw(value: Any, rng: np.random.Generator) -> Any:
    if isinstance(value, dict):
        ((kind, (low, high)),) = value.items()
        if kind == "log_uniform":
            drawn = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            drawn = rng.uniform(low, high)
        return float(f"{min(max(drawn, low), high):.4g}")
    return value[int(rng.integers(len(value)))]


def trials_of(
    space: Any, strategy: str = "grid", trials: int | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """The trial configurations a search runs, in order, without training anything.

    ``space`` is a mapping of key -> list of choices, or a list of such mappings
    (sub-spaces, searched one after the other: e.g. one per architecture). Keys:
    ``model`` (``"gapcnn"``, the default, or ``"mlp"``); the architectures' arguments
    ``channels`` (a list of widths per choice: its length is the number of blocks),
    ``kernel_size``, ``convs_per_block``, ``pool_blocks``, ``batch_norm``, ``dropout``
    (GAPCNN) and ``hidden``, ``dropout`` (MLP); ``fit``'s options ``lr``, ``batch_size``,
    ``optimizer`` (``adam``/``sgd``), ``weight_decay``, ``epochs``, ``patience``,
    ``schedule``, ``flip``; and ``name``, a label. A key that a trial's model does not
    take is left out of that trial, and repeated trials are run once.

    ``strategy="grid"``: every combination, in order (the first ``trials`` if given).
    ``strategy="random"``: ``trials`` seeded draws. With only lists of choices they are
    drawn from the grid without repeats (at most its size); ``lr``, ``dropout`` and
    ``weight_decay`` may instead be ranges, ``{"log_uniform": [1e-4, 1e-2]}`` or
    ``{"uniform": [0.0, 0.5]}`` (drawn values rounded to 4 significant digits), each
    trial then picking a sub-space and every key independently (Bergstra & Bengio, JMLR
    2012). The same seed gives the same trials, and more trials extend the same list.
    """
    subspaces = _normalise(space, strategy)
    if trials is not None:
        trials = int(check(trials, [Integer(1)], "trials", "search"))
    if strategy == "grid":
        grid = _grid(subspaces)
        return grid if trials is None else grid[:trials]
    if trials is None:
        raise XAIValueError("search: strategy='random' needs trials, the number of draws")
    seed = int(check(seed, [Integer(0)], "seed", "search"))
    rng = np.random.default_rng(seed)
    ranged = any(isinstance(v, dict) for sub in subspaces for v in sub.values())
    if not ranged:
        grid = _grid(subspaces)
        return [grid[int(i)] for i in rng.permutation(len(grid))[:trials]]
    drawn: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(drawn) < trials and attempts < 100 * trials:
        attempts += 1
        sub = subspaces[int(rng.integers(len(subspaces)))]
        config = _config({k: _draw(v, rng) for k, v in sub.items()})
        if _key(config) not in seen:
            seen.add(_key(config))
            drawn.append(config)
    return drawn


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
