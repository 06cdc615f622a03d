"""A small vision transformer in timm's layout, written out for the tests.

``patch_embed.proj`` (a strided convolution) -> a class token and position embeddings ->
``blocks[i]`` (``norm1``, ``attn``, ``norm2``, ``mlp``, pre-norm residuals) -> ``norm``
-> ``head`` on the class token (or on the mean of the patch tokens, ``pool="avg"``).
``expose_grid=True`` passes the last block's normalised patch tokens through a module
``blocks[-1].grid`` that returns them as (N, C, h, w) maps (and back), so a library that
can only hook (N, C, h, w) layers, such as captum, explains the same quantity.
"""

from __future__ import annotations

import torch
from torch import nn

from tests._reference import hooked_gradcam


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, c))


class Grid(nn.Module):
    """Patch tokens (N, k + h*w, C) -> maps (N, C, h, w)."""

    def __init__(self, prefix: int, h: int, w: int) -> None:
        super().__init__()
        self.prefix, self.h, self.w = prefix, h, w

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, _, c = tokens.shape
        return tokens[:, self.prefix :].reshape(n, self.h, self.w, c).permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, grid: Grid | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(0.1)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if self.grid is not None:
            k = self.grid.prefix
            maps = self.grid(h)
            h = torch.cat([h[:, :k], maps.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.drop(self.attn(h))
        return x + self.drop(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TinyViT(nn.Module):
    def __init__(
        self,
        image: tuple[int, int] = (32, 32),
        patch: int = 8,
        channels: int = 3,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        classes: int = 5,
        pool: str = "token",
        registers: int = 0,
        expose_grid: bool = False,
    ) -> None:
        super().__init__()
        gh, gw = image[0] // patch, image[1] // patch
        self.pool = pool
        self.prefix = 1 + registers
        self.patch_embed = PatchEmbed(channels, dim, patch)
        self.cls_token = nn.Parameter(torch.randn(1, self.prefix, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, self.prefix + gh * gw, dim) * 0.5)
        grid = Grid(self.prefix, gh, gw) if expose_grid else None
        self.blocks = nn.Sequential(
            *[Block(dim, heads, grid if i == depth - 1 else None) for i in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        prefix = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([prefix, tokens], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        pooled = x[:, 0] if self.pool == "token" else x[:, self.prefix :].mean(dim=1)
        return self.head(pooled)


def make_vit(seed: int = 0, **kwargs) -> TinyViT:
    torch.manual_seed(seed)
    return TinyViT(**kwargs).eval()


def hf_vit(seed: int = 0, **overrides):
    """A Hugging Face ``ViTForImageClassification`` built from a config: offline."""
    transformers = __import__("pytest").importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=5,
        **overrides,
    )
    torch.manual_seed(seed)
    return transformers.ViTForImageClassification(config).eval()


def token_gradcam(model: nn.Module, module: nn.Module, x: torch.Tensor, targets, reshape):
    """Grad-CAM of class ``targets`` at a token layer, with an explicit ``reshape``."""

    def score(out):
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return logits[torch.arange(len(x)), torch.as_tensor(targets)]

    return hooked_gradcam(model, module, x, score, reshape)
