"""Star flux conservation: the last step of a translation.

Changing a star's PSF moves light, it does not create or destroy it. So,
around every star, the output and the input must hold the same light, up to
the part of the star's wings that the change of PSF moves across the
aperture's edge, which the two PSFs tell exactly:

    sum_ap(output) - sum_ap(input) = F * (EE_target(R) - EE_source(R))

where ``F`` is the star's total flux and ``EE(R)`` the fraction of a Moffat
PSF's light within radius ``R`` (``1 - (1 + R^2 / alpha^2)^(1 - beta)``).
The structure under a star (a nebula, a galaxy) changes PSF too, and moves
its own light across the aperture's edge: where it is bright and curved,
that is several percent of a faint star's flux. Its share is read off the
non-stellar layer, blurred back from its target to its source PSF (a
Gaussian of the difference in width): it holds
``sum_ap(N) - sum_ap(N * G)`` more light in the aperture than the input
did, and that much is no part of the star.

The network learns this, but not to the 1 % users expect from photometry;
:func:`conserve_star_flux` measures each star's departure from the equation
and scales that star in the stars layer to remove it.

At denoise 0 the output carries the input's own noise, so the difference
``output - input`` over an aperture is nearly free of noise and even faint
stars are corrected reliably; the noise that denoise removes enters the
uncertainty, and corrections smaller than it are damped (a Wiener-like
shrink). Stars with a saturated pixel near them (the input does not hold
their light; judged per channel), at the edge of the frame, or too faint are
left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._threads import each
from .params import SharpenParams, correct_target, nonstellar_layer_fwhm, stellar_target
from .psf.field import PARAM_NAMES, PSFField
from .psf.moffat import alpha_from_fwhm

__all__ = ["FluxCorrection", "encircled_energy", "conserve_star_flux", "luminance", "source_psf_at", "star_peaks"]

#: aperture radius in source FWHM, and its bounds in pixels
APERTURE_FWHM = 3.0
APERTURE_MIN = 3.0
APERTURE_MAX = 40.0
#: the correction tapers to zero between R and TAPER x R
TAPER = 1.5
#: stars fainter than this aperture signal-to-noise (against the input's noise) are left alone
MIN_SNR = 20.0
#: no star is scaled by more than this fraction
MAX_CHANGE = 0.25
#: passes of measure-and-scale (neighbours share apertures)
ITERATIONS = 3
#: at most this many stars are examined (the brightest)
MAX_STARS = 20000


@dataclass
class FluxCorrection:
    """What :func:`conserve_star_flux` did.

    Attributes
    ----------
    n_stars : int
        Stars examined (peaks of the stars layer).
    n_corrected : (C,) ndarray of int
        Stars scaled, per channel.
    median_change, p90_change : (C,) ndarray
        Median and 90th percentile of |scale - 1| of the corrected stars.
    n_capped : (C,) ndarray of int
        Of those, stars scaled by the most allowed (``MAX_CHANGE``): their
        flux may be further off than that.
    """

    n_stars: int
    n_corrected: np.ndarray
    median_change: np.ndarray
    p90_change: np.ndarray
    n_capped: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    def describe(self) -> str:
        if self.n_corrected.sum() == 0:
            return "star flux conservation: no star needed or allowed a correction"
        med = ", ".join(f"{100 * m:.1f}%" for m in self.median_change)
        text = (f"star flux conservation: {int(self.n_corrected.max())} stars rescaled to the input's flux "
                f"(median change per channel {med})")
        if len(self.n_capped) and self.n_capped.sum():
            text += (f"; {', '.join(str(int(k)) for k in self.n_capped)} stars (per channel) needed more than the "
                     f"{100 * MAX_CHANGE:.0f}% allowed and keep part of their error")
        return text


def encircled_energy(radius: np.ndarray, fwhm: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Fraction of a round Moffat's light within ``radius`` (elementwise).

    Parameters
    ----------
    radius, fwhm : array_like, px
    beta : array_like (> 1)
    """
    a = alpha_from_fwhm(np.asarray(fwhm, float), np.asarray(beta, float))
    r = np.asarray(radius, float)
    return 1.0 - (1.0 + (r / a) ** 2) ** (1.0 - np.asarray(beta, float))


def luminance(layer: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The channels of a (C, H, W) layer in noise sigmas, summed and divided by
    sqrt(C) (a pure-noise pixel has unit variance); float32 (H, W)."""
    lum = np.zeros(layer.shape[1:], dtype=np.float32)
    for c in range(layer.shape[0]):
        lum += layer[c] / np.float32(sigma[c])
    lum /= np.float32(np.sqrt(layer.shape[0]))
    return lum


def source_psf_at(psf: PSFField, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source FWHM and beta (beta bounded to 1.05 .. 20) per channel at points, each (C, N)."""
    pars = psf.sample(ys, xs)  # (C, P, N)
    return pars[:, PARAM_NAMES.index("fwhm")], np.clip(pars[:, PARAM_NAMES.index("beta")], 1.05, 20.0)


def star_peaks(stars: np.ndarray, sigma: np.ndarray, threshold: float = 5.0, limit: int = MAX_STARS) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the stars layer (sum of channels in noise sigmas).

    Returns
    -------
    (y, x) : int arrays, brightest first, at most ``limit``.
    """
    from scipy.ndimage import maximum_filter

    lum = luminance(stars, sigma)
    peak = (lum == maximum_filter(lum, size=5, mode="nearest")) & (lum > threshold)
    y, x = np.nonzero(peak)
    order = np.argsort(-lum[y, x], kind="stable")[:limit]
    return y[order], x[order]


def _near(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, distance: float, block: int = 8) -> np.ndarray:
    """Whether each point lies within about ``distance`` px of a True pixel of
    ``mask`` (judged on ``block`` px blocks, so a little further counts too;
    a few MB for any image size)."""
    from scipy.ndimage import maximum_filter

    h, w = mask.shape
    hb, wb = -(-h // block), -(-w // block)
    small = np.zeros((hb, wb), bool)
    yy, xx = np.nonzero(mask)
    small[yy // block, xx // block] = True
    r = int(np.ceil(distance / block)) + 1
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    grown = maximum_filter(small, footprint=np.hypot(dy, dx) <= r + 0.5, mode="constant")
    return grown[ys // block, xs // block]


def _disk(r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(np.ceil(r))
    dy, dx = np.mgrid[-n : n + 1, -n : n + 1]
    d = np.hypot(dy, dx)
    return dy.ravel(), dx.ravel(), d.ravel()


def conserve_star_flux(
    stars: np.ndarray,
    nonstellar: np.ndarray,
    reference: np.ndarray,
    psf: PSFField,
    params: SharpenParams,
    sigma: np.ndarray,
    saturation: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    copy: bool = True,
) -> tuple[np.ndarray, FluxCorrection]:
    """Scale each star of the stars layer so the output conserves its flux.

    Parameters
    ----------
    stars, nonstellar : (C, H, W) ndarray
        The translation's two layers (their sum is the output).
    reference : (C, H, W) ndarray
        The input they were made from (bad pixels filled).
    psf : PSFField
        The input's (source) PSF field.
    params : SharpenParams
        The controls (they give each star's target PSF and the denoise amount).
    sigma : (C,) array_like
        Background noise of the input per channel.
    saturation : (C,) array_like or None
        Clipping level per channel (``inf`` where a channel is not clipped).
    exclude : (H, W) or (C, H, W) bool ndarray, optional
        Pixels whose stars must be left alone (calibration borders).
    copy : bool
        Work on a copy of ``stars`` (default); False scales ``stars`` in place
        (saves memory on large images).

    Returns
    -------
    (stars, FluxCorrection)
        The corrected stars layer (a new array unless ``copy=False``) and a summary.
    """
    C, H, W = stars.shape
    sigma = np.asarray(sigma, float).reshape(-1)
    ys, xs = star_peaks(stars, sigma)
    n = len(ys)
    none = FluxCorrection(n, np.zeros(C, int), np.zeros(C), np.zeros(C), np.zeros(C, int))
    if n == 0:
        return stars, none
    f_src, b_src = source_psf_at(psf, ys, xs)
    if params.correct_only:
        f_tgt, b_tgt = correct_target(f_src, b_src)
    else:
        f_tgt, b_tgt = stellar_target(f_src, b_src, params.sharpen_stars, params.adjust_halos)
    b_tgt = np.clip(b_tgt, 1.05, 20.0)
    radius = np.clip(APERTURE_FWHM * f_src, APERTURE_MIN, APERTURE_MAX)  # (C, N)
    ee_s = encircled_energy(radius, f_src, b_src)
    ee_t = encircled_energy(radius, f_tgt, b_tgt)
    alpha_t = alpha_from_fwhm(np.maximum(f_tgt, 0.5), b_tgt)
    f_neb = nonstellar_layer_fwhm(f_src, params)  # (C, N)

    # stars near saturated pixels or borders, or whose taper leaves the frame
    reach = np.ceil(TAPER * radius.max(axis=0)).astype(int)
    ok = (ys >= reach) & (xs >= reach) & (ys < H - reach) & (xs < W - reach)
    distance = float(np.max(reach + 2 + 3.0 * f_src.max(axis=0)))
    if exclude is not None:
        bad = np.asarray(exclude, bool).reshape(-1, H, W).any(axis=0)
        if bad.any():
            ok &= ~_near(bad, ys, xs, distance)
        del bad
    # a channel's input holds a star's light unless that channel is clipped
    # there: a star saturated in red only is still conserved in green and blue
    ok_c = np.repeat(ok[None], C, axis=0)
    if saturation is not None:
        sat = np.broadcast_to(np.asarray(saturation, float).reshape(-1), (C,))
        for c in range(C):
            if np.isfinite(sat[c]):
                clipped = reference[c] >= sat[c]
                if clipped.any():
                    ok_c[c] &= ~_near(clipped, ys, xs, distance)
                del clipped

    out = np.array(stars, dtype=np.float32, copy=copy)
    n_corr = np.zeros(C, int)
    n_cap = np.zeros(C, int)
    med = np.zeros(C)
    p90 = np.zeros(C)

    def channel(c: int) -> None:
        total = np.ones(n)
        # stars too faint for a reliable correction are left alone (and cost nothing further)
        active = ok_c[c] & _bright(out[c], ys, xs, radius[c], float(sigma[c]), ok_c[c])
        moved = _moved_light(nonstellar[c], ys, xs, radius[c], f_src[c], f_neb[c], b_src[c], active)
        # neighbours share apertures: repeat until every aperture holds its light
        for it in range(ITERATIONS):
            k, amp = _channel_scales(out[c], nonstellar[c], reference[c], ys, xs, radius[c], ee_s[c] / ee_t[c],
                                     float(sigma[c]), params.denoise, active, moved=moved)
            active &= np.isfinite(k)
            k = np.where(active, np.nan_to_num(k), 0.0)
            # the passes together change no star by more than MAX_CHANGE
            k = np.clip((1.0 + k) * total, 1.0 - MAX_CHANGE, 1.0 + MAX_CHANGE) / total - 1.0
            if not active.any():
                break
            _apply(out[c], ys, xs, radius[c], k, active, amp, alpha_t[c], b_tgt[c])
            total *= 1.0 + k
        if active.any():
            ch = np.abs(total[active] - 1.0)
            n_corr[c] = int(active.sum())
            med[c] = float(np.median(ch))
            p90[c] = float(np.percentile(ch, 90))
            n_cap[c] = int(np.sum(ch >= MAX_CHANGE - 1e-6))

    each(channel, range(C))  # the channels side by side (each scales only its own plane)
    return out.astype(stars.dtype, copy=False), FluxCorrection(n, n_corr, med, p90, n_cap)


def _moved_weights(r: float, f_src: float, f_tgt: float, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets and weights ``disk(r) - disk(r) * K`` of a stamp, K the kernel
    that takes a round Moffat of FWHM ``f_tgt`` to one of ``f_src`` (same
    beta): summed against a layer at the target PSF, the light that the
    layer's source PSF would spread out of the disk (negligible weights
    dropped)."""
    from .psf.moffat import moffat_otf

    n = int(np.ceil(r + 8.0 * f_src))
    size = 2 * n + 1
    dy, dx = np.mgrid[-n : n + 1, -n : n + 1]
    disk = (np.hypot(dy, dx) <= r).astype(np.float64)
    q = np.fft.fftfreq(size)
    qy, qx = np.meshgrid(q, q, indexing="ij")
    ratio = moffat_otf(qx, qy, f_src, beta) / np.maximum(moffat_otf(qx, qy, f_tgt, beta), 1e-12)
    spread = np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(disk)) * ratio).real
    w = disk - np.fft.fftshift(spread)
    keep = np.abs(w) > 1e-5
    return dy[keep], dx[keep], w[keep]


def _moved_light(nonstellar: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: np.ndarray, f_src: np.ndarray,
                 f_neb: np.ndarray, beta: np.ndarray, active: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Light the non-stellar layer (one channel) holds in each active star's
    aperture beyond what the input's PSF would leave there (:func:`_moved_weights`);
    0 where it is not sharpened."""
    H, W = nonstellar.shape
    moved = np.zeros(len(ys))
    for r, part in _groups(radius, active):
        fs, ft, b = (float(np.median(v[part])) for v in (f_src, f_neb, beta))
        if fs - ft <= 0.02:
            continue
        ey, ex, ew = _moved_weights(r, fs, ft, b)
        for s0 in range(0, len(part), chunk):
            sub = part[s0 : s0 + chunk]
            yy = np.clip(ys[sub, None] + ey[None, :], 0, H - 1)
            xx = np.clip(xs[sub, None] + ex[None, :], 0, W - 1)
            moved[sub] = (nonstellar[yy, xx] * ew[None, :]).sum(axis=1, dtype=np.float64)
    return moved


def _groups(radius: np.ndarray, active: np.ndarray):
    """Active stars grouped by aperture radius (half pixels), in chunks."""
    idx = np.nonzero(active)[0]
    rint = np.round(radius[idx] * 2) / 2
    for r in np.unique(rint):
        sel = idx[rint == r]
        for s0 in range(0, len(sel), 2048):
            yield float(r), sel[s0 : s0 + 2048]


def _apertures(ys: np.ndarray, xs: np.ndarray, radius: np.ndarray, active: np.ndarray):
    """Per group of active stars (one aperture radius): their indices and the
    (N, n_ap) row and column indices of their apertures' pixels."""
    for r, part in _groups(radius, active):
        dy, dx, d = _disk(r)
        inner = d <= r
        yield part, ys[part, None] + dy[inner][None, :], xs[part, None] + dx[inner][None, :]


def _bright(stars: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: np.ndarray, sigma: float,
            active: np.ndarray) -> np.ndarray:
    """Which active stars hold at least ``MIN_SNR`` times the input's noise in
    their aperture of the stars layer."""
    keep = np.zeros(len(ys), bool)
    for part, yy, xx in _apertures(ys, xs, radius, active):
        a_s = stars[yy, xx].sum(axis=1, dtype=np.float64)
        keep[part] = a_s / (sigma * np.sqrt(yy.shape[1])) >= MIN_SNR
    return keep


def _channel_scales(stars: np.ndarray, nonstellar: np.ndarray, reference: np.ndarray, ys: np.ndarray,
                    xs: np.ndarray, radius: np.ndarray, ee_ratio: np.ndarray, sigma: float, denoise: float,
                    active: np.ndarray, moved: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scale change of each active star that makes its aperture hold the
    input's light, less the light the non-stellar layer's own change of PSF
    moved into it (``moved``, see :func:`_moved_light`), and the stars
    layer's light in that aperture."""
    k = np.full(len(ys), np.nan)
    amp = np.zeros(len(ys))
    for part, yy, xx in _apertures(ys, xs, radius, active):
        a_s = stars[yy, xx].sum(axis=1, dtype=np.float64)
        a_o = a_s + nonstellar[yy, xx].sum(axis=1, dtype=np.float64)
        a_i = reference[yy, xx].sum(axis=1, dtype=np.float64)
        n_ap = yy.shape[1]
        e = a_o - a_i - a_s * (1.0 - ee_ratio[part])
        if moved is not None:
            e -= moved[part]
        # what denoise removed is noise in the difference; damp corrections below it
        u2 = (denoise * sigma) ** 2 * n_ap
        with np.errstate(divide="ignore", invalid="ignore"):
            kk = -e / a_s * (e * e / (e * e + u2)) if u2 > 0 else -e / a_s
        k[part] = np.clip(kk, -MAX_CHANGE, MAX_CHANGE)
        amp[part] = a_s
    return k, amp


def _apply(stars: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: np.ndarray, k: np.ndarray,
           active: np.ndarray, amp: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> None:
    """Scale ``stars`` (in place) by 1 + k around each active star: fully
    inside its aperture, tapering to nothing at TAPER x its radius. Where
    stars' windows overlap, each pixel takes the stars' changes in proportion
    to the light each star puts there (a Moffat of the target shape and the
    star's aperture flux ``amp``), so a faint neighbour cannot rescale a
    bright star's core, nor the reverse."""
    num = np.zeros(stars.shape, np.float32)
    den = np.zeros(stars.shape, np.float32)
    for r, part in _groups(radius, active):
        dy, dx, d = _disk(TAPER * r)
        t = np.clip((d - r) / ((TAPER - 1.0) * r), 0.0, 1.0)
        taper = 0.5 * (1.0 + np.cos(np.pi * t))
        a = alpha[part, None]
        light = np.abs(amp[part, None]) / a**2 * (1.0 + (d[None, :] / a) ** 2) ** (-beta[part, None])
        yy = ys[part, None] + dy[None, :]
        xx = xs[part, None] + dx[None, :]
        # the taper of a star near the edge may reach past it (radii are grouped by half pixels)
        inb = (yy >= 0) & (yy < stars.shape[0]) & (xx >= 0) & (xx < stars.shape[1])
        np.add.at(num, (yy[inb], xx[inb]), (k[part, None] * taper[None, :] * light)[inb].astype(np.float32))
        np.add.at(den, (yy[inb], xx[inb]), light[inb].astype(np.float32))
    np.divide(num, den, out=num, where=den > 0)
    num[den <= 0] = 0.0
    del den
    num += 1.0
    stars *= num
