"""Ablation-CAM's single-pass ablation: each sample's row and its ablated copies in one pass.

A forward hook on the explained layer passes on the sample's own output followed by one
copy per channel with that channel set to zero, so the network before the layer runs
once per sample in all, the part after it runs on the copies, and the unablated score
comes from the same pass. ``AblationCAM`` falls back to separate passes
(``FallbackError``) where the part after the layer cannot take the copies in a batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xai.core.capture import capture
from xai.core.hooks import forward_hooks
from xai.core.layers import LayerRef
from xai.core.reshape import Reshape, ReshapeLike, resolve_reshape
from xai.core.targets import (
    Class,
    ResolvedTarget,
    Target,
    TargetLike,
    logits_of,
    resolve_target,
)

__all__ = ["AUTO_BYTES", "GROUP_BYTES", "AblationPasses", "FallbackError"]

AUTO_BYTES = 64 * 2**20  # batch_size=None: ablated copies of the layer's output per pass
# batch_size=None: several samples share a pass while all their copies fit in this. Fewer
# passes save little once the batch is a few samples; a larger pass only adds memory
# traffic (and fresh pages, which cost as much again as writing them).
GROUP_BYTES = 16 * 2**20

# Same-sized integers: a channel is skipped only if its elements' bits are all zero (+0.0;
# not -0.0, not NaN), so that zeroing it changes nothing at all.
_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class FallbackError(Exception):
    """The single-pass ablation cannot go on; run the first pass and copies separately."""


def _reads_logits_only(target: Any) -> bool:
    """Whether resolving and scoring ``target`` reads nothing of the model's output but
    its (N, K) class scores (``logits_of``): ``None``, class indices, ``Class`` (not a
    subclass, which may score otherwise)."""
    if target is None or type(target) is Class:
        return True
    if isinstance(target, (Target, ResolvedTarget, str, bytes)):
        return False
    if callable(target) and not isinstance(target, torch.Tensor):
        return False
    # Else an int, N ints, a tensor or an array of them (Class(...)), unless some are Targets.
    return not (isinstance(target, (list, tuple)) and any(isinstance(t, Target) for t in target))


def _shares(tensor: torch.Tensor, other: torch.Tensor | None) -> bool:
    return other is not None and (
        tensor.untyped_storage().data_ptr() == other.untyped_storage().data_ptr()
    )


class AblationPasses:
    """One call's ablation passes (see ``AblationCAM``'s Cost).

    Each pass runs the model on a few samples; a hook on the layer replaces their output
    with their unablated rows followed by their ablated copies (one channel zeroed in
    each). The first pass takes one sample: it tells the layer's shape, hence how many
    copies fit in a pass; later passes take as many whole samples as fit. The unablated
    rows give the scores and the target; the target is resolved when every sample's
    unablated row is in, so until then the passes' outputs (their class scores where
    the target needs no more) are kept, within ``AUTO_BYTES``; beyond that, or for an
    output that is not a tensor, one plain forward pass resolves it, as before.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        layer: LayerRef,
        reshape: ReshapeLike,
        batch_size: int | None,
        target: TargetLike,
    ) -> None:
        self.model, self.x, self.layer, self.reshape = model, x, layer, reshape
        self.batch_size, self.target = batch_size, target
        self.n = n = x.shape[0]
        self.resolved: ResolvedTarget | None = (
            resolve_target(target, None, n) if isinstance(target, ResolvedTarget) else None
        )
        self.logits_only = _reads_logits_only(target)
        self.plain: tuple[torch.Tensor, torch.Tensor] | None = None  # (value, scores)
        self.shape: Reshape | None = None
        self.positions: torch.Tensor | None = None  # (C, h*w) on the layer's device
        self.k = self.cap = self.group = 0
        self.ablated = torch.empty(0)  # (N, C) float32
        self.skipped = torch.empty(0, dtype=torch.bool)  # (N, C): an all-zero channel
        self.values: list[torch.Tensor | None] = [None] * n  # (1, ...) layer layout
        self.todo: list[torch.Tensor | None] = [None] * n  # channels still to ablate
        self.scores: list[torch.Tensor | None] = [None] * n  # (1,) once resolved
        # Outputs kept until the target is resolved: (rows of an output, the sample of
        # each row, how many rows are unablated, the copies' samples and channels).
        self.pending: list[tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]]
        self.pending = []
        self.stored = 0
        self.buffer: torch.Tensor | None = None
        self.grouped = True  # whether the part after the layer takes several samples

    # --- the passes -------------------------------------------------------------------

    def run(self) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor, torch.Tensor]:
        """``(value, resolved, scores, ablated)``: the layer's output (N, ...), the
        target, the unablated scores (N,) and the ablated ones (N, C)."""
        start, group = 0, 1
        while start < self.n:
            stop = min(self.n, start + group)
            try:
                self._pass(start, stop, first=True)
            except RuntimeError:
                if stop - start == 1:
                    raise
                # The part after the layer mixes in an earlier tensor of the batch (a
                # skip connection): one sample per pass broadcasts it over the copies.
                self.grouped, group = False, 1
                continue
            for s in range(start, stop):
                while len(self._todo(s)):
                    self._pass(s, s + 1, first=False)
            start = stop
            group = self.group if self.grouped else 1
        return self._finish()

    def _todo(self, s: int) -> torch.Tensor:
        todo = self.todo[s]
        assert todo is not None
        return todo

    def _pass(self, start: int, stop: int, first: bool) -> None:
        """Run samples ``start:stop``: their unablated rows (on their first pass, while
        the target is not resolved by a plain pass) and as many copies as fit."""
        m = stop - start
        unablated = first and self.plain is None
        plan: dict[str, Any] = {}

        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            out = self.layer.select(output)
            if out.shape[0] != m:  # the batch is not the first dimension here
                plan["bad"] = True
                return None
            if self.positions is None and not self._probe(out):
                return None
            built = self._copies(out, start, unablated, plan)
            return None if built is None else self.layer.replace(output, built)

        with capture([self.layer], grad=False) as cap, forward_hooks([(self.layer.module, hook)]):
            output = self.model(self.x[start:stop])
        if plan.get("bad"):
            raise FallbackError
        value = cap.value()
        if self.positions is None:  # the probe left it to here (token layers)
            self._setup(value)
        if "rows" in plan:
            rows, u, owners, channels = plan["rows"], plan["u"], plan["owners"], plan["channels"]
            self._collect(output, rows, u, owners, channels)
        elif unablated:
            none = torch.empty(0, dtype=torch.long)
            self._collect(output, torch.arange(start, stop), m, none, none)
        # Only now, the pass having succeeded, record what it did.
        todos: dict[int, torch.Tensor] = plan.get("todo", {})
        kept: dict[int, torch.Tensor] = plan.get("kept", {})
        if first:
            for j in range(m):
                s = start + j
                self.values[s] = value[j : j + 1]
                if s not in todos and self.todo[s] is None:  # no copies built in the hook
                    kept[s] = keep = self._kept(value[j : j + 1].reshape(1, -1))[0]
                    todos[s] = keep.nonzero()[:, 0]
        for s, keep in kept.items():
            self.skipped[s] = ~keep
        for s, todo in todos.items():
            self.todo[s] = todo

    def _probe(self, value: torch.Tensor) -> bool:
        """Set up from the first sample's output, inside the hook, where that is safe."""
        if value.ndim == 3 and not callable(self.reshape):
            return False  # tokens: finding their grid may trace the model
        try:
            self._setup(value)
        except Exception:  # raised again, outside the model, after the pass
            self.positions = None
            return False
        return True

    def _setup(self, value: torch.Tensor) -> None:
        shape = resolve_reshape(self.reshape, self.model, self.x, self.layer, value)
        shape(value)  # checks what a callable returns
        positions = shape.positions(tuple(value.shape[1:]))
        k = positions.shape[0]
        copy_bytes = max(value[0].numel() * value.element_size(), 1)
        self.shape, self.k = shape, k
        self.cap = self.batch_size or max(1, AUTO_BYTES // copy_bytes)
        self.group = max(1, (self.batch_size or GROUP_BYTES // copy_bytes) // max(k, 1))
        self.ablated = torch.full((self.n, k), float("nan"))  # NaN: never left unscored
        self.skipped = torch.zeros(self.n, k, dtype=torch.bool)
        self.positions = positions.to(value.device)

    def _kept(self, flat: torch.Tensor) -> torch.Tensor:
        """(m, C) bool on the CPU: which channels of each row of ``flat`` (m samples, the
        layer's layout flattened) are not all exactly +0.0. Zeroing the others changes
        nothing, so their ablated score is the unablated one and no copy is run."""
        assert self.positions is not None
        bits = _BITS.get(flat.element_size()) if flat.is_floating_point() else None
        if bits is None:
            return torch.ones(flat.shape[0], self.k, dtype=torch.bool)
        zero = (flat.view(bits)[:, self.positions] == 0).all(dim=2)
        return (~zero).cpu()

    def _copies(
        self, out: torch.Tensor, start: int, unablated: bool, plan: dict[str, Any]
    ) -> torch.Tensor | None:
        """The rows the layer passes on: the unablated ones, then the copies."""
        assert self.positions is not None
        m = out.shape[0]
        flat = out.reshape(m, -1)
        budget = self.cap
        sources, owners, channels = [], [], []
        plan["todo"], plan["kept"] = {}, {}
        new = [j for j in range(m) if self.todo[start + j] is None]
        keeps = self._kept(flat if len(new) == m else flat[new]) if new else None
        for j in range(m):
            s = start + j
            todo = self.todo[s]
            if todo is None:
                assert keeps is not None
                keep = plan["kept"][s] = keeps[new.index(j)]
                todo = keep.nonzero()[:, 0]
            take = todo[:budget]
            budget -= len(take)
            plan["todo"][s] = todo[len(take) :]
            sources.append(torch.full((len(take),), j))
            owners.append(torch.full((len(take),), s))
            channels.append(take)
        copies = sum(len(c) for c in channels)
        if copies == 0:
            return None
        u = m if unablated else 0
        rows = u + copies
        buffer = self.buffer
        if (
            buffer is None
            or buffer.shape[0] < rows
            or buffer.shape[1] != flat.shape[1]
            or buffer.dtype != flat.dtype
            or buffer.device != flat.device
        ):
            # One buffer for all the passes of a call: a fresh one per pass costs a page
            # fault per 4 kB, as much as filling it.
            buffer = self.buffer = flat.new_empty((rows, flat.shape[1]))
        if u:
            buffer[:u].copy_(flat)
        ablated = buffer[u:rows]
        device = flat.device
        torch.index_select(flat, 0, torch.cat(sources).to(device), out=ablated)
        channel = torch.cat(channels)
        ablated.scatter_(1, self.positions[channel.to(device)], 0)
        owner = torch.cat(owners)
        plan["rows"] = torch.cat([torch.arange(start, start + u), owner])
        plan["u"], plan["owners"], plan["channels"] = u, owner, channel
        return buffer[:rows].view(rows, *out.shape[1:])

    # --- scores -------------------------------------------------------------------------

    def _score(self, resolved: ResolvedTarget, output: Any, rows: torch.Tensor) -> torch.Tensor:
        scores = resolved.scores(output, rows)
        if scores.shape != (len(rows),):
            raise FallbackError  # the part after the layer did not keep one row per copy
        return scores

    def _collect(
        self,
        output: Any,
        rows: torch.Tensor,
        u: int,
        owners: torch.Tensor,
        channels: torch.Tensor,
    ) -> None:
        """Score a pass's output now if the target is resolved, else keep it."""
        if self.resolved is None:
            kept = self._keepable(output, len(rows))
            if kept is not None and self.stored + kept.numel() * kept.element_size() <= AUTO_BYTES:
                if _shares(kept, self.buffer):
                    kept = kept.clone()
                self.pending.append((kept, rows, u, owners, channels))
                self.stored += kept.numel() * kept.element_size()
                return
            self._resolve_by_plain_pass()
        assert self.resolved is not None
        scores = self._score(self.resolved, output, rows)
        if self.plain is None:
            for j in range(u):
                self.scores[int(rows[j])] = scores[j : j + 1].clone()
        self.ablated[owners, channels] = scores[u:].float().cpu()

    def _keepable(self, output: Any, rows: int) -> torch.Tensor | None:
        """What to keep of an output until the target is resolved: its class scores for
        a class target, else the output itself; ``None`` if it cannot be kept."""
        kept = logits_of(output) if self.logits_only else output
        if not isinstance(kept, torch.Tensor) or kept.ndim == 0 or kept.shape[0] != rows:
            return None
        if self.logits_only and kept.ndim != 2:
            return None
        return kept.detach()

    def _resolve_by_plain_pass(self) -> None:
        """Resolve the target on the plain model's output, as the first pass would."""
        with capture([self.layer], grad=False) as cap:
            output = self.model(self.x)
        self.resolved = resolve_target(self.target, output, self.n)
        scores = self.resolved.scores(output, torch.arange(self.n))
        self.plain = (cap.value(), scores)
        self._flush()

    def _flush(self) -> None:
        """Score the kept outputs' copies, the target now resolved."""
        assert self.resolved is not None
        for kept, rows, u, owners, channels in self.pending:
            copies = self._score(self.resolved, kept, rows)[u:]
            self.ablated[owners, channels] = copies.float().cpu()
        self.pending.clear()

    def _finish(self) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor, torch.Tensor]:
        if self.plain is not None:
            assert self.resolved is not None
            value, scores = self.plain
        else:
            values = [v for v in self.values if v is not None]
            value = torch.cat(values) if len(values) > 1 else values[0]
            if self.resolved is None:
                first: list[torch.Tensor | None] = [None] * self.n
                for kept, rows, u, _, _ in self.pending:
                    for j in range(u):
                        first[int(rows[j])] = kept[j : j + 1]
                parts = [row for row in first if row is not None]
                output = torch.cat(parts) if len(parts) > 1 else parts[0]
                self.resolved = resolve_target(self.target, output, self.n)
                scores = self.resolved.scores(output, torch.arange(self.n))
                self._flush()
            else:
                parts = [s for s in self.scores if s is not None]
                scores = torch.cat(parts)
        y = scores.float().cpu()
        ablated = torch.where(self.skipped, y[:, None], self.ablated)
        return value, self.resolved, scores, ablated
