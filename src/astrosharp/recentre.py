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

That takes out what is common to a channel. What is left varies from star to
star: on faint stars, stars on a bright nebula or galaxy, or aberrated
stars, the network puts each a few hundredths to a few tenths of a pixel
from where the input has it (bench cases: a median 0.06 to 0.08 px from the
truth). So each star of the PSF measurement (S/N ``STAR_SNR`` and more, at
most ``STAR_MAX`` per channel, brightest first) is then fitted again in the
stars layer and moved, in a window of 3 source FWHM that tapers to nothing
at 4.5, by its own offset from the input's position, when that offset is
from ``STAR_MIN_MOVE`` to ``STAR_MAX_MOVE`` px. In colour the input's position is the reference
(green) channel's fit where that channel has the star (within 1 px): a star
sits at one place in every channel, and where too few stars were measured to
register the channels (:mod:`astrosharp.chroma`), a lateral colour shift the
network did not take out goes with it.

A star's position is where its light is centred. For a point-symmetric
PSF that is the Moffat fit's centre; coma puts the fit on the bright core
and the light's centroid towards the flare, a few tenths of a pixel away,
more towards the corners. The anchors therefore take the offset of the
stars' light centroids from their fits, measured in the input (less the
non-stellar layer, neighbours left out) and fitted as a plane over the
frame (:func:`centroid_offset_field`), where it is significant. On the
bench's aberrated star fields it took the median star shift from 0.197 to
0.043 px (``stars_rgb_aberrated`` seed 2) and from 0.124 to 0.061 px
(seed 6); on fields without coma it is not significant and nothing changes.

Every star's target is round, yet the network leaves some elongation: its
own (a few hundredths, in a direction that changes from case to case), and
part of a trail or an aberration. The same fits in the stars layer measure
it, and the same stars (not blends, isolated, no bright neighbour in the
window) are made round there by an area-preserving resampling about the
star (``_round_window``), combined with the move: flux and the geometric-mean
width are kept. The ellipticity taken out is shrunk where it is of the order
of the fit's noise. Stars under ``ROUND_MIN_FWHM`` px are left as they
are; those too sharp to be moved (under ``MIN_MOVE_FWHM``) are made round
where they stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._threads import each

__all__ = ["Recentring", "recentre_stars", "shift_image", "MIN_OFFSET", "MIN_SIGNIFICANCE", "MIN_SNR", "MIN_STARS",
           "STAR_SNR", "STAR_MAX", "STAR_MAX_MOVE"]

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
#: stars moved one by one: input fit S/N at least this ...
STAR_SNR = 20.0
#: ... at most this many per channel (the brightest) ...
STAR_MAX = 2000
#: ... and offsets from this (px; a smaller move is within the fits' precision
#: and not worth a resampling) ...
STAR_MIN_MOVE = 0.01
#: ... to this (px); larger ones are a failed fit or a blend
STAR_MAX_MOVE = 0.5
#: ... for stars (in the stars layer) of this FWHM (px) and wider; below it, at most
#: SHARP_MAX_MOVE px, and below MIN_MOVE_FWHM none (a Lanczos-3 shift of 0.2 px
#: widens a Moffat of 1.2 px FWHM by 9 %, of 1.5 px by 2 %, of 2.2 px by 0.7 %;
#: one of 0.1 px widens 1.5 px by 0.3 %)
SHARP_FWHM = 2.0
SHARP_MAX_MOVE = 0.1
MIN_MOVE_FWHM = 1.5
#: the same stars are made round where the stars layer has them elongated by
#: ROUND_MIN or more (their target is round); the ellipticity taken out is
#: shrunk by its noise (each component's standard error is about
#: ELLIPTICITY_PRECISION / S/N of the fit: 2.0 to 2.8 measured on Moffats of
#: 1.6 to 4 px) and at most ROUND_MAX
ROUND_MIN = 0.02
ROUND_MAX = 0.5
ELLIPTICITY_PRECISION = 2.4
#: stars narrower than this (px, in the stars layer) are not made round: they
#: are undersampled, and the fit's ellipticity is the pixel grid's as much as theirs
ROUND_MIN_FWHM = 1.0
#: the common offset is not taken out of a channel whose stars (median, in
#: the stars layer) are narrower than this (px): on undersampled stars the
#: resampling costs more roundness than the offset costs (SDSS i crop, 0.5 px
#: stars: median ellipticity 0.101 -> 0.131 with the shift); on stars of 1.2
#: to 1.8 px it still pays (cluster_rgb at denoise 1: +0.14 to +0.31 dB)
SHIFT_MIN_FWHM = 1.0
#: ... window radius (source FWHM); the move tapers to nothing at 1.5 times it
STAR_WINDOW = 3.0
#: ... and no neighbour in the window peaks above this fraction of the star's peak
NEIGHBOUR_PEAK = 0.3
#: ... and an input ellipticity no more than this above the median of the channel's stars
BLEND_ELLIPTICITY = 0.1
#: ... and no other measured star of this much of its flux within ISOLATION source FWHM
NEIGHBOUR_FLUX = 0.1
ISOLATION = 5.0
#: the input fit's position error, in FWHM over S/N (measured on bench cases)
FIT_PRECISION = 0.9
#: the colour channel whose positions are every channel's reference
REFERENCE_CHANNEL = 1
#: the stars' light centroids (:func:`centroid_offset_field`): within this
#: many FWHM of the fitted centre ...
CENTROID_RADIUS = 2.5
#: ... of stars this wide (px) and wider ...
CENTROID_MIN_FWHM = 2.0
#: ... at least this many of them, an offset from the fit under this (px; more
#: is a neighbour or a blend) ...
CENTROID_MIN_STARS = 10
CENTROID_MAX_OFFSET = 1.0
#: ... each uncertain by no less than this (px) ...
CENTROID_FLOOR = 0.05
#: ... with the pixels within CENTROID_MASK FWHM of a neighbour of CENTROID_NEIGHBOUR
#: of its flux or more left out
CENTROID_MASK = 2.0
CENTROID_NEIGHBOUR = 0.003
#: ... and those of the neighbours found in the stamp (CENTROID_FIND sigma,
#: beyond CENTROID_CORE FWHM)
CENTROID_FIND = 5.0
CENTROID_CORE = 1.5
#: ... applied where the plane reaches this (px) and this many standard errors
CENTROID_MIN_OFFSET = 0.03
CENTROID_SIGNIFICANCE = 4.0


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
    n_moved : (C,) ndarray of int
        Stars then moved one by one onto the input's positions.
    median_move : (C,) ndarray
        Median distance they were moved (px; 0 where none).
    too_sharp : (C,) ndarray of bool
        Channels whose significant offset was left in place because their
        stars are narrower than ``SHIFT_MIN_FWHM`` in the stars layer.
    n_rounded : (C,) ndarray of int
        Stars whose elongation in the stars layer was taken out.
    centroid_shift : (C,) ndarray
        Per channel, the largest offset (px, over the frame's corners and
        centre) of the stars' light centroids from their fitted positions
        that the anchors took (:func:`centroid_offset_field`; 0 where none
        was significant).
    """

    offset: np.ndarray
    error: np.ndarray
    n_stars: np.ndarray
    applied: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    n_moved: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    median_move: np.ndarray = field(default_factory=lambda: np.zeros(0))
    too_sharp: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    n_rounded: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    centroid_shift: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def changed(self) -> bool:
        """Whether there is anything to report: a channel shifted or left
        shifted, or stars moved or made round."""
        return bool(self.applied.any() or self.too_sharp.any() or self.n_moved.sum() or self.n_rounded.sum()
                    or np.any(self.centroid_shift > 0))

    def describe(self) -> str:
        if self.applied.any():
            parts = [f"channel {c}: dx {-self.offset[c, 1]:+.3f}, dy {-self.offset[c, 0]:+.3f} px ({self.n_stars[c]} stars)"
                     for c in range(len(self.applied)) if self.applied[c]]
            text = "star positions: the stars layer was shifted back onto the input's star positions, " + "; ".join(parts)
        elif self.too_sharp.any():
            parts = [f"channel {c}: dx {-self.offset[c, 1]:+.3f}, dy {-self.offset[c, 0]:+.3f} px"
                     for c in range(len(self.too_sharp)) if self.too_sharp[c]]
            text = ("star positions: an offset of the stars layer from the input's star positions was measured "
                    "but not taken out, since its stars are narrower than "
                    f"{SHIFT_MIN_FWHM:g} px and a resampling would widen and elongate them (" + "; ".join(parts) + ")")
        else:
            text = "star positions: the stars layer kept the input's star positions (no significant offset)"
        if len(self.n_moved) and self.n_moved.sum():
            moves = ", ".join(f"{n} by {m:.3f} px" for n, m in zip(self.n_moved, self.median_move))
            text += f"; stars then moved one by one onto the input's positions (per channel, median: {moves})"
        if len(self.centroid_shift) and np.any(self.centroid_shift > 0):
            text += ("; an asymmetric PSF (coma) puts the stars' light off their fitted centres, by up to "
                     + ", ".join(f"{v:.2f}" for v in self.centroid_shift) + " px (per channel): "
                     "the stars were moved to where their light is centred")
        if len(self.n_rounded) and self.n_rounded.sum():
            text += ("; the elongation left in the stars layer taken out of "
                     + ", ".join(str(int(n)) for n in self.n_rounded) + " stars (per channel)")
        return text


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
                   copy: bool = True, per_star: bool = True,
                   reference: np.ndarray | None = None,
                   nonstellar: np.ndarray | None = None,
                   nonstellar_blur: np.ndarray | None = None,
                   round_stars: bool = True, centroids: bool = True) -> tuple[np.ndarray, Recentring]:
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
    per_star : bool
        After the common offset, move each star onto its own input position
        (default).
    reference : (C, H, W) ndarray, optional
        The input the network read: the per-star positions are fitted again
        in it, on the same stamps and with the same fitter as in the stars
        layer (default: the table's own positions).
    nonstellar : (C, H, W) ndarray, optional
        The non-stellar layer: moved along with each star it holds light of,
        and, with ``nonstellar_blur``, taken out of ``reference`` before the
        per-star positions are fitted there.
    nonstellar_blur : (C,) array_like, optional
        FWHM (px) of the Gaussian that takes the non-stellar layer back to
        the input's resolution (0 where the layer is at the source PSF). A
        star on a nebula or galaxy sits on a slope that pulls a Moffat fit
        with a flat background off the star (by up to 0.1 px in green and
        0.56 px in red and blue on the bench's nebula): the fit in
        ``reference`` then sees the star on what is left of that slope.
    round_stars : bool
        With ``per_star``, also take out the elongation each of those stars
        still has in the stars layer (default).
    centroids : bool
        With ``per_star`` and ``reference``, anchor each star where its light
        is centred in the input, not at its fitted (Moffat) centre, where the
        two differ significantly over the channel's stars
        (:func:`centroid_offset_field`: coma; default).

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
    n_moved = np.zeros(c_n, int)
    moved = np.zeros(c_n)
    too_sharp = np.zeros(c_n, bool)
    n_round = np.zeros(c_n, int)
    cen = np.zeros(c_n)
    if table is None or len(table.x) == 0:
        return stars, Recentring(offset, error, n_used, applied, n_moved, moved, too_sharp, n_round, cen)
    for c in range(c_n):
        sel = (np.asarray(table.channel) == c) & np.asarray(table.used, bool) & (np.asarray(table.snr) >= MIN_SNR)
        sel &= np.isfinite(table.x) & np.isfinite(table.y) & np.isfinite(table.fwhm)
        idx = np.nonzero(sel)[0]
        if len(idx) < MIN_STARS:
            continue
        idx = idx[np.argsort(-np.asarray(table.snr)[idx])][:MAX_STARS]
        r = int(np.clip(np.ceil(1.5 * np.median(table.fwhm[idx])), 4, 15))
        x0, y0 = np.round(table.x[idx]).astype(int), np.round(table.y[idx]).astype(int)
        inside = _stamps_inside(x0, y0, r, (h, w), exclude)
        idx, x0, y0 = idx[inside], x0[inside], y0[inside]
        if len(idx) < MIN_STARS:
            continue
        stamps = np.stack([stars[c, y - r:y + r + 1, x - r:x + r + 1] for y, x in zip(y0, x0)]).astype(np.float64)
        fx = np.asarray(table.x[idx]) - x0 + r
        fy = np.asarray(table.y[idx]) - y0 + r
        fit = fit_stars(stamps, np.round(fx), np.round(fy), fwhm_guess=float(np.median(table.fwhm[idx])) * 0.7,
                        noise=float(sig[c]) if sig[c] > 0 else 1.0)
        ok = _good_fit(fit) & np.isfinite(fit.x) & np.isfinite(fit.y)
        if ok.sum() < MIN_STARS:
            continue
        d = np.stack([np.asarray(fit.y)[ok] - fy[ok], np.asarray(fit.x)[ok] - fx[ok]], axis=1)
        med = np.median(d, axis=0)
        err = 1.2533 * 1.4826 * np.median(np.abs(d - med), axis=0) / np.sqrt(len(d))
        offset[c], error[c], n_used[c] = med, err, len(d)
        if np.hypot(*med) >= MIN_OFFSET and np.any(np.abs(med) >= MIN_SIGNIFICANCE * np.maximum(err, 1e-6)):
            # a resampling widens undersampled stars along the shift, so
            # that they lose their roundness: a channel of such stars is left
            # where the network put it
            if float(np.median(np.asarray(fit.fwhm)[ok])) < SHIFT_MIN_FWHM:
                too_sharp[c] = True
            else:
                stars[c] = shift_image(stars[c], float(med[0]), float(med[1]))
                applied[c] = True
    if per_star:
        under = None
        if reference is not None and nonstellar is not None and nonstellar_blur is not None:
            under = (nonstellar, np.broadcast_to(np.asarray(nonstellar_blur, float).reshape(-1), (c_n,)))
        placed = table
        if reference is not None:
            placed, fields = _refit(table, reference, sig, under, centroids=centroids, exclude=exclude)
            cen = np.array([f.largest if f is not None and f.significant else 0.0 for f in fields])
        anchors = _anchors(placed, c_n)

        def move(c: int) -> tuple[int, int, float]:
            return _move_each_star(stars[c], table, c, anchors, float(sig[c]), exclude,
                                   None if nonstellar is None else nonstellar[c], round_stars)

        # the channels side by side (each moves only its own planes)
        for c, (n_c, k_c, m_c) in enumerate(each(move, range(c_n))):
            n_moved[c], n_round[c], moved[c] = n_c, k_c, m_c
    return stars, Recentring(offset, error, n_used, applied, n_moved, moved, too_sharp, n_round, cen)


def _stamps_inside(x0: np.ndarray, y0: np.ndarray, r: int, shape: tuple[int, int],
                   exclude: np.ndarray | None = None, r_exclude: int | None = None) -> np.ndarray:
    """(N,) bool: stamps of half-size ``r`` about (x0, y0) that lie inside a
    frame of ``shape`` and, with ``exclude`` (H, W) bool, whose half-size
    ``r_exclude`` (default ``r``) part touches none of its pixels."""
    h, w = shape
    inside = (x0 - r >= 0) & (x0 + r < w) & (y0 - r >= 0) & (y0 + r < h)
    if exclude is not None:
        re_ = r if r_exclude is None else r_exclude
        inside &= ~np.array([exclude[y - re_:y + re_ + 1, x - re_:x + re_ + 1].any() if ok else True
                             for y, x, ok in zip(y0, x0, inside)], dtype=bool)
    return inside


def _good_fit(fit) -> np.ndarray:
    """Fits whose position can be trusted: no flag, or only
    ``FLAG_NOT_CONVERGED`` on a star of ``SHARP_FWHM`` px or wider.

    That flag marks a chi-square still falling when the iterations ran out,
    which on stars is almost always a walk along beta (the direction where
    the chi-square is flattest, most of all for profiles that are not
    Moffats: trailed and aberrated stars); the position settled long before.
    Excluding them left most trailed stars unmoved (bench trailed_mono at 512
    px, seeds 0 to 2: median star shift 0.047, 0.060, 0.039 px with them left
    out, 0.013, 0.017, 0.020 px with them moved). Sharper stars keep the
    strict test: those fits are the undersampled ones, and moving more of
    them made the SDSS r crop's stars less round (median ellipticity 0.066
    -> 0.076; the input's is 0.055)."""
    from .psf.fit import FLAG_NOT_CONVERGED

    flags = np.asarray(fit.flags)
    walking = ((flags & ~FLAG_NOT_CONVERGED) == 0) & (np.asarray(fit.fwhm) >= SHARP_FWHM)
    return (flags == 0) | walking


def _good_rows(table, c: int, min_snr: float) -> np.ndarray:
    sel = (np.asarray(table.channel) == c) & np.asarray(table.used, bool) & (np.asarray(table.snr) >= min_snr)
    sel &= np.isfinite(table.x) & np.isfinite(table.y) & np.isfinite(table.fwhm)
    return np.nonzero(sel)[0]


def _clean_stamps(reference: np.ndarray, c: int, x0: np.ndarray, y0: np.ndarray, r: int,
                  under: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(N, 2r+1, 2r+1) float64 stamps of channel ``c`` of ``reference`` about
    (x0, y0) (all inside), less ``under`` = (non-stellar layer, blur FWHM per
    channel) blurred back to the input's resolution."""
    from scipy.ndimage import gaussian_filter

    h, w = reference.shape[1:]
    stamps = np.stack([reference[c, yy - r:yy + r + 1, xx - r:xx + r + 1] for yy, xx in zip(y0, x0)]).astype(np.float64)
    if under is not None:
        sb = float(under[1][c]) / 2.3548
        mg = int(np.ceil(3.0 * sb)) + 1
        for k, (yy, xx) in enumerate(zip(y0, x0)):
            ya, xa = max(yy - r - mg, 0), max(xx - r - mg, 0)
            part = under[0][c, ya:min(yy + r + mg + 1, h), xa:min(xx + r + mg + 1, w)].astype(np.float64)
            if sb > 0:
                part = gaussian_filter(part, sb, mode="nearest")
            stamps[k] -= part[yy - r - ya:yy + r + 1 - ya, xx - r - xa:xx + r + 1 - xa]
    return stamps


def _refit(table, reference: np.ndarray, sig: np.ndarray,
           under: tuple[np.ndarray, np.ndarray] | None = None,
           centroids: bool = True, exclude: np.ndarray | None = None):
    """The table with the positions of its per-star candidates fitted again
    in ``reference`` (the input the network read), on stamps of 1.5 FWHM;
    with ``under`` = (non-stellar layer, blur FWHM per channel), less that
    layer blurred back to the input's resolution. With ``centroids``, each
    channel's positions then move by its :func:`centroid_offset_field`
    where that is significant (stars whose centroid stamp touches
    ``exclude`` left out of its fit); returns (table, fields: list per
    channel of CentroidField or None)."""
    from dataclasses import replace

    from .psf.fit import fit_stars

    x = np.array(table.x, float, copy=True)
    y = np.array(table.y, float, copy=True)
    h, w = reference.shape[1:]
    fields: list[CentroidField | None] = [None] * reference.shape[0]
    channel = np.asarray(table.channel)
    flux = np.abs(np.nan_to_num(np.asarray(table.flux, float)))  # weighs neighbours (centroids)
    for c in range(reference.shape[0]):
        idx = _good_rows(table, c, STAR_SNR)
        idx = idx[np.argsort(-np.asarray(table.snr)[idx], kind="stable")][:STAR_MAX]
        if len(idx) == 0:
            continue
        f = float(np.median(table.fwhm[idx]))
        r = int(np.clip(np.ceil(1.5 * f), 4, 15))
        x0, y0 = np.round(x[idx]).astype(int), np.round(y[idx]).astype(int)
        inside = _stamps_inside(x0, y0, r, (h, w))
        idx, x0, y0 = idx[inside], x0[inside], y0[inside]
        if len(idx) == 0:
            continue
        stamps = _clean_stamps(reference, c, x0, y0, r, under)
        fit = fit_stars(stamps, np.round(x[idx] - x0 + r), np.round(y[idx] - y0 + r), fwhm_guess=f,
                        noise=float(sig[c]) if sig[c] > 0 else 1.0)
        nx, ny = np.asarray(fit.x) + x0 - r, np.asarray(fit.y) + y0 - r
        ok = _good_fit(fit) & np.isfinite(nx) & np.isfinite(ny) & (np.hypot(nx - x[idx], ny - y[idx]) < 1.0)
        x[idx[ok]], y[idx[ok]] = nx[ok], ny[ok]
        if centroids:
            good = idx[ok & (np.asarray(fit.fwhm) >= CENTROID_MIN_FWHM)]
            mine = np.nonzero((channel == c) & np.isfinite(x) & np.isfinite(y))[0]
            cf = centroid_offset_field(reference, c, x[good], y[good], f, float(sig[c]), under, flux=flux[good],
                                       others=np.stack([x[mine], y[mine], flux[mine]], axis=1), exclude=exclude)
            fields[c] = cf
            if cf is not None and cf.significant:
                d = cf.at(y[idx], x[idx])
                x[idx] += d[1]
                y[idx] += d[0]
    return replace(table, x=x, y=y), fields


@dataclass
class CentroidField:
    """Where a channel's stars' light is centred, relative to their fitted
    (Moffat) positions: ``(dy, dx) = coef @ (1, u, v)`` with ``u, v`` the
    position from the image centre in half-diagonals (``frame``).

    Attributes
    ----------
    coef : (2, 3) ndarray
    frame : (y0, x0, s)
    n_stars : int
        Stars in the fit (after clipping).
    largest : float
        Largest offset over the frame's corners and centre (px).
    significance : float
        ``largest`` over its standard error.
    """

    coef: np.ndarray
    frame: tuple[float, float, float]
    n_stars: int
    largest: float
    significance: float

    @property
    def significant(self) -> bool:
        return (self.n_stars >= CENTROID_MIN_STARS and self.largest >= CENTROID_MIN_OFFSET
                and self.significance >= CENTROID_SIGNIFICANCE)

    def at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(2, N) offsets (dy, dx) at points."""
        from .chroma import plane_at

        return plane_at(self.coef, self.frame, y, x)


def star_centroids(stamps: np.ndarray, fx: np.ndarray, fy: np.ndarray, radius: float,
                   sigma: float, masks: np.ndarray | None = None,
                   fwhm: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flux centroids of stars in (N, S, S) stamps (S odd), about given (fitted) centres.

    The light within ``radius`` px of each centre, less the median of the
    ring out to the stamp's edge (the local background), weighted by its
    offset. ``masks`` (N, S, S) bool marks pixels to leave out (a
    neighbour's light): each is left out with its mirror image through the
    stamp's central pixel, so that the pixels kept stay point-symmetric and
    a symmetric star keeps its centroid. With ``fwhm``, neighbours the
    masks do not hold are found as well: local maxima, beyond
    ``CENTROID_CORE`` FWHM of the centre, of the stamp less its mirror
    image through the given centre, that stand ``CENTROID_FIND`` noise sigma and 1 % of the star's
    peak above it (a flare of coma is smooth and has no maximum there), each
    left out out to ``CENTROID_MASK`` FWHM. Returns (dx, dy, se): the
    centroid's offset from the centre and its standard error from the
    background noise ``sigma``; NaN where the light in the disc is not
    positive or less than half of the disc is left.
    """
    n, s, _ = stamps.shape
    yy, xx = np.mgrid[0:s, 0:s].astype(float)
    dx = xx[None] - np.asarray(fx, float)[:, None, None]
    dy = yy[None] - np.asarray(fy, float)[:, None, None]
    rr = np.hypot(dx, dy)
    disc = rr <= radius
    ring = (rr > radius) & (rr <= 0.5 * (s - 1))
    area = disc.sum(axis=(1, 2))
    if fwhm is not None:
        found = _unseen_neighbours(stamps, fx, fy, fwhm, sigma)
        masks = found if masks is None else masks | found
    if masks is not None:
        drop = masks | masks[:, ::-1, ::-1]
        disc &= ~drop
        ring &= ~drop
    bg = np.array([np.median(stamps[k][ring[k]]) if ring[k].any() else 0.0 for k in range(n)])
    light = np.where(disc, stamps - bg[:, None, None], 0.0)
    tot = light.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (light * dx).sum(axis=(1, 2)) / tot
        cy = (light * dy).sum(axis=(1, 2)) / tot
        se = sigma * np.sqrt(np.where(disc, dx * dx, 0.0).sum(axis=(1, 2))) / tot
    bad = ~(tot > 0) | (disc.sum(axis=(1, 2)) < 0.5 * area)
    return np.where(bad, np.nan, cx), np.where(bad, np.nan, cy), np.where(bad, np.nan, se)


def _unseen_neighbours(stamps: np.ndarray, fx: np.ndarray, fy: np.ndarray, fwhm: float,
                       sigma: float) -> np.ndarray:
    """(N, S, S) bool masks of the neighbours :func:`star_centroids` finds itself."""
    from scipy.ndimage import maximum_filter

    n, s, _ = stamps.shape
    c = (s - 1) // 2
    yy, xx = np.mgrid[-c:c + 1, -c:c + 1]
    dist = np.hypot(yy, xx)
    # each stamp less its mirror image through the fitted centre (the flip
    # is through the central pixel; the Lanczos shift moves it to the fit)
    mirror = np.stack([shift_image(stamps[k, ::-1, ::-1], 2.0 * (c - float(fy[k])), 2.0 * (c - float(fx[k])))
                       for k in range(n)]) if n else stamps
    anti = stamps - mirror
    peak = stamps[:, c - 1:c + 2, c - 1:c + 2].max(axis=(1, 2)) - np.median(stamps[:, [0, -1]], axis=(1, 2))
    thresh = np.maximum(CENTROID_FIND * np.sqrt(2.0) * sigma, 0.01 * peak)
    top = (anti == maximum_filter(anti, size=(1, 3, 3))) & (anti > thresh[:, None, None]) & (dist > CENTROID_CORE * fwhm)
    masks = np.zeros((n, s, s), bool)
    for k, i, j in zip(*np.nonzero(top)):
        masks[k] |= np.hypot(yy - (i - c), xx - (j - c)) <= CENTROID_MASK * fwhm
    return masks


def _neighbour_masks(x0: np.ndarray, y0: np.ndarray, r: int, flux: np.ndarray, others: np.ndarray,
                     radius: float) -> np.ndarray:
    """(N, 2r+1, 2r+1) bool: pixels within ``radius`` of another star
    (``others``: (M, 3) x, y, flux) of ``CENTROID_NEIGHBOUR`` of the
    star's flux or more, in stamps about (x0, y0)."""
    from scipy.spatial import cKDTree

    s = 2 * r + 1
    masks = np.zeros((len(x0), s, s), bool)
    if len(others) == 0:
        return masks
    tree = cKDTree(others[:, :2])
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    for k, near in enumerate(tree.query_ball_point(np.stack([x0, y0], axis=1), r * np.sqrt(2.0) + radius)):
        for j in near:
            ox, oy, of = others[j]
            if np.hypot(ox - x0[k], oy - y0[k]) < 1.0 or not of >= CENTROID_NEIGHBOUR * flux[k]:
                continue  # the star itself, or a neighbour too faint to matter
            masks[k] |= np.hypot(xx + x0[k] - ox, yy + y0[k] - oy) <= radius
    return masks


def centroid_offset_field(reference: np.ndarray, c: int, x: np.ndarray, y: np.ndarray, fwhm: float,
                          sigma: float, under: tuple[np.ndarray, np.ndarray] | None = None,
                          flux: np.ndarray | None = None, others: np.ndarray | None = None,
                          exclude: np.ndarray | None = None) -> CentroidField | None:
    """Fit the offset of one channel's stars' flux centroids from their
    fitted positions (x, y) as a plane in the image position.

    A star's position is where its light is centred. For a symmetric PSF
    that is the Moffat fit's centre; coma puts the fit on the bright core
    and the light's centroid towards the flare, by a few tenths of a pixel
    that grow across the field. Each star's centroid (:func:`star_centroids`,
    within ``CENTROID_RADIUS`` FWHM, on the input less the non-stellar
    layer) is noisy, so the offsets are fitted as a plane
    (:func:`astrosharp.chroma.fit_offset_plane`, as the channels' lateral
    shift: weighted, 3-sigma clipped, errors scaled by the scatter seen
    along an axis and no smaller than each star's own).

    ``exclude`` (H, W) bool marks pixels (calibration borders) no stamp may
    touch. Returns None when fewer than ``CENTROID_MIN_STARS`` stars can be
    measured.
    """
    from .chroma import fit_offset_plane, frame_probes, largest_offset

    h, w = reference.shape[1:]
    if len(x) < CENTROID_MIN_STARS:
        return None
    rad = CENTROID_RADIUS * fwhm
    r = int(np.ceil(rad + fwhm))
    x0, y0 = np.round(x).astype(int), np.round(y).astype(int)
    inside = _stamps_inside(x0, y0, r, (h, w), exclude)  # no stamp on a calibration border
    x, y, x0, y0 = x[inside], y[inside], x0[inside], y0[inside]
    if len(x) < CENTROID_MIN_STARS:
        return None
    stamps = _clean_stamps(reference, c, x0, y0, r, under)
    masks = None
    if flux is not None and others is not None:
        masks = _neighbour_masks(x0.astype(float), y0.astype(float), r, np.asarray(flux, float)[inside],
                                 others, CENTROID_MASK * fwhm)
    cx, cy, se = star_centroids(stamps, x - x0 + r, y - y0 + r, rad, sigma if sigma > 0 else 1.0, masks, fwhm)
    good = np.isfinite(cx) & np.isfinite(cy) & np.isfinite(se) & (np.hypot(cx, cy) < CENTROID_MAX_OFFSET)
    if good.sum() < CENTROID_MIN_STARS:
        return None
    frame, P = frame_probes((h, w))
    y0, x0, s = frame
    res = fit_offset_plane((x[good] - x0) / s, (y[good] - y0) / s, np.stack([cy[good], cx[good]], axis=1),
                           1.0 / np.maximum(se[good], CENTROID_FLOOR) ** 2, CENTROID_MIN_STARS,
                           min_scale=1.0, per_axis=True)
    if res is None:
        return None
    coef, var, kept = res
    return CentroidField(coef, frame, kept, *largest_offset(coef, var, P))


def _match(table, rows: np.ndarray, candidates: np.ndarray, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` that have one of the ``candidates`` rows within ``radius``
    px, and for each the nearest of them."""
    from scipy.spatial import cKDTree

    if len(rows) == 0 or len(candidates) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    tree = cKDTree(np.stack([table.x[candidates], table.y[candidates]], axis=1))
    d, j = tree.query(np.stack([table.x[rows], table.y[rows]], axis=1), distance_upper_bound=radius)
    hit = np.isfinite(d)
    return rows[hit], candidates[j[hit]]


def _used_elsewhere(table, c: int, min_snr: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of channel ``c`` (S/N ``min_snr`` and more, not used by the
    measurement) whose star another channel used (nearest used row within
    1 px), and those used rows."""
    ch, used = np.asarray(table.channel), np.asarray(table.used, bool)
    placed = np.isfinite(table.x) & np.isfinite(table.y)
    mine = np.nonzero((ch == c) & ~used & (np.asarray(table.snr) >= min_snr) & placed)[0]
    return _match(table, mine, np.nonzero((ch != c) & used & placed)[0])


def _anchors(table, c_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each table row's reference position (x, y): its own fit, or in colour
    the reference channel's fit of the same star (nearest within 1 px)."""
    ax = np.array(table.x, float, copy=True)
    ay = np.array(table.y, float, copy=True)
    if c_n < 3:
        return ax, ay
    other = np.nonzero((np.asarray(table.channel) != REFERENCE_CHANNEL) & np.isfinite(ax) & np.isfinite(ay))[0]
    hit, ref = _match(table, other, _good_rows(table, REFERENCE_CHANNEL, STAR_SNR))
    ax[hit], ay[hit] = ax[ref], ay[ref]
    return ax, ay


def _isolated(table, c: int, idx: np.ndarray, radius: float) -> np.ndarray:
    """Whether each of ``idx`` has no other star of this channel's table (used
    or not) with ``NEIGHBOUR_FLUX`` of its flux or more within ``radius`` px."""
    from scipy.spatial import cKDTree

    rows = np.nonzero((np.asarray(table.channel) == c) & np.isfinite(table.x) & np.isfinite(table.y))[0]
    flux = np.abs(np.nan_to_num(np.asarray(table.flux, float)))
    tree = cKDTree(np.stack([table.x[rows], table.y[rows]], axis=1))
    out = np.ones(len(idx), bool)
    for k, near in enumerate(tree.query_ball_point(np.stack([table.x[idx], table.y[idx]], axis=1), radius)):
        others = rows[near]
        others = others[others != idx[k]]
        out[k] = not np.any(flux[others] >= NEIGHBOUR_FLUX * flux[idx[k]])
    return out


def _move_each_star(layer: np.ndarray, table, c: int, anchors: tuple[np.ndarray, np.ndarray], sigma: float,
                    exclude: np.ndarray | None, other: np.ndarray | None = None,
                    round_stars: bool = True) -> tuple[int, int, float]:
    """Move each measured star of one channel of the stars layer (in place)
    onto its anchor position, and (``round_stars``) make it round; returns
    how many were moved, how many made round and the median move."""
    from .psf.fit import fit_stars

    h, w = layer.shape
    own = _good_rows(table, c, STAR_SNR)
    # in colour, a star the measurement used in another channel is a star in
    # this one too: it is made round here (not moved: this channel's fit of
    # its input position was not trusted), judged by the used fit
    extra, ref = _used_elsewhere(table, c, STAR_SNR) if round_stars else (np.zeros(0, int), np.zeros(0, int))
    if len(own) + len(extra) == 0:
        return 0, 0, 0.0
    f = float(np.median(table.fwhm[own if len(own) else ref]))
    idx, judge = np.concatenate([own, extra]), np.concatenate([own, ref])  # judge: whose input fit speaks for it
    order = np.argsort(-np.asarray(table.snr)[idx], kind="stable")[:STAR_MAX]
    idx, judge = idx[order], judge[order]
    r = int(np.clip(np.ceil(1.5 * f), 4, 15))  # fit stamp half-size
    rw = STAR_WINDOW * f  # window radius
    rt = int(np.ceil(1.5 * rw))  # taper's outer radius
    m = max(r, rt)
    x0, y0 = np.round(table.x[idx]).astype(int), np.round(table.y[idx]).astype(int)
    inside = _stamps_inside(x0, y0, m, (h, w), exclude, rt)
    idx, judge, x0, y0 = idx[inside], judge[inside], x0[inside], y0[inside]
    if len(idx) == 0:
        return 0, 0, 0.0
    stamps = np.stack([layer[y - r:y + r + 1, x - r:x + r + 1] for y, x in zip(y0, x0)]).astype(np.float64)
    fx = np.asarray(table.x[idx]) - x0 + r
    fy = np.asarray(table.y[idx]) - y0 + r
    fit = fit_stars(stamps, np.round(fx), np.round(fy), fwhm_guess=0.7 * f, noise=sigma if sigma > 0 else 1.0)
    dx = np.asarray(fit.x) + x0 - r - anchors[0][idx]
    dy = np.asarray(fit.y) + y0 - r - anchors[1][idx]
    move = np.hypot(dx, dy)
    # resampling broadens a sharp star (Lanczos-3 passes less than all of
    # the frequencies near Nyquist): a star under SHARP_FWHM px is moved by no
    # more than SHARP_MAX_MOVE (towards its anchor), one under MIN_MOVE_FWHM px
    # not at all
    fw = np.asarray(fit.fwhm, float)
    limit = np.where(fw >= MIN_MOVE_FWHM, STAR_MAX_MOVE, 0.0)
    cap = np.where(fw >= SHARP_FWHM, np.inf, SHARP_MAX_MOVE)
    ok = _good_fit(fit) & np.isfinite(move)
    # a star more elongated in the input than its fellows is most likely a
    # blend, whose fitted position is the pair's and not the star's
    e = np.asarray(table.ellipticity, float)[judge]
    ok &= np.isfinite(e) & (e <= np.nanmedian(e) + BLEND_ELLIPTICITY)
    # so is the input's fit of a star with a neighbour close by (it takes
    # some of the neighbour's light), where the network may separate the two
    ok &= _isolated(table, c, idx, ISOLATION * f)
    # moved only where this channel's own input fit is trusted
    shifting = ok & (judge == idx) & (move >= STAR_MIN_MOVE) & (move < limit)
    # the target of every star is round: what elongation the stars layer
    # still has (the network's own, or what it left of a trail or an
    # aberration) is taken out, less what the fit's noise may have made up
    e1, e2 = np.asarray(fit.e1, float), np.asarray(fit.e2, float)
    e_out = np.hypot(e1, e2)
    e_var = 2.0 * (ELLIPTICITY_PRECISION / np.maximum(np.asarray(fit.snr, float), 1.0)) ** 2
    with np.errstate(invalid="ignore"):
        e_take = np.minimum(e_out ** 2 / (e_out ** 2 + e_var) * e_out, ROUND_MAX)
    # (a star too sharp to be moved is still made round where it stands: the
    # map is the identity at its centre, so its core is hardly resampled)
    rounding = ok & (fw >= ROUND_MIN_FWHM) & (move < STAR_MAX_MOVE) & np.isfinite(e_take) & (e_out >= ROUND_MIN)
    rounding &= round_stars
    ok = shifting | rounding
    if not ok.any():
        return 0, 0, 0.0
    yy, xx = np.mgrid[-rt:rt + 1, -rt:rt + 1]
    t = np.clip((np.hypot(yy, xx) - rw) / (0.5 * rw), 0.0, 1.0)
    taper = (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
    dist = np.hypot(yy, xx)
    core = dist <= max(1.0, 0.5 * f)
    around = (dist > 1.5 * f) & (taper > 0)
    done = np.zeros(len(idx), bool)
    rounded = np.zeros(len(idx), bool)
    made = np.zeros(len(idx))  # the distance each star was moved
    for i in np.nonzero(ok)[0]:  # brightest first
        y, x = y0[i], x0[i]
        win = layer[y - rt:y + rt + 1, x - rt:x + rt + 1]
        # a neighbour of comparable light in the window would be moved too
        if around.any() and win[around].max() > NEIGHBOUR_PEAK * win[core].max():
            continue
        k = 0.0
        if shifting[i]:
            # the input's position is uncertain by about FIT_PRECISION x FWHM / S/N:
            # a move of that order is shrunk (Wiener), a larger one made in full
            u2 = (FIT_PRECISION * f / max(float(table.snr[idx[i]]), 1.0)) ** 2
            k = move[i] ** 2 / (move[i] ** 2 + u2)
            k = min(k, cap[i] / move[i])
            made[i] = k * move[i]
        if rounding[i]:
            # the fitted centre, in window coordinates, and where it goes
            cy, cx = float(fit.y[i]) - r + rt, float(fit.x[i]) - r + rt
            warped = _round_window(win, cy, cx, cy - k * float(dy[i]), cx - k * float(dx[i]),
                                   float(e_take[i]), 0.5 * np.arctan2(e2[i], e1[i]))
            win += taper * (warped - win)
            rounded[i] = True
        else:
            win += taper * (shift_image(win, k * float(dy[i]), k * float(dx[i])) - win)
        if other is not None and k > 0.0:
            ow = other[y - rt:y + rt + 1, x - rt:x + rt + 1]
            ow += taper * (shift_image(ow, k * float(dy[i]), k * float(dx[i])) - ow)
        done[i] = shifting[i]
    if not done.any():
        return 0, int(rounded.sum()), 0.0
    return int(done.sum()), int(rounded.sum()), float(np.median(made[done]))


def _round_window(win: np.ndarray, cy: float, cx: float, ty: float, tx: float, e: float,
                  theta: float) -> np.ndarray:
    """``win`` resampled so that the star fitted at (cy, cx) with
    ellipticity ``e`` along ``theta`` (radians from +x, in array (x, y)
    coordinates) comes out round at (ty, tx).

    The map is area-preserving (determinant 1), so flux and the star's
    geometric-mean width are kept: the output at ``p`` is the input at
    ``c + B (p - t)`` where ``B`` stretches the sampling by ``sqrt(a / b)``
    along the major axis and shrinks it by as much along the minor one
    (``b / a = 1 - e``). Cubic spline interpolation, edges held.
    """
    from scipy.ndimage import map_coordinates

    s = 1.0 / np.sqrt(1.0 - e)
    u = np.array([np.cos(theta), np.sin(theta)])
    v = np.array([-u[1], u[0]])
    b = s * np.outer(u, u) + np.outer(v, v) / s  # acts on (x, y)
    n_y, n_x = win.shape
    py = np.arange(n_y, dtype=np.float64)[:, None] - ty
    px = np.arange(n_x, dtype=np.float64)[None, :] - tx
    sx = cx + b[0, 0] * px + b[0, 1] * py
    sy = cy + b[1, 0] * px + b[1, 1] * py
    return map_coordinates(win.astype(np.float64), [sy, sx], order=3, mode="nearest").astype(np.float32)

