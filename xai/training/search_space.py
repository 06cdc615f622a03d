"""What a hyper-parameter search searches: the search space (keys, their choices or
ranges, sub-spaces) and the trial configurations it gives, grid or random, seeded
(``xai.training.search`` trains them)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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

__all__ = ["SPACE_KEYS", "trials_of"]

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
