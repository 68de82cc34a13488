"""What the network is shown beyond the frame edge.

The engine gives the network each tile with ``tiles.HALO`` px of context on
every side. Inside the image that context is the neighbouring image; beyond
the frame edge nothing was recorded, and a plain mirror image of the interior
stood in for it. For the sky that is a fair guess, but not for a star cut by
the edge: a star centred 2 px inside the frame meets its own mirror image
there, and the network sees one blob twice as long across the edge as the
PSF, which it was never taught to sharpen, so the star came out with about
half of its true peak (``trailed_mono`` seed 1, 256 px: 21.7 dB PSNR over the
frame against 34.0 dB without its 12 px border). A star centred just beyond
the edge, whose wing alone is in the frame, was mirrored into a bump at the
edge that the network sharpened into a star that is not there.

:func:`extend_frame` builds the context instead from what the frame tells
about those stars. Every star near an edge (a local maximum within
``REACH_FWHM`` source FWHM of it, at least ``DETECT_SIGMA`` noise sigmas above
the local background, in the sum of the channels) is fitted with the measured
source PSF at that place (the pixel-integrated elliptical Moffat of the
field's FWHM, beta and ellipticity) on its unsaturated pixels inside the
frame: its centre on the channels together (they are registered by then),
which may lie up to ``BEYOND_FWHM`` FWHM beyond the edge, then each channel's
flux and constant. Beyond the frame the
context is then the mirror image of the interior with those stars taken out,
plus the stars' own profiles continued across the edge (clipped at the
saturation level where the channel is clipped, as the interior is).

Only context changes: the frame's own pixels go to the network as they are,
and nothing beyond the frame is kept from its output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .psf.field import PSFField, moffat_shape

__all__ = ["EdgeStars", "extend_frame", "MARGIN"]

#: context pixels built beyond each edge (the engine's halo plus its padding
#: to the network's multiple); further out, the extension is mirrored again
MARGIN = 32
#: stars whose peak lies within this many source FWHM of an edge are fitted
REACH_FWHM = 2.0
#: detection threshold of such stars: peak above the local background, in
#: noise sigmas of the channel sum
DETECT_SIGMA = 8.0
#: a fitted centre may lie this many FWHM beyond the edge
BEYOND_FWHM = 1.0
#: the fit window's radius, in source FWHM (at least FIT_MIN px)
FIT_FWHM = 2.0
FIT_MIN = 5
#: each star's profile is rendered out to this many FWHM (at least RENDER_MIN px)
RENDER_FWHM = 6.0
RENDER_MIN = 12
#: at most this many edge stars are fitted (brightest first)
MAX_STARS = 5000


@dataclass
class EdgeStars:
    """The stars fitted near the frame edges.

    Attributes
    ----------
    x, y : (N,) arrays
        Fitted centres (px; may lie beyond the frame), one row per star and channel.
    channel : (N,) int array
    flux : (N,) array
        Fitted total flux (image units).
    """

    x: np.ndarray
    y: np.ndarray
    channel: np.ndarray
    flux: np.ndarray

    @classmethod
    def empty(cls) -> "EdgeStars":
        z = np.zeros(0)
        return cls(z, z.copy(), np.zeros(0, int), z.copy())

    def __len__(self) -> int:
        return len(self.x)


def _candidates(data: np.ndarray, level: np.ndarray, sigma: np.ndarray, reach: float,
                separation: float) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of the channel sum (in noise sigmas) within ``reach`` px of an edge, brightest first,
    none within ``separation`` px of a brighter one.

    Only strips along the four sides are read (a few rows and columns more
    than ``reach``, for the filters)."""
    from scipy.ndimage import maximum_filter, uniform_filter

    c, h, w = data.shape
    r = int(np.ceil(reach))
    s = min(r + 3, h, w)
    found: dict[tuple[int, int], float] = {}
    for ys, xs in ((slice(0, s), slice(None)), (slice(h - s, h), slice(None)),
                   (slice(None), slice(0, s)), (slice(None), slice(w - s, w))):
        lvl = level[:, ys, xs] if level.shape[1:] == (h, w) else level
        lum = np.zeros(data[0, ys, xs].shape)
        for k in range(c):
            lum += (data[k, ys, xs] - lvl[k]) / max(float(sigma[k]), 1e-30)
        lum /= np.sqrt(c)
        smooth = uniform_filter(lum, 3, mode="nearest")  # 3x3 mean: noise down 3x, a star's peak hardly
        peak = (smooth == maximum_filter(smooth, size=5, mode="nearest")) & (smooth > DETECT_SIGMA / 3.0)
        py, px = np.nonzero(peak)
        py = py + (ys.start or 0)
        px = px + (xs.start or 0)
        near = np.minimum(np.minimum(py, h - 1 - py), np.minimum(px, w - 1 - px)) < r
        for y, x, v in zip(py[near], px[near], smooth[peak][near]):
            found[(int(y), int(x))] = float(v)
    if not found:
        return np.zeros(0, int), np.zeros(0, int)
    keys = sorted(found, key=lambda key: -found[key])
    kept: list[tuple[int, int]] = []
    for y, x in keys:  # one peak per star: a clipped core is a plateau of ties
        if all((y - ky) ** 2 + (x - kx) ** 2 > separation**2 for ky, kx in kept):
            kept.append((y, x))
            if len(kept) == MAX_STARS:
                break
    return np.array([k[0] for k in kept]), np.array([k[1] for k in kept])


def _render(shape: tuple[int, int], y0: int, x0: int, xc: float, yc: float, flux: float,
            shape_pars: dict[str, float], oversample: int = 3) -> np.ndarray:
    from .psf.moffat import moffat_image

    return moffat_image(shape, xc - x0, yc - y0, flux, shape_pars["fwhm"], shape_pars["beta"],
                        shape_pars["ellipticity"], shape_pars["angle"], oversample=oversample)


def _fit_one(stamp: np.ndarray, use: np.ndarray, y0: int, x0: int, yc: float, xc: float,
             sp: dict[str, float], bounds: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float, float] | None:
    """Least-squares fit of flux, centre (x, y) and a constant; None when it fails or the flux is not positive.

    The centre is the only nonlinear part: for each trial centre, flux and
    constant come from linear least squares (variable projection)."""
    from scipy.optimize import least_squares

    d = stamp[use]
    if d.size < 8:
        return None
    ones = np.ones_like(d)

    def linear(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prof = _render(stamp.shape, y0, x0, p[0], p[1], 1.0, sp, oversample=2)[use]
        a = np.stack([prof, ones], axis=1)
        coef, *_ = np.linalg.lstsq(a, d, rcond=None)
        return a @ coef - d, coef

    lo, hi = bounds
    p0 = np.clip(np.array([xc, yc], float), lo + 1e-6, hi - 1e-6)
    try:
        r = least_squares(lambda p: linear(p)[0], p0, bounds=(lo, hi), diff_step=1e-3, max_nfev=30)
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(r.x)):
        return None
    _, (flux, const) = linear(r.x)
    if not (np.isfinite(flux) and flux > 0):
        return None
    return float(flux), float(r.x[0]), float(r.x[1]), float(const)


def extend_frame(data: np.ndarray, psf: PSFField, sigma: np.ndarray, level: np.ndarray | None = None,
                 saturation: np.ndarray | None = None, margin: int = MARGIN,
                 box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, EdgeStars]:
    """The image extended by ``margin`` px on every side for the network's context.

    Parameters
    ----------
    data : (C, H, W) ndarray
        The image the engine works on (finite).
    psf : PSFField
        The source PSF field of that image.
    sigma : (C,) array
        Background noise per channel.
    level : (C, H, W) ndarray, optional
        The smooth background map (for detection; the median of each
        channel when None).
    saturation : (C,) array, optional
        Saturation level per channel (inf where not clipped): pixels at or
        above 0.98 of it are left out of the fits, and the continued profiles
        are clipped at it.
    margin : int
        Pixels added on each side.
    box : (y0, y1, x0, x1), optional
        Where the sky is, when a straight stacking border surrounds it
        (:meth:`astrosharp.edges.Borders.interior_box`): the edges of this
        box are the frame edges, and the border pixels outside it get the
        same context as the pixels beyond the image.

    Returns
    -------
    extended : (C, H + 2 margin, W + 2 margin) float32 ndarray
        Its interior is ``data`` exactly.
    stars : EdgeStars
        The stars fitted and continued.
    """
    data = np.asarray(data)
    c, h, w = data.shape
    if box is not None and tuple(box) != (0, h, 0, w):
        y0, y1, x0, x1 = (int(v) for v in box)
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(f"box {box} is not inside the {w}x{h} image")
        reach = int(margin) + max(y0, x0, h - y1, w - x1)
        lvl = None if level is None else (np.asarray(level)[:, y0:y1, x0:x1] if np.ndim(level) == 3
                                          and np.shape(level)[1:] == (h, w) else level)
        ext, stars = _extend(data[:, y0:y1, x0:x1], psf, sigma, lvl, saturation, reach, (y0, x0))
        top, left = reach - y0 - int(margin), reach - x0 - int(margin)
        out = ext[:, top:top + h + 2 * int(margin), left:left + w + 2 * int(margin)].copy()
        stars.x += x0
        stars.y += y0
        return out, stars
    return _extend(data, psf, sigma, level, saturation, int(margin), (0, 0))


def _extend(data: np.ndarray, psf: PSFField, sigma: np.ndarray, level: np.ndarray | None,
            saturation: np.ndarray | None, margin: int, offset: tuple[int, int]) -> tuple[np.ndarray, EdgeStars]:
    """:func:`extend_frame` of a frame whose pixel (0, 0) is ``offset`` in the PSF field's coordinates."""
    c, h, w = data.shape
    m = int(margin)
    oy, ox = offset
    sigma = np.broadcast_to(np.asarray(sigma, float), (c,))
    if level is None:
        level = np.median(data.reshape(c, -1), axis=1)[:, None, None]
    level = np.asarray(level)
    fw = np.asarray(psf.param("fwhm"), float)
    f_typ = float(np.nanmedian(fw)) if fw.size else 3.0
    f_typ = f_typ if np.isfinite(f_typ) and f_typ > 0 else 3.0
    f_max = float(np.nanmax(fw)) if fw.size else f_typ
    ys, xs = _candidates(data, level, sigma, REACH_FWHM * f_max, f_typ)
    sat = None if saturation is None else np.broadcast_to(np.asarray(saturation, float), (c,))

    from .tiles import _reflect_index

    out = np.pad(data.astype(np.float32, copy=False), ((0, 0), (m, m), (m, m)), mode="reflect")
    H, W = h + 2 * m, w + 2 * m
    fitted: list[tuple[float, float, int, float, dict[str, float], int]] = []
    boxes: list[tuple] = []  # stars whose continuation meets the mirror of a clipped core
    pars = psf.sample(ys + oy, xs + ox) if len(ys) else None  # (C, P, N): the source PSF at each star
    for i, (py, px) in enumerate(zip(ys, xs)):
        shapes = [moffat_shape(pars[k, :, i]) for k in range(c)]
        f = max(sp["fwhm"] for sp in shapes)
        dist = min(py, px, h - 1 - py, w - 1 - px)
        if dist > REACH_FWHM * f:
            continue
        r = max(int(np.ceil(FIT_FWHM * f)), FIT_MIN)
        y0, y1 = max(py - r, 0), min(py + r + 1, h)
        x0, x1 = max(px - r, 0), min(px + r + 1, w)
        stamps = data[:, y0:y1, x0:x1].astype(float)
        for (xo, yo, ko, fo, so, ro) in fitted:  # brighter stars already fitted
            if abs(xo - px) <= ro + r and abs(yo - py) <= ro + r:
                stamps[ko] -= _render(stamps.shape[1:], y0, x0, xo, yo, fo, so)
        use = np.isfinite(stamps)
        if sat is not None:
            use &= ~(data[:, y0:y1, x0:x1] >= 0.98 * sat[:, None, None])
        # the centre from the channels together (registered: one position), in noise sigmas
        lum = np.sum(np.where(use, stamps, 0.0) / sigma[:, None, None], axis=0)
        b = BEYOND_FWHM * f
        lo = (max(px - 2.0, -b), max(py - 2.0, -b))
        hi = (min(px + 2.0, w - 1 + b), min(py + 2.0, h - 1 + b))
        mid = shapes[int(np.argsort([sp["fwhm"] for sp in shapes])[c // 2])]
        fit = _fit_one(lum, use.all(axis=0), y0, x0, float(py), float(px), mid, (np.array(lo), np.array(hi)))
        if fit is None:
            continue
        _, xc, yc, _ = fit
        for k in range(c):
            # each channel's flux and constant at that centre, by linear least squares
            sp = shapes[k]
            prof = _render(stamps.shape[1:], y0, x0, xc, yc, 1.0, sp)[use[k]]
            if prof.size < 8:
                continue
            a = np.stack([prof, np.ones_like(prof)], axis=1)
            (flux, const), *_ = np.linalg.lstsq(a, stamps[k][use[k]], rcond=None)
            if not (np.isfinite(flux) and flux > 0):
                continue
            rr = max(int(np.ceil(RENDER_FWHM * sp["fwhm"])), RENDER_MIN)
            fitted.append((xc, yc, k, float(flux), sp, rr))
            # beyond the edge: out = mirror(data - star) + star, i.e. add star(p) - star(mirror(p))
            half = rr + 2 * int(np.ceil(dist + b)) + 2
            iy, ix = int(round(yc)), int(round(xc))
            ey0, ey1 = max(iy - half + m, 0), min(iy + half + 1 + m, H)
            ex0, ex1 = max(ix - half + m, 0), min(ix + half + 1 + m, W)
            yy = np.arange(ey0, ey1) - m
            xx = np.arange(ex0, ex1) - m
            pad = ((yy < 0) | (yy >= h))[:, None] | ((xx < 0) | (xx >= w))[None, :]
            if not pad.any():
                continue
            ry, rx = _reflect_index(yy, h), _reflect_index(xx, w)
            here = _render((len(yy), len(xx)), int(yy[0]), int(xx[0]), xc, yc, flux, sp)
            my0, mx0 = int(ry.min()), int(rx.min())
            there = _render((int(ry.max()) - my0 + 1, int(rx.max()) - mx0 + 1), my0, mx0, xc, yc, flux, sp)
            delta = here - there[(ry - my0)[:, None], (rx - mx0)[None, :]]
            box = out[k, ey0:ey1, ex0:ex1]
            box[pad] += delta[pad].astype(np.float32)
            if sat is not None and np.isfinite(sat[k]):
                clipped = pad & (data[k][ry[:, None], rx[None, :]] >= 0.98 * sat[k])
                if clipped.any():
                    boxes.append((k, ey0, ey1, ex0, ex1, here, const, clipped))
    # a clipped pixel tells nothing of the sky under its star: where the mirror
    # falls on one, the context is the stars' profiles on their fitted constant
    for i, (k, ey0, ey1, ex0, ex1, here, const, clipped) in enumerate(boxes):
        total = here + const
        for j, (kj, fy0, fy1, fx0, fx1, other, _, _) in enumerate(boxes):
            if j == i or kj != k:
                continue
            oy0, oy1, ox0, ox1 = max(ey0, fy0), min(ey1, fy1), max(ex0, fx0), min(ex1, fx1)
            if oy1 > oy0 and ox1 > ox0:
                total[oy0 - ey0:oy1 - ey0, ox0 - ex0:ox1 - ex0] += other[oy0 - fy0:oy1 - fy0, ox0 - fx0:ox1 - fx0]
        box = out[k, ey0:ey1, ex0:ex1]
        box[clipped] = np.minimum(total[clipped], sat[k]).astype(np.float32)
    if sat is not None:
        for k in range(c):
            if np.isfinite(sat[k]):
                for sl in ((slice(0, m), slice(None)), (slice(m + h, None), slice(None)),
                           (slice(None), slice(0, m)), (slice(None), slice(m + w, None))):
                    np.minimum(out[k][sl], sat[k], out=out[k][sl])
    rows = [(xc, yc, k, flux) for (xc, yc, k, flux, _, _) in fitted]
    if rows:
        a = np.array(rows)
        stars = EdgeStars(a[:, 0], a[:, 1], a[:, 2].astype(int), a[:, 3])
    else:
        stars = EdgeStars.empty()
    return out, stars
