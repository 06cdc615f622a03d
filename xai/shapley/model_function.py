"""What ``explain_rows`` evaluates: a model or function as ``(rows, n) -> (rows[, k])``.

A scikit-learn-style estimator is called through ``predict_proba`` (a classifier: every
class, or the one ``output`` names) or ``predict``; a torch module on tensors, in
evaluation mode and without gradients; any other callable as it is. Nothing here imports
pandas, scikit-learn or torch: they are used only when the caller's objects are theirs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError

__all__ = ["as_matrix", "model_function"]


def _is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _is_torch_module(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def as_matrix(
    data: Any, what: str, columns: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """``data`` as a (rows, n) float64 array, and its column names if it is a DataFrame.

    With ``columns`` (the names of X's columns), a DataFrame is reordered to them by name
    (a background whose columns are X's in another order is the same data); one missing a
    column, or having another, is refused.
    """
    names: tuple[str, ...] | None = None
    if _is_dataframe(data):
        names = tuple(str(c) for c in data.columns)
        if columns is not None and names != tuple(columns):
            missing = [c for c in columns if c not in names]
            extra = [c for c in names if c not in columns]
            if missing or extra:
                raise XAIValueError(
                    f"{what}'s columns must be X's {list(columns)}; it lacks {missing} and "
                    f"has {extra} besides. Select X's columns: {what}[X.columns]"
                )
            data, names = data[list(columns)], tuple(columns)
        kinds = {str(dtype) for dtype in data.dtypes if getattr(dtype, "kind", "O") not in "biuf"}
        if kinds:
            raise XAITypeError(
                f"{what} must hold numbers; it has columns of type {sorted(kinds)}. Encode "
                f"them as numbers first (one-hot or ordinal codes), or pass a numeric array"
            )
        array = data.to_numpy(dtype=np.float64)
    else:
        array = np.asarray(data)
        if array.dtype.kind not in "biuf":
            raise XAITypeError(
                f"{what} must be a numeric array or DataFrame of shape (rows, n); got dtype "
                f"{array.dtype}. Encode non-numeric features as numbers first"
            )
        array = array.astype(np.float64)
    if array.ndim == 1 and what == "background":
        array = array[None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise XAIValueError(
            f"{what} must be a (rows, n) table with at least one row and one column; got "
            f"shape {tuple(array.shape)}"
        )
    return array, names


def model_function(
    f: Any, output: int | None, columns: Sequence[str] | None
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The function of (rows, n) float64 arrays that ``explain_rows`` explains, and how it
    calls ``f`` (``"predict_proba"``, ``"predict"``, ``"torch"`` or ``"callable"``).

    ``output``: the column of a 2-D output to explain (a class index); ``None`` keeps
    them all. ``columns``: X's column names; an estimator fitted on a DataFrame
    (``feature_names_in_``) is given DataFrames with them, as it was trained.
    """
    if _is_torch_module(f):
        call, how = _torch_call(f), "torch"
    elif hasattr(f, "predict_proba"):
        call, how = _with_columns(f.predict_proba, f, columns), "predict_proba"
    elif hasattr(f, "predict"):
        call, how = _with_columns(f.predict, f, columns), "predict"
    elif callable(f):
        call, how = f, "callable"
    else:
        raise XAITypeError(
            f"f must be a model with predict or predict_proba (scikit-learn, XGBoost, "
            f"LightGBM), a torch module, or a function of (rows, n) arrays; got "
            f"{type(f).__name__}"
        )

    def evaluate(rows: np.ndarray) -> np.ndarray:
        out = np.asarray(call(rows))
        if out.dtype.kind not in "biuf":
            raise XAITypeError(f"f ({how}) must return numbers for each row; got dtype {out.dtype}")
        out = out.astype(np.float64, copy=False)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim not in (1, 2) or out.shape[0] != len(rows):
            raise XAIValueError(
                f"f ({how}) must return (rows,) or (rows, outputs) values for {len(rows)} "
                f"rows; got shape {out.shape}"
            )
        if output is None:
            return out
        if out.ndim != 2 or not 0 <= output < out.shape[1]:
            have = "one output" if out.ndim == 1 else f"{out.shape[1]} outputs"
            classes = getattr(f, "classes_", None)
            known = f" (classes {list(classes)})" if classes is not None else ""
            raise XAIValueError(
                f"output={output} names a column of f's output, which has {have}{known}; "
                f"pass an index below {1 if out.ndim == 1 else out.shape[1]}, or "
                f"output=None for all of them"
            )
        return out[:, output]

    return evaluate, how


def _with_columns(
    method: Callable[[Any], Any], estimator: Any, columns: Sequence[str] | None
) -> Callable[[np.ndarray], Any]:
    fitted = getattr(estimator, "feature_names_in_", None)
    if columns is None or fitted is None:
        return method
    import pandas as pd

    names = list(columns)

    def call(rows: np.ndarray) -> Any:
        return method(pd.DataFrame(rows, columns=names))

    return call


def _torch_call(module: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    from xai.core.state import evaluation_mode

    parameter = next(module.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")

    def call(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad(), evaluation_mode(module):
            out = module(torch.as_tensor(rows, dtype=dtype, device=device))
        return out.detach().double().cpu().numpy()

    return call
