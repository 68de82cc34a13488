"""Training loss: Charbonnier in the compressed (u_faint) domain on both
layers, plus a flux-conservation term on low-passed linear residuals.

Nothing adversarial or perceptual: the target is the scene at the target PSF
plus the input's own noise (times 1 - denoise), and the loss only asks the
output to equal it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from astrosharp.nn.inputs import BRIGHT_SCALE, FAINT_SCALE, NET_CHANNELS

__all__ = ["charbonnier", "flux_term", "centroid_term", "noise_scaled_term", "total_loss"]


def charbonnier(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt(x * x + eps * eps).mean()


def _lin(u: torch.Tensor) -> torch.Tensor:
    return FAINT_SCALE * torch.sinh(u)


def flux_term(out_lin: torch.Tensor, tgt_lin: torch.Tensor, pool: int = 8, floor: float = 30.0) -> torch.Tensor:
    """Relative flux error on ``pool`` px blocks (overlapping, stride pool/2).

    Inputs are linear, in noise sigmas. The term is
    ``|avgpool(out - target)| / (avgpool(|target|) + floor / pool**2)``,
    averaged: bright blocks (stars) count by their relative error, so a 1%
    flux error on a bright star costs about 0.01, while blocks of pure noise
    (where the floor of ``floor`` sigma-pixels dominates) add little.
    """
    res = F.avg_pool2d(out_lin - tgt_lin, pool, stride=pool // 2)
    mag = F.avg_pool2d(tgt_lin.abs(), pool, stride=pool // 2)
    return (res.abs() / (mag + floor / pool**2)).mean()


def centroid_term(out_lin: torch.Tensor, tgt_lin: torch.Tensor, pool: int = 8, floor: float = 500.0) -> torch.Tensor:
    """Centroid error on ``pool`` px blocks (overlapping, stride pool/2), in px.

    Per block, the first moments of the residual about the block centre over
    the block's flux, ``(|sum dx r| + |sum dy r|) / (sum |target| + floor)``,
    averaged. A star moved by d px costs about d in its blocks: the
    Charbonnier term in the compressed domain hardly sees a 0.1 px shift of a
    bright star, this term sees it at its relative size. The floor (in
    sigma-pixels) keeps blocks of noise (whose residual dipole is noise) from
    counting: only blocks of some 500 sigma-pixels of flux and more matter.
    """
    b, c, h, w = out_lin.shape
    d = torch.arange(pool, dtype=out_lin.dtype, device=out_lin.device) - (pool - 1) / 2.0
    kx = d.view(1, 1, 1, pool).expand(1, 1, pool, pool)
    ky = d.view(1, 1, pool, 1).expand(1, 1, pool, pool)
    ones = torch.ones(1, 1, pool, pool, dtype=out_lin.dtype, device=out_lin.device)
    res = (out_lin - tgt_lin).reshape(b * c, 1, h, w)
    mag = F.conv2d(tgt_lin.abs().reshape(b * c, 1, h, w), ones, stride=pool // 2)
    mx = F.conv2d(res, kx, stride=pool // 2)
    my = F.conv2d(res, ky, stride=pool // 2)
    return ((mx.abs() + my.abs()) / (mag + floor)).mean()


def noise_scaled_term(out_lin: torch.Tensor, tgt_lin: torch.Tensor, scale: float = 30.0) -> torch.Tensor:
    """Charbonnier on ``(out - target) / sqrt(1 + |target| / scale)`` (linear, in noise sigmas).

    The divisor grows like the photon noise of bright structure: a one-sigma
    error on 300-sigma nebulosity costs about 0.3 (1 on the background), where
    the compressed domains (faint, mid) make it cost about 0.003 (1/3 and 1/30
    on the background), although the image's squared error (its PSNR) is made
    there.
    """
    return charbonnier((out_lin - tgt_lin) / torch.sqrt(1.0 + tgt_lin.abs() / scale))


#: the non-stellar term's domain, ``asinh(x / MID_SCALE)`` (x in noise sigmas)
MID_SCALE = 30.0


def total_loss(out_u: torch.Tensor, tgt_u: torch.Tensor, flux_weight: float = 0.5,
               bright_weight: float = 0.0, centroid_weight: float = 0.0,
               nonstellar_weight: float = 0.0, linear_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of a batch of outputs (B, 6, h, w) against targets, both u_faint.

    Charbonnier on each layer and on the sum of the layers (re-compressed),
    plus ``flux_weight`` times the flux term of the stars layer and of the sum,
    plus ``bright_weight`` times Charbonnier on the stars layer in the bright
    domain (``asinh(x / BRIGHT_SCALE)``): the faint domain compresses a bright
    star's core so much that its shape (the FWHM users judge) costs little;
    plus ``centroid_weight`` times the centroid term of the stars layer;
    plus ``nonstellar_weight`` times Charbonnier on the non-stellar layer in
    the mid domain (``asinh(x / MID_SCALE)``): in the faint domain an error of
    one sigma on nebulosity of 300 sigma costs a hundredth of what it costs on
    the background, while the image's squared error (its PSNR) is made there;
    plus ``linear_weight`` times :func:`noise_scaled_term` on the sum of the
    layers.
    Returns the scalar loss and its parts (for the log).
    """
    out_u = out_u.float()
    tgt_u = tgt_u.float()
    k = NET_CHANNELS
    l_u = charbonnier(out_u - tgt_u)
    o_stars, o_ns = _lin(out_u[:, :k]), _lin(out_u[:, k:])
    t_stars, t_ns = _lin(tgt_u[:, :k]), _lin(tgt_u[:, k:])
    o_sum, t_sum = o_stars + o_ns, t_stars + t_ns
    l_total = charbonnier(torch.asinh(o_sum / FAINT_SCALE) - torch.asinh(t_sum / FAINT_SCALE))
    l_flux_stars = flux_term(o_stars, t_stars)
    l_flux_total = flux_term(o_sum, t_sum)
    loss = l_u + l_total + flux_weight * (l_flux_stars + l_flux_total)
    l_bright = charbonnier(torch.asinh(o_stars / BRIGHT_SCALE) - torch.asinh(t_stars / BRIGHT_SCALE))
    if bright_weight:
        loss = loss + bright_weight * l_bright
    l_centroid = centroid_term(o_stars, t_stars)
    if centroid_weight:
        loss = loss + centroid_weight * l_centroid
    l_nonstellar = charbonnier(torch.asinh(o_ns / MID_SCALE) - torch.asinh(t_ns / MID_SCALE))
    if nonstellar_weight:
        loss = loss + nonstellar_weight * l_nonstellar
    l_linear = noise_scaled_term(o_sum, t_sum)
    if linear_weight:
        loss = loss + linear_weight * l_linear
    parts = {
        "l_u": float(l_u.detach()),
        "l_total": float(l_total.detach()),
        "l_flux_stars": float(l_flux_stars.detach()),
        "l_flux_total": float(l_flux_total.detach()),
        "l_bright": float(l_bright.detach()),
        "l_centroid": float(l_centroid.detach()),
        "l_nonstellar": float(l_nonstellar.detach()),
        "l_linear": float(l_linear.detach()),
    }
    return loss, parts
