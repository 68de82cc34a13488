"""Measure the PSF field of an image: stars in, a PSF map out.

Steps (DESIGN.md section 3):

1. background and noise per channel (:func:`astrosharp.noise.estimate_background`);
2. star detection on a noise-weighted luminance of the background-subtracted
   channels (:func:`astrosharp.psf.detect.detect_stars`), twice if the first
   pass finds stars much wider or narrower than the 3 px it assumed;
3. per tile of the engine's grid (512 px, 20 % overlap), the ``max_stars_per_tile``
   usable stars of highest significance are chosen; each chosen star is fitted
   once per channel with the pixel-integrated elliptical Moffat
   (:func:`astrosharp.psf.fit.fit_stars`);
4. every parameter is modelled over the whole image, all stars of all
   channels together, by a robust low-order polynomial in x, y (one constant
   per channel plus shared spatial terms; degree 0 to 2 chosen by
   leave-one-out error), as PSFEx does;
5. per tile node and channel, where enough stars lie around it (``LOCAL_NEFF``
   effective stars and ``min_stars`` in the tile), a robust local linear fit
   of those stars at the node; elsewhere the smooth model; each node records
   its origin and the field carries a note;
6. with no usable star at all a :class:`~astrosharp.errors.NoStarsWarning` is
   issued and the default PSF (FWHM 3 px, beta ``DEFAULT_BETA``) is used, with a
   note saying so. Estimating the PSF from non-stellar structure is not attempted:
   it cannot be done reliably enough to beat a stated default.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field as dc_field
from typing import Callable

import numpy as np

from .._threads import each
from ..errors import ImageDataError, NoStarsWarning, ParameterError
from ..noise import Background, estimate_background
from ..params import DEFAULT_BETA
from ..tiles import plan_grid
from .detect import FLAG_CROWDED, FLAG_EDGE, FLAG_HOT, FLAG_SATURATED, Candidates, _stamps, detect_stars, saturation_level, typical_size
from .field import ORIGINS, PARAM_NAMES, PSFField
from .fit import BETA_BOUNDS, BETA_GUESS, FLAG_BETA_BOUND, FLAG_NOT_CONVERGED, StarFits, fit_stars

__all__ = ["DEFAULT_FWHM", "StarTable", "PSFMeasurement", "measure_psf", "measure_psf_field"]

DEFAULT_FWHM = 3.0
"""FWHM (px) assumed when no star can be measured."""
SATURATION_HEADROOM = 0.9
"""Pixels above background + this fraction of (saturation - background) count
as saturated (the response is no longer trusted that close to full well)."""
MIN_SNR = 10.0
"""Stars with a fitted-flux S/N below this are not used for the field."""
SNR_WEIGHT_CAP = 150.0
"""Stars are weighted by SNR**2 up to this SNR in the per-node estimates."""
MODEL_SNR_CAP = 50.0
"""Soft S/N cap of the smooth model's weights (FWHM and shape; beta keeps
``SNR_WEIGHT_CAP``: its error grows much faster on faint stars)."""
MODEL_MARGIN = 0.95
"""A richer smooth model must lower the robust leave-one-out error by 5 %."""
SLOW_MAX_ITER = 150
"""Iterations for the refit of stars whose fits had not converged, when they
are most of an image's stars (trailed or defocused PSFs)."""
LOCAL_NEFF = 15.0
"""Effective number of stars (Kish, from the S/N and distance weights) a node
needs around it for its own local fit; below it the node takes the image's
smooth model."""
MODEL_STARS_PER_TERM = 4.0
"""Effective stars (all channels together) per fitted term the smooth model
needs before it may use degree 1 or 2 in x, y."""


@dataclass
class StarTable(StarFits):
    """Per-star, per-channel fits in image coordinates (x = column, y = row),
    plus ``channel`` (int), ``tile_count`` (how many tiles used the star) and
    ``used`` (bool: passed the quality cuts and the outlier clip)."""

    channel: np.ndarray = dc_field(default_factory=lambda: np.zeros(0, int))
    used: np.ndarray = dc_field(default_factory=lambda: np.zeros(0, bool))


@dataclass
class PSFMeasurement:
    """Everything the measurement found: the field and its diagnostics.

    Attributes
    ----------
    field : PSFField
    stars : StarTable
        Every fitted star and channel (``used`` marks those in the field).
    candidates : Candidates
        All detections with their rejection flags.
    background : Background
    saturation : (C,) ndarray
        Saturation level per channel (inf where none was found or given).
    fwhm_guess : float
        Typical FWHM (px) the detection and the fit stamps were tuned to.
    """

    field: PSFField
    stars: StarTable
    candidates: Candidates
    background: Background
    saturation: np.ndarray
    fwhm_guess: float

    @property
    def notes(self) -> list[str]:
        return self.field.notes


def _as_chw(data) -> np.ndarray:
    a = np.asarray(data)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ImageDataError(f"expected an image of shape (C, H, W) or (H, W), got shape {a.shape}.")
    if a.shape[1] < 16 or a.shape[2] < 16:
        raise ImageDataError(f"image of {a.shape[1]} x {a.shape[2]} pixels is too small to measure a PSF.")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


def _luminance(data: np.ndarray, bg: Background) -> np.ndarray:
    """Noise-weighted sum of the background-subtracted channels, in units where
    each channel's noise is 1 (one interpolated map for all channels: the map is
    linear in the block levels)."""
    c_n = data.shape[0]
    inv = np.array([1.0 / s if s > 0 else 1.0 for s in bg.sigma])
    lum = np.zeros(data.shape[1:], dtype=np.float32)
    for c in range(c_n):
        lum += data[c] * np.float32(inv[c])
    comb = Background(
        shape=bg.shape,
        level=np.array([float(np.dot(inv, bg.level))]),
        sigma=np.array([1.0]),
        grid=np.tensordot(inv, bg.grid, axes=1)[None],
        sigma_grid=np.ones((1,) + bg.grid.shape[1:]),
        grid_y=bg.grid_y,
        grid_x=bg.grid_x,
    )
    lum -= comb.map(0)
    return lum


def _robust(v: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """(weighted) median and 1.4826 MAD."""
    if v.size == 0:
        return np.nan, np.nan
    if w is None:
        med = float(np.median(v))
        return med, float(1.4826 * np.median(np.abs(v - med)))
    med = _wmedian(v, w)
    return med, float(1.4826 * _wmedian(np.abs(v - med), w))


def _wmedian(v: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(v)
    cw = np.cumsum(w[o])
    return float(v[o][np.searchsorted(cw, 0.5 * cw[-1])])


def _local_linear(v: np.ndarray, dx: np.ndarray, dy: np.ndarray, w: np.ndarray, quadratic: bool = False) -> float:
    """Robust (Tukey biweight) weighted linear fit v ~ a + b dx + c dy (plus the
    quadratic terms with ``quadratic`` and at least 30 effective stars); returns
    a, the value at dx = dy = 0. Falls back to the weighted median when the fit
    is ill-conditioned or lands outside the data's range."""
    med = _wmedian(v, w)
    neff = w.sum() ** 2 / np.sum(w * w)
    if v.size < 8 or neff < 8:
        return med
    # a quadratic surface follows curvature at the node
    X = _poly_terms(dx, dy, 2 if quadratic and neff >= 30 else 1)
    coef, _ = _robust_poly(v, X, w, iterations=3, min_weight_sum=6.0)
    if coef is None:
        return med
    a = float(coef[0])
    vs = np.sort(v)
    lo, hi = vs[int(0.05 * (vs.size - 1))], vs[int(np.ceil(0.95 * (vs.size - 1)))]
    return a if lo <= a <= hi else med


def _poly_terms(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """(N, T) design matrix of the 2-D polynomial of total degree <= 2 in
    (x, y) (normalised coordinates)."""
    cols = [np.ones_like(x)]
    if degree >= 1:
        cols += [x, y]
    if degree >= 2:
        cols += [x * x, y * y, x * y]
    return np.column_stack(cols)


def _robust_poly(v: np.ndarray, X: np.ndarray, w: np.ndarray, iterations: int = 5,
                 min_weight_sum: float | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Tukey-biweight IRLS weighted least squares v ~ X coef: (coef, final
    weights); coef is None when the system is ill-conditioned or too few
    stars keep weight (fewer than two per term with weight, or, given
    ``min_weight_sum``, biweights summing to less than it)."""
    A0 = X.T @ (X * w[:, None])
    if np.linalg.cond(A0) > 1e10:
        return None, w
    rw = np.ones_like(v)
    coef = None
    for _ in range(iterations):
        ww = w * rw
        try:
            coef = np.linalg.solve(X.T @ (X * ww[:, None]), X.T @ (ww * v))
        except np.linalg.LinAlgError:
            return None, w
        res = v - X @ coef
        sc = 1.4826 * _wmedian(np.abs(res), w)
        if not sc > 0:
            break
        u = res / (4.685 * sc)
        rw = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        too_few = rw.sum() < min_weight_sum if min_weight_sum is not None else np.count_nonzero(rw) < 2 * X.shape[1]
        if too_few:
            return None, w
    return coef, w * rw


@dataclass
class _SmoothModel:
    """A low-order polynomial of one PSF parameter over the whole image (as
    PSFEx's position-dependent PSF), fitted to every used star of every
    channel with robust weights: one constant per channel plus spatial terms
    shared by the channels (the optics and the seeing vary across the field
    alike in every channel; chromatic differences are the per-channel
    constants). The degree (0, 1 or 2) is chosen by robust leave-one-out
    error where the stars allow it."""

    coef: np.ndarray
    degree: int
    channels: int
    centre: tuple[float, float]
    scale: float

    @classmethod
    def fit(cls, v, x, y, w, group, channels, shape) -> "_SmoothModel":
        """Fit degrees 0, 1 and 2 (where the stars allow: MODEL_STARS_PER_TERM
        effective stars per term, spread over the image) and keep the one of
        least robust leave-one-out error (a higher degree must win by 5 %)."""
        h, wd = shape
        cy, cx, sc = (h - 1) / 2.0, (wd - 1) / 2.0, max(h, wd) / 2.0
        nx_, ny_ = (x - cx) / sc, (y - cy) / sc
        onehot = (group[:, None] == np.arange(channels)[None, :]).astype(float)
        present = onehot.any(axis=0)
        neff = w.sum() ** 2 / max(np.sum(w * w), 1e-300)
        best, best_score = None, np.inf
        # simplest first: one shared constant, then one per channel; then
        # degrees 1 and 2; a richer model must lower the error by 5 %
        options = [(0, False)] + ([(0, True)] if present.sum() > 1 else [])
        options += [(d, o) for d in (1, 2) for o in ((False, True) if present.sum() > 1 else (False,))]
        for degree, per_channel in options:
            const = onehot[:, present] if per_channel else np.ones((v.size, 1))
            X = np.column_stack([const, _poly_terms(nx_, ny_, degree)[:, 1:]])
            if degree and not (neff >= MODEL_STARS_PER_TERM * X.shape[1] and np.ptp(nx_) > 0.5 and np.ptp(ny_) > 0.5):
                break
            coef, ww = _robust_poly(v, X, w)
            if coef is None:
                continue
            # leave-one-out residuals of the final weighted fit: r / (1 - h_ii)
            A = X.T @ (X * ww[:, None])
            hii = np.einsum("ij,jk,ik->i", X, np.linalg.pinv(A), X) * ww
            loo = (v - X @ coef) / np.maximum(1.0 - hii, 0.05)
            score = _wmedian(loo * loo, w)
            if score < MODEL_MARGIN * best_score:
                k = const.shape[1]
                full = np.zeros(channels + coef.size - k)
                if per_channel:
                    full[:channels][present] = coef[:k]
                    full[:channels][~present] = np.median(coef[:k])
                else:
                    full[:channels] = coef[0]
                full[channels:] = coef[k:]
                best, best_score = cls(coef=full, degree=degree, channels=channels, centre=(cy, cx), scale=sc), score
        if best is None:  # too few stars to fit anything: per-channel weighted medians
            full = np.array([_wmedian(v[group == c], w[group == c]) if np.any(group == c) else np.nan for c in range(channels)])
            full[~np.isfinite(full)] = _wmedian(v, w)
            best = cls(coef=full, degree=0, channels=channels, centre=(cy, cx), scale=sc)
        return best

    def __call__(self, y, x, channel: int) -> np.ndarray:
        nx_ = (np.atleast_1d(np.asarray(x, float)) - self.centre[1]) / self.scale
        ny_ = (np.atleast_1d(np.asarray(y, float)) - self.centre[0]) / self.scale
        return self.coef[channel] + _poly_terms(nx_, ny_, self.degree)[:, 1:] @ self.coef[self.channels :]


def _clip_outliers(fwhm: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Boolean keep-mask: FWHM within [0.7, 1.3] x its lower quartile, then FWHM
    (and log beta) within 3 robust sigmas of the median (with a 5 % floor on the
    FWHM scatter)."""
    keep = np.ones(fwhm.size, bool)
    if fwhm.size < 4:
        return keep
    # stars are the narrowest sources: compact galaxies and knots sit above the
    # lower quartile by more than the stars' own scatter
    ref = np.percentile(fwhm, 25)
    keep = (fwhm <= 1.3 * ref) & (fwhm >= 0.7 * ref)
    if keep.sum() < 3:
        keep = np.ones(fwhm.size, bool)
    for _ in range(3):
        med, sc = _robust(fwhm[keep])
        sc = max(sc, 0.05 * med)
        lb = np.log(beta)
        bmed, bsc = _robust(lb[keep])
        bsc = max(bsc, 0.1)
        new = (np.abs(fwhm - med) <= 3 * sc) & (np.abs(lb - bmed) <= 3.5 * bsc)
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    return keep


def measure_psf(
    data: np.ndarray,
    background: Background | None = None,
    *,
    tile: int = 512,
    overlap: float = 0.2,
    saturation: float | np.ndarray | None = None,
    min_stars: int = 5,
    max_stars_per_tile: int = 40,
    progress: Callable[[str, float], None] | None = None,
) -> PSFMeasurement:
    """Measure the PSF field of a linear image, with diagnostics.

    Parameters
    ----------
    data : (C, H, W) or (H, W) ndarray
        Linear image (image units). NaN / inf pixels are ignored.
    background : Background, optional
        A previous :func:`~astrosharp.noise.estimate_background` result.
    tile, overlap : int, float
        The engine's tile plan (one node per tile centre).
    saturation : float or (C,) array, optional
        Saturation level(s) in image units; default: the plateau at each
        channel's maximum, if there is one (:func:`~astrosharp.psf.detect.saturation_level`).
    min_stars : int
        Stars a tile needs for its own estimate; fewer take the smooth
        whole-image model.
    max_stars_per_tile : int
        Brightest usable stars fitted per tile (caps the work on rich fields).
    progress : callable(stage: str, fraction: float), optional
        Called as the measurement advances.

    Returns
    -------
    PSFMeasurement
    """
    a = _as_chw(data)
    if min_stars < 1:
        raise ParameterError(f"min_stars must be at least 1, got {min_stars}.")
    if max_stars_per_tile < 1:
        raise ParameterError(f"max_stars_per_tile must be at least 1, got {max_stars_per_tile}.")
    c_n, h, w = a.shape
    say = progress or (lambda stage, frac: None)

    say("background", 0.0)
    bg = background if background is not None else estimate_background(a)
    if bg.shape != (h, w) or bg.channels != c_n:
        raise ParameterError("the background was estimated on an image of another shape.")
    if saturation is None:
        sat = saturation_level(a)
    else:
        sat = np.broadcast_to(np.asarray(saturation, float), (c_n,)).astype(float)
    satmask = np.zeros((h, w), bool)
    for c in range(c_n):
        if np.isfinite(sat[c]):
            thr = bg.level[c] + SATURATION_HEADROOM * (sat[c] - bg.level[c])
            satmask |= a[c] >= thr
    grid = plan_grid((h, w), tile, overlap)

    say("detection", 0.15)
    lum = _luminance(a, bg)
    lbg = estimate_background(lum)  # the luminance's own noise (channels may correlate)
    lum -= np.float32(np.median(lbg.grid))
    lsig = float(lbg.sigma[0]) if lbg.sigma[0] > 0 else 1.0
    n_tiles = len(grid)
    cap = max(5000, 40 * max_stars_per_tile * n_tiles)
    # candidates examined per half-tile cell: every tile covers at least four cells
    cell = max(32, tile // 2)
    per_cell = max_stars_per_tile
    # the typical stellar size, from a quick look at up to nine 1024 px crops
    fg = _typical_fwhm(lum, lsig, satmask)
    cand = detect_stars(lum, lsig, fwhm=fg, saturated=satmask, max_candidates=cap, cell=cell, per_cell=per_cell)
    del lum

    # choose stars per tile (a star may serve several overlapping tiles)
    # skip detections too faint to reach MIN_SNR in a channel (the matched-filter
    # significance of the luminance is about sqrt(C) x a channel's flux S/N)
    good = np.nonzero(cand.good & (cand.peak >= 0.8 * MIN_SNR * np.sqrt(c_n)))[0]
    chosen = np.zeros(len(cand), bool)
    boxes = grid.boxes()
    for (y0, x0, y1, x1) in boxes:
        inb = good[(cand.x[good] >= x0) & (cand.x[good] < x1) & (cand.y[good] >= y0) & (cand.y[good] < y1)]
        chosen[inb[:max_stars_per_tile]] = True  # candidates are sorted by significance
    idx = np.nonzero(chosen)[0]

    say("fitting", 0.35)
    table = _fit_chosen(a, cand.select(idx), bg, fg, c_n) if idx.size else None
    say("field", 0.9)
    fld = _aggregate(table, grid, (h, w), c_n, min_stars)
    say("done", 1.0)
    if table is None:
        table = StarTable.empty()
    return PSFMeasurement(field=fld, stars=table, candidates=cand, background=bg, saturation=np.asarray(sat, float), fwhm_guess=fg)


def _typical_fwhm(lum: np.ndarray, sigma: float, satmask: np.ndarray, crop: int = 1024) -> float:
    """Typical stellar FWHM (px) for the detector's matched filter and windows:
    the lower envelope of the detected sources' sizes (:func:`typical_size`),
    iterated from 3 px until the windows match. Large images are sampled with
    up to 3 x 3 crops of ``crop`` px."""
    h, w = lum.shape
    if h * w > 2.5 * crop * crop:
        ys = np.unique(np.linspace(0, max(0, h - crop), min(3, max(1, h // crop))).astype(int))
        xs = np.unique(np.linspace(0, max(0, w - crop), min(3, max(1, w // crop))).astype(int))
        parts = [(y, x) for y in ys for x in xs]
    else:
        parts = [(0, 0)]
        crop = max(h, w)
    def sizes_at(fg):
        def one(part: tuple[int, int]) -> np.ndarray:
            y, x = part
            c = detect_stars(lum[y : y + crop, x : x + crop], sigma, fwhm=fg, saturated=satmask[y : y + crop, x : x + crop], max_candidates=4000)
            ok = ((c.flags & (FLAG_EDGE | FLAG_SATURATED | FLAG_HOT | FLAG_CROWDED)) == 0) & (c.peak > 8.0)
            return c.size[ok][:1000]

        out = each(one, parts)  # the crops side by side (their filters release the GIL)
        v = np.concatenate(out) if out else np.zeros(0)
        return v[np.isfinite(v)]

    # start at 3 px; faint, wide stars may only show with a wider matched filter
    fg = DEFAULT_FWHM
    v = sizes_at(fg)
    for wider in (6.0, 12.0):
        if v.size >= 5:
            break
        fg, v = wider, sizes_at(wider)
    if v.size < 5:
        return DEFAULT_FWHM
    typical = typical_size(v)
    for _ in range(3):
        if not np.isfinite(typical):
            break
        if 0.8 * fg <= typical <= 1.25 * fg:
            fg = 0.5 * (fg + typical)
            break
        fg = float(np.clip(typical, 1.0, 25.0))
        v = sizes_at(fg)
        if v.size < 5:
            break
        # refine around the previous estimate: the windows now fit the stars
        typical = typical_size(v, near=fg)
    return float(fg)


def measure_psf_field(
    data: np.ndarray,
    background: Background | None = None,
    *,
    tile: int = 512,
    overlap: float = 0.2,
    saturation: float | np.ndarray | None = None,
    min_stars: int = 5,
    max_stars_per_tile: int = 40,
    progress: Callable[[str, float], None] | None = None,
) -> PSFField:
    """The PSF field of a linear image: :func:`measure_psf` without the
    diagnostics (same parameters).

    Returns
    -------
    PSFField
        Per tile node and channel: fwhm, beta, e1, e2, asym_x, asym_y, with
        counts, scatter, origin and notes.
    """
    return measure_psf(
        data,
        background,
        tile=tile,
        overlap=overlap,
        saturation=saturation,
        min_stars=min_stars,
        max_stars_per_tile=max_stars_per_tile,
        progress=progress,
    ).field


def _put(a: np.ndarray, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[idx] = v
    return out


PILOT_STARS = 64
"""Stars fitted first (the most significant) to start the others' fits from their median beta."""
PILOT_MIN = 4 * PILOT_STARS
"""Fewer stars than this are all fitted from the default start."""


def _pilot_beta(st: np.ndarray, x0: np.ndarray, y0: np.ndarray, fg: float, noise: float) -> float:
    """Starting beta for a large set of stamps: the median beta of the first
    ``PILOT_STARS`` (the candidates come sorted by significance), fitted from
    the default start; that default (``fit.BETA_GUESS``) where the set is small or the pilot
    fails. Beta is the slowest parameter of the fit (the chi-square is flat
    along it, most of all for profiles that are not Moffats), so starting the
    stars near it saves iterations: on the 24 MP frame of the speed line
    (about 1800 stars per channel) the mean count falls from 16.0 to 13.1
    and the share of fits that converge within the iteration limit rises
    from 88 % to 94 %."""
    if len(st) < PILOT_MIN:
        return BETA_GUESS
    k = PILOT_STARS
    pilot = fit_stars(st[:k], x0[:k], y0[:k], fwhm_guess=fg, noise=noise)
    ok = (pilot.flags == 0) & np.isfinite(pilot.beta)
    if ok.sum() < k // 4:
        return BETA_GUESS
    return float(np.clip(np.median(pilot.beta[ok]), 1.5, 10.0))


def _fit_chosen(a: np.ndarray, cand: Candidates, bg: Background, fg: float, c_n: int) -> StarTable:
    r = int(np.clip(np.ceil(2.5 * fg), 6, 22))
    n = len(cand)
    iy = np.round(cand.y).astype(int)
    ix = np.round(cand.x).astype(int)
    x0 = cand.x - ix + r
    y0 = cand.y - iy + r
    parts = []
    for c in range(c_n):
        st = _stamps(a[c], iy, ix, r, fill=np.nan).astype(np.float64)
        noise = bg.sigma[c] if bg.sigma[c] > 0 else 1.0
        f = fit_stars(st, x0, y0, fwhm_guess=fg, noise=noise, beta_guess=_pilot_beta(st, x0, y0, fg, noise))
        # most fits still walking when the iterations ran out: the profile is
        # far from a Moffat of moderate beta (trailed or defocused stars, near
        # the Gaussian limit beta -> infinity, where beta barely changes the
        # chi-square); those stars get more iterations. Where it is only a
        # few stars (blends, nebulosity) they stay unconverged and unused
        nc = (f.flags & FLAG_NOT_CONVERGED != 0) & (f.snr >= MIN_SNR)
        if nc.sum() > 0.5 * np.sum(f.snr >= MIN_SNR):
            j = np.nonzero(f.flags & FLAG_NOT_CONVERGED)[0]
            g = fit_stars(st[j], x0[j], y0[j], fwhm_guess=fg, noise=noise, max_iter=SLOW_MAX_ITER)
            f = StarFits(**{k: _put(getattr(f, k), j, getattr(g, k)) for k in f.__dataclass_fields__})
        parts.append((c, f))
    out = []
    for c, f in parts:
        d = {k: getattr(f, k) for k in f.__dataclass_fields__}
        d["x"] = f.x + ix - r
        d["y"] = f.y + iy - r
        d["channel"] = np.full(n, c, int)
        d["used"] = np.zeros(n, bool)
        out.append(StarTable(**d))
    return StarTable.concatenate(out)


def _aggregate(table: StarTable | None, grid, shape, c_n: int, min_stars: int) -> PSFField:
    ys = np.asarray(grid.y_centres, float)
    xs = np.asarray(grid.x_centres, float)
    ny, nx = len(ys), len(xs)
    P = len(PARAM_NAMES)
    values = np.zeros((c_n, P, ny, nx))
    scatter = np.zeros((c_n, P, ny, nx))
    counts = np.zeros((c_n, ny, nx), int)
    origin = np.zeros((c_n, ny, nx), int)
    notes: list[str] = []
    names = ["R", "G", "B"] if c_n == 3 else [f"channel {c}" for c in range(c_n)]

    usable = None
    if table is not None and len(table):
        # a fit at the upper beta bound is usable where it is what most stars
        # of the channel do: beta -> infinity is the Gaussian limit, where
        # trailed or defocused stars legitimately go (beta is then
        # undetermined, not the width or the shape); where only a few stars
        # do it they are noisy or contaminated, and a fit at the lower bound
        # is never used (blends, nebulosity under the wings)
        flags = table.flags.copy()
        for c in range(c_n):
            inc = (table.channel == c) & (table.snr >= MIN_SNR) & ((table.flags & ~FLAG_BETA_BOUND) == 0)
            high = inc & (table.flags & FLAG_BETA_BOUND != 0) & (table.beta > np.sqrt(BETA_BOUNDS[0] * BETA_BOUNDS[1]))
            if high.sum() >= 0.5 * inc.sum():  # the image's PSF, not an odd star
                flags[high] &= ~FLAG_BETA_BOUND
        usable = (flags == 0) & (table.snr >= MIN_SNR) & np.isfinite(table.fwhm)
    if usable is None or not usable.any():
        msg = (
            f"no usable stars found: the PSF is the default round Moffat of FWHM {DEFAULT_FWHM:g} px and "
            f"beta {DEFAULT_BETA:g} everywhere (not estimated from non-stellar structure, which cannot be "
            "done reliably); give the PSF diameter to override it"
        )
        warnings.warn(msg, NoStarsWarning, stacklevel=3)
        f = PSFField.uniform(shape, c_n, DEFAULT_FWHM, DEFAULT_BETA, origin="fallback", note=msg)
        values[:] = f.values[:, :, :1, :1]
        origin[:] = ORIGINS.index("fallback")
        return PSFField(shape=tuple(shape), ys=ys, xs=xs, values=values, counts=counts, scatter=scatter, origin=origin, notes=[msg])

    boxes = grid.boxes()
    tile = grid.tile
    per = {}
    for c in range(c_n):
        sel = np.nonzero((table.channel == c) & usable)[0]
        if sel.size == 0:
            continue  # this channel has nothing: filled from the others below
        # stars are the narrowest sources: drop fits much wider than the lower
        # envelope of the fitted FWHMs (nebula knots, galaxies the detector let
        # through) or much narrower (hot-pixel clusters)
        typ = typical_size(table.fwhm[sel])
        if np.isfinite(typ):
            sel = sel[(table.fwhm[sel] <= 1.6 * typ) & (table.fwhm[sel] >= 0.5 * typ)]
        pv = np.column_stack([getattr(table, n)[sel] for n in PARAM_NAMES])
        # global outlier clip (catches blends / knots the detector let through)
        keep_all = _clip_outliers(pv[:, 0], pv[:, 1])
        per[c] = (sel, pv, keep_all)
    # the image's smooth model of each parameter, all channels together; its
    # weights are the inverse variance of a star's value with a floor for the
    # star-to-star scatter no S/N removes (blends, sampling, the model's own
    # mismatch), so faint stars still shape the surface. FWHM and beta are
    # modelled in log (a chromatic change is a factor)
    models = []
    if per:
        ms = np.concatenate([per[c][0][per[c][2]] for c in per])
        mg = table.channel[ms]
        for p, n in enumerate(PARAM_NAMES):
            cap = SNR_WEIGHT_CAP if n == "beta" else MODEL_SNR_CAP
            mw = 1.0 / (1.0 / np.maximum(table.snr[ms], 1.0) ** 2 + 1.0 / cap**2)
            v = getattr(table, n)[ms]
            models.append(_SmoothModel.fit(np.log(v) if p < 2 else v, table.x[ms], table.y[ms], mw, mg, c_n, shape))
    n_model = int(sum(int(np.sum(per[c][2])) for c in per))

    if per:
        # the model is not extrapolated: outside the stars' bounding box it
        # holds the value at the box's edge
        mx0, mx1 = float(table.x[ms].min()), float(table.x[ms].max())
        my0, my1 = float(table.y[ms].min()), float(table.y[ms].max())

    def model_at(p, y, x, c):
        r = models[p](np.clip(y, my0, my1), np.clip(x, mx0, mx1), c)
        return np.exp(r) if p < 2 else r

    for c in per:
        sel, pv, keep_all = per[c]
        # precision weights: a star's parameter errors scale as 1/SNR (capped so
        # that a few bright stars do not outvote all the others)
        sw = np.clip(table.snr[sel], 1.0, SNR_WEIGHT_CAP) ** 2
        sx, sy = table.x[sel], table.y[sel]
        own_sets = {}
        for k, (y0, x0, y1, x1) in enumerate(boxes):
            iy_, ix_ = divmod(k, nx)
            inb = (sx >= x0) & (sx < x1) & (sy >= y0) & (sy < y1)
            ids = np.nonzero(inb)[0]
            keep = _clip_outliers(pv[ids, 0], pv[ids, 1]) if ids.size >= 4 else np.ones(ids.size, bool)
            ids = ids[keep & keep_all[ids]]
            own_sets[(iy_, ix_)] = ids
            table.used[sel[ids]] = True
        allk = np.nonzero(keep_all)[0]
        for iy_ in range(ny):
            for ix_ in range(nx):
                ids = own_sets[(iy_, ix_)]
                counts[c, iy_, ix_] = ids.size
                if ids.size >= min_stars:
                    # local robust linear regression around the node over the own
                    # and neighbouring tiles' stars (Gaussian weights of 0.3 tile):
                    # the value *at* the node, unbiased by a gradient across the tile
                    near = np.nonzero(keep_all & (np.abs(sx - xs[ix_]) < tile) & (np.abs(sy - ys[iy_]) < tile))[0]
                    ddx, ddy = sx[near] - xs[ix_], sy[near] - ys[iy_]
                    wts = np.exp(-0.5 * (ddx * ddx + ddy * ddy) / (0.3 * tile) ** 2) * sw[near]
                    neff = wts.sum() ** 2 / max(np.sum(wts * wts), 1e-300)
                    if neff >= LOCAL_NEFF or n_model < min_stars:
                        for p in range(P):
                            values[c, p, iy_, ix_] = _local_linear(pv[near, p], ddx / tile, ddy / tile, wts, quadratic=(p == 0))
                            scatter[c, p, iy_, ix_] = _robust(pv[ids, p])[1]
                        origin[c, iy_, ix_] = ORIGINS.index("own")
                        continue
                if n_model >= min_stars:
                    # too few stars of its own: the image's smooth model, which
                    # the stars nearest the node dominate where it bends
                    for p in range(P):
                        values[c, p, iy_, ix_] = model_at(p, ys[iy_], xs[ix_], c)[0]
                        scatter[c, p, iy_, ix_] = _robust(pv[ids, p] if ids.size >= 2 else pv[allk, p])[1]
                    origin[c, iy_, ix_] = ORIGINS.index("model")
                    continue
                for p in range(P):
                    values[c, p, iy_, ix_], scatter[c, p, iy_, ix_] = _robust(pv[allk, p], sw[allk])
                origin[c, iy_, ix_] = ORIGINS.index("image")
        nm = int(np.sum(origin[c] == ORIGINS.index("model")))
        if nm:
            notes.append(
                f"{names[c]}: {nm} of {ny * nx} tiles had too few well-measured stars around them for a local fit "
                f"(fewer than {min_stars} in the tile or {LOCAL_NEFF:g} effective) and use a smooth model of the "
                f"{n_model} star fits of the whole image (FWHM polynomial of degree {models[0].degree} in x, y)"
            )
        nn = int(np.sum(origin[c] == ORIGINS.index("neighbours")))
        ni = int(np.sum(origin[c] == ORIGINS.index("image")))
        n_used = int(np.sum(keep_all))
        if nn:
            notes.append(f"{names[c]}: {nn} of {ny * nx} tiles had fewer than {min_stars} stars and borrowed from neighbouring tiles")
        if ni:
            notes.append(f"{names[c]}: {ni} of {ny * nx} tiles had too few stars nearby and use the whole-image median of {n_used} star(s)")
        if n_used < min_stars:
            notes.append(f"{names[c]}: only {n_used} usable star(s) in the whole image; the PSF is uncertain")

    # channels without any usable star take the median of the others
    have = np.array([np.any((table.channel == c) & usable) for c in range(c_n)])
    for c in np.nonzero(~have)[0]:
        values[c] = np.median(values[have], axis=0)
        origin[c] = ORIGINS.index("image")
        notes.append(f"{names[c]}: no usable stars in this channel; it uses the median of the other channels")
    return PSFField(shape=tuple(int(v) for v in shape), ys=ys, xs=xs, values=values, counts=counts, scatter=scatter, origin=origin, notes=notes)
