"""The games the exact engine and the estimators accept, under one roof.

``TableGame`` (a table of coalition values), ``ModelGame`` (a model at an instance
against a background) and ``FunctionGame`` (any value function) import no torch;
``ImagePatchGame`` (an image's patches as players) does, on first use.
"""

from __future__ import annotations

from typing import Any

from xai.shapley.game import FunctionGame, Game
from xai.shapley.model_game import ModelGame
from xai.shapley.tables import TableGame

__all__ = ["FunctionGame", "Game", "ImagePatchGame", "ModelGame", "TableGame"]  # noqa: F822


def __getattr__(name: str) -> Any:
    if name == "ImagePatchGame":
        from xai.shapley.image_game import ImagePatchGame

        return ImagePatchGame
    raise AttributeError(f"module 'xai.shapley.games' has no attribute {name!r}")
