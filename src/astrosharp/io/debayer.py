"""Demosaicing of raw colour-filter-array (Bayer) frames.

Convention: the 2x2 pattern (``BAYERPAT``, e.g. ``"GRBG"``, read left to
right, top row first) starts at the first stored pixel, ``data[0, 0]``,
shifted by ``XBAYROFF`` columns and ``YBAYROFF`` rows when those keywords are
present. A FITS file that says ``ROWORDER = 'BOTTOM-UP'`` stores its top row
last, so the pattern then starts at the last stored row. This is how the
Seestar S50 frames are laid out: their two green sites, (0, 0) and (1, 1) in
storage order, have equal statistics, as GRBG says.

The method is bilinear interpolation written as a normalised convolution:
every known sample is kept exactly, each missing one is the mean of its
nearest same-colour neighbours (4 for green, 2 or 4 for red and blue), and
edges use only the neighbours that exist. It never overshoots (no negative
values or ringing around stars), which matters more for deconvolution than
the slightly softer result of bilinear interpolation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import ImageDataError

__all__ = ["BAYER_PATTERNS", "debayer_bilinear", "cfa_masks"]

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 4.0
_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float64) / 4.0


def _check_pattern(pattern: str) -> str:
    pat = str(pattern).strip().upper()
    if pat not in BAYER_PATTERNS:
        raise ImageDataError(
            f"colour-filter-array pattern {pattern!r} is not supported; astrosharp debayers {', '.join(BAYER_PATTERNS)}"
        )
    return pat


def cfa_masks(shape: tuple[int, int], pattern: str, x_offset: int = 0, y_offset: int = 0) -> np.ndarray:
    """Boolean site masks of a Bayer mosaic.

    Parameters
    ----------
    shape : (H, W)
    pattern : str
        One of ``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``: the colours of the 2x2
        cell at rows ``y_offset, y_offset+1`` and columns ``x_offset, x_offset+1``
        of the pattern, i.e. pixel (y, x) has colour
        ``pattern[2 * ((y + y_offset) % 2) + (x + x_offset) % 2]``.
    x_offset, y_offset : int
        ``XBAYROFF`` and ``YBAYROFF``.

    Returns
    -------
    (3, H, W) ndarray of bool
        Masks of the R, G and B sites.
    """
    pat = _check_pattern(pattern)
    h, w = shape
    yy = (np.arange(h)[:, None] + int(y_offset)) % 2
    xx = (np.arange(w)[None, :] + int(x_offset)) % 2
    cell = np.array([[pat[0], pat[1]], [pat[2], pat[3]]])
    colours = cell[yy, xx]
    return np.stack([colours == c for c in "RGB"])


def debayer_bilinear(
    cfa: np.ndarray, pattern: str, x_offset: int = 0, y_offset: int = 0
) -> np.ndarray:
    """Demosaic a Bayer frame to full-resolution RGB by bilinear interpolation.

    Parameters
    ----------
    cfa : (H, W) ndarray
        Raw mosaic, linear units; NaN samples are treated as missing.
    pattern, x_offset, y_offset
        See :func:`cfa_masks`.

    Returns
    -------
    (3, H, W) ndarray of float32
        R, G, B planes; known samples are copied unchanged.
    """
    cfa = np.asarray(cfa, dtype=np.float64)
    if cfa.ndim != 2:
        raise ImageDataError(f"a colour-filter-array frame must be 2-D, got shape {cfa.shape}")
    masks = cfa_masks(cfa.shape, pattern, x_offset, y_offset)
    finite = np.isfinite(cfa)
    values = np.where(finite, cfa, 0.0)
    out = np.empty((3,) + cfa.shape, dtype=np.float32)
    for k, kernel in enumerate((_K_RB, _K_G, _K_RB)):
        m = (masks[k] & finite).astype(np.float64)
        num = ndimage.correlate(values * m, kernel, mode="constant", cval=0.0)
        den = ndimage.correlate(m, kernel, mode="constant", cval=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = num / den
        est[den == 0] = np.nan
        est[masks[k]] = cfa[masks[k]]  # known samples exactly
        out[k] = est
    return out
