"""``Similarity``: explain why an embedding model finds an image like a reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

from xai.core.errors import XAIValueError
from xai.core.targets import Target, describe
from xai.targets._data import as_tensor, check_count, rows_of

__all__ = ["Similarity"]

_KEYS = ("image_embeds", "pooler_output", "embeddings", "embedding")


def embedding_of(output: Any) -> torch.Tensor | None:
    """``(B, D)`` embeddings: a tensor output, or an output's ``image_embeds``,
    ``pooler_output``, ``embeddings`` or ``embedding`` (key or attribute)."""
    if isinstance(output, torch.Tensor):
        return output if output.ndim == 2 else None
    for key in _KEYS:
        value = output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
        if isinstance(value, torch.Tensor) and value.ndim == 2:
            return value
    return None


class Similarity(Target):
    r"""The cosine similarity of the model's embedding to a reference embedding.

    $$
    y = \frac{e(x) \cdot r}{\lVert e(x) \rVert\, \lVert r \rVert}
    $$

    as pytorch-grad-cam's ``SimilarityToConceptTarget``. A map shows what in the image
    makes it look like the reference (an image, a text prompt's embedding, a class
    centroid).

    Args:
        embedding: the reference ``r``, ``(D,)`` for all samples or ``(N, D)`` one per
            sample.
    """

    def __init__(self, embedding: Any) -> None:
        self.embedding = as_tensor(embedding, "embedding", torch.float32)
        if self.embedding.ndim not in (1, 2):
            raise XAIValueError(
                f"embedding must be (D,) or (N, D); got shape {tuple(self.embedding.shape)}"
            )
        if bool((self.embedding.norm(dim=-1) == 0).any()):
            raise XAIValueError("embedding must not be all zeros (its cosine is undefined)")

    def _embeddings(self, output: Any) -> torch.Tensor:
        found = embedding_of(output)
        if found is None:
            raise XAIValueError(
                f"Similarity needs a model that returns (N, D) embeddings (a tensor, or an "
                f"output with image_embeds / pooler_output / embeddings); this model "
                f"returned {describe(output)}."
            )
        return found

    def check(self, output: Any, n: int) -> None:
        found = self._embeddings(output)
        check_count(self.embedding, 1, n, "embedding")
        if found.shape[1] != self.embedding.shape[-1]:
            raise XAIValueError(
                f"Similarity: the model's embeddings have {found.shape[1]} dimensions, the "
                f"reference {self.embedding.shape[-1]}; embed the reference with the same model."
            )

    def score(
        self, output: Any, samples: torch.Tensor, *, probabilities: bool = False
    ) -> torch.Tensor:
        found = self._embeddings(output)
        reference = rows_of(self.embedding, 1, samples).to(found.device, found.dtype)
        return F.cosine_similarity(found, reference, dim=1)

    def describe(self, sample: int) -> str:
        return f"cosine similarity to a {self.embedding.shape[-1]}-d embedding"

    @classmethod
    def merge(cls, targets: Sequence[Target], n: int) -> Target | None:
        items = [cast(Similarity, t) for t in targets]
        rows = [
            t.embedding if t.embedding.ndim == 1 else t.embedding[i] for i, t in enumerate(items)
        ]
        if len({tuple(r.shape) for r in rows}) != 1:
            return None
        return Similarity(torch.stack(rows))

    def __repr__(self) -> str:
        return f"Similarity(embedding={tuple(self.embedding.shape)})"
