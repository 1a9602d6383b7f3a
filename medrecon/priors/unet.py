"""A lean, fully convolutional UNet score network in the ADM / NCSN++ family.

Architecture (Ho et al. 2020; Song et al. 2021, "NCSN++"; Dhariwal & Nichol 2021, "ADM"):

* an input 3×3 convolution, then per resolution level ``l`` (channels ``model_channels ·
  channel_mult[l]``) ``num_blocks`` residual blocks and a 2× average-pool down-sampling;
* a middle section (residual block, self-attention, residual block) at the lowest resolution;
* a mirrored decoder whose blocks take the matching encoder activation as a concatenated skip
  connection, with nearest-neighbour 2× up-sampling followed by a 3×3 convolution;
* each residual block is GroupNorm → SiLU → conv3×3 → GroupNorm modulated by the noise embedding
  (``h·(1 + scale) + shift``, ADM's "adaptive group normalisation") → SiLU → dropout → conv3×3,
  plus a 1×1 skip when the channel count changes; the last convolution of every residual branch
  and of the output head is zero-initialised, so the untrained network outputs 0;
* the noise-level input ``c_noise`` (a ``[B]`` tensor; EDM uses ``ln(σ)/4``) is embedded by
  random Fourier features (NCSN++, scale 16) or by the transformer's sinusoidal positional
  encoding (ADM), then by a two-layer MLP;
* multi-head self-attention (``torch.nn.functional.scaled_dot_product_attention``) only in the
  levels listed in ``attn_levels`` (use the lowest ones: attention costs O((HW)²)).

Everything is convolutional, so a net trained on 128² patches evaluates on 256², 320² or any
size; sizes that are not a multiple of ``2**(len(channel_mult) - 1)`` are reflect-padded
internally and cropped back. ``UNet(**net.config)`` rebuilds an identical (untrained) network;
checkpoints store exactly this dict.

Input/output layout: real ``[B, in_channels, H, W]`` → real ``[B, out_channels, H, W]``. Complex
images are mapped to channels by :class:`medrecon.priors.ComplexAsChannels`, never here.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from medrecon import MedreconError

__all__ = ["UNet", "DEFAULT_CONFIG"]

#: The suggested configuration for the shipped priors: 5.39 M parameters (10.3 MiB in float16),
#: ≈ 0.45 s per 256² evaluation on 2 CPU cores; resolutions 1, ½, ¼, ⅛ with 32/64/96/128 channels
#: and attention only at ⅛ (16² for 128² training patches). Use as ``UNet(2, 2, **DEFAULT_CONFIG)``.
DEFAULT_CONFIG: dict[str, Any] = {
    "model_channels": 32,
    "channel_mult": [1, 2, 3, 4],
    "num_blocks": [1, 2, 2, 2],
    "attn_levels": [3],
}


def _groups(channels: int) -> int:
    """GroupNorm group count: the most groups (≤ 32) that keep at least 4 channels per group."""
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _NoiseEmbedding(nn.Module):
    """``c_noise [B] → [B, dim]`` by Fourier features (NCSN++) or sinusoidal positions (ADM)."""

    def __init__(self, dim: int, kind: str, fourier_scale: float) -> None:
        super().__init__()
        if dim % 2:
            raise MedreconError(f"the noise embedding needs an even width, received {dim}")
        half = dim // 2
        if kind == "fourier":
            # Fixed random frequencies (Tancik et al. 2020), stored in the checkpoint as a buffer.
            gen = torch.Generator().manual_seed(0)
            freqs = 2 * math.pi * fourier_scale * torch.randn(half, generator=gen)
        elif kind == "positional":
            # Vaswani et al. 2017: frequencies 10000^(-i/half), i = 0..half-1.
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        else:
            raise MedreconError(f"embedding must be 'fourier' or 'positional', received {kind!r}")
        self.register_buffer("freqs", freqs)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        arg = c_noise.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_channels, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm2(h), scale + 1))
        return self.skip(x) + self.conv2(self.dropout(h))


class _Attention(nn.Module):
    def __init__(self, channels: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            raise MedreconError(f"attention: {channels} channels do not split into {self.heads} heads")
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _Down(nn.Module):
    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.avg_pool2d(x, 2)


class _Up(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Noise-conditional UNet ``F(x, c_noise)`` (module docstring: architecture and layout).

    Args:
        in_channels, out_channels: real channels of input and output (2 for one complex image).
        model_channels: channels at full resolution; level ``l`` has ``model_channels·channel_mult[l]``.
        channel_mult: one multiplier per resolution level; ``len(channel_mult) - 1`` down-samplings.
        num_blocks: residual blocks per level in the encoder (the decoder has one more), an int or
            one int per level.
        attn_levels: levels (0 = full resolution) with self-attention after each residual block; the
            middle section has attention when the lowest level is listed.
        dropout: dropout probability inside residual blocks.
        embedding: ``"fourier"`` (NCSN++, fixed random frequencies × ``fourier_scale``) or
            ``"positional"`` (ADM) embedding of ``c_noise``.
        head_channels: channels per attention head.
        emb_channels: width of the noise embedding MLP (default ``4·model_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_blocks: Union[int, Sequence[int]] = 2,
        attn_levels: Sequence[int] = (2,),
        dropout: float = 0.0,
        *,
        embedding: str = "fourier",
        fourier_scale: float = 16.0,
        head_channels: int = 32,
        emb_channels: Optional[int] = None,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        blocks = [int(num_blocks)] * levels if isinstance(num_blocks, int) else [int(n) for n in num_blocks]
        if levels < 1 or len(blocks) != levels or min(blocks) < 1:
            raise MedreconError(
                f"UNet: expected channel_mult with ≥ 1 level and num_blocks ≥ 1 per level, received "
                f"channel_mult={list(channel_mult)}, num_blocks={num_blocks}"
            )
        if any(not 0 <= a < levels for a in attn_levels):
            raise MedreconError(f"UNet: attn_levels must lie in 0..{levels - 1}, received {list(attn_levels)}")
        emb_channels = int(emb_channels or 4 * model_channels)
        self.config: dict[str, Any] = {
            "in_channels": int(in_channels), "out_channels": int(out_channels),
            "model_channels": int(model_channels), "channel_mult": [int(m) for m in channel_mult],
            "num_blocks": blocks, "attn_levels": sorted(int(a) for a in attn_levels),
            "dropout": float(dropout), "embedding": embedding, "fourier_scale": float(fourier_scale),
            "head_channels": int(head_channels), "emb_channels": emb_channels,
        }
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.multiple = 2 ** (levels - 1)

        self.embed = _NoiseEmbedding(model_channels, embedding, fourier_scale)
        self.emb_mlp = nn.Sequential(
            nn.Linear(model_channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)

        # Encoder: remember the channel count of every activation kept for a skip connection.
        self.down = nn.ModuleList()
        skips, ch = [model_channels], model_channels
        for level, mult in enumerate(channel_mult):
            cout = model_channels * mult
            for _ in range(blocks[level]):
                layer = [_ResBlock(ch, cout, emb_channels, dropout)]
                if level in attn_levels:
                    layer.append(_Attention(cout, head_channels))
                self.down.append(nn.ModuleList(layer))
                ch = cout
                skips.append(ch)
            if level < levels - 1:
                self.down.append(nn.ModuleList([_Down()]))
                skips.append(ch)

        mid_attn = levels - 1 in attn_levels
        self.mid = nn.ModuleList(
            [_ResBlock(ch, ch, emb_channels, dropout)]
            + ([_Attention(ch, head_channels)] if mid_attn else [])
            + [_ResBlock(ch, ch, emb_channels, dropout)]
        )

        # Decoder: one more block per level than the encoder, each consuming one skip.
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            cout = model_channels * channel_mult[level]
            for i in range(blocks[level] + 1):
                layer = [_ResBlock(ch + skips.pop(), cout, emb_channels, dropout)]
                if level in attn_levels:
                    layer.append(_Attention(cout, head_channels))
                ch = cout
                if level > 0 and i == blocks[level]:
                    layer.append(_Up(ch))
                self.up.append(nn.ModuleList(layer))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = _zero(nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """``x``: real ``[B, in_channels, H, W]``; ``c_noise``: ``[B]`` (or one value) → ``[B, out_channels, H, W]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.is_complex():
            raise MedreconError(
                f"UNet expected a real tensor [B, {self.in_channels}, H, W], received "
                f"{tuple(x.shape)} {x.dtype}"
            )
        c_noise = torch.as_tensor(c_noise, device=x.device).reshape(-1).expand(x.shape[0])
        h_in, w_in = x.shape[-2:]
        pad_h, pad_w = (-h_in) % self.multiple, (-w_in) % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h_in and pad_w < w_in else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)

        emb = F.silu(self.emb_mlp(self.embed(c_noise).to(x.dtype)))
        h = self.conv_in(x)
        stack = [h]
        for layer in self.down:
            for module in layer:
                h = module(h, emb)
            stack.append(h)
        for module in self.mid:
            h = module(h, emb)
        for layer in self.up:
            h = torch.cat([h, stack.pop()], dim=1)
            for module in layer:
                h = module(h, emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., :h_in, :w_in]
