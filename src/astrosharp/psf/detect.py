"""Star detection for PSF measurement: find point sources and keep the ones a
PSF can be measured on.

Method
------
1. Matched filter: the background-subtracted image is smoothed with a Gaussian of
   the expected FWHM; local maxima above ``threshold`` times the noise of the
   smoothed image are candidates (DAOFind-like peak finding).
2. Each candidate is measured on the unsmoothed image with Gaussian-windowed
   moments (centroid, size, elongation) and a few pixel tests, and flagged:

   ``EDGE``       too close to the border for a fitting stamp;
   ``SATURATED``  a pixel near it is at or near the saturation level;
   ``HOT``        a single-pixel spike (its 4 neighbours hold < 15 % of its value);
   ``EXTENDED``   larger than the stars around it (galaxies, nebula knots, blends):
                  windowed size > ``size_tolerance`` x the local median stellar size;
   ``SHARP``      smaller than the stars around it (cosmic rays, hot-pixel pairs);
   ``CROWDED``    another source within the isolation radius brighter than 5 % of
                  it, or one over 3 times brighter within sqrt(brightness ratio)
                  (2 to 5) times that radius;
   ``STRUCTURED`` it sits on structured emission: the sky around it varies by much
                  more than the noise (nebula knots, galaxy cores, spiral arms).

The local median size is taken over the 25 nearest candidates that pass the pixel
tests, so a PSF that changes across the field does not make corner stars look
"extended". Everything is vectorised over candidates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..errors import ParameterError

__all__ = [
    "Candidates",
    "detect_stars",
    "saturation_level",
    "FLAG_EDGE",
    "FLAG_SATURATED",
    "FLAG_HOT",
    "FLAG_EXTENDED",
    "FLAG_SHARP",
    "FLAG_CROWDED",
    "FLAG_STRUCTURED",
    "FLAG_NAMES",
    "typical_size",
]

FLAG_EDGE = 1
FLAG_SATURATED = 2
FLAG_HOT = 4
FLAG_EXTENDED = 8
FLAG_SHARP = 16
FLAG_CROWDED = 32
FLAG_STRUCTURED = 64
FLAG_NAMES = {
    FLAG_EDGE: "edge",
    FLAG_SATURATED: "saturated",
    FLAG_HOT: "hot pixel",
    FLAG_EXTENDED: "extended",
    FLAG_SHARP: "too sharp",
    FLAG_CROWDED: "crowded",
    FLAG_STRUCTURED: "on structure",
}
_SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass
class Candidates:
    """Detected sources. All attributes are (N,) arrays, brightest first.

    Attributes
    ----------
    x, y : windowed centroid (px; x = column, y = row)
    ix, iy : peak pixel (int)
    peak : matched-filter peak in noise sigmas (detection significance)
    flux : windowed flux estimate (image units, background subtracted)
    size : FWHM estimate from windowed second moments (px; Gaussian-equivalent)
    elongation : 1 - minor/major of the windowed second moments
    flags : bit mask of FLAG_* (0 = usable star)
    """

    x: np.ndarray
    y: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    peak: np.ndarray
    flux: np.ndarray
    size: np.ndarray
    elongation: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def good(self) -> np.ndarray:
        return self.flags == 0

    def select(self, index) -> "Candidates":
        return Candidates(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def flag_counts(self) -> dict[str, int]:
        """How many candidates carry each flag (a candidate can carry several)."""
        return {name: int(np.sum(self.flags & bit != 0)) for bit, name in FLAG_NAMES.items()}


def saturation_level(data: np.ndarray, min_pixels: int = 3) -> np.ndarray:
    """Saturation level per channel, found as a plateau at the image maximum.

    A channel is taken as saturated at its maximum when at least ``min_pixels``
    pixels share that maximum (clipped star cores); otherwise its level is +inf
    (nothing known to be saturated).

    Parameters
    ----------
    data : (C, H, W) ndarray

    Returns
    -------
    (C,) ndarray of float64
    """
    a = np.asarray(data)
    if a.ndim == 2:
        a = a[None]
    out = np.full(a.shape[0], np.inf)
    for c in range(a.shape[0]):
        ch = a[c]
        mx = np.nanmax(ch) if np.isfinite(ch).any() else np.nan
        if not np.isfinite(mx):
            finite = ch[np.isfinite(ch)]
            if finite.size == 0:
                continue
            mx = finite.max()
        tol = 1e-6 * abs(mx) if mx != 0 else 0.0
        if np.count_nonzero(ch >= mx - tol) >= min_pixels:
            out[c] = float(mx)
    return out


def _stamps(img: np.ndarray, iy: np.ndarray, ix: np.ndarray, r: int, fill: float = np.nan) -> np.ndarray:
    """(N, 2r+1, 2r+1) cut-outs centred on (iy, ix); outside the image = fill."""
    h, w = img.shape
    pad = np.pad(img, r, mode="constant", constant_values=fill) if fill is not None else img
    off = np.arange(-r, r + 1)
    yy = iy[:, None, None] + r + off[None, :, None]
    xx = ix[:, None, None] + r + off[None, None, :]
    return pad[yy, xx]


def _gauss_noise_factor(sigma_k: float, truncate: float) -> float:
    r = int(truncate * sigma_k + 0.5)
    t = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (t / sigma_k) ** 2)
    k /= k.sum()
    return float(np.sum(k**2))  # per axis; 2-D factor = this squared, sqrt for sigma


def detect_stars(
    image: np.ndarray,
    sigma: float,
    *,
    fwhm: float = 3.0,
    threshold: float = 5.0,
    saturated: np.ndarray | None = None,
    edge: int | None = None,
    isolation: float | None = None,
    size_tolerance: float = 1.4,
    max_candidates: int = 50000,
) -> Candidates:
    """Find stars in a background-subtracted image and flag the unusable ones.

    Parameters
    ----------
    image : (H, W) ndarray
        Background-subtracted image (one channel or a luminance); NaN allowed.
    sigma : float
        Noise standard deviation of ``image`` (same units).
    fwhm : float
        Expected stellar FWHM in px (sets the matched filter and the windows).
    threshold : float
        Detection threshold in sigmas of the matched-filtered image.
    saturated : (H, W) bool ndarray, optional
        Pixels at or near saturation (in any channel).
    edge : int, optional
        Minimum distance (px) of a usable star from the border (default
        ``ceil(3 * fwhm)``).
    isolation : float, optional
        Isolation radius in px (default ``3 * fwhm``, at least 6).
    size_tolerance : float
        A candidate larger than this times the local median stellar size is
        ``EXTENDED``; smaller than ``0.6 / size_tolerance`` times is ``SHARP``.
    max_candidates : int
        The brightest this many peaks are measured (the rest only count as
        neighbours for the isolation test).

    Returns
    -------
    Candidates
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ParameterError(f"image must be 2-D (H, W), got shape {img.shape}.")
    if not np.isfinite(sigma) or sigma <= 0:
        raise ParameterError(f"sigma must be a positive number, got {sigma}.")
    if fwhm <= 0:
        raise ParameterError(f"fwhm must be positive, got {fwhm}.")
    h, w = img.shape
    img = img.astype(np.float32, copy=False)
    nan = ~np.isfinite(img)
    work = np.where(nan, np.float32(0), img) if nan.any() else img

    # 1. matched filter and peaks
    sk = max(fwhm / _SIGMA_TO_FWHM, 0.7)
    sm = ndi.gaussian_filter(work, sk, truncate=3.0)
    s_sm = sigma * _gauss_noise_factor(sk, 3.0)  # sqrt(f**2) = f (two axes)
    size = int(2 * max(2, int(round(0.75 * fwhm))) + 1)
    mx = ndi.maximum_filter(sm, size=size)
    pk = (sm == mx) & (sm > threshold * s_sm)
    if nan.any():
        pk &= ~nan
    iy, ix = np.nonzero(pk)
    if iy.size == 0:
        return _empty()
    height = sm[iy, ix] / s_sm
    order = np.argsort(-height, kind="stable")
    iy, ix, height = iy[order], ix[order], height[order]
    # plateaus (flat saturated tops) give several equal maxima: keep one
    tree_all = cKDTree(np.column_stack([ix, iy]))
    dup = np.zeros(iy.size, bool)
    pp = tree_all.query_pairs(r=size / 2.0 + 0.5, output_type="ndarray")
    if pp.size:
        dup[np.maximum(pp[:, 0], pp[:, 1])] = True
    iy, ix, height = iy[~dup], ix[~dup], height[~dup]
    all_xy = np.column_stack([ix, iy]).astype(float)
    all_h = height

    n = min(iy.size, max_candidates)
    iy, ix, height = iy[:n], ix[:n], height[:n]

    # 2. windowed moments on the unsmoothed image
    r = int(np.ceil(2.0 * fwhm)) + 1
    st = _stamps(work, iy, ix, r, fill=np.nan).astype(np.float64)
    # local background: median of the stamp's border (stars on nebulae)
    border = np.concatenate([st[:, 0, :], st[:, -1, :], st[:, 1:-1, 0], st[:, 1:-1, -1]], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        local_bg = np.nan_to_num(np.nanmedian(border, axis=1))
    st = np.nan_to_num(st - local_bg[:, None, None])
    off = np.arange(-r, r + 1, dtype=float)
    sw = max(fwhm / _SIGMA_TO_FWHM, 0.7) * 1.5  # window sigma
    cx = np.zeros(n)
    cy = np.zeros(n)
    for _ in range(3):
        dx = off[None, None, :] - cx[:, None, None]
        dy = off[None, :, None] - cy[:, None, None]
        win = np.exp(-(dx * dx + dy * dy) / (2 * sw * sw))
        wi = win * st
        tot = wi.sum(axis=(1, 2))
        safe = np.where(tot > 0, tot, 1.0)
        ncx = (wi * dx).sum(axis=(1, 2)) / safe + cx
        ncy = (wi * dy).sum(axis=(1, 2)) / safe + cy
        cx = np.where(tot > 0, np.clip(ncx, -1.0, 1.0), 0.0)
        cy = np.where(tot > 0, np.clip(ncy, -1.0, 1.0), 0.0)
    dx = off[None, None, :] - cx[:, None, None]
    dy = off[None, :, None] - cy[:, None, None]
    win = np.exp(-(dx * dx + dy * dy) / (2 * sw * sw))
    wi = win * st
    tot = wi.sum(axis=(1, 2))
    safe = np.where(tot > 0, tot, 1.0)
    mxx = (wi * dx * dx).sum(axis=(1, 2)) / safe
    myy = (wi * dy * dy).sum(axis=(1, 2)) / safe
    mxy = (wi * dx * dy).sum(axis=(1, 2)) / safe
    tr = np.maximum(mxx + myy, 1e-6)
    # a Gaussian of variance v seen through the window gives v*sw2/(v+sw2): undo it
    vm = np.clip(0.5 * tr, 1e-4, 0.95 * sw * sw)
    v = vm * sw * sw / (sw * sw - vm)
    size_est = _SIGMA_TO_FWHM * np.sqrt(v)
    # much wider than the window: the size is not measurable, only "large"
    size_est[0.5 * tr >= 0.8 * sw * sw] = np.inf
    ecc = np.hypot(mxx - myy, 2 * mxy) / tr
    elong = 1.0 - np.sqrt(np.clip((1 - ecc) / (1 + ecc), 0, 1))
    flux = (st * (dx * dx + dy * dy <= (1.5 * fwhm) ** 2)).sum(axis=(1, 2))

    flags = np.zeros(n, int)
    # edge
    e = int(np.ceil(3.0 * fwhm)) if edge is None else int(edge)
    flags[(ix < e) | (iy < e) | (ix >= w - e) | (iy >= h - e)] |= FLAG_EDGE
    # NaN near the core counts as unusable (edge-like)
    if nan.any():
        nst = _stamps(nan, iy, ix, max(1, int(np.ceil(1.5 * fwhm))), fill=True)
        flags[nst.any(axis=(1, 2))] |= FLAG_EDGE
    # saturation
    if saturated is not None:
        sr = int(np.ceil(1.5 * fwhm)) + 1
        sst = _stamps(np.asarray(saturated, bool), iy, ix, sr, fill=False)
        flags[sst.any(axis=(1, 2))] |= FLAG_SATURATED
    # hot pixels: a single-pixel spike
    cval = st[:, r, r]
    nb = 0.25 * (st[:, r - 1, r] + st[:, r + 1, r] + st[:, r, r - 1] + st[:, r, r + 1])
    flags[(cval > 0) & (nb < 0.15 * cval)] |= FLAG_HOT
    # isolation (all peaks count as neighbours, measured or not)
    iso = max(6.0, 3.0 * fwhm) if isolation is None else float(isolation)
    pairs = cKDTree(all_xy).query_pairs(r=5.0 * iso, output_type="ndarray")
    if pairs.size:
        a_i = np.concatenate([pairs[:, 0], pairs[:, 1]])
        b_i = np.concatenate([pairs[:, 1], pairs[:, 0]])
        d = np.hypot(*(all_xy[a_i] - all_xy[b_i]).T)
        ratio = all_h[b_i] / np.maximum(all_h[a_i], 1e-12)
        # a brighter neighbour's wings reach further: out to iso * sqrt(ratio)
        reach = iso * np.clip(np.sqrt(ratio), 2.0, 5.0)
        bad = ((d <= iso) & (ratio > 0.05)) | ((ratio > 3.0) & (d <= reach))
        hit = np.unique(a_i[bad & (a_i < n)])
        flags[hit] |= FLAG_CROWDED
    # structured surroundings: robust spread of the sky in an annulus, compared
    # with the noise, after removing the star's own wings ring by ring (elliptical
    # rings following the windowed moments, so elongated stars are not penalised)
    ra_in, ra_out = max(2.5 * fwhm, 4.0), max(4.0 * fwhm, 7.0)
    R = int(np.ceil(ra_out / 0.75))
    big = _stamps(work, iy, ix, R, fill=np.nan)
    oo = np.arange(-R, R + 1, dtype=float)
    det = np.maximum(mxx * myy - mxy**2, 1e-9)
    sc = np.sqrt(det)  # normalise the moment matrix to unit determinant
    ixx, iyy, ixy = myy / sc, mxx / sc, -mxy / sc  # inverse (unit det)
    qq = (ixx[:, None, None] * oo[None, None, :] ** 2 + iyy[:, None, None] * oo[None, :, None] ** 2
          + 2 * ixy[:, None, None] * oo[None, None, :] * oo[None, :, None])
    rq = np.sqrt(np.maximum(qq, 0))
    ring = np.floor(rq).astype(int)
    ann = (rq >= ra_in) & (rq < np.floor(ra_out) + 1)
    # remove a plane fitted to the annulus (the slope of a nearby extended source
    # or nebula is structure too, but a smooth one the ring medians cannot follow)
    gx = np.broadcast_to(oo[None, None, :], big.shape)
    gy = np.broadcast_to(oo[None, :, None], big.shape)
    msk = ann & np.isfinite(big)
    bz = np.where(msk, big, 0.0)
    X = [np.where(msk, 1.0, 0.0), np.where(msk, gx, 0.0), np.where(msk, gy, 0.0)]
    A = np.stack([np.stack([(X[i] * X[j]).sum(axis=(1, 2)) for j in range(3)], -1) for i in range(3)], -2)
    bvec = np.stack([(X[i] * bz).sum(axis=(1, 2)) for i in range(3)], -1)
    A = A + 1e-9 * np.eye(3)[None]
    coef = np.linalg.solve(A, bvec[..., None])[..., 0]
    slope = coef[:, 1, None, None] * gx + coef[:, 2, None, None] * gy
    big = big - slope
    resid = np.full(big.shape, np.nan, dtype=np.float32)
    lev = np.zeros(n)
    for rv in range(int(np.floor(ra_in)), int(np.floor(ra_out)) + 1):
        sel = ann & (ring == rv)
        v = np.where(sel, big, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(v.reshape(n, -1), axis=1)
        med = np.nan_to_num(med)
        resid = np.where(sel, big - med[:, None, None], resid)
        lev = np.maximum(lev, np.abs(med))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rflat = resid.reshape(n, -1)
        spread = 1.4826 * np.nanmedian(np.abs(rflat - np.nanmedian(rflat, axis=1, keepdims=True)), axis=1)
    spread = np.nan_to_num(spread)
    flags[spread > 2.5 * sigma + 0.25 * lev] |= FLAG_STRUCTURED

    # size relative to the local stellar population: the typical stellar size is
    # the mode of the sizes (stars form a tight peak; knots and galaxies spread
    # to larger sizes), the local reference the median size of the 25 nearest
    # candidates that are star-like by that mode
    ref_ok = (flags & (FLAG_EDGE | FLAG_SATURATED | FLAG_HOT)) == 0
    ref_ok &= height > 2 * threshold
    if ref_ok.sum() < 5:
        ref_ok = (flags & (FLAG_HOT | FLAG_SATURATED)) == 0
    if ref_ok.sum() >= 3:
        mode = typical_size(size_est[ref_ok])
        starlike = ref_ok & (size_est > 0.6 * mode) & (size_est < 1.6 * mode)
        if starlike.sum() < 3:
            starlike = ref_ok
        rxy = np.column_stack([cx + ix, cy + iy])[starlike]
        rsize = size_est[starlike]
        k = int(min(25, starlike.sum()))
        _, nn = cKDTree(rxy).query(np.column_stack([cx + ix, cy + iy]), k=k)
        nn = np.asarray(nn).reshape(n, -1)
        local = np.median(rsize[nn], axis=1)
        flags[size_est > size_tolerance * local] |= FLAG_EXTENDED
        flags[size_est < (0.6 / size_tolerance) * local] |= FLAG_SHARP

    return Candidates(
        x=ix + cx,
        y=iy + cy,
        ix=ix.astype(int),
        iy=iy.astype(int),
        peak=height,
        flux=flux,
        size=size_est,
        elongation=elong,
        flags=flags,
    )


def typical_size(sizes: np.ndarray, quantile: float = 10.0) -> float:
    """Typical stellar size (px) from the sizes of detected sources.

    Every real source is at least as wide as the PSF, so stars form the lower
    envelope of the sizes (knots, galaxies and blends lie above; hot pixels
    should have been removed before): the result is the median of the sizes
    within [0.75, 1.3] x their ``quantile``-th percentile. It holds while stars
    are more than about ``quantile`` % of the sources."""
    v = np.asarray(sizes, float)
    v = v[np.isfinite(v) & (v > 0.5)]
    if v.size == 0:
        return float("nan")
    q = np.percentile(v, quantile)
    sel = v[(v >= 0.75 * q) & (v <= 1.3 * q)]
    return float(np.median(sel)) if sel.size else float(q)


def _empty() -> Candidates:
    z = np.zeros(0)
    zi = np.zeros(0, dtype=int)
    return Candidates(x=z, y=z, ix=zi, iy=zi, peak=z, flux=z, size=z, elongation=z, flags=zi)
