"""Compare astrosharp's star FWHM with an independent Moffat fit (photutils).

For each real image, astrosharp measures the PSF field; the stars it used (the
brightest, up to ``--max-stars``) are then fitted again, independently, with
photutils' ``PSFPhotometry`` and a ``MoffatPSF`` whose alpha and beta are free
(photutils' own local background, centroids and fitter).

Two numbers are reported per image:

* ``raw``: median photutils FWHM vs median astrosharp FWHM of the same stars.
  photutils' Moffat is circular and *point-sampled* (evaluated at pixel
  centres), astrosharp's is elliptical and *pixel-integrated*, so on
  well-sampled stars photutils reads a few percent wider (about +4 % at
  FWHM 3 px, more when undersampled): a difference of convention, not of
  measurement.
* ``astropy-pix``: an independent fit in astrosharp's own convention: astropy's
  ``Moffat2D`` (circular) averaged over 8 x 8 points per pixel plus a constant,
  fitted star by star with astropy's ``LevMarLSQFitter`` on 13 x 13 px or
  larger stamps;
* ``ell.``: the same with an elliptical Moffat (two core widths and an angle;
  FWHM = geometric mean of the axes): astrosharp's model exactly, fitted by
  independent code. On undersampled stars (SDSS here: FWHM 0.5 to 0.7 px) a
  circular model reads several percent wider than an elliptical one of the
  same stars, so this is the like-for-like check.
* ``closed-loop``: photutils fitted, with the same settings, to noise-free
  renderings of astrosharp's fitted stars (same positions, fluxes, shapes)
  gives the FWHM photutils *should* read if astrosharp is right; the median of
  the per-star ratios photutils(real) / photutils(astrosharp model) - 1 is the
  convention-free disagreement. The issue's bar is 5 %.

photutils is a measurement-only dependency (``pip install photutils``); it is
not needed by astrosharp itself.

Usage::

    python scripts/compare_psf_photutils.py [--data ../shared/data] [--max-stars 150]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

from astrosharp.psf.fit import render_moffat
from astrosharp.psf.measure import measure_psf


def _load(data: Path):
    """(name, (H, W) float array, note) of each real image."""
    from astropy.io import fits

    real = data / "real"
    out = []
    p = real / "M13_blue_0001.fits"
    if p.exists():
        out.append(("M13_blue_0001 (amateur, blue)", fits.getdata(p).astype(np.float64), "astropy"))
    for band in ("g", "r", "i"):
        p = real / f"reprojected_sdss_{band}.fits.bz2"
        if p.exists():
            out.append((f"SDSS {band} (reprojected)", fits.getdata(p).astype(np.float64), "astropy"))
    p = data / "xisf" / "xisf-image-gray-256x256-16bits-zlib_sh.xisf"
    if p.exists():
        from xisf import XISF

        im = XISF(str(p)).read_image(0)
        im = np.asarray(im, dtype=np.float64)
        im = im[..., 0] if im.ndim == 3 else im
        out.append(("M57 XISF (PixInsight)", im, "xisf package"))
    for p in sorted(real.glob("Light_NGC 7023_*.fit")):
        from astrosharp.io import read_image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = read_image(p)
        g = img.data[1] if img.data.shape[0] == 3 else img.data[0]
        out.append((f"Seestar {p.name.split('_')[2]} (debayered, G)", g.astype(np.float64), "astrosharp.io (bilinear debayer)"))
    return out


def _photutils_fwhm(image, x, y, flux, fwhm_guess, mask=None):
    from astropy.table import Table
    from photutils.background import LocalBackground, MMMBackground
    from photutils.psf import MoffatPSF, PSFPhotometry

    # at least 11 x 11 px: undersampled stars (FWHM < 1 px) would otherwise get
    # a 5 x 5 box in which background, beta and width cannot be told apart
    r = max(5, int(np.ceil(2.0 * fwhm_guess)))
    shape = (2 * r + 1, 2 * r + 1)
    model = MoffatPSF()
    model.alpha.fixed = False
    model.beta.fixed = False
    model.beta.value = 2.5
    model.alpha.value = fwhm_guess / (2 * np.sqrt(2 ** (1 / 2.5) - 1))
    model.beta.bounds = (1.05, 30.0)
    bkg = LocalBackground(inner_radius=max(3.0 * fwhm_guess, r + 1.0), outer_radius=max(5.0 * fwhm_guess, r + 6.0), bkg_estimator=MMMBackground())
    phot = PSFPhotometry(model, shape, aperture_radius=max(1.5 * fwhm_guess, 2.0), local_bkg_estimator=bkg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = phot(image, mask=mask, init_params=Table({"x": x, "y": y, "flux": flux}))
    a = np.asarray(t["alpha_fit"], float)
    b = np.asarray(t["beta_fit"], float)
    fw = 2 * a * np.sqrt(2 ** (1 / b) - 1)
    ok = (np.asarray(t["flags"]) == 0) & np.isfinite(fw) & (b < 29.0)
    return fw, ok


def _astropy_pixel_fwhm(image, x, y, fwhm_guess, sub=8, elliptical=False):
    """Independent pixel-integrated check: a Moffat (astropy's ``Moffat2D``, or
    with ``elliptical`` an elliptical Moffat with two core widths and an
    angle, written here) averaged over sub x sub points per pixel plus a
    constant, fitted per star with astropy's Levenberg-Marquardt fitter on a
    stamp of radius max(6, 2.5 FWHM) px. Returns the FWHM (the geometric mean
    of the axes when elliptical), NaN where the fit failed."""
    from astropy.modeling import custom_model
    from astropy.modeling.fitting import LevMarLSQFitter
    from astropy.modeling.models import Moffat2D

    o = (np.arange(sub) + 0.5) / sub - 0.5

    @custom_model
    def pixel_moffat(x, y, amplitude=1.0, x_0=0.0, y_0=0.0, gamma=1.0, alpha=2.5, bkg=0.0):
        xx = x[..., None, None] + o[None, :]
        yy = y[..., None, None] + o[:, None]
        return Moffat2D.evaluate(xx, yy, amplitude, x_0, y_0, gamma, alpha).mean(axis=(-1, -2)) + bkg

    @custom_model
    def pixel_emoffat(x, y, amplitude=1.0, x_0=0.0, y_0=0.0, ga=1.0, gb=1.0, theta=0.0, alpha=2.5, bkg=0.0):
        xx = x[..., None, None] + o[None, :] - x_0
        yy = y[..., None, None] + o[:, None] - y_0
        c, s = np.cos(theta), np.sin(theta)
        u = (c * xx + s * yy) / ga
        v = (-s * xx + c * yy) / gb
        return (amplitude * (1 + u * u + v * v) ** (-alpha)).mean(axis=(-1, -2)) + bkg

    r = max(6, int(np.ceil(2.5 * fwhm_guess)))  # as astrosharp's own stamps (at least 13 x 13 px)
    h, w = image.shape
    out = np.full(len(x), np.nan)
    fitter = LevMarLSQFitter()
    for i, (xc, yc) in enumerate(zip(x, y)):
        ix, iy = int(round(xc)), int(round(yc))
        if iy - r < 0 or ix - r < 0 or iy + r >= h or ix + r >= w:
            continue
        st = image[iy - r : iy + r + 1, ix - r : ix + r + 1]
        if not np.all(np.isfinite(st)):
            continue
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
        b0 = float(np.median(np.concatenate([st[0], st[-1], st[:, 0], st[:, -1]])))
        g0 = fwhm_guess / (2 * np.sqrt(2 ** (1 / 2.5) - 1))
        if elliptical:
            m0 = pixel_emoffat(amplitude=float(st.max() - b0), x_0=xc - ix, y_0=yc - iy, ga=g0, gb=0.95 * g0, theta=0.3, alpha=2.5, bkg=b0)
        else:
            m0 = pixel_moffat(amplitude=float(st.max() - b0), x_0=xc - ix, y_0=yc - iy, gamma=g0, alpha=2.5, bkg=b0)
        m0.alpha.bounds = (1.05, 30.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fitter(m0, xx, yy, st, maxiter=600)
        a = float(fit.alpha.value)
        if not 1.05 < a < 29.0:
            continue
        k = 2 * np.sqrt(2 ** (1 / a) - 1)
        out[i] = k * (np.sqrt(abs(fit.ga.value * fit.gb.value)) if elliptical else abs(float(fit.gamma.value)))
    return out


def compare(name, image, max_stars=150, min_snr=30.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = measure_psf(image)
    s = m.stars
    sel = np.nonzero(s.used & (s.snr >= min_snr) & (s.channel == 0))[0]
    if sel.size < 10:  # faint frames: take what there is
        sel = np.nonzero(s.used & (s.channel == 0))[0]
    sel = sel[np.argsort(-s.snr[sel])][:max_stars]
    if sel.size < 3:
        return dict(name=name, n=int(sel.size))
    st = s.select(sel)
    fg = float(np.median(st.fwhm))
    mask = ~np.isfinite(image)
    img = np.where(mask, 0.0, image)
    fw_real, ok1 = _photutils_fwhm(img, st.x, st.y, st.flux, fg, mask)
    # noise-free rendering of astrosharp's fitted stars (no background)
    h, w = image.shape
    canvas = np.zeros((h, w))
    r = int(np.ceil(6 * fg))
    for i in range(len(st)):
        ix, iy = int(round(st.x[i])), int(round(st.y[i]))
        y0, y1, x0, x1 = max(0, iy - r), min(h, iy + r + 1), max(0, ix - r), min(w, ix + r + 1)
        canvas[y0:y1, x0:x1] += render_moffat((y1 - y0, x1 - x0), st.x[i] - x0, st.y[i] - y0, st.flux[i], st.fwhm[i], st.beta[i], st.ellipticity[i], st.angle[i])
    fw_model, ok2 = _photutils_fwhm(canvas, st.x, st.y, st.flux, fg)
    fw_astropy = _astropy_pixel_fwhm(img, st.x, st.y, fg)
    fw_ell = _astropy_pixel_fwhm(img, st.x, st.y, fg, elliptical=True)
    ok = ok1 & ok2
    ok3 = ok & np.isfinite(fw_astropy)
    ok4 = np.isfinite(fw_ell)
    ours = float(np.median(st.fwhm[ok]))
    phot = float(np.median(fw_real[ok]))
    ratio = float(np.median(fw_real[ok] / fw_model[ok]))
    return dict(
        name=name,
        n=int(ok.sum()),
        ours=ours,
        beta=float(np.median(st.beta[ok])),
        ell=float(np.median(st.ellipticity[ok])),
        photutils=phot,
        raw=100 * (ours / phot - 1),
        photutils_on_model=float(np.median(fw_model[ok])),
        closed_loop=100 * (1 / ratio - 1),
        astropy=float(np.median(fw_astropy[ok3])) if ok3.any() else np.nan,
        ours3=float(np.median(st.fwhm[ok3])) if ok3.any() else np.nan,
        astropy_diff=100 * float(np.median(st.fwhm[ok3]) / np.median(fw_astropy[ok3]) - 1) if ok3.any() else np.nan,
        n_ell=int(ok4.sum()),
        ell_diff=100 * float(np.median(st.fwhm[ok4] / fw_ell[ok4]) - 1) if ok4.any() else np.nan,
        field=float(np.median(m.field.param("fwhm")[0])),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("ASTROSHARP_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--max-stars", type=int, default=150)
    args = ap.parse_args(argv)
    print(f"{'image':<34}{'stars':>6}{'ours':>7}{'beta':>6}{'ell':>6}{'photut.':>8}{'raw %':>7}{'phot(our model)':>16}{'closed-loop %':>14}"
          f"{'astropy-pix':>12}{'diff %':>8}{'ell. n':>7}{'diff %':>8}{'field':>7}")
    for name, image, how in _load(args.data):
        r = compare(name, image, args.max_stars)
        if r["n"] < 3:
            print(f"{name:<34}{r['n']:>6}  too few stars")
            continue
        print(f"{name:<34}{r['n']:>6}{r['ours']:7.2f}{r['beta']:6.2f}{r['ell']:6.2f}{r['photutils']:8.2f}{r['raw']:+7.1f}"
              f"{r['photutils_on_model']:16.2f}{r['closed_loop']:+14.1f}{r['astropy']:12.2f}{r['astropy_diff']:+8.1f}"
              f"{r['n_ell']:7d}{r['ell_diff']:+8.1f}{r['field']:7.2f}")
    print("\nours / photutils: median FWHM (px) of the same stars; raw % = ours vs photutils (conventions differ: "
          "pixel-integrated elliptical vs point-sampled circular);\nclosed-loop % = disagreement once photutils' convention "
          "is applied to astrosharp's fitted stars (the measurement check);\nastropy-pix = median FWHM of a pixel-integrated "
          "circular Moffat2D fitted with astropy, diff % = ours vs it;\nell. = the same with an elliptical pixel-integrated Moffat "
          "(astrosharp's model, fitted independently by astropy): stars fitted, median per-star difference %;\nfield = median FWHM of the PSF field.")


if __name__ == "__main__":
    main()
