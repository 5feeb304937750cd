"""Transformer blocks of the reconstructor; every attention goes through ``scaled_dot_product_attention``.

- ``SelfBlock``: pre-norm self-attention + MLP (intra-view image tokens, anchor tokens).
- ``CrossBlock``: pre-norm cross-attention of one token set to another (image tokens -> anchors).
- ``WindowCrossAttention``: projection-aware attention: each 3D anchor token is a single query that attends
  only to the k x k image tokens around its 2D projection in every view (plus one learned null token, so an
  anchor seen by no view still gets a defined output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention; ``context`` defaults to ``x`` (self-attention)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def split(self, t: Tensor) -> Tensor:  # (..., L, D) -> (..., H, L, D/H)
        return t.unflatten(-1, (self.heads, -1)).transpose(-2, -3)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        k, v = self.kv(x if context is None else context).chunk(2, dim=-1)
        o = F.scaled_dot_product_attention(self.split(self.q(x)), self.split(k), self.split(v), attn_mask=mask)
        return self.out(o.transpose(-2, -3).flatten(-2))


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float = 4.0):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class SelfBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.attn = nn.LayerNorm(dim), nn.LayerNorm(dim), Attention(dim, heads)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return x + self.attn(self.norm_q(x), self.norm_kv(context))


def window_indices(uv: Tensor, grid_hw: tuple[int, int], window: int) -> tuple[Tensor, Tensor]:
    """Flat token indices of the ``window x window`` patch around continuous token-grid positions.

    uv: (..., 2) positions in token units (x, y), pixel-centre convention (token (i, j) spans [j, j+1)).
    Returns indices (..., window**2) into a row-major (h*w) grid and a bool mask of in-grid entries.
    For an even window the patch leans towards the side of the token the point falls in.
    """
    h, w = grid_hw
    r = torch.arange(window, device=uv.device) - (window - 1) // 2
    if window % 2 == 0:
        base = torch.floor(uv - 0.5)  # the window straddles the nearest token corner
    else:
        base = torch.floor(uv)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    x = base[..., 0:1].long() + dx.reshape(-1)
    y = base[..., 1:2].long() + dy.reshape(-1)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return y.clamp(0, h - 1) * w + x.clamp(0, w - 1), inside


class WindowCrossAttention(nn.Module):
    """Each anchor (single query) attends to the windows around its projections in all views."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.window = window
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.offset_embed = nn.Parameter(torch.zeros(window * window, dim))  # where in the window a key sits
        self.null = nn.Parameter(torch.zeros(1, dim))
        nn.init.normal_(self.offset_embed, std=0.02)
        nn.init.normal_(self.null, std=0.02)

    def forward(self, anchors: Tensor, tokens: Tensor, uv: Tensor, visible: Tensor, grid_hw: tuple[int, int]) -> Tensor:
        """anchors (B,A,D); tokens (B,V,L,D) with L = h*w; uv (B,V,A,2) token-grid positions;
        visible (B,V,A) bool (in front of the camera and inside the image)."""
        B, V, _, D = tokens.shape
        A = anchors.shape[1]
        idx, inside = window_indices(uv, grid_hw, self.window)  # (B,V,A,k2)
        k2 = idx.shape[-1]
        kv = self.norm_kv(tokens)
        gathered = torch.gather(kv, 2, idx.reshape(B, V, A * k2, 1).expand(-1, -1, -1, D)).reshape(B, V, A, k2, D)
        gathered = gathered + self.offset_embed.to(gathered.dtype)
        keys = gathered.permute(0, 2, 1, 3, 4).reshape(B * A, V * k2, D)
        valid = (inside & visible[..., None]).permute(0, 2, 1, 3).reshape(B * A, V * k2)
        keys = torch.cat([self.null.to(keys.dtype).expand(B * A, 1, D), keys], 1)
        valid = torch.cat([valid.new_ones(B * A, 1), valid], 1)
        q = self.norm_q(anchors).reshape(B * A, 1, D)
        out = self.attn(q, keys, mask=valid[:, None, None, :])
        return anchors + out.reshape(B, A, D)
