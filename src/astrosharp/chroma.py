"""Chromatic differences between the colour channels: where their stars lie
and how wide they are.

Lateral shift
-------------

A refractor's lateral colour, an imperfect colour registration in stacking,
or atmospheric dispersion put a star's red and blue images a fraction of a
pixel away from its green one, by an amount that grows across the field. The
PSF field describes each channel's star shape around its own centroid, so the
network cannot see this offset; left in, it gives stars coloured fringes on
opposite sides, which sharpening only makes crisper.

:func:`measure_channel_shift` fits, per channel, the offset of its stars'
fitted centroids from the reference channel's (green) as a plane in the
image position, ``d(x, y) = a + b u + c v`` with ``u, v`` the position from
the image centre in units of the half-diagonal (a constant misregistration
plus a magnification difference or a dispersion gradient), by weighted least
squares with 3-sigma clipping. A field with fewer than ``MIN_STARS`` usable
stars (down to ``MIN_STARS_RADIAL``) gets the reduced model
``d = a + m (u, v)``: a translation and one magnification, what lateral
colour and a misregistration make (on the bench's ``nebula_rgb`` seed 0,
seven and five stars in red and blue, it registers a shift of 0.76 and
0.61 px at the corners that was left in before).
:func:`align_channels` resamples each channel
onto the reference's positions (cubic spline interpolation, in strips of
rows so that memory stays bounded, evaluated separably over blocks across
which the shift changes by at most ``BLOCK_TOLERANCE`` px; on the 24 MP
frame of the speed line 1.6 to 3.8 s against 2.6 to 6.9 s for
``scipy.ndimage.affine_transform``). The pipeline does
this before the translation, when the shift is significant
(``ChannelShift.significant``).

FWHM differences (correct-only in colour)
-----------------------------------------
Seeing and longitudinal colour give each channel its own star width (blue
is often the softest). Correct-only asks for every channel at the median of
the channels' FWHM. The network processes the channels jointly and moves
them together: asked to sharpen channels of different widths by one ratio,
it narrows their differences as well (at sharpen 1.0: R 0.58, G 0.56, B 0.51
of their inputs). :func:`equalise_tiles` therefore hands it channels that
agree: per tile (the PSF field's resolution), the narrower channels are
blurred by the Gaussian that widens their Moffat to the widest channel's
FWHM (:func:`widening_sigma`, exact for the Moffat, not the quadrature rule).
:mod:`astrosharp.correct` then takes all three to the median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._threads import each
from .psf.field import PARAM_NAMES
from .psf.measure import _poly_terms
from .psf.moffat import alpha_from_fwhm

__all__ = ["ChannelShift", "measure_channel_shift", "align_channels", "registered_table", "widening_sigma", "equalise_tiles",
           "MIN_FWHM_SPREAD"]

#: reference channel (green)
REFERENCE = 1
#: stars used must have at least this S/N in both channels
MIN_SNR = 20.0
#: and at least this many of them for a plane per axis (a translation, a
#: magnification and any tilt); with fewer, down to MIN_STARS_RADIAL, the
#: offset is fitted as a translation and a magnification only
MIN_STARS = 8
MIN_STARS_RADIAL = 4
#: a shift is applied when it reaches this many px somewhere in the frame ...
MIN_SHIFT = 0.05
#: ... and exceeds this many times its standard error there
MIN_SIGNIFICANCE = 4.0
#: rows resampled at a time, and the margin each strip reads beyond its rows
STRIP = 512
MARGIN = 16
#: the resampling takes the shift as constant over blocks where it changes by at most this (px)
BLOCK_TOLERANCE = 0.002
#: correct-only equalises a tile's channels when (widest - narrowest) / median
#: FWHM exceeds this
MIN_FWHM_SPREAD = 0.03


@dataclass
class ChannelShift:
    """Per-channel offsets of the star images from the reference channel.

    Attributes
    ----------
    coef : (C, 2, 3) ndarray
        Per channel, (dy, dx) = ``coef[c] @ (1, u, v)`` with ``u = (x - x0) / s``,
        ``v = (y - y0) / s`` (``frame``); zero for the reference channel.
    frame : (y0, x0, s)
        Image centre and half-diagonal (px).
    n_stars : (C,) ndarray of int
        Stars that entered each channel's fit (after clipping).
    corner_shift : (C,) ndarray
        Largest offset (px) over the frame's corners and centre.
    significance : (C,) ndarray
        ``corner_shift`` over its standard error.
    """

    coef: np.ndarray
    frame: tuple[float, float, float]
    n_stars: np.ndarray
    corner_shift: np.ndarray
    significance: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """(C,) bool: channels whose shift is worth correcting."""
        return ((self.n_stars >= MIN_STARS_RADIAL) & (self.corner_shift >= MIN_SHIFT)
                & (self.significance >= MIN_SIGNIFICANCE))

    def at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(C, 2, N) offsets (dy, dx) at points."""
        return plane_at(self.coef, self.frame, y, x)

    def describe(self) -> str:
        names = "RGB" if len(self.coef) == 3 else [str(i) for i in range(len(self.coef))]
        parts = [f"{names[c]} up to {self.corner_shift[c]:.2f} px" for c in range(len(self.coef))
                 if c != REFERENCE and self.significant[c]]
        if not parts:
            return "lateral chromatic shift: none significant, channels left as they are"
        return "lateral chromatic shift corrected (channels registered on green): " + ", ".join(parts)


def _frame(shape: tuple[int, int]) -> tuple[float, float, float]:
    h, w = shape
    return (h - 1) / 2.0, (w - 1) / 2.0, max(0.5 * float(np.hypot(h, w)), 1.0)


def plane_at(coef: np.ndarray, frame: tuple[float, float, float], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Offset planes ``coef`` (..., 2, 3) of ``frame`` (:func:`frame_probes`)
    evaluated at points: (..., 2, N) offsets (dy, dx)."""
    y0, x0, s = frame
    V = _poly_terms((np.ravel(x) - x0) / s, (np.ravel(y) - y0) / s, 1)  # (N, 3)
    return np.einsum("...ka,na->...kn", coef, V)


def frame_probes(shape: tuple[int, int]) -> tuple[tuple[float, float, float], np.ndarray]:
    """The frame (y0, x0, s) of ``shape`` and the (5, 3) plane terms
    ``(1, u, v)`` at its four corners and its centre, where an offset plane
    is judged (:func:`largest_offset`)."""
    h, w = shape
    frame = _frame(shape)
    y0, x0, s = frame
    probe_y = np.array([0.0, 0.0, h - 1.0, h - 1.0, y0])
    probe_x = np.array([0.0, w - 1.0, 0.0, w - 1.0, x0])
    return frame, _poly_terms((probe_x - x0) / s, (probe_y - y0) / s, 1)


def largest_offset(coef: np.ndarray, var, P: np.ndarray) -> tuple[float, float]:
    """The largest offset (px) of the (2, 3) plane ``coef`` over the probes
    ``P`` (:func:`frame_probes`), and that offset over its standard error
    (``var``: the fit's variance function, :func:`fit_offset_plane`)."""
    pred = np.einsum("ka,na->nk", coef, P)  # (5, 2)
    mag = np.hypot(pred[:, 0], pred[:, 1])
    k = int(np.argmax(mag))
    se = float(np.sqrt(max(var(P[k], pred[k] / max(mag[k], 1e-12)), 1e-30)))
    return float(mag[k]), float(mag[k]) / se


def measure_channel_shift(stars, shape: tuple[int, int], channels: int, reference: int = REFERENCE) -> ChannelShift | None:
    """Fit the channels' offsets from the reference channel.

    Parameters
    ----------
    stars : StarTable
        Per-star, per-channel fits (``psf.measure.PSFMeasurement.stars``):
        the same detections fitted in every channel, in channel order.
    shape : (H, W)
    channels : int

    Returns
    -------
    ChannelShift, or None for a mono image or when too few stars were fitted.
    """
    if channels < 2 or stars is None or len(stars.x) == 0:
        return None
    ch = np.asarray(stars.channel)
    n = int(np.sum(ch == reference))
    if n == 0 or any(int(np.sum(ch == c)) != n for c in range(channels)):
        return None
    by = [np.nonzero(ch == c)[0] for c in range(channels)]
    frame, P = frame_probes(shape)
    y0, x0, s = frame
    ref = by[reference]
    coef = np.zeros((channels, 2, 3))
    n_used = np.zeros(channels, int)
    corner = np.zeros(channels)
    signif = np.zeros(channels)
    for c in range(channels):
        if c == reference:
            n_used[c] = n
            continue
        idx = by[c]
        ok = ((stars.flags[idx] == 0) & (stars.flags[ref] == 0)
              & (stars.snr[idx] >= MIN_SNR) & (stars.snr[ref] >= MIN_SNR)
              & np.isfinite(stars.x[idx]) & np.isfinite(stars.x[ref]))
        if ok.sum() < MIN_STARS_RADIAL:
            continue
        xr, yr = stars.x[ref][ok], stars.y[ref][ok]
        d = np.stack([stars.y[idx][ok] - yr, stars.x[idx][ok] - xr], axis=1)  # (N, 2)
        # a centroid's error scales as FWHM / S/N; the two channels add
        err = np.hypot(stars.fwhm[idx][ok] / stars.snr[idx][ok], stars.fwhm[ref][ok] / stars.snr[ref][ok])
        wgt = 1.0 / np.maximum(err, 1e-3) ** 2
        u, v = (xr - x0) / s, (yr - y0) / s
        radial = ok.sum() < MIN_STARS
        need = MIN_STARS_RADIAL if radial else MIN_STARS
        fit = _fit_radial if radial else fit_offset_plane
        res = fit(u, v, d, wgt, need)
        if res is None:
            continue
        coef[c], var, n_used[c] = res
        corner[c], signif[c] = largest_offset(coef[c], var, P)
    return ChannelShift(coef, frame, n_used, corner, signif)


def _clipped_lsq(A: np.ndarray, d: np.ndarray, wgt: np.ndarray, need: int,
                 min_scale: float = 1e-6, per_axis: bool = False):
    """Weighted least squares ``A p = (d_y, d_x)`` for the (N, 2) offsets
    ``d`` of N stars of weights ``wgt`` (``A``: (2N, k), the dy rows then
    the dx rows), with 3-sigma clipping of whole stars; returns (p,
    covariance scaled by the scatter seen, no less than ``min_scale``, kept
    stars) or None. The scatter is the robust spread of the stars' (2-D)
    normalised residuals, or with ``per_axis`` that over sqrt(2) (the spread
    along one axis)."""
    n = len(d)
    b, w = np.r_[d[:, 0], d[:, 1]], np.r_[wgt, wgt]
    star = np.r_[np.arange(n), np.arange(n)]  # each row's star
    keep = np.ones(n, bool)
    p, cov = np.zeros(A.shape[1]), np.eye(A.shape[1])
    for _ in range(5):
        if keep.sum() < need:
            return None
        rows = keep[star]
        Aw = A[rows] * w[rows, None]
        try:
            Ainv = np.linalg.inv(A[rows].T @ Aw + 1e-12 * np.eye(A.shape[1]))
        except np.linalg.LinAlgError:
            return None
        p = Ainv @ (Aw.T @ b[rows])
        chi = np.sqrt(np.bincount(star, weights=(b - A @ p) ** 2 * w, minlength=n))
        scale = max(1.4826 * float(np.median(chi[keep])) / (np.sqrt(2.0) if per_axis else 1.0), min_scale)
        cov = Ainv * scale**2  # errors scaled by the scatter actually seen
        new = chi <= 3.0 * scale * np.sqrt(2.0)
        if np.array_equal(new, keep):
            break
        keep = new
    if keep.sum() < need:
        return None
    return p, cov, int(keep.sum())


def fit_offset_plane(u, v, d, wgt, need, min_scale: float = 1e-6, per_axis: bool = False):
    """Each axis's offset a plane in (u, v): (dy, dx) = coef @ (1, u, v), for
    (N, 2) offsets ``d`` of weights ``wgt`` (:func:`_clipped_lsq`); returns
    ((2, 3) coef, variance function, stars kept) or None with fewer than
    ``need`` kept."""
    X = _poly_terms(u, v, 1)
    Z = np.zeros_like(X)
    A = np.vstack([np.hstack([X, Z]), np.hstack([Z, X])])  # (2N, 6): dy rows, then dx rows
    res = _clipped_lsq(A, d, wgt, need, min_scale=min_scale, per_axis=per_axis)
    if res is None:
        return None
    p, cov, kept = res

    def var(t, along):  # variance of the offset's component along the unit vector ``along`` at terms t
        g = np.r_[along[0] * t, along[1] * t]
        return float(g @ cov @ g)

    return p.reshape(2, 3), var, kept


def _fit_radial(u, v, d, wgt, need):
    """A translation and a magnification: (dy, dx) = (a_y + m v, a_x + m u),
    for fields with too few stars for a plane per axis (lateral colour is a
    magnification difference, a misregistration a translation)."""
    n = len(u)
    one, zero = np.ones(n), np.zeros(n)
    A = np.vstack([np.column_stack([one, zero, v]), np.column_stack([zero, one, u])])  # (a_y, a_x, m)
    # a few stars' scatter says little about the errors: they are taken no
    # smaller than the fits' own (FWHM / S/N)
    res = _clipped_lsq(A, d, wgt, need, min_scale=1.0)
    if res is None:
        return None
    p, cov, kept = res
    ay, ax, m = p
    coef = np.array([[ay, 0.0, m], [ax, m, 0.0]])

    def var(t, along):
        # t = (1, u, v): dy = ay + m v, dx = ax + m u
        g = along[0] * np.array([1.0, 0.0, t[2]]) + along[1] * np.array([0.0, 1.0, t[1]])
        return float(g @ cov @ g)

    return coef, var, kept


def registered_table(stars, shift: ChannelShift):
    """Star fits moved to where :func:`align_channels` puts their stars.

    ``stars`` (a :class:`~astrosharp.psf.measure.StarTable`) holds each
    channel's own positions; after the registration a star of a resampled
    channel (``shift.significant``, as :func:`align_channels` resamples by
    default) lies at its position minus that channel's offset there. Returns
    a new table; the given one is not modified.
    """
    from dataclasses import replace

    if stars is None or len(stars) == 0:
        return stars
    x = np.array(stars.x, dtype=float, copy=True)
    y = np.array(stars.y, dtype=float, copy=True)
    ch = np.asarray(stars.channel, int)
    for c in np.flatnonzero(shift.significant):  # never the reference: its offset is zero
        k = np.flatnonzero((ch == c) & np.isfinite(x) & np.isfinite(y))
        if len(k):
            d = shift.at(y[k], x[k])[c]  # (2, N): dy, dx
            y[k] -= d[0]
            x[k] -= d[1]
    return replace(stars, x=x, y=y)


def _bspline3(t: float) -> np.ndarray:
    """Cubic B-spline weights of the four coefficients at offsets -1, 0, 1, 2
    for a fractional position ``t`` in [0, 1)."""
    u = 1.0 - t
    return np.array([u**3, 3.0 * t**3 - 6.0 * t**2 + 4.0, -3.0 * t**3 + 3.0 * t**2 + 3.0 * t + 1.0, t**3]) / 6.0


def _block_edges(n: int, step: int) -> list[tuple[int, int]]:
    cuts = list(range(0, n, step)) + [n]
    return list(zip(cuts[:-1], cuts[1:]))


def _resample_strip(coef: np.ndarray, pad: int, rows: tuple[int, int], lo: int, m: np.ndarray, off: np.ndarray,
                    block: tuple[int, int], out: np.ndarray) -> None:
    """Rows ``rows`` of the affine resampling (source = ``m`` @ (row, col) + ``off``)
    from the cubic B-spline coefficients ``coef`` of image rows ``lo``..,
    padded by ``pad`` on every side; written into ``out`` (those rows, all
    columns). Per block the shift is the one at its centre, applied
    separably (4 taps a pass)."""
    r0, r1 = rows
    w = out.shape[1]
    bh, bw = block
    for a, b in _block_edges(r1 - r0, bh):
        for c0, c1 in _block_edges(w, bw):
            yc, xc = r0 + 0.5 * (a + b - 1), 0.5 * (c0 + c1 - 1)
            sy, sx = m @ np.array([yc, xc]) + off
            ty, tx = sy - yc, sx - xc  # the block's shift
            ny, nx = int(np.floor(ty)), int(np.floor(tx))
            wy, wx = _bspline3(ty - ny), _bspline3(tx - nx)
            # coefficient rows of output rows r0 + a .. r0 + b, taps -1..2
            y0 = r0 + a + ny - 1 - lo + pad
            x0 = c0 + nx - 1 + pad
            hgt, wid = b - a, c1 - c0  # (inside coef: pad exceeds the largest shift by 14)
            cols = coef[:, x0 : x0 + wid + 3]
            tmp = wy[0] * cols[y0 : y0 + hgt]
            for k in range(1, 4):
                tmp += wy[k] * cols[y0 + k : y0 + k + hgt]
            blk = wx[0] * tmp[:, 0:wid]
            for k in range(1, 4):
                blk += wx[k] * tmp[:, k : k + wid]
            out[a:b, c0:c1] = blk


def align_channels(data: np.ndarray, shift: ChannelShift, saturation: np.ndarray | None = None,
                   channels: np.ndarray | None = None) -> np.ndarray:
    """Resample the channels onto the reference channel's star positions.

    Cubic B-spline interpolation (the coefficients from
    ``scipy.ndimage.spline_filter``, mirror boundaries), evaluated
    separably in blocks small enough that the shift varies by less than
    ``BLOCK_TOLERANCE`` px across each (the shift at the block's centre is
    used for all of it): the same values as ``scipy.ndimage.affine_transform``
    with ``order=3`` to within that much position, at a fraction of its cost.

    Parameters
    ----------
    data : (C, H, W) ndarray
        NaN-free image (bad pixels filled).
    shift : ChannelShift
    saturation : (C,) array_like, optional
        Clipping levels: resampled values are kept at or below them (and a
        clipped core stays clipped).
    channels : (C,) bool, optional
        Channels to resample (default: ``shift.significant``).

    Returns
    -------
    (C, H, W) ndarray
        A new array (the input is not modified); channels not resampled are copies.
    """
    from scipy.ndimage import spline_filter

    C, H, W = data.shape
    out = np.array(data, copy=True)
    todo = shift.significant if channels is None else np.asarray(channels, bool)
    y0, x0, s = shift.frame

    def channel(c: int) -> None:
        a = shift.coef[c]  # (2, 3): rows dy, dx
        # the channel's star images lie at p + d(p), d affine in (x, y): read
        # them there. As a matrix on (row, col): source = M (row, col) + offset
        m = np.array([[1.0 + a[0, 2] / s, a[0, 1] / s], [a[1, 2] / s, 1.0 + a[1, 1] / s]])
        off = np.array([a[0, 0] - a[0, 1] * x0 / s - a[0, 2] * y0 / s, a[1, 0] - a[1, 1] * x0 / s - a[1, 2] * y0 / s])
        # blocks over which the shift changes by at most BLOCK_TOLERANCE from
        # their centre (half of it along the rows, half along the columns)
        g = np.abs(m - np.eye(2))  # d(shift)/d(row, col)
        bh = int(np.clip(BLOCK_TOLERANCE / max(g[0, 0] + g[1, 0], 1e-12), 8, STRIP))
        bw = int(np.clip(BLOCK_TOLERANCE / max(g[0, 1] + g[1, 1], 1e-12), 8, W))
        corners = np.array([[0, 0], [0, W - 1], [H - 1, 0], [H - 1, W - 1]], float)
        reach = float(np.max(np.abs(corners @ (m - np.eye(2)).T + off)))
        # mirrored far enough that the filter's boundary (its influence falls
        # by 0.27 a pixel) is 1e-7 of the signal at the image edge
        pad = int(np.ceil(reach)) + 14
        for r0 in range(0, H, STRIP):
            r1 = min(H, r0 + STRIP)
            lo, hi = max(0, r0 - MARGIN), min(H, r1 + MARGIN)
            strip = np.pad(np.asarray(data[c, lo:hi], dtype=np.float64), pad, mode="symmetric")
            # the coefficients of the mirrored strip are the mirrored coefficients
            coef = spline_filter(strip, order=3, mode="reflect")
            _resample_strip(coef, pad, (r0, r1), lo, m, off, (bh, bw), out[c, r0:r1])
        if saturation is not None:
            sat = float(np.asarray(saturation, float).reshape(-1)[c])
            if np.isfinite(sat):
                np.minimum(out[c], sat, out=out[c])

    # the channels side by side (NumPy and scipy.ndimage release the GIL)
    each(channel, [c for c in range(C) if c != REFERENCE and todo[c]])
    return out


# ---------------------------------------------------------------------------
# FWHM differences
# ---------------------------------------------------------------------------

_FWHM = PARAM_NAMES.index("fwhm")
_BETA = PARAM_NAMES.index("beta")
_GRID = 128  # samples of the profile table's images
_SAMPLES_PER_FWHM = 8.0
_BETAS = np.array([1.2, 1.5, 1.8, 2.2, 2.6, 3.0, 3.5, 4.0, 5.0, 6.5, 8.0, 10.0, 14.0, 20.0])
_SIGMAS = np.linspace(0.0, 1.2, 25)  # Gaussian sigma in units of the Moffat FWHM


def _fwhm_of(img: np.ndarray) -> float:
    """FWHM (in samples) of a centred, radially symmetric peak, along its central row."""
    c = img.shape[0] // 2
    row = img[c, c:]
    half = 0.5 * row[0]
    k = int(np.argmax(row < half))  # first sample below half maximum
    if k == 0:
        return float("nan")
    a, b = row[k - 1], row[k]
    return 2.0 * ((k - 1) + (a - half) / (a - b))


_TABLE: np.ndarray | None = None


def _widening_table() -> np.ndarray:
    """FWHM of Moffat(FWHM 1, beta) convolved with a Gaussian of sigma s, on
    the (_BETAS, _SIGMAS) grid (computed once, by FFT)."""
    global _TABLE
    if _TABLE is None:
        n = _GRID
        r2 = ((np.arange(n) - n // 2)[:, None] ** 2 + (np.arange(n) - n // 2)[None, :] ** 2).astype(np.float64)
        q2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.rfftfreq(n)[None, :] ** 2
        table = np.empty((len(_BETAS), len(_SIGMAS)))
        for i, beta in enumerate(_BETAS):
            alpha = alpha_from_fwhm(_SAMPLES_PER_FWHM, beta)
            otf = np.fft.rfft2(np.fft.ifftshift((1.0 + r2 / alpha**2) ** (-beta)))
            s2 = (_SIGMAS * _SAMPLES_PER_FWHM)[:, None, None] ** 2
            imgs = np.fft.irfft2(otf[None] * np.exp(-2.0 * np.pi**2 * s2 * q2[None]), s=(n, n))
            for j in range(len(_SIGMAS)):
                table[i, j] = _fwhm_of(np.fft.fftshift(imgs[j])) / _SAMPLES_PER_FWHM
        _TABLE = table
    return _TABLE


def widening_sigma(fwhm: float, beta: float, target_fwhm: float) -> float:
    """Sigma (px) of the Gaussian that widens a Moffat of ``fwhm`` and ``beta``
    to ``target_fwhm`` (0 when the target is not wider).

    The table is exact for the Moffat (its core widens faster than the
    quadrature sum of FWHMs suggests); beta is clipped to 1.2 .. 20.
    """
    fwhm, target = float(fwhm), float(target_fwhm)
    if not (fwhm > 0) or not (target > fwhm):
        return 0.0
    t = _widening_table()
    b = float(np.clip(beta, _BETAS[0], _BETAS[-1]))
    i = int(np.clip(np.searchsorted(_BETAS, b) - 1, 0, len(_BETAS) - 2))
    w = (b - _BETAS[i]) / (_BETAS[i + 1] - _BETAS[i])
    curve = (1.0 - w) * t[i] + w * t[i + 1]  # FWHM / fwhm as a function of sigma / fwhm, increasing
    ratio = min(target / fwhm, float(curve[-1]))
    return float(np.interp(ratio, curve, _SIGMAS)) * fwhm


def equalise_tiles(tiles: np.ndarray, maps: np.ndarray, min_spread: float = MIN_FWHM_SPREAD,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blur the narrower channels of each colour tile to its widest channel.

    Parameters
    ----------
    tiles : (B, C, h, w) ndarray
        Padded tiles as the engine gives them (C = 3).
    maps : (B, C, P, h, w) ndarray
        Their source PSF maps (``PARAM_NAMES`` order: fwhm, beta, ...).
    min_spread : float
        Tiles whose channels' FWHM spread ((max - min) / median, at the tile
        centre) is at most this are left alone.

    Returns
    -------
    tiles, maps : new arrays
        Blurred tiles, and maps whose FWHM is the widest channel's in every
        channel (their spatial variation kept).
    ratio : (B,) ndarray
        Median over widest FWHM per tile (what the network must narrow all
        channels by), NaN where the tile was left alone.
    """
    from scipy.ndimage import gaussian_filter

    tiles = np.array(tiles, dtype=np.float32, copy=True)
    maps = np.array(maps, dtype=np.float32, copy=True)
    b, c, h, w = tiles.shape
    ratio = np.full(b, np.nan)
    if c < 2:
        return tiles, maps, ratio
    for i in range(b):
        f = maps[i, :, _FWHM, h // 2, w // 2].astype(np.float64)
        beta = maps[i, :, _BETA, h // 2, w // 2].astype(np.float64)
        med, widest = float(np.median(f)), float(f.max())
        if not (med > 0) or (widest - f.min()) / med <= min_spread:
            continue
        for k in range(c):
            sg = widening_sigma(f[k], beta[k], widest)
            if sg > 0.0:
                tiles[i, k] = gaussian_filter(tiles[i, k], sg, mode="reflect", truncate=4.0)
                maps[i, k, _FWHM] *= np.float32(widest / f[k])
        ratio[i] = med / widest
    return tiles, maps, ratio
