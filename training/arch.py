"""A plain residual U-Net without normalisation layers (fast on CPU).

The input is the stack of :func:`astrosharp.nn.inputs.build_inputs`; the
output is ``N_OUTPUTS`` channels (stars and non-stellar layers in the u_faint
domain).

Output head (``split_head``): the network predicts a residual ``r`` of the
whole image in the u_faint domain and a logit ``g`` of the stars' share of
each pixel; in float32,
``total = FAINT_SCALE * sinh(u_in + r)``, ``stars = sigmoid(g) * total``,
``nonstellar = total - stars``, each returned as ``asinh(layer / FAINT_SCALE)``.
An untouched image (r = 0, stars' share near 0) is the starting point, and
splitting the layers is a per-pixel classification instead of copying bright
values between channels. The head is part of the exported ONNX graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from astrosharp.nn.inputs import FAINT_SCALE, N_INPUTS, N_OUTPUTS, NET_CHANNELS, TILE_MULTIPLE

__all__ = ["UNetConfig", "UNet", "count_params"]

RESIDUAL_LIMIT = 4.0
U_LIMIT = 30.0


@dataclass
class UNetConfig:
    """Widths per level (len = downsamplings + 1) and residual blocks per level."""

    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 2, 2])
    dec_blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    in_channels: int = N_INPUTS
    out_channels: int = N_OUTPUTS
    split_head: bool = True
    residual_gain: float = 1.0
    gate_gain: float = 1.0
    # under autocast (bf16 training), run the first convolution in float32: in
    # bf16 the u_faint input of a 300-sigma nebula is rounded to about 3 % (9
    # sigma), finer structure than that is invisible to the network (inference
    # runs in float32 anyway; the exported graph is the same either way)
    fp32_stem: bool = False


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(self.act(self.c1(x)))


class UNet(nn.Module):
    """Residual U-Net; input height and width must be multiples of 2**levels."""

    def __init__(self, cfg: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or UNetConfig()
        self.cfg = cfg
        w = cfg.widths
        self.multiple = 2 ** (len(w) - 1)
        assert self.multiple <= TILE_MULTIPLE
        self.head = nn.Sequential(nn.Conv2d(cfg.in_channels, w[0], 3, padding=1), nn.ReLU(inplace=True))
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i, ch in enumerate(w):
            self.enc.append(nn.Sequential(*[ResBlock(ch) for _ in range(cfg.blocks[i])]))
            if i < len(w) - 1:
                self.down.append(nn.Sequential(nn.Conv2d(ch, w[i + 1], 2, stride=2), nn.ReLU(inplace=True)))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(w) - 2, -1, -1):
            self.up.append(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2))
            self.dec.append(nn.Sequential(*[ResBlock(w[i]) for _ in range(cfg.dec_blocks[i])]))
        self.tail = nn.Conv2d(w[0], cfg.out_channels, 3, padding=1)
        # He initialisation for the ReLU layers, residual branches starting at
        # zero (each block starts as the identity): without normalisation
        # layers this keeps the signal at every level of the U at unit scale
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                nn.init.zeros_(mod.bias)
        for mod in self.modules():
            if isinstance(mod, ResBlock):
                nn.init.zeros_(mod.c2.weight)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        if cfg.split_head:
            with torch.no_grad():
                self.tail.bias[NET_CHANNELS:] = -3.0 / cfg.gate_gain  # stars' share starts near 5 %

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u_faint = x[:, :NET_CHANNELS]
        if self.cfg.fp32_stem and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                h = self.head(x.float())
        else:
            h = self.head(x)
        skips = []
        for i, enc in enumerate(self.enc):
            h = enc(h)
            if i < len(self.down):
                skips.append(h)
                h = self.down[i](h)
        for up, dec in zip(self.up, self.dec):
            h = up(h) + skips.pop()
            h = dec(h)
        y = self.tail(h).float()
        if not self.cfg.split_head:
            return torch.cat([y[:, :NET_CHANNELS], y[:, NET_CHANNELS:] + u_faint.float()], dim=1)
        # bounded residual (at most a factor e**RESIDUAL_LIMIT in linear units)
        # and a bounded domain, so sinh never overflows float32
        r = RESIDUAL_LIMIT * torch.tanh(self.cfg.residual_gain * y[:, :NET_CHANNELS] / RESIDUAL_LIMIT)
        g = self.cfg.gate_gain * y[:, NET_CHANNELS:]
        total = FAINT_SCALE * _sinh(torch.clamp(u_faint.float() + r, -U_LIMIT, U_LIMIT))
        stars = torch.sigmoid(g) * total
        nonstellar = total - stars
        return torch.cat([_asinh(stars / FAINT_SCALE), _asinh(nonstellar / FAINT_SCALE)], dim=1)


def _sinh(z: torch.Tensor) -> torch.Tensor:
    # spelled out: the ONNX exporter has no aten::sinh / aten::asinh
    return 0.5 * (torch.exp(z) - torch.exp(-z))


def _asinh(x: torch.Tensor) -> torch.Tensor:
    a = torch.abs(x)
    return torch.sign(x) * torch.log(a + torch.sqrt(a * a + 1.0))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
