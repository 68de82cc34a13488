"""Star light left in the non-stellar layer, moved to the stars layer.

The network splits its output into a stars layer and a non-stellar layer
whose sum is the sharpened image. The split is learned, and it is not
perfect: a faint star may land whole in the non-stellar layer, and a bright
one may leave part of its core there (or take a little of the nebula under it,
leaving a hole). The sharpened image does not care, but the starless layer
(``--starless``) does: it shows those stars as dots or dimples.

:func:`separate_layers` repairs the split without changing the sum. Around
every candidate star (a peak of the stars layer, or a compact source of the
non-stellar layer), it fits the non-stellar layer, in a disc of radius
``WINDOW_FWHM`` source FWHM, with

    nonstellar ~ q(x, y) + A_t T(r) + A_s S(r)

where ``q`` is a quadratic surface (the nebula and background under the
star, as well as the surroundings tell it), ``T`` the star's target PSF and
``S`` its source PSF (round Moffats of unit flux: a star may be left in the
non-stellar layer sharpened or not). The star component ``A_t T + A_s S``,
of flux ``A_t + A_s``, is significant when that flux exceeds ``SIGNIFICANCE``
times its uncertainty (from the fit's own residual, so nebular texture
counts as noise), jointly over the channels so that a star keeps its colour;
it then moves from the non-stellar layer to the stars layer. A star that the
stars layer already holds receives at most ``CAP`` times the light that layer
holds for it. A significant negative flux is a hole: the stars layer took
nebular light, which is given back, never more than the stars layer holds.

Measured on the controls bench's nebula fields (``nebula_rgb``, seeds 0 to
2, 320 px, 205 star discs; docs/usage.md): stars left above 3 sigma in the
starless layer 138 -> 61, holes below -3 sigma 25 -> 56, non-stellar flux
under the stars / truth 1.30 -> 1.00. The two counts trade against each
other, and the compact-source candidates also catch the nebula's own knots
(docs/usage.md, "The layer split repair": with the model of step 47653, at random
places away from stars the starless layer is below -3 sigma in 34 % of the
discs, 7 % without this repair).

The input's noise stays in the non-stellar layer (only the fitted smooth
profile moves), and the two layers still add up to the same image, pixel for
pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .flux import luminance, source_psf_at, star_peaks
from .params import SharpenParams, correct_target, stellar_target
from .psf.field import PSFField
from .psf.moffat import alpha_from_fwhm

__all__ = ["LayerSplit", "separate_layers", "compact_sources"]

#: the fit window's radius, in target FWHM, and its bounds in pixels
WINDOW_FWHM = 2.5
WINDOW_MIN = 4.0
WINDOW_MAX = 24.0
#: a star component moves when its amplitude exceeds this many noise sigmas
SIGNIFICANCE = 3.0
#: detection threshold of compact sources in the non-stellar layer (sigmas of the filtered image)
DETECT_SIGMA = 5.0
#: fit-and-move passes (neighbours share windows)
PASSES = 2
#: a star the network put in the stars layer receives at most this many times
#: the light that layer holds in its window (the network's split is roughly right)
CAP = 1.0
#: profiles narrower than this (px FWHM) are integrated over the pixel
SUPERSAMPLE_BELOW = 4.0
#: at most this many stars are examined
MAX_STARS = 50000


@dataclass
class LayerSplit:
    """What :func:`separate_layers` did.

    Attributes
    ----------
    n_candidates : int
        Places examined (stars-layer peaks and compact non-stellar sources).
    n_moved : int
        Stars whose light was moved to the stars layer.
    n_filled : int
        Holes under stars given back to the non-stellar layer.
    moved_fraction : float
        Light moved between the layers, as a fraction of the stars layer's
        total afterwards.
    """

    n_candidates: int
    n_moved: int
    n_filled: int
    moved_fraction: float

    def describe(self) -> str:
        if not (self.n_moved or self.n_filled):
            return "layer split: no star light left in the non-stellar layer"
        return (f"layer split: star light moved from the non-stellar to the stars layer at {self.n_moved} "
                f"stars ({100 * self.moved_fraction:.1f}% of the stars layer's light), {self.n_filled} holes under "
                f"stars filled")


def _dog(layer: np.ndarray, sigma: np.ndarray, fwhm: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The layer's luminance (in noise sigmas) smoothed by a Gaussian matched
    to ``fwhm``; the same filtered with a difference of Gaussians (the smooth
    one minus one 2.5 times wider); and the latter's robust noise."""
    from scipy.ndimage import gaussian_filter

    lum = luminance(layer, np.asarray(sigma, float).reshape(-1))
    s = max(float(fwhm), 1.0) / 2.3548
    smooth = gaussian_filter(lum, s, mode="reflect")
    dog = smooth - gaussian_filter(lum, 2.5 * s, mode="reflect")
    del lum
    sample = dog[::3, ::3]
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    return smooth, dog, noise


def compact_sources(layer: np.ndarray, sigma: np.ndarray, fwhm: float, threshold: float = DETECT_SIGMA,
                    limit: int = MAX_STARS, dog: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of compact (star-sized) sources in a layer.

    The layer's channels, in noise sigmas, are summed and filtered with a
    difference of Gaussians matched to ``fwhm`` (a smooth nebula gives
    nothing); peaks above ``threshold`` times the filtered image's robust
    noise are returned, brightest first.

    Parameters
    ----------
    layer : (C, H, W) ndarray
    sigma : (C,) array_like
        Noise per channel.
    fwhm : float
        Typical size of the sources sought (px).
    dog : (filtered image, its noise), optional
        Already computed by ``_dog`` for this layer.

    Returns
    -------
    (y, x) : int arrays
    """
    from scipy.ndimage import maximum_filter

    dog_img, noise = _dog(layer, sigma, fwhm)[1:] if dog is None else dog
    if not np.isfinite(noise) or noise <= 0:
        return np.zeros(0, int), np.zeros(0, int)
    size = max(3, 2 * int(round(float(fwhm))) + 1)
    peak = (dog_img == maximum_filter(dog_img, size=size, mode="nearest")) & (dog_img > threshold * noise)
    y, x = np.nonzero(peak)
    order = np.argsort(-dog_img[y, x], kind="stable")[:limit]
    return y[order], x[order]


def _targets(psf: PSFField, params: SharpenParams, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Target and source (FWHM, beta) per channel at points, each (C, N)."""
    f_src, b_src = source_psf_at(psf, ys, xs)
    if params.correct_only:
        f_t, b_t = correct_target(f_src, b_src)
        if f_t.shape[0] > 1:
            f_t = np.repeat(np.median(f_t, axis=0, keepdims=True), f_t.shape[0], axis=0)
    else:
        f_t, b_t = stellar_target(f_src, b_src, params.sharpen_stars, params.adjust_halos)
    return (np.maximum(np.asarray(f_t, float), 0.8), np.clip(np.asarray(b_t, float), 1.2, 20.0),
            np.maximum(f_src, 0.8), b_src)


def _subpixel(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions refined by a parabola through the 3 x 3 neighbourhood."""
    h, w = img.shape
    y = np.clip(ys, 1, h - 2)
    x = np.clip(xs, 1, w - 2)
    c = img[y, x].astype(np.float64)
    l, r = img[y, x - 1].astype(np.float64), img[y, x + 1].astype(np.float64)
    u, d = img[y - 1, x].astype(np.float64), img[y + 1, x].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = 0.5 * (l - r) / (l - 2 * c + r)
        dy = 0.5 * (u - d) / (u - 2 * c + d)
    dx = np.where(np.isfinite(dx), np.clip(dx, -0.5, 0.5), 0.0)
    dy = np.where(np.isfinite(dy), np.clip(dy, -0.5, 0.5), 0.0)
    return y + dy, x + dx


def _groups(radius: np.ndarray, todo: np.ndarray):
    rint = np.round(radius).astype(int)
    for r in np.unique(rint[todo]):
        sel = np.nonzero((rint == r) & todo)[0]
        for s0 in range(0, len(sel), 1024):
            yield int(r), sel[s0 : s0 + 1024]


def separate_layers(
    stars: np.ndarray,
    nonstellar: np.ndarray,
    psf: PSFField,
    params: SharpenParams,
    sigma: np.ndarray,
    exclude: np.ndarray | None = None,
) -> LayerSplit:
    """Move star light from the non-stellar layer to the stars layer, in place.

    Parameters
    ----------
    stars, nonstellar : (C, H, W) ndarray of float32
        The translation's layers; both are modified in place, their sum is not.
    psf : PSFField
        The source PSF field (with ``params`` it gives each star's target PSF).
    params : SharpenParams
    sigma : (C,) array_like
        Background noise per channel.
    exclude : (H, W) or (C, H, W) bool ndarray, optional
        Pixels not to fit or change (calibration borders).

    Returns
    -------
    LayerSplit
    """
    from scipy.spatial import cKDTree

    C, H, W = stars.shape
    sigma = np.asarray(sigma, float).reshape(-1)
    mask = None
    if exclude is not None:
        mask = np.asarray(exclude, bool).reshape(-1, H, W).any(axis=0)
    # candidates: the stars layer's peaks and the non-stellar layer's compact sources
    py, px = star_peaks(stars, sigma, threshold=1.0, limit=MAX_STARS)
    f_typ = float(np.median(_targets(psf, params, np.array([H / 2]), np.array([W / 2]))[0]))
    smooth_n, dog, dog_noise = _dog(nonstellar, sigma, f_typ)
    ny, nx = compact_sources(nonstellar, sigma, f_typ, dog=(dog, dog_noise))
    del dog
    if len(ny) and len(py):
        # a compact source on a stars-layer peak is that star
        d, _ = cKDTree(np.c_[py, px]).query(np.c_[ny, nx], k=1)
        keep = d > max(1.5, 0.5 * f_typ)
        ny, nx = ny[keep], nx[keep]
    split = LayerSplit(0, 0, 0, 0.0)
    if not (len(py) or len(ny)):
        return split
    # positions: stars-layer peaks at the stars layer's centroid, compact
    # sources at that of the smoothed non-stellar layer
    y2, x2 = _subpixel(smooth_n, ny, nx)
    del smooth_n
    lum_s = luminance(stars, sigma)
    y1, x1 = _subpixel(lum_s, py, px)
    del lum_s
    ys = np.concatenate([y1, y2])
    peaked = np.r_[np.ones(len(y1), bool), np.zeros(len(y2), bool)]
    xs = np.concatenate([x1, x2])
    # one candidate per star (a peak between two pixels is found twice): the first, brightest, is kept
    pairs = cKDTree(np.c_[ys, xs]).query_pairs(max(1.5, 0.5 * f_typ), output_type="ndarray")
    if len(pairs):
        keep = np.ones(len(ys), bool)
        keep[np.max(pairs, axis=1)] = False
        ys, xs, peaked = ys[keep], xs[keep], peaked[keep]
    iy, ix = np.round(ys).astype(int), np.round(xs).astype(int)
    if mask is not None:
        ok = ~mask[np.clip(iy, 0, H - 1), np.clip(ix, 0, W - 1)]
        ys, xs, iy, ix, peaked = ys[ok], xs[ok], iy[ok], ix[ok], peaked[ok]
    n = len(ys)
    split.n_candidates = n
    if n == 0:
        return split
    f_t, b_t, f_s, b_s = _targets(psf, params, ys, xs)  # (C, N)
    radius = np.clip(WINDOW_FWHM * f_s.max(axis=0), WINDOW_MIN, WINDOW_MAX)
    moved_any = np.zeros(n, bool)
    filled_any = np.zeros(n, bool)
    moved_light = 0.0
    # a star whose window no other window overlaps is done in one pass
    pts = np.c_[ys, xs]
    crowded = np.zeros(n, bool)
    pairs = cKDTree(pts).query_pairs(2.0 * float(radius.max()), output_type="ndarray")
    if len(pairs):
        gap = np.hypot(*(pts[pairs[:, 0]] - pts[pairs[:, 1]]).T)
        crowded[pairs[gap <= radius[pairs[:, 0]] + radius[pairs[:, 1]]].ravel()] = True
    todo = np.ones(n, bool)
    for _ in range(PASSES):
        for r, part in _groups(radius, todo):
            m, f = _fit_and_move(stars, nonstellar, sigma, ys[part], xs[part], iy[part], ix[part], r,
                                 f_t[:, part], b_t[:, part], f_s[:, part], b_s[:, part], peaked[part], mask)
            moved_any[part] |= m > 0
            filled_any[part] |= m < 0
            moved_light += f
        todo = crowded
        if not todo.any():
            break
    split.n_moved = int(moved_any.sum())
    split.n_filled = int((filled_any & ~moved_any).sum())
    total_after = float(np.abs(stars).sum(dtype=np.float64))
    split.moved_fraction = min(1.0, moved_light / total_after) if total_after > 0 else 0.0
    return split


def _pixel_moffat(dx: np.ndarray, dy: np.ndarray, fwhm: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Unit-flux round Moffat integrated over each pixel (2 x 2 sub-pixel
    samples where the profile is narrow enough for it to matter).

    dx, dy : (N, P) offsets of the pixel centres from the star (px);
    fwhm, beta : (N,)
    """
    a = alpha_from_fwhm(fwhm, beta)[:, None]
    b = beta[:, None]
    norm = (b - 1.0) / (np.pi * a * a)
    if float(np.min(fwhm)) >= SUPERSAMPLE_BELOW:
        return norm * (1.0 + (dx * dx + dy * dy) / (a * a)) ** (-b)
    out = np.zeros(dx.shape)
    for oy in (-0.25, 0.25):
        for ox in (-0.25, 0.25):
            out += (1.0 + ((dx + ox) ** 2 + (dy + oy) ** 2) / (a * a)) ** (-b)
    return norm * out / 4.0


def _fit_and_move(stars: np.ndarray, nonstellar: np.ndarray, sigma: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                  iy: np.ndarray, ix: np.ndarray, r: int, f_t: np.ndarray, b_t: np.ndarray, f_s: np.ndarray,
                  b_s: np.ndarray, peaked: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, float]:
    """One group of stars with windows of radius ``r``: fit, then move.

    Returns the sign of what was done per star (1 moved to stars, -1 hole
    filled, 0 nothing) and the light moved to the stars layer (sum of |A|)."""
    C, H, W = stars.shape
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = np.hypot(dy, dx) <= r + 0.5
    dy, dx = dy[inside].ravel(), dx[inside].ravel()
    yy = iy[:, None] + dy[None, :]
    xx = ix[:, None] + dx[None, :]
    valid = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
    yc, xc = np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)
    if mask is not None:
        valid &= ~mask[yc, xc]
    wgt = valid.astype(np.float64)
    oy = yy - ys[:, None]  # offsets from the star (px)
    ox = xx - xs[:, None]
    rx, ry = ox / r, oy / r  # the same in window radii, for the quadratic surface
    n = len(ys)
    npar = 8
    amp = np.zeros((C, 2, n))
    cov_s = np.zeros((C, 2, 2, n))
    noise2 = np.zeros((C, n))
    prof = np.zeros((C, 2, n, len(dy)))
    for c in range(C):
        for j, (f, b) in enumerate(((f_t[c], b_t[c]), (f_s[c], b_s[c]))):
            prof[c, j] = _pixel_moffat(ox, oy, f, b) * valid
        one = np.ones_like(rx)
        X = np.stack([one, rx, ry, rx * rx, ry * ry, rx * ry, prof[c, 0], prof[c, 1]], axis=-1) * wgt[..., None]
        yv = nonstellar[c][yc, xc].astype(np.float64) * wgt
        Xt = X.transpose(0, 2, 1)
        A = Xt @ X + 1e-12 * np.eye(npar)[None]
        bvec = (Xt @ yv[..., None])[..., 0]
        try:
            cov = np.linalg.inv(A)
        except np.linalg.LinAlgError:
            return np.zeros(n), 0.0
        sol = np.einsum("nij,nj->ni", cov, bvec)
        res = yv - (X @ sol[..., None])[..., 0]
        dof = np.maximum(wgt.sum(axis=1) - npar, 1.0)
        noise2[c] = np.maximum(np.sum(res * res, axis=1) / dof, float(sigma[c]) ** 2)
        amp[c] = sol[:, 6:8].T
        cov_s[c] = np.moveaxis(cov[:, 6:8, 6:8], 0, -1)
    # the star's light in the fit: A_t T_t + A_s T_s (total flux A_t + A_s), with its variance
    flux = amp.sum(axis=1)  # (C, n)
    var = (cov_s[:, 0, 0] + cov_s[:, 1, 1] + 2 * cov_s[:, 0, 1]) * noise2
    z_c = flux / np.sqrt(np.maximum(var, 1e-300))
    # joint significance over the channels (a star keeps its colour)
    z = np.sum(z_c, axis=0) / np.sqrt(C)
    pos = z > SIGNIFICANCE
    neg = z < -SIGNIFICANCE
    sign = np.zeros(n)
    sign[pos] = 1
    sign[neg] = -1
    sel = pos | neg
    if not sel.any():
        return sign, 0.0
    pos, neg, peaked = pos[sel], neg[sel], peaked[sel]
    yc, xc, valid = yc[sel], xc[sel], valid[sel]
    moved = 0.0
    for c in range(C):
        delta = amp[c, 0, sel][:, None] * prof[c, 0, sel] + amp[c, 1, sel][:, None] * prof[c, 1, sel]  # (m, P)
        held = np.maximum(stars[c][yc, xc].astype(np.float64), 0.0) * valid
        # a hole: give back no more than the stars layer holds there
        delta = np.where(neg[:, None], np.maximum(delta, -held), delta)
        # a star of the stars layer receives at most CAP times what that layer holds for it
        lim = CAP * held.sum(axis=1)
        tot = delta.sum(axis=1)
        scale = np.where(peaked & (tot > lim) & (tot > 0), lim / np.maximum(tot, 1e-300), 1.0)
        delta = (delta * scale[:, None]).astype(np.float32)
        np.add.at(stars[c], (yc, xc), delta)
        np.add.at(nonstellar[c], (yc, xc), -delta)
        moved += float(np.abs(delta).sum(dtype=np.float64))
    return sign, moved
