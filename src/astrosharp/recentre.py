"""Star positions after the network: the stars layer re-registered on the input.

A change of PSF does not move a star. The shipped network, though, puts the
stars it sharpens slightly off their input positions, by about the same
amount and direction over a frame (measured on simulated fields of round
4 px stars: 0.05 to 0.11 px towards -x, a few hundredths in y; on its own
validation patches it does not, so the cause is some difference between
those and whole frames that has not been found).

:func:`recentre_stars` measures that offset and takes it out: per channel,
the median over bright stars of the difference between the position fitted
in the stars layer (a pixel-integrated Moffat, :func:`astrosharp.psf.fit.fit_stars`)
and the position the PSF measurement fitted in the input. Where it is
significant (``MIN_OFFSET`` px and ``MIN_SIGNIFICANCE`` times its standard
error), that channel of the stars layer is resampled by the opposite shift
with a separable Lanczos-3 kernel (weights summing to 1: flux is kept). The
non-stellar layer is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Recentring", "recentre_stars", "shift_image", "MIN_OFFSET", "MIN_SIGNIFICANCE", "MIN_SNR", "MIN_STARS"]

#: stars of at least this S/N in the input's fit are used ...
MIN_SNR = 30.0
#: ... at least this many of them per channel ...
MIN_STARS = 8
#: ... and at most this many (the brightest)
MAX_STARS = 300
#: a channel is shifted when its offset reaches this (px) ...
MIN_OFFSET = 0.02
#: ... and this many times its standard error
MIN_SIGNIFICANCE = 3.0


@dataclass
class Recentring:
    """What :func:`recentre_stars` found and did.

    Attributes
    ----------
    offset : (C, 2) ndarray
        Median (dy, dx) of the stars layer's fitted positions from the input's, px
        (NaN where too few stars).
    error : (C, 2) ndarray
        Standard errors of ``offset``.
    n_stars : (C,) ndarray of int
    applied : (C,) ndarray of bool
        Channels shifted back by ``-offset``.
    """

    offset: np.ndarray
    error: np.ndarray
    n_stars: np.ndarray
    applied: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def describe(self) -> str:
        if not self.applied.any():
            return "star positions: the stars layer kept the input's star positions (no significant offset)"
        parts = [f"channel {c}: dx {-self.offset[c, 1]:+.3f}, dy {-self.offset[c, 0]:+.3f} px ({self.n_stars[c]} stars)"
                 for c in range(len(self.applied)) if self.applied[c]]
        return "star positions: the stars layer was shifted back onto the input's star positions, " + "; ".join(parts)


def _lanczos_weights(shift: float, a: int = 3) -> np.ndarray:
    """Weights w[k + a], k = -a..a, so that sum_k w in[i + k] = in(i + shift)."""
    k = np.arange(-a, a + 1, dtype=np.float64) - shift
    w = np.sinc(k) * np.sinc(k / a)
    w[np.abs(k) >= a] = 0.0
    return w / w.sum()


def shift_image(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``a`` (H, W) resampled at ``(y + dy, x + dx)``: content moves by (-dy, -dx).

    Separable Lanczos-3 interpolation (weights normalised to 1), edges held
    at their nearest value. Returns a new float32 array.
    """
    from scipy.ndimage import correlate1d

    out = np.array(a, dtype=np.float32, copy=True)
    if dy:
        correlate1d(out, _lanczos_weights(dy), axis=0, output=out, mode="nearest")
    if dx:
        correlate1d(out, _lanczos_weights(dx), axis=1, output=out, mode="nearest")
    return out


def recentre_stars(stars: np.ndarray, table, sigma: np.ndarray, exclude: np.ndarray | None = None,
                   copy: bool = True) -> tuple[np.ndarray, Recentring]:
    """Measure and remove the stars layer's offset from the input's star positions.

    Parameters
    ----------
    stars : (C, H, W) ndarray
        The stars layer.
    table : StarTable
        The PSF measurement's star fits in the input (image coordinates), or None.
    sigma : (C,) array_like
        Background noise per channel (weights the fits).
    exclude : (H, W) bool, optional
        Pixels (calibration borders) no star stamp may touch.
    copy : bool
        Work on a copy of ``stars`` (default) or in place.

    Returns
    -------
    stars, Recentring
    """
    from .psf.fit import fit_stars

    stars = np.array(stars, dtype=np.float32, copy=True) if copy else stars
    c_n, h, w = stars.shape
    offset = np.full((c_n, 2), np.nan)
    error = np.full((c_n, 2), np.nan)
    n_used = np.zeros(c_n, int)
    applied = np.zeros(c_n, bool)
    sig = np.broadcast_to(np.asarray(sigma, float).reshape(-1), (c_n,))
    if table is None or len(table.x) == 0:
        return stars, Recentring(offset, error, n_used, applied)
    for c in range(c_n):
        sel = (np.asarray(table.channel) == c) & np.asarray(table.used, bool) & (np.asarray(table.snr) >= MIN_SNR)
        sel &= np.isfinite(table.x) & np.isfinite(table.y) & np.isfinite(table.fwhm)
        idx = np.nonzero(sel)[0]
        if len(idx) < MIN_STARS:
            continue
        idx = idx[np.argsort(-np.asarray(table.snr)[idx])][:MAX_STARS]
        r = int(np.clip(np.ceil(1.5 * np.median(table.fwhm[idx])), 4, 15))
        x0, y0 = np.round(table.x[idx]).astype(int), np.round(table.y[idx]).astype(int)
        inside = (x0 - r >= 0) & (x0 + r < w) & (y0 - r >= 0) & (y0 + r < h)
        if exclude is not None:
            inside &= ~np.array([exclude[y - r:y + r + 1, x - r:x + r + 1].any() if ok else True
                                 for y, x, ok in zip(y0, x0, inside)])
        idx, x0, y0 = idx[inside], x0[inside], y0[inside]
        if len(idx) < MIN_STARS:
            continue
        stamps = np.stack([stars[c, y - r:y + r + 1, x - r:x + r + 1] for y, x in zip(y0, x0)]).astype(np.float64)
        fx = np.asarray(table.x[idx]) - x0 + r
        fy = np.asarray(table.y[idx]) - y0 + r
        fit = fit_stars(stamps, np.round(fx), np.round(fy), fwhm_guess=float(np.median(table.fwhm[idx])) * 0.7,
                        noise=float(sig[c]) if sig[c] > 0 else 1.0)
        ok = (np.asarray(fit.flags) == 0) & np.isfinite(fit.x) & np.isfinite(fit.y)
        if ok.sum() < MIN_STARS:
            continue
        d = np.stack([np.asarray(fit.y)[ok] - fy[ok], np.asarray(fit.x)[ok] - fx[ok]], axis=1)
        med = np.median(d, axis=0)
        err = 1.2533 * 1.4826 * np.median(np.abs(d - med), axis=0) / np.sqrt(len(d))
        offset[c], error[c], n_used[c] = med, err, len(d)
        if np.hypot(*med) >= MIN_OFFSET and np.any(np.abs(med) >= MIN_SIGNIFICANCE * np.maximum(err, 1e-6)):
            stars[c] = shift_image(stars[c], float(med[0]), float(med[1]))
            applied[c] = True
    return stars, Recentring(offset, error, n_used, applied)
