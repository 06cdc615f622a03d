"""``xai search``: a hyper-parameter search over GAPCNN/MLP configurations, from a JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xai._files import check_writable_file
from xai.cli._common import HelpFormatter, add_device_option
from xai.core.errors import XAIValueError

__all__ = ["add_parser", "load_config", "run"]

HELP = """examples:
  xai search space.json --out results.jsonl
  xai search space.json --out results.jsonl --plot search.png --data ~/data/fashion

space.json, for instance (a grid of 2 x 2 GAPCNN trials, then an MLP):
  {"dataset": "fashion-mnist", "fraction": 0.1, "strategy": "grid", "seed": 0,
   "training": {"epochs": 10, "patience": 3},
   "space": [{"model": ["gapcnn"], "channels": [[10, 20, 40], [20, 20]],
              "lr": [0.001, 0.003]},
             {"model": ["mlp"], "hidden": [[256, 128]]}]}

Keys: space (required: key -> list of choices, or a list of such mappings), strategy
(grid or random), trials (random: required), seed, dataset, fraction, val_fraction,
training (fit options for every trial). Space keys: model, name, channels, kernel_size,
convs_per_block, pool_blocks, batch_norm, dropout, hidden, lr, batch_size, optimizer
(adam or sgd), weight_decay, epochs, patience, schedule, flip; a random search may draw
lr, dropout and weight_decay from {"log_uniform": [low, high]} or {"uniform": [...]}.

Each finished trial is appended to OUT (JSON lines) as it ends: run the same command
again and the trials already there are read back, not trained. OUT from another search
(another space, strategy, seed, training or data) is refused.
"""

#: The config file's keys: what each must be, its default, and an example.
_KEYS: dict[str, tuple[str, Any, str]] = {
    "space": ("a mapping of key -> list of choices, or a list of them", None, '{"lr": [0.001]}'),
    "strategy": ("'grid' or 'random'", "grid", '"grid"'),
    "trials": ("a positive int (the number of trials)", None, "8"),
    "seed": ("an int >= 0", 0, "0"),
    "dataset": ("'fashion-mnist', 'mnist' or 'kmnist'", "fashion-mnist", '"fashion-mnist"'),
    "fraction": ("a number in (0, 1]", 1.0, "0.1"),
    "val_fraction": ("a number in (0, 1)", 0.1, "0.1"),
    "training": ("a mapping of fit option -> value", {}, '{"epochs": 10, "patience": 3}'),
}
_TYPES: dict[str, tuple[type, ...]] = {
    "space": (dict, list),
    "strategy": (str,),
    "trials": (int,),
    "seed": (int,),
    "dataset": (str,),
    "fraction": (int, float),
    "val_fraction": (int, float),
    "training": (dict,),
}


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "search",
        help="hyper-parameter search (grid or random) over GAPCNN/MLP, resumable",
        description="Train every trial of a search space on MNIST-family data with early "
        "stopping on a validation split; print the trials ranked by validation accuracy, "
        "with their test accuracy.",
        epilog=HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("config", type=Path, metavar="CONFIG.json", help="the search: a JSON file")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RESULTS.jsonl",
        help="the results file, one JSON line per trial (read back to resume)",
    )
    p.add_argument("--data", type=Path, help="folder of the data set's files (default: found)")
    p.add_argument("--plot", type=Path, metavar="PNG", help="also draw the trials to this PNG")
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    add_device_option(p)


def load_config(path: Path) -> dict[str, Any]:
    """The config file, every key known and of its type, with the defaults filled in;
    ``XAIValueError`` naming the key, what it must be and an example otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise XAIValueError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise XAIValueError(f"{path}: not a text file; write the search as JSON") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise XAIValueError(
            f"{path}: not valid JSON ({error.msg}, line {error.lineno} column {error.colno})"
        ) from None
    if not isinstance(config, dict):
        raise XAIValueError(
            f'{path}: expected a JSON object such as {{"space": {{"lr": [0.001, 0.003]}}}}; '
            f"got {type(config).__name__}"
        )
    unknown = [key for key in config if key not in _KEYS]
    if unknown:
        raise XAIValueError(
            f"{path}: unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)} (see xai "
            f"search --help)"
        )
    if "space" not in config:
        raise XAIValueError(
            f'{path}: the key "space" is missing; add the search space, e.g. '
            f'"space": {{"model": ["gapcnn"], "lr": [0.001, 0.003]}}'
        )
    out: dict[str, Any] = {}
    for key, (expected, default, example) in _KEYS.items():
        value = config.get(key, default)
        if value is None and key == "trials":
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, _TYPES[key]):
            raise XAIValueError(
                f"{path}: {key!r} must be {expected}, such as {example}; got "
                f"{type(value).__name__} {json.dumps(value)[:60]}"
            )
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = check_writable_file(args.out, "--out", example="results.jsonl")
    if args.plot is not None:
        check_writable_file(args.plot, "--plot", example="search.png")
    from xai.training.search import check_search

    try:  # the space and options, checked before any data is read
        configs = check_search(
            config["space"],
            config["strategy"],
            config["trials"],
            config["seed"],
            config["training"],
        )
    except XAIValueError as error:
        raise XAIValueError(f"{args.config}: {error}") from None
    from xai.cli._common import resolve_device

    device = resolve_device(args.device)

    from xai.data import splits
    from xai.training import search

    data = splits(
        config["dataset"],
        args.data,
        fraction=config["fraction"],
        val_fraction=config["val_fraction"],
        seed=config["seed"],
    )
    print(
        f"{len(configs)} trials ({config['strategy']}); {config['dataset']}: "
        f"{len(data.train):,} train, {len(data.val):,} validation, {len(data.test):,} test "
        f"images; on {device}; results in {out}"
    )
    result = search(
        config["space"],
        data,
        config["strategy"],
        config["trials"],
        seed=config["seed"],
        results=out,
        device=device,
        log=None if args.quiet else print,
        **config["training"],
    )
    print()
    print(result.table())
    print(f"\nbest (validation accuracy): {result.best.label}: {result.best.describe()}")
    if args.plot is not None:
        from xai.viz.grids import save_figure
        from xai.viz.training import plot_search

        print(f"wrote {save_figure(plot_search(result), args.plot)}")
    return 0
