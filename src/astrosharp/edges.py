"""Calibration and stacking borders: find them, keep them out of the work,
give them back unchanged.

Registered and stacked frames often carry borders at the image edges that hold
no sky: rows and columns (straight after a shift, ragged after a rotation or a
distortion correction) filled with exactly zero, NaN, a saturated white, or
another constant the stacking tool chose. Left as they are, such borders spoil
every tile that touches them: they drag the background and noise estimates,
the PSF measurement sees a cliff, and deconvolution rings against the step.

Definitions
-----------
Border pixel
    A pixel of one channel holding a *fill value* and connected (4-connectivity,
    through pixels holding the same fill value) to a run of at least
    ``min_run`` consecutive fill-valued pixels along the outermost row or
    column of the image. Fill values are: non-finite (NaN, +-inf), exactly 0,
    the channel's maximum (a white border; its run must also cover at least a
    tenth of that side, so a clipped star touching the edge is not a border),
    and any other value that repeats exactly along such a run (a constant fill).
    The mask is then grown by ``grow`` px into the interior, which takes in the
    one or two interpolation pixels that registration leaves between the fill
    and the sky.
Depth of a side
    The largest number of consecutive border pixels (before growing, in any
    channel) counted inwards from that side along the rows or columns of the
    central half of that side (the corners of a rotated frame belong to two
    sides and are not counted twice); ``full`` is the number of complete border
    rows or columns on that side in every channel.

Treatment (what :func:`astrosharp.pipeline.sharpen` does with a border)
-----------------------------------------------------------------------
1. :func:`hide_borders`: border pixels become NaN, so background, noise,
   saturation and PSF estimates ignore them (they already ignore NaN).
2. :func:`fill_borders`: for processing, each border pixel takes the value of
   the valid pixel at its point reflection through its nearest valid pixel
   (``2 n - p``): a straight border becomes a mirror image of the adjacent
   interior (like the engine's reflection padding at the image edge), a ragged
   one a local mirror, so a star next to the border sees sky and noise like any
   other star, not a cliff.
3. :func:`restore_borders`: the original border values go back into the output
   unchanged (in the non-stellar layer; the stars layer is 0 there).

Everything here is a pure function on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import ImageDataError, ParameterError

__all__ = [
    "SIDES",
    "MIN_RUN",
    "Borders",
    "find_borders",
    "hide_borders",
    "fill_borders",
    "restore_borders",
]

SIDES = ("top", "bottom", "left", "right")
"""Sides of the image: top = row 0, bottom = the last row, left = column 0."""
MIN_RUN = 24
"""Consecutive fill-valued pixels along the image edge that make a border."""
_WHITE_FRACTION = 0.1
_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Borders:
    """Border pixels of an image and a summary of them.

    Attributes
    ----------
    mask : (C, H, W) ndarray of bool
        True on border pixels (grown by ``grow`` px into the interior).
    sides : dict of str to int
        Depth in px of the border on each side (top, bottom, left, right),
        before growing (see the module docstring).
    full : dict of str to int
        Complete border rows (top, bottom) or columns (left, right) per side,
        in every channel.
    kinds : tuple of str
        Fill values found, among "nan", "zero", "white", "constant".
    grow : int
        Pixels the mask was grown by.
    """

    mask: np.ndarray
    sides: dict[str, int] = field(default_factory=dict)
    full: dict[str, int] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()
    grow: int = 0

    @property
    def any(self) -> bool:
        """True when the image has a border."""
        return bool(self.mask.any())

    @property
    def count(self) -> int:
        """Border pixel values over all channels (mask included growth)."""
        return int(self.mask.sum())

    def interior_box(self) -> tuple[int, int, int, int] | None:
        """(y0, y1, x0, x1) of the sky when the border is straight: every pixel
        outside that rectangle is a border pixel (in some channel) and none
        inside it is. None for a ragged border, or when there is none."""
        if not self.any:
            return None
        sky = ~self.mask.any(axis=0)
        rows, cols = np.flatnonzero(sky.any(axis=1)), np.flatnonzero(sky.any(axis=0))
        if not len(rows) or not len(cols):
            return None
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        if not sky[y0:y1, x0:x1].all() or int(sky.sum()) != (y1 - y0) * (x1 - x0):
            return None
        return y0, y1, x0, x1

    def describe(self) -> str:
        """One sentence for the result's notes and logs."""
        if not self.any:
            return "no calibration or stacking border found"
        parts = ", ".join(f"{s} {self.sides[s]} px" for s in SIDES if self.sides.get(s, 0))
        kinds = "/".join(self.kinds) if self.kinds else "fill"
        return (
            f"a {kinds} border ({parts or 'ragged'}) was excluded from the measurements, "
            f"processed as a reflection of the image and left unchanged in the output"
        )


def _as_chw(data: np.ndarray) -> np.ndarray:
    a = np.asarray(data)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ImageDataError(f"expected an image of shape (C, H, W) or (H, W), got shape {a.shape}")
    return a


def _runs(line: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate(([0], line.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), stops.tolist()))


def _edge_lines(ch: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per side: (values along the outermost line, row index, column index)."""
    h, w = ch.shape
    xs, ys = np.arange(w), np.arange(h)
    return {
        "top": (ch[0, :], np.zeros(w, int), xs),
        "bottom": (ch[h - 1, :], np.full(w, h - 1), xs),
        "left": (ch[:, 0], ys, np.zeros(h, int)),
        "right": (ch[:, w - 1], ys, np.full(h, w - 1)),
    }


def _fill_candidates(ch: np.ndarray, lines: dict, min_run: int) -> list[tuple[str, float]]:
    """Fill values that form a run of ``min_run`` along some edge line."""
    vmax: float | None = None  # the channel's maximum, computed when first needed
    found: dict[tuple[str, float], None] = {}
    for side, (vals, _, _) in lines.items():
        n = vals.shape[0]
        nonfin = ~np.isfinite(vals)
        if any(b - a >= min_run for a, b in _runs(nonfin)):
            found[("nan", np.nan)] = None
        fin = vals[~nonfin]
        if fin.size < min_run:
            continue
        # runs of exactly equal neighbours along the line
        v = np.where(nonfin, np.nan, vals)
        same = np.concatenate(([False], v[1:] == v[:-1]))
        for a, b in _runs(same):
            length = b - a + 1  # the run starts one pixel before the first "same"
            if b - a + 1 < min_run:
                continue
            value = float(v[a])
            if vmax is None:
                fin_all = ch[np.isfinite(ch)]
                vmax = float(fin_all.max()) if fin_all.size else np.nan
            kind = "zero" if value == 0.0 else ("white" if value == vmax else "constant")
            need = max(min_run, int(np.ceil(_WHITE_FRACTION * n))) if kind == "white" else min_run
            if length >= need:
                found[(kind, value)] = None
    return list(found)


def _channel_border(ch: np.ndarray, min_run: int) -> tuple[np.ndarray, set[str]]:
    h, w = ch.shape
    lines = _edge_lines(ch)
    cands = _fill_candidates(ch, lines, min_run)
    mask = np.zeros((h, w), bool)
    kinds: set[str] = set()
    for kind, value in cands:
        eq = ~np.isfinite(ch) if kind == "nan" else (ch == value)
        seeds = np.zeros((h, w), bool)
        for side, (vals, ry, rx) in lines.items():
            on = ~np.isfinite(vals) if kind == "nan" else (vals == value)
            n = on.shape[0]
            need = max(min_run, int(np.ceil(_WHITE_FRACTION * n))) if kind == "white" else min_run
            for a, b in _runs(on):
                if b - a >= need:
                    seeds[ry[a:b], rx[a:b]] = True
        if not seeds.any():
            continue
        labels, _ = ndimage.label(eq, structure=_FOUR)
        keep = np.unique(labels[seeds])
        keep = keep[keep > 0]
        mask |= np.isin(labels, keep)
        kinds.add(kind)
    return mask, kinds


def _depths(mask: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
    """Per side: the largest run of border pixels inwards from that side over
    the lines of the central half of the side (so that the corners of a
    rotated frame, shared by two sides, do not count twice), and the number of
    complete border lines on that side."""

    def runs(m: np.ndarray) -> tuple[int, int]:  # lines along axis 0, side at index 0
        n = m.shape[1]
        run = np.where(m.all(axis=0), m.shape[0], np.argmin(m, axis=0))
        mid = run[n // 4 : max(n // 4 + 1, n - n // 4)]
        full_lines = m.all(axis=1)
        k = int(np.argmin(full_lines)) if not full_lines.all() else m.shape[0]
        return int(mid.max()), k

    per = {
        "top": runs(mask),
        "bottom": runs(mask[::-1]),
        "left": runs(mask.T),
        "right": runs(mask.T[::-1]),
    }
    return {s: per[s][0] for s in SIDES}, {s: per[s][1] for s in SIDES}


def find_borders(data: np.ndarray, *, min_run: int = MIN_RUN, grow: int = 1) -> Borders:
    """Find calibration / stacking borders (see the module docstring).

    Parameters
    ----------
    data : (C, H, W) or (H, W) array_like
        Linear image, any float or integer type (not modified).
    min_run : int
        Consecutive fill-valued pixels along the outermost row or column that
        make a border (at least 2).
    grow : int
        Pixels the mask is grown by into the interior (registration leaves
        interpolated pixels between the fill and the sky); 0 keeps it exact.

    Returns
    -------
    Borders
        ``mask`` is (C, H, W) even for a 2-D input. A channel left without a
        single valid pixel gets no border (a constant image is not a border).

    Raises
    ------
    ImageDataError
        If ``data`` is not 2-D or 3-D.
    ParameterError
        If ``min_run`` < 2 or ``grow`` < 0.
    """
    a = _as_chw(data)
    if not isinstance(min_run, (int, np.integer)) or min_run < 2:
        raise ParameterError(f"min_run must be an integer of at least 2, got {min_run!r}")
    if not isinstance(grow, (int, np.integer)) or grow < 0:
        raise ParameterError(f"grow must be a non-negative integer, got {grow!r}")
    c_n, h, w = a.shape
    exact = np.zeros((c_n, h, w), bool)
    kinds: set[str] = set()
    for c in range(c_n):
        m, k = _channel_border(a[c], int(min_run))
        if m.all():
            continue  # nothing but fill: a constant channel, not a border
        exact[c] = m
        kinds |= k
    union = exact.any(axis=0)
    if not union.any():
        zeros = {s: 0 for s in SIDES}
        return Borders(mask=exact, sides=zeros, full=dict(zeros), kinds=(), grow=int(grow))
    sides, _ = _depths(union)
    _, full = _depths(exact.all(axis=0))
    for s_ in SIDES:
        sides[s_] = max(sides[s_], full[s_])
    mask = exact
    if grow:
        mask = np.stack([ndimage.binary_dilation(m, _FOUR, iterations=int(grow)) if m.any() else m for m in exact])
        # growth never swallows a channel
        for c in range(c_n):
            if mask[c].all():
                mask[c] = exact[c]
    order = [k for k in ("nan", "zero", "white", "constant") if k in kinds]
    return Borders(mask=mask, sides=sides, full=full, kinds=tuple(order), grow=int(grow))


def _check_mask(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, a.shape)
    if m.shape != a.shape:
        raise ImageDataError(f"border mask of shape {m.shape} does not match the image's {a.shape}")
    return m


def hide_borders(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A float copy of ``data`` with NaN on border pixels (for the estimates).

    Parameters
    ----------
    data : (C, H, W) or (H, W) array_like
    mask : bool array of the same shape (or (H, W) for every channel)

    Returns
    -------
    ndarray of the same shape, float32 unless ``data`` is float64
    """
    a = np.asarray(data)
    out = a.astype(np.float64 if a.dtype == np.float64 else np.float32, copy=True)
    m = _check_mask(out, mask)
    out[m] = np.nan
    return out


def _reflect_channel(ch: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Fill ``border`` pixels of one channel by point reflection through
    their nearest valid pixel, band by band along the sides."""
    h, w = ch.shape
    out = ch.copy()
    valid = ~border
    if not valid.any() or not border.any():
        return out
    ys, xs = np.nonzero(border)
    dist = np.stack([ys, h - 1 - ys, xs, w - 1 - xs])  # to top, bottom, left, right
    side = np.argmin(dist, axis=0)
    for s in range(4):
        sel = side == s
        if not sel.any():
            continue
        depth = int(dist[s, sel].max()) + 1
        band = min(2 * depth + 2, h if s < 2 else w)
        if s == 0:
            sl = (slice(0, band), slice(0, w))
        elif s == 1:
            sl = (slice(h - band, h), slice(0, w))
        elif s == 2:
            sl = (slice(0, h), slice(0, band))
        else:
            sl = (slice(0, h), slice(w - band, w))
        b = border[sl]
        if b.all():  # no valid pixel in the band: use the whole image
            sl = (slice(0, h), slice(0, w))
            b = border
        c = ch[sl]
        v = ~b
        iy, ix = ndimage.distance_transform_edt(b, return_distances=False, return_indices=True)
        py, px = np.nonzero(b)
        ny, nx = iy[py, px], ix[py, px]
        ry, rx = 2 * ny - py, 2 * nx - px
        bh, bw = b.shape
        inside = (ry >= 0) & (ry < bh) & (rx >= 0) & (rx < bw)
        ok = inside.copy()
        ok[inside] = v[ry[inside], rx[inside]]
        vals = np.where(ok, c[np.clip(ry, 0, bh - 1), np.clip(rx, 0, bw - 1)], c[ny, nx])
        out[sl][py, px] = vals
    return out


def fill_borders(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``data`` whose border pixels hold a reflection of the valid
    interior (see the module docstring); other pixels unchanged.

    Parameters
    ----------
    data : (C, H, W) or (H, W) array_like
        The image (border pixels may hold anything, NaN included).
    mask : bool array of the same shape (or (H, W) for every channel)
        Border pixels.

    Returns
    -------
    ndarray of the shape and float type of ``data`` (float32 for integers)
    """
    a = np.asarray(data)
    two_d = a.ndim == 2
    a3 = _as_chw(a)
    out = a3.astype(np.float64 if a3.dtype == np.float64 else np.float32, copy=True)
    m = _check_mask(out, mask)
    for c in range(out.shape[0]):
        if m[c].any():
            out[c] = _reflect_channel(out[c], m[c])
    return out[0] if two_d else out


def restore_borders(
    stars: np.ndarray, nonstellar: np.ndarray, original: np.ndarray, mask: np.ndarray
) -> None:
    """Put the original border values back into the output layers, in place:
    ``nonstellar = original`` and ``stars = 0`` on border pixels, so the
    sharpened image (their sum) holds the border unchanged.

    Parameters
    ----------
    stars, nonstellar : (C, H, W) ndarray
        The output layers (modified in place).
    original : (C, H, W) array_like
        The input image.
    mask : (C, H, W) or (H, W) bool array
    """
    m = _check_mask(nonstellar, mask)
    if stars.shape != nonstellar.shape:
        raise ImageDataError(f"layers of shapes {stars.shape} and {nonstellar.shape} differ")
    o = np.asarray(original)
    if o.shape != nonstellar.shape:
        raise ImageDataError(f"original of shape {o.shape} does not match the layers' {nonstellar.shape}")
    stars[m] = 0
    nonstellar[m] = o[m]
