"""One error family: every option refuses a bad value the same way, and the command line
turns only xai's own refusals into one line.

* A value of the right type out of range (0 or a negative count) is an ``XAIValueError``;
  a value of the wrong type (a float or a bool where an int is expected) is an
  ``XAITypeError``. Both name the function or class and the option.
* ``xai`` prints ``xai: error: ...`` and exits 2 for an ``XAIError``; any other exception
  is a bug and keeps its traceback.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import xai
import xai.cli
import xai.core.errors
from xai import data
from xai.core.errors import XAIError, XAITypeError, XAIValueError
from xai.metrics import average_drop, cascading_randomization, deletion, insertion, pointing_game
from xai.models import GAPCNN, MLP
from xai.shapley import (
    FunctionGame,
    ModelGame,
    TableGame,
    exact_shapley,
    kernel_shap,
    permutation_shapley,
)
from xai.shapley.image_game import ImagePatchGame
from xai.training import evaluate, fit, predict

V, T = XAIValueError, XAITypeError

# Bad values by the kind of option, each with the error it must raise.
POSITIVE_INT = [(0, V), (-1, V), (2.5, T), (True, T)]
NON_NEGATIVE_INT = [(-1, V), (1.5, T), (True, T)]
BOOL = [(1, T), ("yes", T)]
POSITIVE_REAL = [(0, V), (-1.0, V), (float("nan"), V), (True, T), ("1", T)]
NON_NEGATIVE_REAL = [(-1.0, V), (float("inf"), V), (True, T), ("1", T)]
UNIT_CLOSED = [(-0.1, V), (1.5, V), (float("nan"), V), (True, T), ("0.5", T)]  # [0, 1]
UNIT_LEFT_OPEN = [(0, V), (-0.1, V), (1.5, V), (True, T), ("0.5", T)]  # (0, 1]
UNIT_OPEN = [(0, V), (1, V), (True, T), ("0.5", T)]  # (0, 1)
UNIT_RIGHT_OPEN = [(-0.1, V), (1.0, V), (True, T), ("0.5", T)]  # [0, 1)
ANY_INT = [(1.5, T), (True, T), ("0", T)]
DIGITS = [(-1, V), (13, V), (2.5, T), (True, T)]


HOUSING = {(): 20, (0,): 23, (1,): 24, (2,): 25, (0, 1): 24, (0, 2): 26, (1, 2): 28, (0, 1, 2): 30}


def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _curve_args() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return _linear_model(), torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4)


def _fit(**options: Any) -> Any:
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    model = MLP(in_features=16, num_classes=3, hidden=())
    return fit(model, (x, y), (x, y), **options)


def _labels() -> np.ndarray:
    return np.repeat(np.arange(3), 10)


def _paste(**options: Any) -> Any:
    return data.paste(np.zeros((2, 4, 4)), [0, 1], **options)


def _load_canvas(**options: Any) -> Any:
    return data.load_canvas("fashion-mnist", "test", **options)


def _image_game(**options: Any) -> Any:
    target = options.pop("target", 0)
    return ImagePatchGame(_linear_model(), torch.rand(1, 8, 8), target, **options)


def _model_game(**options: Any) -> Any:
    return ModelGame(lambda rows: rows.sum(1), np.ones(3), np.zeros(3), **options)


def _figure() -> Any:
    from xai.viz._mpl import pyplot

    return pyplot().figure()


def _save_figure(tmp: Path, **options: Any) -> Any:
    from xai.viz.grids import save_figure

    return save_figure(_figure(), tmp / "f.png", **options)


def _overlay(**options: Any) -> Any:
    from xai.viz.overlay import overlay

    return overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), **options)


def _method_grid(**options: Any) -> Any:
    from xai.viz.grids import method_grid

    return method_grid(np.zeros((4, 4, 3), np.uint8), {"cam": np.zeros((4, 4))}, **options)


def _class_grid(**options: Any) -> Any:
    from xai.viz.grids import class_grid

    return class_grid(_linear_model(), torch.rand(2, 1, 4, 4), [0, 1], **options)


def _waterfall(**options: Any) -> Any:
    from xai.viz.shapley import waterfall

    return waterfall(exact_shapley(HOUSING), **options)


def _bar(**options: Any) -> Any:
    from xai.viz.shapley import bar

    return bar(exact_shapley(HOUSING), **options)


def _to_input(**options: Any) -> Any:
    from xai.images import to_input

    channels = options.pop("channels", 1)
    return to_input(np.zeros((4, 4), np.uint8), channels, **options)


def _read_image(**options: Any) -> Any:
    from xai.images import read_image

    return read_image("no-such-file.png", **options)


def _model_card_size(value: Any) -> Any:
    from xai.models.loading import _size

    return _size(value)


Call = Callable[..., Any]

# (where the error says it happened, the option as the error names it, a call that takes
# the option's value as its one keyword argument, the bad values with their errors).
CASES: list[tuple[str, str, Call, list[tuple[Any, type[XAIError]]]]] = [
    # metrics
    ("deletion", "steps", lambda **o: deletion(*_curve_args(), **o), POSITIVE_INT),
    ("deletion", "batch_size", lambda **o: deletion(*_curve_args(), **o), POSITIVE_INT),
    ("deletion", "softmax", lambda **o: deletion(*_curve_args(), **o), BOOL),
    ("insertion", "steps", lambda **o: insertion(*_curve_args(), **o), POSITIVE_INT),
    ("insertion", "batch_size", lambda **o: insertion(*_curve_args(), **o), POSITIVE_INT),
    ("insertion", "blur_sigma", lambda **o: insertion(*_curve_args(), **o), POSITIVE_REAL),
    ("average_drop", "batch_size", lambda **o: average_drop(*_curve_args(), **o), POSITIVE_INT),
    (
        "pointing_game",
        "tolerance",
        lambda **o: pointing_game(torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=bool), **o),
        NON_NEGATIVE_REAL,
    ),
    (
        "cascading_randomization",
        "seed",
        lambda **o: cascading_randomization(_linear_model(), torch.rand(1, 1, 4, 4), **o),
        NON_NEGATIVE_INT,
    ),
    # Shapley values
    (
        "permutation_shapley",
        "n_permutations",
        lambda **o: permutation_shapley(HOUSING, **o),
        POSITIVE_INT,
    ),
    (
        "permutation_shapley",
        "batch_permutations",
        lambda **o: permutation_shapley(HOUSING, **o),
        POSITIVE_INT,
    ),
    (
        "permutation_shapley",
        "n_features",
        lambda **o: permutation_shapley(HOUSING, **o),
        POSITIVE_INT,
    ),
    (
        "permutation_shapley",
        "seed",
        lambda **o: permutation_shapley(HOUSING, **o),
        NON_NEGATIVE_INT,
    ),
    ("permutation_shapley", "antithetic", lambda **o: permutation_shapley(HOUSING, **o), BOOL),
    ("kernel_shap", "n_samples", lambda **o: kernel_shap(HOUSING, **o), POSITIVE_INT),
    ("kernel_shap", "n_bootstrap", lambda **o: kernel_shap(HOUSING, **o), NON_NEGATIVE_INT),
    ("kernel_shap", "n_features", lambda **o: kernel_shap(HOUSING, **o), POSITIVE_INT),
    ("kernel_shap", "seed", lambda **o: kernel_shap(HOUSING, **o), NON_NEGATIVE_INT),
    ("kernel_shap", "paired", lambda **o: kernel_shap(HOUSING, **o), BOOL),
    ("exact_shapley", "max_features", lambda **o: exact_shapley(HOUSING, **o), POSITIVE_INT),
    ("exact_shapley", "chunk_size", lambda **o: exact_shapley(HOUSING, **o), POSITIVE_INT),
    ("exact_shapley", "n_features", lambda **o: exact_shapley(HOUSING, **o), POSITIVE_INT),
    ("exact_shapley", "exact", lambda **o: exact_shapley(HOUSING, **o), BOOL),
    ("exact_shapley", "interactions", lambda **o: exact_shapley(HOUSING, **o), BOOL),
    ("FunctionGame", "n_features", lambda **o: FunctionGame(lambda m: m.sum(1), **o), POSITIVE_INT),
    ("TableGame", "exact", lambda **o: TableGame(HOUSING, **o), BOOL),
    ("ModelGame", "batch_size", _model_game, POSITIVE_INT),
    ("ImagePatchGame", "batch_size", _image_game, POSITIVE_INT),
    ("ImagePatchGame", "softmax", _image_game, BOOL),
    ("ImagePatchGame", "target", _image_game, [(-1, V), (1.5, T), (True, T)]),
    ("ImagePatchGame", "grid[0]", lambda grid: _image_game(grid=(grid, 2)), POSITIVE_INT),
    ("ImagePatchGame", "grid[1]", lambda grid: _image_game(grid=(2, grid)), POSITIVE_INT),
    # training
    ("fit", "epochs", _fit, POSITIVE_INT),
    ("fit", "batch_size", _fit, POSITIVE_INT),
    ("fit", "patience", _fit, NON_NEGATIVE_INT),
    ("fit", "seed", _fit, NON_NEGATIVE_INT),
    ("fit", "lr", _fit, POSITIVE_REAL),
    ("fit", "weight_decay", _fit, NON_NEGATIVE_REAL),
    ("fit", "flip", _fit, BOOL),
    ("fit", "progress", _fit, BOOL),
    (
        "predict",
        "batch_size",
        lambda **o: predict(_linear_model(), torch.rand(2, 1, 4, 4), **o),
        POSITIVE_INT,
    ),
    (
        "evaluate",
        "batch_size",
        lambda **o: evaluate(_linear_model(), (torch.rand(2, 1, 4, 4), [0, 1]), **o),
        POSITIVE_INT,
    ),
    # data
    (
        "stratified_subsample",
        "fraction",
        lambda **o: data.stratified_subsample(_labels(), **o),
        UNIT_LEFT_OPEN,
    ),
    (
        "stratified_subsample",
        "seed",
        lambda **o: data.stratified_subsample(_labels(), 0.5, **o),
        NON_NEGATIVE_INT,
    ),
    (
        "train_val_split",
        "val_fraction",
        lambda **o: data.train_val_split(_labels(), **o),
        UNIT_OPEN,
    ),
    ("train_val_split", "seed", lambda **o: data.train_val_split(_labels(), **o), NON_NEGATIVE_INT),
    ("splits", "fraction", lambda **o: data.splits("mnist", "nowhere", **o), UNIT_LEFT_OPEN),
    ("splits", "val_fraction", lambda **o: data.splits("mnist", "nowhere", **o), UNIT_OPEN),
    ("splits", "seed", lambda **o: data.splits("mnist", "nowhere", **o), NON_NEGATIVE_INT),
    ("paste", "size", _paste, POSITIVE_INT),
    ("paste", "seed", _paste, NON_NEGATIVE_INT),
    ("paste", "threshold", _paste, UNIT_RIGHT_OPEN),
    ("load_canvas", "count", _load_canvas, POSITIVE_INT),
    ("load_canvas", "size", _load_canvas, POSITIVE_INT),
    ("load_canvas", "seed", _load_canvas, NON_NEGATIVE_INT),
    ("load_canvas", "threshold", _load_canvas, UNIT_RIGHT_OPEN),
    # models
    ("GAPCNN", "in_channels", GAPCNN, POSITIVE_INT),
    ("GAPCNN", "num_classes", GAPCNN, POSITIVE_INT),
    ("GAPCNN", "convs_per_block", GAPCNN, POSITIVE_INT),
    ("GAPCNN", "kernel_size", GAPCNN, POSITIVE_INT),
    ("GAPCNN", "pool_blocks", GAPCNN, NON_NEGATIVE_INT),
    ("GAPCNN", "batch_norm", GAPCNN, BOOL),
    ("GAPCNN", "dropout", GAPCNN, UNIT_RIGHT_OPEN),
    ("GAPCNN", "channels[1]", lambda channels: GAPCNN(channels=(8, channels)), POSITIVE_INT),
    ("MLP", "in_features", MLP, POSITIVE_INT),
    ("MLP", "num_classes", MLP, POSITIVE_INT),
    ("MLP", "dropout", MLP, UNIT_RIGHT_OPEN),
    ("MLP", "hidden[0]", lambda hidden: MLP(hidden=(hidden,)), POSITIVE_INT),
    # pictures
    ("overlay", "alpha", _overlay, UNIT_CLOSED),
    ("method_grid", "alpha", _method_grid, UNIT_CLOSED),
    ("class_grid", "alpha", _class_grid, UNIT_CLOSED),
    ("waterfall", "digits", _waterfall, DIGITS),
    ("waterfall", "output", _waterfall, ANY_INT),
    ("bar", "digits", _bar, DIGITS),
    ("bar", "output", _bar, ANY_INT),
    ("ShapleyResult.table", "digits", lambda **o: exact_shapley(HOUSING).table(**o), DIGITS),
    ("save_figure", "dpi", lambda **o: _save_figure(Path("never-written"), **o), POSITIVE_INT),
    ("read_image", "background", _read_image, [(-1, V), (256, V), (1.5, T), (True, T)]),
    ("to_input", "channels", _to_input, POSITIVE_INT),
    ("to_input", "size[0]", lambda size: _to_input(size=(size, 4)), POSITIVE_INT),
    ("to_input", "invert", _to_input, BOOL),
]


def _by_name(call: Call, option: str) -> Call:
    """``call`` taking the option's value as one positional argument."""
    if "[" in option:  # an entry of a sequence option: the call puts it in place
        return call
    return lambda value: call(**{option: value})


def _cases() -> list[Any]:
    params = []
    for where, option, named_call, bad in CASES:
        call = _by_name(named_call, option)
        for value, error in bad:
            params.append(
                pytest.param(where, option, call, value, error, id=f"{where}-{option}={value!r}")
            )
    return params


@pytest.fixture(autouse=True)
def _fake_data_set(monkeypatch):
    """``load_canvas`` reads a split: a small one in memory, so no data set is needed."""
    fake = data.Dataset(
        "fashion-mnist",
        "test",
        np.zeros((20, 4, 4), np.uint8),
        np.repeat(np.arange(2), 10),
        ("a", "b"),
    )
    monkeypatch.setattr("xai.data.canvas.load", lambda *args, **kwargs: fake)


@pytest.mark.parametrize(("where", "option", "call", "value", "error"), _cases())
def test_every_option_refuses_a_bad_value_naming_itself(where, option, call, value, error):
    with pytest.raises(error) as caught:
        call(value)
    message = str(caught.value)
    assert message.startswith(f"{where}: {option} must be "), message
    assert type(caught.value) is error  # exactly: not a subclass, not a plain ValueError
    shown = "the bool True" if value is True else repr(value)
    assert message.endswith(".") and (shown in message or str(value) in message), message


def test_every_option_still_takes_a_good_value(tmp_path):
    """The constraints refuse the bad values only: the defaults' neighbours pass."""
    model, x, maps = _curve_args()
    assert len(deletion(model, x, maps, steps=2, batch_size=1, softmax=False)) == 2
    assert len(insertion(model, x, maps, steps=np.int64(2), blur_sigma=1)) == 2
    assert permutation_shapley(HOUSING, 2, batch_permutations=1, seed=0).values.shape == (3,)
    assert kernel_shap(HOUSING, 8, n_bootstrap=0, seed=0).values.shape == (3,)
    assert exact_shapley(HOUSING, chunk_size=1).values.tolist() == pytest.approx(
        [11 / 6, 10 / 3, 29 / 6]
    )
    game = _image_game(grid=(np.int64(2), 2), batch_size=np.int64(3), target=np.int64(1))
    assert (game.batch_size, game.grid, game.target) == (3, (2, 2), 1)
    assert type(game.batch_size) is int
    assert _fit(epochs=1, patience=0, lr=1, progress=False).epochs_run == 1
    assert GAPCNN(dropout=0, pool_blocks=0, channels=[4]).config["dropout"] == 0.0
    assert data.paste(np.zeros((1, 2, 2)), [0], size=2, threshold=0).threshold == 0.0
    assert len(_load_canvas(count=4, size=4)) == 4
    assert _save_figure(tmp_path, dpi=10).is_file()


def test_image_patch_game_refuses_batch_size_0_instead_of_using_1():
    """It used to run with ``max(1, int(batch_size))``: 0 silently became 1."""
    with pytest.raises(
        XAIValueError, match=r"^ImagePatchGame: batch_size must be a positive int; got 0\.$"
    ):
        _image_game(batch_size=0)
    with pytest.raises(XAITypeError, match=r"batch_size must be a positive int; got float 0\.5"):
        _image_game(batch_size=0.5)


def test_load_canvas_count_is_checked_against_the_split():
    with pytest.raises(XAIValueError, match=r"load_canvas: count must be an int in 1\.\.20"):
        _load_canvas(count=21)


@pytest.mark.parametrize("size", [[1, 0, 28], ["1", 28, 28]])
def test_a_model_card_input_size_is_checked(size):
    with pytest.raises((XAIValueError, XAITypeError), match=r"input_size\[\d\] must be"):
        _model_card_size(size)


# -- the command line: one line for xai's refusals, a traceback for a bug ---------------


def _raise(error: Exception) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


def test_a_bug_propagates_out_of_the_cli_with_its_traceback(monkeypatch, capsys):
    monkeypatch.setattr("xai.shapley.tables.housing", _raise(ValueError("bug")))
    with pytest.raises(ValueError, match=r"^bug$") as caught:
        xai.cli.main(["shapley"])
    assert type(caught.value) is ValueError  # not turned into an XAIError
    assert "xai: error" not in capsys.readouterr().err


def test_an_xai_error_from_the_same_place_is_one_line_and_status_2(monkeypatch, capsys):
    monkeypatch.setattr("xai.shapley.tables.housing", _raise(XAIValueError("bad table\nat line 3")))
    assert xai.cli.main(["shapley"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "xai: error: bad table at line 3\n"


def test_the_xai_command_exits_1_with_a_traceback_for_a_bug():
    script = (
        "import sys, xai.cli, xai.shapley.tables as tables\n"
        "def housing(*args, **kwargs):\n"
        "    raise ValueError('bug')\n"
        "tables.housing = housing\n"
        "sys.exit(xai.cli.main(['shapley']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: bug")
    assert "xai: error" not in result.stderr


# -- the error family -------------------------------------------------------------------


def test_every_error_class_is_an_xai_error_and_the_matching_builtin():
    module = xai.core.errors
    classes = {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert set(classes) == set(module.__all__)  # every class is exported
    assert set(classes) > {"XAIError", "XAIValueError", "XAITypeError"}
    for name, cls in classes.items():
        assert issubclass(cls, XAIError), name
        if cls is XAIError:
            assert cls.__bases__ == (Exception,)
            continue
        builtin = getattr(builtins, name.removeprefix("XAI"))
        assert issubclass(builtin, BaseException), name
        assert issubclass(cls, builtin), name
        assert cls.__bases__ == (XAIError, builtin), name
        assert isinstance(cls("x"), builtin) and isinstance(cls("x"), XAIError)


# Built-in exceptions xai may raise itself: the protocols that need them.
ALLOWED = {
    ("xai/explanation.py", "__getitem__", "IndexError"),  # sequence protocol
    ("xai/store.py", "explanation", "IndexError"),  # the same, for a store's rows
    ("*", "__getattr__", "AttributeError"),  # module attribute protocol
    # a Ctrl-C held during an import, delivered when it ends: a signal, not bad input
    ("xai/core/interrupts.py", "deferred_interrupts", "KeyboardInterrupt"),
}


def _raises_of_builtins(path: Path) -> list[tuple[str, str, int]]:
    """(enclosing function, exception name, line) of each ``raise Builtin(...)``."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else function
            )
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                name = exc.id if isinstance(exc, ast.Name) else None
                value = getattr(builtins, name, None) if name else None
                if isinstance(value, type) and issubclass(value, BaseException):
                    found.append((function, name, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), "<module>")
    return found


def test_xai_raises_no_builtin_exception_for_bad_input():
    root = Path(xai.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        for function, name, line in _raises_of_builtins(path):
            if (relative, function, name) in ALLOWED or ("*", function, name) in ALLOWED:
                continue
            offenders.append(f"{relative}:{line} raise {name} in {function}")
    assert not offenders, "raise an XAIError instead:\n" + "\n".join(offenders)


# -- errors that used to escape as built-in ones ----------------------------------------


def test_a_user_factory_raising_value_error_on_import_is_one_xai_error(tmp_path, monkeypatch):
    from xai.models.loading import load_model

    (tmp_path / "broken_factory.py").write_text("raise ValueError('not configured')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(XAIValueError, match=r"importing broken_factory\.py failed.*configured"):
        load_model("broken_factory.py:build")


def test_a_damaged_npz_is_an_xai_error(tmp_path):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("arr_0.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz'}  \n")
    with pytest.raises(XAIValueError, match=r"bad\.npz: not a readable \.npz file"):
        data.read_npz(path)


def test_a_file_in_place_of_the_output_folder_is_an_xai_error(tmp_path):
    from xai._files import check_writable_dir

    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(NotADirectoryError, match=r"--out: .*notes\.txt is a file, not a folder"):
        check_writable_dir(tmp_path / "notes.txt" / "out")


def test_build_keeps_the_architecture_s_own_error():
    with pytest.raises(XAITypeError, match=r"^GAPCNN: dropout must be in \[0, 1\); got str"):
        xai.models.build("gapcnn", {"dropout": "0.5"})
    with pytest.raises(XAIValueError, match="bad configuration for gapcnn"):
        xai.models.build("gapcnn", {"depth": 3})
    with pytest.raises(XAITypeError, match="must be a mapping of its arguments"):
        xai.models.build("gapcnn", [("dropout", 0.5)])  # type: ignore[arg-type]


def test_messages_say_what_was_expected_and_received():
    with pytest.raises(XAIValueError) as caught:
        fit(
            MLP(in_features=16, hidden=()),
            (torch.rand(2, 16), [0, 1]),
            (torch.rand(2, 16), [0, 1]),
            lr=0,
        )
    assert str(caught.value) == "fit: lr must be a finite number > 0; got 0."
    assert re.fullmatch(
        r"stratified_subsample: fraction must be in \(0, 1\]; got 1\.5\.",
        _message(lambda: data.stratified_subsample(_labels(), 1.5)),
    )


def _message(call: Callable[[], Any]) -> str:
    with pytest.raises(XAIError) as caught:
        call()
    return str(caught.value)
