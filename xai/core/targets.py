"""What is explained: ``target=`` resolved into one score per row of the model's output.

``target`` may be

* ``None``: each sample's top-1 class;
* an ``int``, or ``xai.targets.Class(c)``: that class for every sample;
* N ints (a list, tuple, 1-D tensor or array), or ``Class([c0, c1, ...])``: one class per
  sample;
* a ``xai.targets.Target`` (``Segmentation``, ``Box``, ``Similarity``, or your own
  subclass), for every sample, or a list of N targets, one per sample (ints allowed);
* a callable mapping the model's output for a batch of B rows to ``(B,)`` scores. Methods
  that run the model on extra masked copies (Score-CAM, Ablation-CAM) call it on those
  batches too, rows of several samples mixed, so it must work row by row. A ``Target``
  is told which sample each row belongs to; prefer one when the score depends on the
  sample (a mask, a box, a reference embedding per image).

A model whose output is an object with a ``.logits`` tensor (every Hugging Face model),
or a mapping with ``"logits"`` (or ``"out"``, as torchvision's segmentation models), is
read through it by the targets that need class scores.
"""

from __future__ import annotations

import dataclasses
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import torch

from xai.core.errors import XAITypeError, XAIValueError

__all__ = [
    "CallableTarget",
    "Class",
    "ResolvedTarget",
    "Target",
    "TargetLike",
    "logits_of",
    "resolve_target",
]


def logits_of(output: Any) -> torch.Tensor | None:
    """The class-score tensor in a model's output, or ``None`` if there is none.

    A tensor is its own; an object with a tensor ``.logits`` attribute, or a mapping
    with a ``"logits"`` or ``"out"`` tensor, gives that tensor.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            value = output.get(key)
            if isinstance(value, torch.Tensor):
                return value
        return None
    value = getattr(output, "logits", None)
    return value if isinstance(value, torch.Tensor) else None


def describe(output: Any) -> str:
    """A model output in a few words, for error messages."""
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {list(output)[:8]}"
    return f"a {type(output).__name__}"


def class_logits(output: Any, what: str = "target=None/int/list") -> torch.Tensor:
    """``(B, classes)`` scores from ``output`` (see ``logits_of``), or a clear error."""
    logits = logits_of(output)
    if logits is None or logits.ndim != 2:
        raise XAIValueError(
            f"{what} needs a model that returns (N, num_classes) scores (a tensor, or an "
            f"output with .logits); this model returned {describe(output)}. Pass "
            f"target=callable(output) -> (N,) scores, e.g. target=lambda out: out['logits']"
            f"[:, 3], or a target that reads this output: xai.targets.Segmentation, Box or "
            f"Similarity."
        )
    return logits


class Target(ABC):
    """What to explain for each sample: subclass it for a custom score.

    A subclass implements ``score``; the others have defaults. Data that differs per
    sample (a mask, a box, an embedding per image) is indexed by the ``samples`` passed
    to ``score``, so rows of several samples can be scored in one chunk.
    """

    @abstractmethod
    def score(
        self, output: Any, samples: torch.Tensor, *, probabilities: bool = False
    ) -> torch.Tensor:
        """``(B,)`` scores, one per row of ``output`` (the model's output for B rows).

        Args:
            output: what the model returned for a batch of B rows.
            samples: ``(B,)`` int64, the sample (0..N-1) each row belongs to.
            probabilities: score with probabilities instead of logits where the target
                has both (Score-CAM's default); targets without them ignore it.
        """

    def check(self, output: Any, n: int) -> None:
        """Refuse, with a clear error, a target that cannot score this output for ``n``
        samples (called once per explanation, on the unmodified batch)."""
        return None

    def class_index(self, sample: int) -> int:
        """The class explained for ``sample``, or -1 if the target names none."""
        return -1

    def describe(self, sample: int) -> str:
        """What is explained for ``sample``, in a few words."""
        return type(self).__name__

    @classmethod
    def merge(cls, targets: Sequence[Target], n: int) -> Target | None:
        """One target equivalent to ``targets[i]`` for each sample i (all of ``cls``), or
        ``None`` if they cannot be merged (then each is scored on its own)."""
        return None


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise XAITypeError(f"{what} must be an int class index; got the bool {value}")
    try:
        return operator.index(value)
    except TypeError:
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            return int(value.item())
        raise XAITypeError(
            f"{what} must be an int class index; got {type(value).__name__} {value!r}"
        ) from None


def per_sample(value: Any, n: int, what: str) -> Any:
    """``value[sample]`` picked later: checks a per-sample sequence has n entries."""
    if len(value) != n:
        raise XAIValueError(
            f"{what} has {len(value)} entries but the inputs hold {n} samples; pass one for "
            f"all samples or exactly one per sample."
        )
    return value


class Class(Target):
    """The score (logit, or probability for Score-CAM's default) of a class.

    Args:
        index: one class for every sample, or one per sample.
    """

    def __init__(self, index: int | Sequence[int] | torch.Tensor) -> None:
        if isinstance(index, (str, bytes)):
            raise XAITypeError(
                f"class index must be an int; got the string {index!r}. Class names are "
                f"resolved by the command line; here pass the index."
            )
        self.index: int | None = None
        self.indices: torch.Tensor | None = None
        if getattr(index, "ndim", None) == 0:
            index = _as_int(index.item() if hasattr(index, "item") else index, "class index")
        if (
            isinstance(index, torch.Tensor)
            and index.ndim == 1
            and index.dtype in (torch.int64, torch.int32)
        ):
            self.indices = index.detach().to("cpu", torch.int64)
        elif isinstance(index, (Sequence, torch.Tensor)) or hasattr(index, "__array__"):
            items = cast(Iterable[Any], index.tolist() if hasattr(index, "tolist") else index)
            values = [_as_int(v, "each target") for v in items]
            self.indices = torch.tensor(values, dtype=torch.int64)
        else:
            self.index = _as_int(index, "target")
        self._listed: list[int] | None = None

    def _all(self, n: int) -> torch.Tensor:
        if self.indices is not None:
            return per_sample(self.indices, n, "target")
        return torch.full((n,), cast(int, self.index), dtype=torch.int64)

    def check(self, output: Any, n: int) -> None:
        num_classes = class_logits(output).shape[1]
        if self.indices is None:
            bad = [] if 0 <= cast(int, self.index) < num_classes else [self.index]
        else:
            values = per_sample(self.indices, n, "target").tolist()
            bad = [v for v in values if not 0 <= v < num_classes]
        if bad:
            raise XAIValueError(
                f"target {bad[0]} is out of range for a model with {num_classes} "
                f"classes; valid targets are 0..{num_classes - 1}."
            )

    def score(
        self, output: Any, samples: torch.Tensor, *, probabilities: bool = False
    ) -> torch.Tensor:
        logits = class_logits(output)
        if probabilities:
            logits = torch.softmax(logits.float(), dim=1)
        if self.indices is None:
            return logits[:, cast(int, self.index)]
        index = self.indices.to(logits.device)[samples.to(logits.device)]
        return logits.gather(1, index[:, None])[:, 0]

    def class_index(self, sample: int) -> int:
        if self.indices is None:
            return cast(int, self.index)
        if self._listed is None:
            self._listed = self.indices.tolist()
        return self._listed[sample]

    def describe(self, sample: int) -> str:
        return f"class {self.class_index(sample)}"

    @classmethod
    def merge(cls, targets: Sequence[Target], n: int) -> Target | None:
        return Class([cast(Class, t).class_index(i) for i, t in enumerate(targets)])

    def __repr__(self) -> str:
        shown = self.index if self.indices is None else self.indices.tolist()
        return f"Class({shown})"


class CallableTarget(Target):
    """A callable ``fn(output) -> (B,)`` scores, used as it is (see the module doc)."""

    def __init__(self, fn: Callable[[Any], torch.Tensor]) -> None:
        self.fn = fn

    def score(
        self, output: Any, samples: torch.Tensor, *, probabilities: bool = False
    ) -> torch.Tensor:
        values = self.fn(output)
        if not isinstance(values, torch.Tensor) or values.shape != (len(samples),):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise XAIValueError(
                f"the target callable must return a tensor of shape ({len(samples)},), one "
                f"score per row of the model's output; it returned {got}."
            )
        return values

    def describe(self, sample: int) -> str:
        name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
        return f"callable {name}"


TargetLike: TypeAlias = (
    int | Sequence[int | Target] | torch.Tensor | Target | Callable[[Any], torch.Tensor] | None
)


@dataclass(frozen=True, eq=False)
class ResolvedTarget:
    """A target resolved for a batch of N samples: what each sample explains."""

    groups: tuple[tuple[Target, torch.Tensor], ...]  # (target, its samples (k,) int64)
    n: int
    #: (N, K) class scores of the forward pass the target was resolved on (detached),
    #: when the output holds an (N, K) tensor of them; reported as Explanation.logits.
    logits: torch.Tensor | None = None

    @property
    def classes(self) -> torch.Tensor:
        """``(N,)`` int64: the class each sample explains, -1 where none is named."""
        if len(self.groups) == 1 and isinstance(self.groups[0][0], Class):
            return self.groups[0][0]._all(self.n).clone()
        out = [-1] * self.n
        for target, samples in self.groups:
            for s in samples.tolist():
                out[s] = target.class_index(s)
        return torch.tensor(out, dtype=torch.int64)

    @property
    def explained(self) -> tuple[str, ...]:
        """What each sample explains, in a few words (``"class 3"``, ...)."""
        if len(self.groups) == 1 and isinstance(self.groups[0][0], Class):
            return tuple(f"class {c}" for c in self.groups[0][0]._all(self.n).tolist())
        out = [""] * self.n
        for target, samples in self.groups:
            for s in samples.tolist():
                out[s] = target.describe(s)
        return tuple(out)

    def class_indices(self, method: str) -> torch.Tensor:
        """``classes``, or an error if some sample's target names no single class."""
        if any(not isinstance(t, Class) for t, _ in self.groups):
            raise XAIValueError(
                f"{method} weights the maps by the head's row for one class, and the "
                f"target names no single class for some samples. Pass target=None, an int, "
                f"one int per sample or xai.targets.Class, or use method='gradcam', which "
                f"differentiates any score."
            )
        return self.classes

    def scores(self, output: Any, rows: torch.Tensor, *, softmax: bool = False) -> torch.Tensor:
        """The explained score of each row of ``output``.

        Args:
            output: the model's output for a batch of B rows.
            rows: ``(B,)`` the sample (0..N-1) each row belongs to.
            softmax: score with probabilities where the target has them.
        """
        rows = rows.cpu()
        if len(self.groups) == 1:
            return self.groups[0][0].score(output, rows, probabilities=softmax)
        result: torch.Tensor | None = None
        for target, samples in self.groups:
            mine = torch.isin(rows, samples)
            if not bool(mine.any()):
                continue
            values = target.score(output, rows, probabilities=softmax)
            if result is None:
                result = torch.zeros_like(values)
            result = torch.where(mine.to(values.device), values, result)
        assert result is not None  # every row belongs to some sample of some group
        return result


def _is_target_list(target: Any) -> bool:
    return isinstance(target, (list, tuple)) and any(isinstance(t, Target) for t in target)


def _group(targets: list[Target], n: int) -> tuple[tuple[Target, torch.Tensor], ...]:
    by_type: dict[type[Target], list[int]] = {}
    for i, t in enumerate(targets):
        by_type.setdefault(type(t), []).append(i)
    groups = []
    for kind, samples in by_type.items():
        if len(samples) == n:
            merged = kind.merge(targets, n)
            if merged is not None:
                groups.append((merged, torch.arange(n)))
                continue
        by_object: dict[int, list[int]] = {}
        for s in samples:
            by_object.setdefault(id(targets[s]), []).append(s)
        for ids in by_object.values():
            groups.append((targets[ids[0]], torch.tensor(ids, dtype=torch.int64)))
    return tuple(groups)


def resolve_target(target: TargetLike | ResolvedTarget, output: Any, n: int) -> ResolvedTarget:
    """Validate ``target`` against the model's ``output`` for a batch of ``n`` samples.

    The resolved target keeps the output's (N, K) class scores, detached (``logits``).
    """
    if isinstance(target, ResolvedTarget):
        if target.n != n:
            raise XAIValueError(f"the target was resolved for {target.n} samples, not {n}")
        return target
    resolved = _resolve(target, output, n)
    scores = logits_of(output)
    if (
        scores is not None
        and scores.ndim == 2
        and scores.shape[0] == n
        and scores.is_floating_point()
    ):
        resolved = dataclasses.replace(resolved, logits=scores.detach())
    return resolved


def _resolve(target: TargetLike, output: Any, n: int) -> ResolvedTarget:
    if isinstance(target, Target):
        target.check(output, n)
        return ResolvedTarget(((target, torch.arange(n)),), n)
    if callable(target) and not isinstance(target, torch.Tensor):
        return ResolvedTarget(((CallableTarget(target), torch.arange(n)),), n)
    if target is None:
        logits = class_logits(output, "target=None (each sample's top-1 class)")
        top1 = logits.detach().argmax(dim=1).cpu()
        return ResolvedTarget(((Class(top1), torch.arange(n)),), n)  # in range: no check
    if _is_target_list(target):
        items = list(cast(Sequence[Any], target))
        per_sample(items, n, "target")
        targets = [t if isinstance(t, Target) else Class(_as_int(t, "each target")) for t in items]
        for i, t in enumerate(targets):
            try:
                t.check(output, n)
            except XAIValueError as error:
                raise XAIValueError(f"target of sample {i}: {error}") from None
        return ResolvedTarget(_group(targets, n), n)
    if isinstance(target, (str, bytes)):
        raise XAITypeError(
            f"target must be None, an int, {n} ints, a xai.targets.Target or a callable; got "
            f"the string {target!r}. Class names are resolved by the command line; here "
            f"pass the index."
        )
    return _resolve(Class(cast(Any, target)), output, n)
