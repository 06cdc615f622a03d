"""ViT-B/16 with timm's layout, without timm.

Dosovitskiy et al. (2021), "An Image is Worth 16x16 Words", in the layout timm's
``vit_base_patch16_224`` uses: ``patch_embed.proj`` (a 16 x 16 convolution with stride 16)
-> a class token ``cls_token`` and learned position embeddings ``pos_embed`` -> 12
pre-norm ``blocks`` (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.act``, ``mlp.fc2``) -> ``norm`` -> ``head`` on the class token. LayerNorms have
eps 1e-6, the activation is the exact GELU and attention runs through
``torch.nn.functional.scaled_dot_product_attention``, as timm's does by default. The
parameter names are timm's (its ``state_dict`` loads into this model unchanged), so a
layer name such as ``blocks.11.norm1`` means the same module to every library, and the
cost of a forward pass is the real network's. timm's identity placeholders (dropouts,
``ls1``, ``q_norm``, ...) are left out: they have no parameters and compute nothing.
Weights are random (seeded); a benchmark times arithmetic, not accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionTransformer", "vit_base_patch16_224", "vit_tiny"]


class PatchEmbed(nn.Module):
    """Image (N, 3, H, W) -> patch tokens (N, H/p * W/p, C), row-major over the grid."""

    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: one ``qkv`` projection, scaled dot products, ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (N, heads, T, d)
        return self.proj(mixed.transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm encoder block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """``patch_embed cls_token pos_embed blocks norm head``, as timm names them."""

    def __init__(
        self,
        image: int = 224,
        patch: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        hidden: int = 3072,
        classes: int = 1000,
    ) -> None:
        super().__init__()
        tokens = 1 + (image // patch) ** 2
        self.patch_embed = PatchEmbed(3, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_base_patch16_224(seed: int = 0) -> VisionTransformer:
    """ViT-B/16 (86.6 M parameters, 17.6 GFLOPs at 224 x 224: a 14 x 14 patch grid and
    a class token, 197 tokens of 768 channels), eval mode."""
    torch.manual_seed(seed)
    return VisionTransformer().eval()


def vit_tiny(seed: int = 0) -> VisionTransformer:
    """The same layout at smoke-test size: 32 x 32 inputs, 8 x 8 patches (a 4 x 4 grid),
    2 blocks of 32 channels and 4 heads, 10 classes; eval mode."""
    torch.manual_seed(seed)
    model = VisionTransformer(image=32, patch=8, dim=32, depth=2, heads=4, hidden=64, classes=10)
    return model.eval()
