"""Correct-only through the network: translate to a sharper round PSF, then
convolve to the round target.

Correct-only asks for every star at a round Moffat of the local source FWHM
(in colour, the median of the channels' FWHM) and the source beta, with flux
and centroid kept: the PSF made round, not sharper. Asked for that directly,
the network rounds stars only part of the way (median ellipticity 0.085 left
of 0.25, 0.145 of a trail's 0.31), and it moves the colour channels together,
so it cannot give them one width.

What it does well is sharpening to a round PSF, which is most of its
training: asked for half the source FWHM, its stars come out round. The
round target is that sharper round PSF convolved with a known kernel, whose
transfer function is the ratio of the two Moffats' (a low-pass filter, since
the target is the wider of the two). So, per tile:

0. in colour, the narrower channels are first blurred to the widest one
   (:func:`astrosharp.chroma.equalise_tiles`): asked to sharpen channels of
   different widths, the network narrows their differences too;
1. the network sharpens stars to ``Moffat(F / 2, beta)`` and non-stellar
   structure to ``Moffat(max(F_MIN, F / 2), beta)``, denoised;
2. each channel of each layer is convolved with
   ``OTF(T, beta) / OTF(sharpened FWHM, beta)``, with ``T`` the target FWHM
   (the channel's own in mono, the channels' median in colour), at the tile
   centre (the PSF field's resolution);
3. the input's noise is put back (times ``1 - denoise``): the input less the
   denoised result taken back to the source PSF, that is convolved with
   ``OTF(source) / OTF(sharpened)``, the source an elliptical Moffat per
   channel. Where the source PSF is round at the target already, the output
   is the input. Where the sharpened stars layer is bright (above about
   ``NOISE_STARS`` sigma) the Moffat model of the source misses detail the
   star has (a trail's ends, coma), which is not noise, so the difference is
   faded out there.

One network pass per tile.
Convolution is by FFT on the tile padded by reflection, so that a tile's edge
does not wrap around to the opposite one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .params import BETA_LIMITS, F_MIN, SharpenParams
from .psf.field import PARAM_NAMES

__all__ = ["SHARPEN", "correct_tiles", "translation_kernel_otf"]

#: the sharpening the network is asked for before the reblur (stars to
#: ``1 - SHARPEN / 2`` of the source FWHM, non-stellar to ``1 - SHARPEN / 2``)
SHARPEN = 1.0
#: the input less its model is taken as noise only where the (sharpened)
#: stars layer is below about this many noise sigma
NOISE_STARS = 5.0
#: reflection margin (px) of the FFT convolution
MARGIN = 32

_FWHM = PARAM_NAMES.index("fwhm")
_BETA = PARAM_NAMES.index("beta")
_E1 = PARAM_NAMES.index("e1")
_E2 = PARAM_NAMES.index("e2")


def _ratio(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """dst / src where src > 1e-6 (0 beyond), clipped to [0, 1]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(src > 1e-6, dst / src, 0.0)
    return np.clip(r, 0.0, 1.0)


def translation_kernel_otf(qx: np.ndarray, qy: np.ndarray, fwhm_from: float, beta_from: float,
                           fwhm_to: float, beta_to: float, ellipticity_to: float = 0.0,
                           angle_to: float = 0.0) -> np.ndarray:
    """Transfer function that turns a round Moffat (fwhm_from, beta_from) into
    a Moffat (fwhm_to, beta_to, ellipticity_to, angle_to; round by default);
    1 at zero frequency (flux kept).

    Where the source Moffat's transfer is below 1e-6 (far beyond what a
    sharper-to-wider translation needs) the ratio is set to 0.
    """
    from .psf.moffat import moffat_otf

    return _ratio(moffat_otf(qx, qy, fwhm_to, beta_to, ellipticity_to, angle_to),
                  moffat_otf(qx, qy, fwhm_from, beta_from))


def _spectra(layer: np.ndarray, margin: int) -> list[np.ndarray]:
    """rfft2 of each channel of a (C, h, w) layer, padded by reflection."""
    return [np.fft.rfft2(np.pad(ch.astype(np.float64), margin, mode="reflect")) for ch in layer]


def _image(spectrum: np.ndarray, shape: tuple[int, int], margin: int) -> np.ndarray:
    """The (h, w) image of a padded spectrum, the margin cut off."""
    h, w = shape
    return np.fft.irfft2(spectrum, s=(h + 2 * margin, w + 2 * margin))[margin:-margin, margin:-margin]


def correct_tiles(model: Any, tiles: np.ndarray, background: np.ndarray, sigma: Any, saturation: Any,
                  maps: np.ndarray, params: SharpenParams) -> tuple[np.ndarray, np.ndarray]:
    """Correct-only for a batch of padded tiles (see the module docstring).

    Parameters
    ----------
    model : the network (its ``translate`` method)
    tiles : (B, C, h, w) ndarray
    background : (B, C, h, w) ndarray
        The smooth background level the network normalises by.
    sigma, saturation : as for ``model.translate``
    maps : (B, C, P, h, w) ndarray
        Source PSF maps (``PARAM_NAMES`` order).
    params : SharpenParams
        With ``correct_only``; only ``denoise`` is read besides.

    Returns
    -------
    stars, nonstellar : (B, C, h, w) ndarray of float32
    """
    b, c, h, w = tiles.shape
    # the channels' own PSF at the tile centres sets the target (their median
    # FWHM) and, with the input, gives the noise
    src = maps[:, :, :, h // 2, w // 2].astype(np.float64)
    f_src = src[:, :, _FWHM]
    raw = tiles  # the input, before any equalising blur
    if c > 1:
        from .chroma import equalise_tiles

        tiles, maps, _ = equalise_tiles(tiles, maps)
    sharp = params.replace(correct_only=False, sharpen_stars=SHARPEN, adjust_halos=0.0,
                           sharpen_nonstellar=SHARPEN / 2.0, psf_diameter=None, denoise=1.0)
    s1, n1 = model.translate(tiles, background, sigma, saturation, maps, sharp)
    s1 = np.asarray(s1, np.float64)
    n1 = np.asarray(n1, np.float64) - background
    from .psf.moffat import moffat_otf

    sig = np.asarray(sigma, np.float64)
    m = MARGIN
    qy = np.fft.fftfreq(h + 2 * m)[:, None]
    qx = np.fft.rfftfreq(w + 2 * m)[None, :]
    stars = np.empty((b, c, h, w), np.float32)
    nonst = np.empty((b, c, h, w), np.float32)
    for i in range(b):
        f = maps[i, :, _FWHM, h // 2, w // 2].astype(np.float64)
        beta = np.clip(maps[i, :, _BETA, h // 2, w // 2].astype(np.float64), 1.01, 20.0)
        target = float(np.median(f_src[i]))
        star_from = f * (1.0 - SHARPEN / 2.0)
        neb_from = np.minimum(np.maximum(F_MIN, f * (1.0 - SHARPEN / 2.0)), f)
        star_beta = np.clip(beta, *BETA_LIMITS)
        e = np.hypot(src[i, :, _E1], src[i, :, _E2])
        ang = np.rad2deg(0.5 * np.arctan2(src[i, :, _E2], src[i, :, _E1]))
        b_src = np.clip(src[i, :, _BETA], 1.01, 20.0)
        otfs: dict[tuple[float, ...], np.ndarray] = {}

        def otf(*p: float) -> np.ndarray:  # each profile's transfer function once per tile
            if p not in otfs:
                otfs[p] = moffat_otf(qx, qy, *p)
            return otfs[p]

        spec_s, spec_n = _spectra(s1[i], m), _spectra(n1[i], m)
        for k in range(c):
            o_star, o_neb = otf(star_from[k], star_beta[k]), otf(neb_from[k], beta[k])
            stars[i, k] = _image(spec_s[k] * _ratio(otf(max(target, star_from[k]), beta[k]), o_star), (h, w), m)
            ns = _image(spec_n[k] * _ratio(otf(max(target, neb_from[k]), beta[k]), o_neb), (h, w), m)
            ns += background[i, k]
            if params.denoise < 1.0:
                # the input's noise: the input less the denoised result taken
                # back to the source PSF (an elliptical Moffat per channel)
                o_src = otf(f_src[i, k], b_src[k], e[k], ang[k])
                model_src = _image(spec_s[k] * _ratio(o_src, o_star) + spec_n[k] * _ratio(o_src, o_neb), (h, w), m)
                noise = raw[i, k] - (model_src + background[i, k])
                # where stars are bright the source PSF model (a Moffat) misses
                # their detail (trails, coma): that is not noise
                sg = float(sig[i, k] if sig.ndim == 2 else np.broadcast_to(sig.reshape(-1), (c,))[k])
                noise *= 1.0 / (1.0 + (np.maximum(s1[i, k], 0.0) / (NOISE_STARS * sg)) ** 2)
                ns += (1.0 - params.denoise) * noise
            nonst[i, k] = ns
    return stars, nonst
