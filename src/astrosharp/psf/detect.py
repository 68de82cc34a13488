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
                  it (if it is itself significant: twice the threshold, or 30 %
                  of the candidate), or one over 3 times brighter within sqrt(brightness ratio)
                  (2 to 5) times that radius; brightness here is a peak's
                  compact part, the matched filter less a ``CROWD_WIDE`` times
                  wider smoothing, so that the maxima of a nebula's smooth
                  light, and the level of the light a star sits on, do not
                  count;
   ``STRUCTURED`` it sits on structured emission: in an annulus of 2.5 to 4 FWHM,
                  after removing a plane, the sky is not point-symmetric about it
                  (a star's own elliptical wings are) by much more than the noise
                  (nebula knots, galaxy cores, spiral arms);
   ``SKIPPED``    not examined (enough brighter candidates nearby; optional).

The local median size is taken over the 25 nearest candidates that pass the pixel
tests, so a PSF that changes across the field does not make corner stars look
"extended". Everything is vectorised over candidates.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .._threads import each
from ..errors import ParameterError
from ._table import ArrayTable

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
    "FLAG_SKIPPED",
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
FLAG_SKIPPED = 128
FLAG_NAMES = {
    FLAG_EDGE: "edge",
    FLAG_SATURATED: "saturated",
    FLAG_HOT: "hot pixel",
    FLAG_EXTENDED: "extended",
    FLAG_SHARP: "too sharp",
    FLAG_CROWDED: "crowded",
    FLAG_STRUCTURED: "on structure",
    FLAG_SKIPPED: "not examined",
}
_SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass
class Candidates(ArrayTable):
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
    off = np.arange(-r, r + 1)
    yy = np.asarray(iy)[:, None, None] + off[None, :, None]
    xx = np.asarray(ix)[:, None, None] + off[None, None, :]
    out = img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
    outside = (yy < 0) | (yy >= h) | (xx < 0) | (xx >= w)
    if outside.any():
        out = out.astype(np.result_type(out.dtype, np.asarray(fill).dtype), copy=False)
        out[np.broadcast_to(outside, out.shape)] = fill
    return out


def _gauss_noise_factor(sigma_k: float, truncate: float) -> float:
    r = int(truncate * sigma_k + 0.5)
    t = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (t / sigma_k) ** 2)
    k /= k.sum()
    return float(np.sum(k**2))  # per axis; 2-D factor = this squared, sqrt for sigma


STRIP_PIXELS = 4_000_000
"""Images of more pixels are filtered in horizontal strips, one per core."""
#: the crowding test compares peaks by their height less that of this many
#: times wider a smoothing (what sits on the smooth light around it)
CROWD_WIDE = 2.5


def _in_strips(fn, img: np.ndarray, halo: int) -> np.ndarray:
    """``fn(img)`` for a local filter ``fn`` of radius ``halo`` rows (the
    result is the same to the bit), computed in horizontal strips side by
    side in threads on large images (scipy.ndimage releases the GIL: a
    Gaussian and a maximum filter of a 24 MP frame take half the time on 2
    cores)."""
    h = img.shape[0]
    n = min(os.cpu_count() or 1, max(1, img.size // STRIP_PIXELS), max(1, h // (4 * halo + 4)))
    if n < 2:
        return fn(img)
    edges = np.linspace(0, h, n + 1).astype(int)

    def strip(k: int) -> np.ndarray:
        a, b = edges[k], edges[k + 1]
        lo, hi = max(0, a - halo - 1), min(h, b + halo + 1)
        return fn(img[lo:hi])[a - lo : b - lo]

    return np.concatenate(each(strip, range(n)), axis=0)


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
    cell: int | None = None,
    per_cell: int | None = None,
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
        The brightest this many peaks are examined (the rest only count as
        neighbours for the isolation test).
    cell, per_cell : int, optional
        With both, only the ``per_cell`` most significant candidates that pass
        the cheap tests (edge, saturation, hot pixel, crowding) in each
        ``cell`` x ``cell`` px block are measured further; the others are
        flagged ``SKIPPED`` (a speed limit for rich fields).

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
    sm = _in_strips(lambda a: ndi.gaussian_filter(a, sk, truncate=3.0), work, int(3.0 * sk + 0.5))
    s_sm = sigma * _gauss_noise_factor(sk, 3.0)  # sqrt(f**2) = f (two axes)
    size = int(2 * max(2, int(round(0.75 * fwhm))) + 1)
    mx = _in_strips(lambda a: ndi.maximum_filter(a, size=size), sm, size // 2)
    pk = (sm == mx) & (sm > threshold * s_sm)
    if nan.any():
        pk &= ~nan
    iy, ix = np.nonzero(pk)
    if iy.size == 0:
        return _empty()
    v = sm[iy, ix]
    height = v / s_sm
    # each peak's compact part: the matched filter less a CROWD_WIDE times
    # wider smoothing, which takes out the smooth light it sits on (a nebula,
    # a galaxy, a cluster's glow); the crowding test compares these
    wide = _in_strips(lambda a: ndi.gaussian_filter(a, CROWD_WIDE * sk, truncate=3.0), work,
                      int(3.0 * CROWD_WIDE * sk + 0.5))
    compact = np.maximum(v - wide[iy, ix], 0.0) / s_sm
    del wide
    order = np.argsort(-height, kind="stable")
    iy, ix, height, compact = iy[order], ix[order], height[order], compact[order]
    tree_all = cKDTree(np.column_stack([ix, iy]))
    dup = np.zeros(iy.size, bool)
    pp = tree_all.query_pairs(r=size // 2, p=np.inf, output_type="ndarray")
    if pp.size:
        dup[np.maximum(pp[:, 0], pp[:, 1])] = True  # equal maxima of a flat (saturated) top
    iy, ix, height, compact = iy[~dup], ix[~dup], height[~dup], compact[~dup]
    all_xy = np.column_stack([ix, iy]).astype(float)
    all_h = height
    all_c = compact

    n = min(iy.size, max_candidates)
    iy, ix, height = iy[:n], ix[:n], height[:n]
    flags = np.zeros(n, int)

    # 2. cheap tests on every candidate
    e = int(np.ceil(3.0 * fwhm)) if edge is None else int(edge)
    flags[(ix < e) | (iy < e) | (ix >= w - e) | (iy >= h - e)] |= FLAG_EDGE
    if nan.any():  # NaN near the core counts as unusable (edge-like)
        nst = _stamps(nan, iy, ix, max(1, int(np.ceil(1.5 * fwhm))), fill=True)
        flags[nst.any(axis=(1, 2))] |= FLAG_EDGE
    if saturated is not None:
        sr = int(np.ceil(1.5 * fwhm)) + 1
        sst = _stamps(np.asarray(saturated, bool), iy, ix, sr, fill=False)
        flags[sst.any(axis=(1, 2))] |= FLAG_SATURATED
    c3 = _stamps(work, iy, ix, 1, fill=0.0).astype(np.float64)
    cval = c3[:, 1, 1]
    nb = 0.25 * (c3[:, 0, 1] + c3[:, 2, 1] + c3[:, 1, 0] + c3[:, 1, 2])
    flags[(cval > 0) & (nb < 0.15 * cval)] |= FLAG_HOT
    iso = max(6.0, 3.0 * fwhm) if isolation is None else float(isolation)
    pairs = cKDTree(all_xy).query_pairs(r=5.0 * iso, output_type="ndarray")
    if pairs.size:
        a_i = np.concatenate([pairs[:, 0], pairs[:, 1]])
        b_i = np.concatenate([pairs[:, 1], pairs[:, 0]])
        keep_p = a_i < n
        a_i, b_i = a_i[keep_p], b_i[keep_p]
        d = np.hypot(*(all_xy[a_i] - all_xy[b_i]).T)
        # compared by their compact parts: a maximum of a nebula's smooth
        # light is no neighbour that spoils a star's fit, and it is no
        # brighter for the nebula's level under it
        ratio = all_c[b_i] / np.maximum(all_c[a_i], 1e-12)
        # a brighter neighbour's wings reach further: out to iso * sqrt(ratio)
        reach = iso * np.clip(np.sqrt(ratio), 2.0, 5.0)
        # a neighbour barely above the threshold (often a noise peak) only
        # counts when it is a sizeable fraction of the candidate
        real = (all_h[b_i] >= 2.0 * threshold) | (ratio > 0.3)
        bad = ((d <= iso) & (ratio > 0.05) & real) | ((ratio > 3.0) & (d <= reach))
        flags[np.unique(a_i[bad])] |= FLAG_CROWDED

    # 3. only the brightest clean candidates of each cell are examined further
    meas = np.ones(n, bool)
    if cell is not None and per_cell is not None:
        clean = flags == 0
        key = (iy // int(cell)) * (w // int(cell) + 1) + ix // int(cell)
        rank = np.zeros(n, int)
        kc = key[clean]
        order_c = np.argsort(kc, kind="stable")  # stable: brightest first within a cell
        ks = kc[order_c]
        start = np.searchsorted(ks, ks, "left")
        r_sorted = np.arange(ks.size) - start
        rank_c = np.empty(ks.size, int)
        rank_c[order_c] = r_sorted
        rank[np.nonzero(clean)[0]] = rank_c
        meas = clean & (rank < int(per_cell))
        meas |= ~clean & (height > 2 * threshold)  # keep flagged bright ones for the size reference
        flags[clean & ~meas] |= FLAG_SKIPPED
    mi = np.nonzero(meas)[0]

    # 4. windowed moments on the unsmoothed image, local background removed
    size_est = np.full(n, np.nan)
    elong = np.full(n, np.nan)
    flux = np.full(n, np.nan)
    cx = np.zeros(n)
    cy = np.zeros(n)
    if mi.size:
        r = int(np.ceil(2.0 * fwhm)) + 1
        st = _stamps(work, iy[mi], ix[mi], r, fill=np.nan).astype(np.float64)
        border = np.concatenate([st[:, 0, :], st[:, -1, :], st[:, 1:-1, 0], st[:, 1:-1, -1]], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            local_bg = np.nan_to_num(np.nanmedian(border, axis=1))
        st = np.nan_to_num(st - local_bg[:, None, None])
        off = np.arange(-r, r + 1, dtype=float)
        sw = max(fwhm / _SIGMA_TO_FWHM, 0.7) * 1.5  # window sigma
        m_ = mi.size
        mcx = np.zeros(m_)
        mcy = np.zeros(m_)
        for _ in range(3):
            dx = off[None, None, :] - mcx[:, None, None]
            dy = off[None, :, None] - mcy[:, None, None]
            wi = np.exp(-(dx * dx + dy * dy) / (2 * sw * sw)) * st
            tot = wi.sum(axis=(1, 2))
            safe = np.where(tot > 0, tot, 1.0)
            ncx = (wi * dx).sum(axis=(1, 2)) / safe + mcx
            ncy = (wi * dy).sum(axis=(1, 2)) / safe + mcy
            mcx = np.where(tot > 0, np.clip(ncx, -1.0, 1.0), 0.0)
            mcy = np.where(tot > 0, np.clip(ncy, -1.0, 1.0), 0.0)
        dx = off[None, None, :] - mcx[:, None, None]
        dy = off[None, :, None] - mcy[:, None, None]
        wi = np.exp(-(dx * dx + dy * dy) / (2 * sw * sw)) * st
        tot = wi.sum(axis=(1, 2))
        safe = np.where(tot > 0, tot, 1.0)
        mxx = (wi * dx * dx).sum(axis=(1, 2)) / safe
        myy = (wi * dy * dy).sum(axis=(1, 2)) / safe
        mxy = (wi * dx * dy).sum(axis=(1, 2)) / safe
        tr = np.maximum(mxx + myy, 1e-6)
        # a Gaussian of variance v seen through the window gives v*sw2/(v+sw2): undo it
        vm = np.clip(0.5 * tr, 1e-4, 0.95 * sw * sw)
        v = vm * sw * sw / (sw * sw - vm)
        se = _SIGMA_TO_FWHM * np.sqrt(v)
        se[(0.5 * tr >= 0.8 * sw * sw) | (tot <= 0)] = np.inf  # wider than the window
        size_est[mi] = se
        ecc = np.hypot(mxx - myy, 2 * mxy) / tr
        elong[mi] = 1.0 - np.sqrt(np.clip((1 - ecc) / (1 + ecc), 0, 1))
        flux[mi] = (st * (dx * dx + dy * dy <= (1.5 * fwhm) ** 2)).sum(axis=(1, 2))
        cx[mi], cy[mi] = mcx, mcy

    # 5. size relative to the local stellar population: the typical stellar size
    # is the lower envelope of the sizes (:func:`typical_size`), the local
    # reference the median size of the 25 nearest star-like candidates
    ref_ok = meas & ((flags & (FLAG_EDGE | FLAG_SATURATED | FLAG_HOT)) == 0) & np.isfinite(size_est)
    strong = ref_ok & (height > 2 * threshold)
    if strong.sum() >= 5:
        ref_ok = strong
    if ref_ok.sum() >= 3:
        mode = typical_size(size_est[ref_ok])
        starlike = ref_ok & (size_est > 0.6 * mode) & (size_est < 1.6 * mode)
        if starlike.sum() < 3:
            starlike = ref_ok
        rxy = np.column_stack([cx + ix, cy + iy])[starlike]
        rsize = size_est[starlike]
        k = int(min(25, starlike.sum()))
        _, nn = cKDTree(rxy).query(np.column_stack([cx + ix, cy + iy])[mi], k=k)
        nn = np.asarray(nn).reshape(mi.size, -1)
        local = np.median(rsize[nn], axis=1)
        flags[mi[size_est[mi] > size_tolerance * local]] |= FLAG_EXTENDED
        flags[mi[size_est[mi] < (0.6 / size_tolerance) * local]] |= FLAG_SHARP

    # 6. structured surroundings, for the candidates still clean: after removing
    # a plane fitted to an annulus, a point-symmetric star leaves I(d) - I(-d) = 0
    # up to noise; structure (nebula knots, galaxy arms) does not
    ck = mi[flags[mi] == 0]
    if ck.size:
        flags[ck[_structured(work, iy[ck], ix[ck], fwhm, sigma)]] |= FLAG_STRUCTURED

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


def typical_size(sizes: np.ndarray, quantile: float = 10.0, near: float | None = None) -> float:
    """Typical stellar size (px) from the sizes of detected sources.

    Every real source is at least as wide as the PSF, so stars form the lower
    envelope of the sizes (knots, galaxies and blends lie above; hot pixels
    should have been removed before). Stars of one PSF also have nearly the
    same size, so they make a narrow peak in the distribution of log sizes,
    while knots and galaxies spread over a broad one. The result is the median
    of the sizes within [0.85, 1.18] x the *lowest* significant peak of that
    distribution (a local maximum of the smoothed histogram, 4.5 % wide,
    holding at least 5 sources and 3 % of them, and at least a tenth as high
    as the highest peak): it holds where knots outnumber stars ten to one.
    With fewer than 20 sources (no distribution to speak of), the median of
    the sizes within [0.75, 1.3] x their ``quantile``-th percentile.

    ``near`` (px), when given, keeps only the sizes within a factor 1.5 of
    it: a previous estimate that a re-measurement should refine, not leave
    (a wider detection filter finds more of the knots, fewer of the stars)."""
    v = np.asarray(sizes, float)
    v = v[np.isfinite(v) & (v > 0.5)]
    if near is not None and np.isfinite(near) and near > 0:
        v = v[(v >= near / 1.5) & (v <= near * 1.5)]
    if v.size == 0:
        return float("nan")
    q = np.percentile(v, quantile)
    sel = v[(v >= 0.75 * q) & (v <= 1.3 * q)]
    fallback = float(np.median(sel)) if sel.size else float(q)
    if v.size < 20:
        return fallback
    lv = np.log(v)
    step = 0.015
    lo = lv.min() - 5 * step
    nb = int(np.ceil((lv.max() + 5 * step - lo) / step)) + 1
    hist = np.bincount(((lv - lo) / step).astype(int), minlength=nb).astype(float)
    dens = ndi.gaussian_filter1d(hist, 3.0, mode="constant")  # 4.5 % in size
    peak = (dens >= np.roll(dens, 1)) & (dens > np.roll(dens, -1))
    peak[[0, -1]] = False
    need = max(5.0, 0.03 * v.size)
    for i in np.nonzero(peak)[0]:
        centre = lo + (i + 0.5) * step
        inside = np.abs(lv - centre) <= 0.1
        if inside.sum() >= need and dens[i] >= 0.1 * dens.max():
            m = float(np.exp(centre))
            near = v[(v >= 0.85 * m) & (v <= 1.18 * m)]
            return float(np.median(near)) if near.size else m
    return fallback


def _structured(work, iy, ix, fwhm, sigma):
    """True where the surroundings of a candidate are not point-symmetric."""
    ra_in, ra_out = max(2.5 * fwhm, 4.0), max(4.0 * fwhm, 7.0)
    R = int(np.ceil(ra_out))
    oo = np.arange(-R, R + 1)
    gy_, gx_ = np.meshgrid(oo, oo, indexing="ij")
    rr = np.hypot(gx_, gy_)
    # one pixel of each symmetric pair: the upper half-plane of the annulus
    half = (rr >= ra_in) & (rr <= ra_out) & ((gy_ > 0) | ((gy_ == 0) & (gx_ > 0)))
    py, px = gy_[half], gx_[half]
    h, w = work.shape
    out = np.zeros(iy.size, bool)
    for a in range(0, iy.size, 4096):
        yy = np.clip(iy[a : a + 4096, None] + py[None], 0, h - 1)
        xx = np.clip(ix[a : a + 4096, None] + px[None], 0, w - 1)
        y2 = np.clip(iy[a : a + 4096, None] - py[None], 0, h - 1)
        x2 = np.clip(ix[a : a + 4096, None] - px[None], 0, w - 1)
        v1 = work[yy, xx].astype(np.float64)
        v2 = work[y2, x2].astype(np.float64)
        # plane: the antisymmetric part of a plane is 2 g.d: fit g on (v1 - v2)
        dlt = v1 - v2
        X = np.stack([px, py], -1).astype(float)  # (k, 2)
        G = np.linalg.solve(2.0 * (X.T @ X), (dlt @ X).T).T  # least squares per row: dlt ~ 2 X g
        res = dlt - 2.0 * G @ X.T
        med = np.median(res, axis=1, keepdims=True)
        spread = 1.4826 * np.median(np.abs(res - med), axis=1) / np.sqrt(2.0)
        lev = np.abs(np.median(0.5 * (v1 + v2), axis=1))
        out[a : a + 4096] = spread > 2.0 * sigma + 0.1 * lev
    return out


def _empty() -> Candidates:
    z = np.zeros(0)
    zi = np.zeros(0, dtype=int)
    return Candidates(x=z, y=z, ix=zi, iy=zi, peak=z, flux=z, size=z, elongation=z, flags=zi)
