"""Synthetic star images of known PSF for the PSF-measurement tests."""

from __future__ import annotations

import numpy as np

from astrosharp.psf.moffat import moffat_image


def psf_at(y, x, shape, fwhm=(3.0, 4.0), beta=3.0, e=0.2, angle=30.0):
    """Known PSF varying linearly in FWHM from left (fwhm[0]) to right (fwhm[1])."""
    h, w = shape
    f = fwhm[0] + (fwhm[1] - fwhm[0]) * x / (w - 1)
    return f, beta, e, angle


def star_image(rng, shape=(600, 600), n=260, sigma=1.0, sky=100.0, flux=(3e3, 4e4), margin=20, psf=psf_at, **kw):
    """(1, H, W) image of Moffat stars on a sky with Gaussian noise, stars spread
    on a jittered grid (isolated); returns image, star x, star y."""
    h, w = shape
    img = np.full(shape, sky, dtype=np.float64)
    side = int(np.ceil(np.sqrt(n)))
    gy, gx = np.meshgrid(np.linspace(margin, h - 1 - margin, side), np.linspace(margin, w - 1 - margin, side), indexing="ij")
    step = (w - 2 * margin) / side
    xs = (gx.ravel() + rng.uniform(-0.25, 0.25, side * side) * step)[:n]
    ys = (gy.ravel() + rng.uniform(-0.25, 0.25, side * side) * step)[:n]
    fl = np.exp(rng.uniform(np.log(flux[0]), np.log(flux[1]), n))
    r = 15
    for x, y, f in zip(xs, ys, fl):
        fw, be, e, ang = psf(y, x, shape, **kw)
        ix, iy = int(round(x)), int(round(y))
        y0, y1, x0, x1 = max(0, iy - r), min(h, iy + r + 1), max(0, ix - r), min(w, ix + r + 1)
        img[y0:y1, x0:x1] += moffat_image((y1 - y0, x1 - x0), x - x0, y - y0, f, fw, be, e, ang, oversample=5)
    img += rng.normal(0, sigma, shape)
    return img[None].astype(np.float32), xs, ys
