"""Shapley values: exact by enumerating every coalition, or estimated by sampling.

    >>> import xai
    >>> r = xai.exact_shapley(xai.shapley.housing(), exact=True)
    >>> [str(v) for v in r.values]
    ['11/6', '10/3', '29/6']

Nothing here imports torch unless a game needs it (``ImagePatchGame``, or a
``ModelGame`` of a torch model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xai.explanation import ShapleyResult
from xai.shapley.exact import as_game, exact_shapley, interaction_index, shapley_from_table
from xai.shapley.game import FunctionGame, Game, coalition_index, coalition_masks
from xai.shapley.model_game import ModelGame
from xai.shapley.rows import explain_rows
from xai.shapley.sampling import kernel_shap, permutation_shapley
from xai.shapley.tables import TableGame, housing

if TYPE_CHECKING:
    from xai.shapley.image_game import ImagePatchGame

__all__ = [
    "FunctionGame",
    "Game",
    "ImagePatchGame",
    "ModelGame",
    "ShapleyResult",
    "TableGame",
    "as_game",
    "coalition_index",
    "coalition_masks",
    "exact_shapley",
    "explain_rows",
    "housing",
    "interaction_index",
    "kernel_shap",
    "permutation_shapley",
    "shapley_from_table",
]


def __getattr__(name: str) -> Any:
    if name == "ImagePatchGame":
        from xai.shapley.image_game import ImagePatchGame

        return ImagePatchGame
    raise AttributeError(f"module 'xai.shapley' has no attribute {name!r}")
