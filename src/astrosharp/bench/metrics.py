"""Fidelity metrics of a PSF translation against a known truth (and without one).

Every function works on one channel, ``(H, W)`` arrays in linear image units,
unless it says otherwise; the bench loops over channels and pools the results.
Definitions (also in ``docs/bench.md``):

PSNR
    ``10 log10(peak^2 / MSE)`` over the pixels of a mask. ``peak`` is the
    truth's dynamic range over the same pixels: its 99.9th minus its 0.1th
    percentile (robust against a few extreme pixels; the same peak for every
    method of a case, so rows compare by their MSE alone). Saturated pixels of
    the input, grown by ``SATURATION_GROW`` px, are always excluded. The
    extended-emission PSNR also excludes a disc around every truth star whose
    source-PSF peak reaches ``STAR_MASK_SNR`` noise sigma: radius 3 source
    FWHM, grown for bright stars to where their source profile falls below
    half a noise sigma (capped at 25 FWHM).
Stars
    Stars of peak signal-to-noise >= 50 at the source PSF, not saturated
    (no saturated pixel within 3 FWHM), at least 6 FWHM from the edges, and
    isolated (no other star of >= 5% of their flux within 4 FWHM, i.e. none
    that disturbs the fit; fainter or farther neighbours are in the truth's
    aperture too, so they do not bias the flux ratio).
    FWHM, ellipticity and centroid come from a pixel-integrated elliptical
    Moffat fit (:func:`astrosharp.psf.fit.fit_stars`). The centroid shift is
    measured against the same fit on the truth at the target PSF. Flux: the
    sum in a disc of radius 5 source FWHM of ``output - (truth - truth_stars)``
    (everything that is not a star is taken from the truth) divided by the same
    sum of ``truth_stars``. That sum holds the noise the output keeps (at
    denoise 0 the input's own, as the target does): on a star of peak S/N 50
    it is a few percent of the flux, so the "ideal" output (truth plus the
    input's noise) itself misses 1 % on some cases. The noise-free flux
    ratio (``flux_nf``) takes the kept noise's sum out of the numerator.
Ringing
    The azimuthally averaged profile of ``image - background`` around each star,
    in rings of 0.25 source FWHM out to 5 FWHM, averaged over the stars (each
    star weighted equally) and divided by the background noise sigma; the depth
    is ``max(0, -min(profile))``. With no known background, it is the median of
    the annulus 6 to 9 FWHM (3-sigma clipped mean). The worst single star is
    reported too.
Invention
    Sources are local maxima of the difference-of-Gaussians filtered image
    (Gaussian of the target FWHM minus one four times wider) above
    ``threshold`` times that filter's response to white noise of the input's
    sigma. Spurious sources are detections in the output with no detection in
    the noise-free truth within ``max(2, target FWHM)`` px. High-frequency
    excess: the power of ``output - truth`` at spatial frequencies ``|q|`` in
    [0.25, 0.5] cycles/px divided by that of the input's own noise realisation
    (1.0 = the residual is the input's noise; above 1 = amplified or invented
    structure; below 1 = noise removed).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

__all__ = [
    "SATURATION_GROW",
    "STAR_MASK_SNR",
    "psnr_peak",
    "psnr",
    "valid_mask",
    "star_mask",
    "select_stars",
    "regions",
    "fit_star_shapes",
    "aperture_sums",
    "star_metrics",
    "radial_profiles",
    "ringing",
    "detect_sources",
    "spurious_sources",
    "hf_excess",
    "clipped_mean",
    "summarize",
]

SATURATION_GROW = 2
STAR_MASK_SNR = 1.0


# ---------------------------------------------------------------------------
# PSNR
# ---------------------------------------------------------------------------


def psnr_peak(truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The truth's dynamic range over ``mask``: 99.9th minus 0.1th percentile."""
    t = np.asarray(truth, dtype=np.float64)
    v = t[mask] if mask is not None else t.ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    lo, hi = np.percentile(v, [0.1, 99.9])
    return float(hi - lo)


def psnr(
    output: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray | None = None,
    peak: float | None = None,
) -> float:
    """Peak signal-to-noise ratio (dB) of ``output`` against ``truth``.

    Parameters
    ----------
    output, truth : array_like of one shape (any dimensions)
    mask : bool array_like of that shape or None
        Pixels to use (True); None uses all.
    peak : float or None
        The peak value; None uses :func:`psnr_peak` of the truth over the mask.

    Returns
    -------
    float
        dB; ``inf`` for a perfect match, ``nan`` when the mask is empty or the
        peak is not positive.
    """
    o = np.asarray(output, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if o.shape != t.shape:
        raise ValueError(f"output {o.shape} and truth {t.shape} differ in shape")
    m = np.ones(o.shape, bool) if mask is None else np.asarray(mask, bool)
    if not m.any():
        return float("nan")
    pk = psnr_peak(t, m) if peak is None else float(peak)
    if not pk > 0:
        return float("nan")
    mse = float(np.mean((o[m] - t[m]) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(pk * pk / mse))


def valid_mask(saturated: np.ndarray | None, shape: tuple[int, ...], grow: int = SATURATION_GROW) -> np.ndarray:
    """Pixels usable for PSNR: not within ``grow`` px of a saturated input pixel.

    ``saturated`` is (H, W) or (C, H, W); returns the same shape as ``shape``.
    """
    if saturated is None:
        return np.ones(shape, bool)
    s = np.asarray(saturated, bool)
    if grow > 0 and s.any():
        st = np.ones((2 * grow + 1, 2 * grow + 1), bool)
        if s.ndim == 3:
            s = np.stack([ndimage.binary_dilation(c, st) for c in s])
        else:
            s = ndimage.binary_dilation(s, st)
    return np.broadcast_to(~s, shape).copy()


def star_mask(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    peak_snr: np.ndarray,
    fwhm: np.ndarray,
    beta: np.ndarray,
    snr_cut: float = STAR_MASK_SNR,
) -> np.ndarray:
    """(H, W) bool, True on discs around stars (to exclude from extended emission).

    Radius: 3 source FWHM, or where the star's Moffat profile (peak ``peak_snr``
    noise sigma) falls below 0.5 sigma if that is farther; at most 25 FWHM.
    Stars whose peak is below ``snr_cut`` sigma are ignored.
    """
    h, w = shape
    x, y, snr, f, b = (np.broadcast_to(np.asarray(v, float), np.shape(x)) for v in (x, y, peak_snr, fwhm, beta))
    keep = snr >= snr_cut
    x, y, snr, f, b = x[keep], y[keep], snr[keep], f[keep], b[keep]
    alpha = f / (2.0 * np.sqrt(2.0 ** (1.0 / b) - 1.0))
    reach = alpha * np.sqrt(np.maximum((2.0 * snr) ** (1.0 / b) - 1.0, 0.0))
    r = np.clip(reach, 3.0 * f, 25.0 * f)
    out = np.zeros((h, w), bool)
    for xi, yi, ri in zip(x, y, r):
        y0, y1 = max(0, int(yi - ri)), min(h, int(yi + ri) + 2)
        x0, x1 = max(0, int(xi - ri)), min(w, int(xi + ri) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1)[:, None] - yi
        xx = np.arange(x0, x1)[None, :] - xi
        out[y0:y1, x0:x1] |= yy * yy + xx * xx <= ri * ri
    return out


# ---------------------------------------------------------------------------
# Star selection and per-star measures
# ---------------------------------------------------------------------------


def select_stars(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    peak_snr: np.ndarray,
    fwhm: np.ndarray,
    shape: tuple[int, int],
    saturated: np.ndarray | None = None,
    snr_min: float = 50.0,
    isolation: float = 4.0,
    neighbour_fraction: float = 0.05,
    edge: float = 6.0,
    allow_saturated: bool = False,
) -> np.ndarray:
    """Indices of the stars the per-star metrics use.

    Parameters
    ----------
    x, y, flux, peak_snr, fwhm : (N,) array_like
        Truth positions (px), total fluxes, peak signal-to-noise at the source
        PSF and source FWHM (px) of every star of the scene (one channel).
    shape : (H, W)
    saturated : (H, W) bool array_like or None
        Saturated input pixels; stars with one within 3 FWHM are dropped
        unless ``allow_saturated``.
    snr_min : float
        Minimum peak signal-to-noise.
    isolation, neighbour_fraction : float
        No other star of at least ``neighbour_fraction`` of the flux within
        ``isolation`` FWHM.
    edge : float
        Distance from the image edge in FWHM.

    Returns
    -------
    (M,) ndarray of int
    """
    x, y, flux, snr, f = (np.asarray(v, float).ravel() for v in (x, y, flux, peak_snr, fwhm))
    h, w = shape
    ok = (snr >= snr_min) & (x >= edge * f) & (y >= edge * f) & (x <= w - 1 - edge * f) & (y <= h - 1 - edge * f)
    cand = np.flatnonzero(ok)
    keep = []
    sat = None if saturated is None else np.asarray(saturated, bool)
    for i in cand:
        d2 = (x - x[i]) ** 2 + (y - y[i]) ** 2
        near = (d2 < (isolation * f[i]) ** 2) & (flux >= neighbour_fraction * flux[i])
        near[i] = False
        if near.any():
            continue
        if sat is not None and not allow_saturated:
            r = int(np.ceil(3 * f[i]))
            yi, xi = int(round(y[i])), int(round(x[i]))
            if sat[max(0, yi - r) : yi + r + 1, max(0, xi - r) : xi + r + 1].any():
                continue
        keep.append(i)
    return np.asarray(keep, dtype=int)


def regions(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label of each position: ``"centre"`` (within 0.35 of the half diagonal
    of the centre), ``"corner"`` (beyond 0.7 of it) or ``"middle"``."""
    h, w = shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r = np.hypot(np.asarray(y, float) - cy, np.asarray(x, float) - cx) / np.hypot(cy, cx)
    return np.where(r < 0.35, "centre", np.where(r > 0.7, "corner", "middle"))


def _stamps(image: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = image.shape
    r = size // 2
    pad = np.pad(np.asarray(image, float), r + 1, mode="reflect")
    xi = np.round(x).astype(int)
    yi = np.round(y).astype(int)
    st = np.stack([pad[yy + 1 : yy + 1 + size, xx + 1 : xx + 1 + size] for yy, xx in zip(yi, xi)]) if len(x) else np.zeros((0, size, size))
    return st, x - xi + r, y - yi + r


def fit_star_shapes(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm_guess: float,
    sigma: float,
    size: int | None = None,
) -> dict[str, np.ndarray]:
    """Moffat fits of stars near known positions.

    Parameters
    ----------
    image : (H, W) array_like
    x, y : (N,) array_like
        Positions (px) to cut stamps at.
    fwhm_guess : float
        Typical FWHM (px) of these stars in this image.
    sigma : float
        Background noise (for the fit's diagnostics).
    size : int or None
        Stamp size (odd); default ``2 * ceil(3 * fwhm_guess) + 1`` (at least 11).

    Returns
    -------
    dict of (N,) arrays: x, y, fwhm, ellipticity, beta, flux, ok (bool: the
    fit is finite and its centre stayed near the given position)
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if size is None:
        size = max(11, 2 * int(np.ceil(3 * fwhm_guess)) + 1)
    size |= 1
    st, sx, sy = _stamps(image, x, y, size)
    from ..psf.fit import FLAG_BAD_FIT, FLAG_CENTRE_MOVED, fit_stars

    res = fit_stars(st, sx, sy, fwhm_guess=float(fwhm_guess), noise=float(sigma))
    off_x = np.round(x) - size // 2
    off_y = np.round(y) - size // 2
    return {
        "x": res.x + off_x,
        "y": res.y + off_y,
        "fwhm": res.fwhm,
        "ellipticity": res.ellipticity,
        "beta": res.beta,
        "flux": res.flux,
        # a beta at its bound or a slow convergence still measures the FWHM
        "ok": (res.flags & (FLAG_BAD_FIT | FLAG_CENTRE_MOVED)) == 0,
    }


def aperture_sums(image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Sum of ``image`` in discs of ``radius`` px around (x, y), with fractional
    edge pixels approximated by 5 x 5 sub-sampling. (N,) array."""
    img = np.asarray(image, float)
    h, w = img.shape
    x, y, rad = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(radius, float))
    out = np.zeros(x.shape)
    o = (np.arange(5) + 0.5) / 5 - 0.5
    for i, (xi, yi, ri) in enumerate(zip(x, y, rad)):
        y0, y1 = max(0, int(np.floor(yi - ri - 1))), min(h, int(np.ceil(yi + ri + 2)))
        x0, x1 = max(0, int(np.floor(xi - ri - 1))), min(w, int(np.ceil(xi + ri + 2)))
        yy = np.arange(y0, y1)[:, None, None, None] + o[None, None, :, None] - yi
        xx = np.arange(x0, x1)[None, :, None, None] + o[None, None, None, :] - xi
        frac = ((yy * yy + xx * xx) <= ri * ri).mean(axis=(2, 3))
        out[i] = float(np.sum(img[y0:y1, x0:x1] * frac))
    return out


def star_metrics(
    output: np.ndarray,
    truth: np.ndarray,
    truth_stars: np.ndarray,
    reference: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm_src: np.ndarray,
    sigma: float,
    fwhm_target: np.ndarray | None = None,
    kept_noise: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-star measures of one channel of an output against the truth.

    Parameters
    ----------
    output : (H, W) array_like
        The image to judge.
    truth : (H, W) array_like
        Noise-free truth at the target PSF (all layers and background).
    truth_stars : (H, W) array_like
        Its stars layer alone.
    reference : (H, W) array_like
        The input (for the FWHM ratio output / input).
    x, y, fwhm_src : (N,) array_like
        Selected stars' truth positions and source FWHM (px).
    sigma : float
        Background noise of the input.
    fwhm_target : (N,) array_like or None
        Target FWHM (fit guess on the output and the truth); default half the source.
    kept_noise : (H, W) array_like or None
        The part of the input's noise the output is meant to keep (a
        flux-conserving method keeps all of its sum over a wide aperture; the
        network at denoise ``d`` keeps ``1 - d`` of it). With it,
        ``flux_ratio_nf`` is the flux ratio with that noise's aperture sum
        taken out: the star's own flux, which a perfect output gets exactly.

    Returns
    -------
    dict of (N,) arrays
        ``fwhm_ratio`` (output / input), ``ellipticity`` (output),
        ``ellipticity_in`` (input), ``shift`` (px, output vs truth fit),
        ``flux_ratio`` (aperture 5 source FWHM), ``ok`` (all fits good), and
        ``flux_ratio_nf`` with ``kept_noise``.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fs = np.asarray(fwhm_src, float)
    ft = 0.5 * fs if fwhm_target is None else np.asarray(fwhm_target, float)
    if len(x) == 0:
        keys = ("fwhm_ratio", "ellipticity", "ellipticity_in", "shift", "flux_ratio", "ok")
        return {k: np.zeros(0) for k in keys + (("flux_ratio_nf",) if kept_noise is not None else ())}
    g_src = float(np.median(fs))
    g_tgt = float(np.median(ft))
    size = max(11, 2 * int(np.ceil(3 * g_src)) + 1)
    f_in = fit_star_shapes(reference, x, y, g_src, sigma, size)
    f_out = fit_star_shapes(output, x, y, g_tgt, sigma, size)
    f_tr = fit_star_shapes(truth, x, y, g_tgt, sigma, size)
    t = np.asarray(truth, float)
    ts = np.asarray(truth_stars, float)
    rad = 5.0 * fs
    num = aperture_sums(np.asarray(output, float) - (t - ts), x, y, rad)
    den = aperture_sums(ts, x, y, rad)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "fwhm_ratio": f_out["fwhm"] / f_in["fwhm"],
            "ellipticity": f_out["ellipticity"],
            "ellipticity_in": f_in["ellipticity"],
            "shift": np.hypot(f_out["x"] - f_tr["x"], f_out["y"] - f_tr["y"]),
            "flux_ratio": num / den,
            "ok": f_in["ok"] & f_out["ok"] & f_tr["ok"],
        }
        if kept_noise is not None:
            out["flux_ratio_nf"] = (num - aperture_sums(np.asarray(kept_noise, float), x, y, rad)) / den
    return out


# ---------------------------------------------------------------------------
# Ringing
# ---------------------------------------------------------------------------


def radial_profiles(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm: np.ndarray,
    background: np.ndarray | None = None,
    step: float = 0.25,
    reach: float = 5.0,
) -> np.ndarray:
    """Azimuthally averaged profiles of ``image - background`` around stars.

    Rings of ``step`` source FWHM out to ``reach`` FWHM. With ``background``
    None, each star's background is the 3-sigma clipped mean of its annulus
    6 to 9 FWHM.

    Returns
    -------
    (N, nbins) ndarray (NaN for empty rings)
    """
    img = np.asarray(image, float)
    if background is not None:
        img = img - np.asarray(background, float)
    h, w = img.shape
    nb = int(round(reach / step))
    out = np.full((len(np.atleast_1d(x)), nb), np.nan)
    for i, (xi, yi, fi) in enumerate(zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(fwhm))):
        rmax = (9.0 if background is None else reach) * fi
        y0, y1 = max(0, int(yi - rmax)), min(h, int(yi + rmax) + 2)
        x0, x1 = max(0, int(xi - rmax)), min(w, int(xi + rmax) + 2)
        cut = img[y0:y1, x0:x1]
        r = np.hypot(np.arange(y0, y1)[:, None] - yi, np.arange(x0, x1)[None, :] - xi) / fi
        bg = 0.0
        if background is None:
            ann = cut[(r >= 6.0) & (r <= 9.0)]
            bg = clipped_mean(ann) if ann.size else 0.0
        idx = (r / step).astype(int)
        sel = idx < nb
        s = np.bincount(idx[sel], (cut[sel] - bg), minlength=nb)
        n = np.bincount(idx[sel], minlength=nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = np.where(n > 0, s / n, np.nan)
    return out


def ringing(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm: np.ndarray,
    sigma: float,
    background: np.ndarray | None = None,
) -> dict[str, float]:
    """Dark-ring depth in noise sigma (see the module docstring).

    Returns
    -------
    dict
        ``depth``: deepest dip of the star-averaged profile below the
        background (>= 0); ``worst``: the deepest dip of a single star;
        ``n``: stars used.
    """
    if len(np.atleast_1d(x)) == 0:
        return {"depth": float("nan"), "worst": float("nan"), "n": 0}
    prof = radial_profiles(image, x, y, fwhm, background) / float(sigma)
    if not np.isfinite(prof).any():
        return {"depth": float("nan"), "worst": float("nan"), "n": int(prof.shape[0])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rings empty for every star
        stack = np.nanmean(prof, axis=0)
    depth = float(max(0.0, -np.nanmin(stack)))
    worst = float(max(0.0, -np.nanmin(prof)))
    return {"depth": depth, "worst": worst, "n": int(prof.shape[0])}


# ---------------------------------------------------------------------------
# Invention
# ---------------------------------------------------------------------------


def clipped_mean(values: np.ndarray, clip: float = 3.0, iterations: int = 5) -> float:
    """Mean after iterative ``clip``-sigma clipping (sigma from the MAD): the
    local background of an annulus that may hold stars. Unlike the median it
    is unbiased where a method makes the noise skewed (positivity)."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    for _ in range(iterations):
        med = np.median(v)
        s = 1.4826 * np.median(np.abs(v - med))
        if s <= 0:
            break
        keep = np.abs(v - med) <= clip * s
        if keep.all():
            break
        v = v[keep]
    return float(np.mean(v))


def _dog(image: np.ndarray, fwhm: float) -> tuple[np.ndarray, float]:
    """Difference-of-Gaussians image and its response (std) to unit white noise."""
    s1 = max(fwhm, 1.0) / 2.3548
    s2 = 4.0 * s1
    img = np.asarray(image, float)
    d = ndimage.gaussian_filter(img, s1, mode="reflect") - ndimage.gaussian_filter(img, s2, mode="reflect")
    n = int(np.ceil(4 * s2)) * 2 + 1
    delta = np.zeros((n, n))
    delta[n // 2, n // 2] = 1.0
    k = ndimage.gaussian_filter(delta, s1, mode="constant") - ndimage.gaussian_filter(delta, s2, mode="constant")
    return d, float(np.sqrt(np.sum(k * k)))


def detect_sources(image: np.ndarray, sigma: float, fwhm: float, threshold: float = 5.0) -> np.ndarray:
    """Local maxima of the difference-of-Gaussians image above ``threshold``
    times its white-noise response (noise ``sigma`` per pixel).

    Returns
    -------
    (N, 2) ndarray of (y, x) pixel positions
    """
    d, gain = _dog(image, fwhm)
    size = max(3, int(np.ceil(fwhm)) | 1)
    peaks = (d == ndimage.maximum_filter(d, size=size, mode="nearest")) & (d > threshold * sigma * gain)
    return np.argwhere(peaks)


def spurious_sources(
    output: np.ndarray,
    truth: np.ndarray,
    sigma: float,
    fwhm: float,
    threshold: float = 5.0,
    match_radius: float | None = None,
) -> dict[str, int]:
    """Detections in ``output`` with no detection in the noise-free ``truth``
    nearby (same detector, same threshold, ``sigma`` the input's noise).

    Returns
    -------
    dict
        ``spurious`` (count), ``detected`` (output detections), ``truth``
        (truth detections).
    """
    r = max(2.0, float(fwhm)) if match_radius is None else float(match_radius)
    do = detect_sources(output, sigma, fwhm, threshold)
    dt = detect_sources(truth, sigma, fwhm, threshold)
    if len(do) == 0:
        return {"spurious": 0, "detected": 0, "truth": int(len(dt))}
    if len(dt) == 0:
        return {"spurious": int(len(do)), "detected": int(len(do)), "truth": 0}
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(dt).query(do, k=1)
    return {"spurious": int(np.sum(dist > r)), "detected": int(len(do)), "truth": int(len(dt))}


def _band_power(a: np.ndarray, band: tuple[float, float]) -> float:
    h, w = a.shape
    taper = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1])
    v = (a - np.mean(a)) * taper
    p = np.abs(np.fft.rfft2(v)) ** 2
    qy = np.fft.fftfreq(h)[:, None]
    qx = np.fft.rfftfreq(w)[None, :]
    q = np.hypot(qy, qx)
    sel = (q >= band[0]) & (q <= band[1])
    return float(np.sum(p[sel]))


def hf_excess(
    output: np.ndarray,
    truth: np.ndarray,
    noise: np.ndarray,
    band: tuple[float, float] = (0.25, 0.5),
) -> float:
    """High-frequency power of ``output - truth`` over that of ``noise`` (the
    input's own noise realisation), in the band of ``|q|`` (cycles/px).

    1.0 when the residual is exactly the input's noise; a Hann taper avoids
    edge leakage.
    """
    res = np.asarray(output, float) - np.asarray(truth, float)
    pn = _band_power(np.asarray(noise, float), band)
    if pn <= 0:
        return float("nan")
    return _band_power(res, band) / pn


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def summarize(per_star: dict[str, np.ndarray], region: np.ndarray | None = None) -> dict[str, float]:
    """Medians / percentiles of per-star measures (good fits only).

    Returns
    -------
    dict
        ``n``, ``fwhm_ratio`` (median), ``fwhm_ratio_centre``,
        ``fwhm_ratio_corner``, ``ellipticity`` (median), ``ellipticity_in``,
        ``shift`` (median px), ``flux_bias`` (median ratio - 1),
        ``flux_med`` (median |1 - ratio|), ``flux_p90`` (90th percentile of
        |1 - ratio|); ``flux_nf_med`` and ``flux_nf_p90``, the same of
        ``flux_ratio_nf``, where the per-star measures hold it; NaN where no
        star qualifies.
    """
    ok = np.asarray(per_star.get("ok", np.ones(0, bool)), bool)
    ok &= np.isfinite(per_star["fwhm_ratio"]) & np.isfinite(per_star["flux_ratio"])

    def med(v, sel=None):
        v = np.asarray(v, float)[ok if sel is None else ok & sel]
        return float(np.median(v)) if v.size else float("nan")

    out = {"n": int(ok.sum())}
    out["fwhm_ratio"] = med(per_star["fwhm_ratio"])
    if region is not None:
        region = np.asarray(region)
        out["fwhm_ratio_centre"] = med(per_star["fwhm_ratio"], region == "centre")
        out["fwhm_ratio_corner"] = med(per_star["fwhm_ratio"], region == "corner")
        dev = np.abs(1.0 - np.asarray(per_star["flux_ratio"], float))
        out["flux_med_centre"] = med(dev, region == "centre")
        out["flux_med_corner"] = med(dev, region == "corner")
    out["ellipticity"] = med(per_star["ellipticity"])
    out["ellipticity_in"] = med(per_star["ellipticity_in"])
    out["shift"] = med(per_star["shift"])
    def deviations(key: str) -> tuple[float, float]:
        """Median and 90th percentile of |1 - ratio| over the good stars."""
        dev = np.abs(1.0 - np.asarray(per_star[key], float)[ok])
        dev = dev[np.isfinite(dev)]
        return (float(np.median(dev)), float(np.percentile(dev, 90))) if dev.size else (float("nan"),) * 2

    fr = np.asarray(per_star["flux_ratio"], float)[ok]
    out["flux_bias"] = float(np.median(fr) - 1.0) if fr.size else float("nan")
    out["flux_med"], out["flux_p90"] = deviations("flux_ratio")
    if "flux_ratio_nf" in per_star:
        out["flux_nf_med"], out["flux_nf_p90"] = deviations("flux_ratio_nf")
    return out
