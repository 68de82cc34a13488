"""Tile plan and tiled processing engine: 512 px tiles with 20 % overlap.

The plan is shared by the PSF field (one node per tile centre) and by the
processing engine (one task per tile).

The engine (:func:`run_tiled`) cuts an image into the planned tiles, hands them
to a function in batches, and blends the results back with smooth weights:

* Every tile is extracted with a ``halo`` of context pixels on each side (taken
  from the neighbouring image where there is one, mirrored by reflection at the
  image border) and padded at its bottom/right to a multiple of ``multiple``
  pixels (16 for the network). The function sees these padded tiles; only the
  tile's own box is kept from its output.
* Blending weights are separable: along each axis a tile's window rises with a
  raised-cosine (Hann) ramp over the overlap with its previous neighbour and
  falls over the overlap with its next one; at the image border it stays 1. The
  1-D windows are normalised so that they sum to exactly 1 at every position,
  hence the 2-D weights (their products) sum to 1 at every pixel too.
* Outputs are accumulated into full-size arrays one batch at a time, so memory
  holds the image, the outputs and one batch of tiles, never all tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

__all__ = [
    "TILE_SIZE",
    "OVERLAP",
    "HALO",
    "MULTIPLE",
    "axis_starts",
    "TileGrid",
    "plan_grid",
    "fit_tile",
    "padded_edge",
    "TileBox",
    "axis_weights",
    "tile_boxes",
    "extract_tile",
    "iter_batches",
    "run_tiled",
]

TILE_SIZE = 512
OVERLAP = 0.2
HALO = 16
"""Context pixels added on every side of a tile before processing."""
MULTIPLE = 16
"""Padded tiles are a multiple of this many pixels high and wide (network strides)."""


def axis_starts(length: int, tile: int = TILE_SIZE, overlap: float = OVERLAP) -> np.ndarray:
    """Start offsets of tiles along one axis of ``length`` pixels.

    Tiles of ``tile`` px overlap by at least ``overlap`` of a tile and are spread
    evenly so the last one ends at the edge. An axis shorter than a tile gets one
    tile at 0 (the engine pads it by reflection).
    """
    if length <= tile:
        return np.zeros(1, dtype=int)
    stride = tile - int(round(overlap * tile))
    n = math.ceil((length - tile) / stride) + 1
    return np.round(np.linspace(0, length - tile, n)).astype(int)


@dataclass(frozen=True)
class TileGrid:
    """Rows and columns of tiles covering an image of ``shape`` (H, W)."""

    shape: tuple[int, int]
    tile: int
    y_starts: np.ndarray
    x_starts: np.ndarray

    @property
    def y_centres(self) -> np.ndarray:
        """Row coordinate of each tile row's centre."""
        return self.y_starts + min(self.tile, self.shape[0]) / 2.0 - 0.5

    @property
    def x_centres(self) -> np.ndarray:
        """Column coordinate of each tile column's centre."""
        return self.x_starts + min(self.tile, self.shape[1]) / 2.0 - 0.5

    def __len__(self) -> int:
        return len(self.y_starts) * len(self.x_starts)

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(y0, x0, y1, x1) of every tile, row by row; clipped to the image."""
        h, w = self.shape
        return [
            (int(y), int(x), int(min(y + self.tile, h)), int(min(x + self.tile, w)))
            for y in self.y_starts
            for x in self.x_starts
        ]


def plan_grid(shape: tuple[int, int], tile: int = TILE_SIZE, overlap: float = OVERLAP) -> TileGrid:
    """The tile grid for an image of ``shape`` = (H, W)."""
    h, w = int(shape[0]), int(shape[1])
    return TileGrid((h, w), int(tile), axis_starts(h, tile, overlap), axis_starts(w, tile, overlap))


def fit_tile(
    shape: tuple[int, int],
    lo: int = 768,
    hi: int = 1152,
    blend: int = 102,
    halo: int = HALO,
    multiple: int = MULTIPLE,
) -> tuple[int, float]:
    """Tile edge and overlap for an image of ``shape`` = (H, W) that make the
    engine process the fewest pixels.

    Every tile is processed with its halo and padding, and the tiles of
    :func:`axis_starts` are spread evenly, so a fixed tile edge can make the
    engine process far more than the image: 512 px tiles with 20 % overlap
    process 1.85 times a 4000 x 6000 frame. Among the edges from ``lo`` to
    ``hi`` (multiples of ``multiple``), each with an overlap of at least
    ``blend`` pixels, this picks the one with the fewest processed pixels
    (1.25 times that frame at 1088 px); a tie goes to the smaller tile.

    Returns
    -------
    tile : int
    overlap : float
        ``blend / tile`` (the argument of :func:`plan_grid`).
    """
    h, w = int(shape[0]), int(shape[1])
    best: tuple[int, int, float] | None = None
    for t in range(_round_up(lo, multiple), hi + 1, multiple):
        ov = blend / t
        ny, nx = len(axis_starts(h, t, ov)), len(axis_starts(w, t, ov))
        cost = ny * nx * padded_edge(h, t, halo, multiple) * padded_edge(w, t, halo, multiple)
        if best is None or cost < best[0]:
            best = (cost, t, ov)
    if best is None:
        raise ValueError(f"no tile edge between {lo} and {hi} px (multiples of {multiple})")
    return best[1], best[2]


# ---------------------------------------------------------------------------
# engine
# ---------------------------------------------------------------------------


class TileBox(NamedTuple):
    """Where one tile lies in the image.

    ``(y0, x0, y1, x1)`` is the tile's own box (end exclusive, inside the
    image); ``(py0, px0)`` is the image coordinate of the top-left pixel of the
    padded tile given to the processing function (negative where it reaches
    beyond the image), whose size is ``(ph, pw)``; ``iy, ix`` are the tile's row
    and column in the grid.
    """

    y0: int
    x0: int
    y1: int
    x1: int
    py0: int
    px0: int
    ph: int
    pw: int
    iy: int
    ix: int


def padded_edge(length: int, tile: int = TILE_SIZE, halo: int = HALO, multiple: int = MULTIPLE) -> int:
    """Edge of the padded tiles along an axis of ``length`` px: the tile (or
    the whole axis where it is shorter) plus ``halo`` on each side, rounded
    up to a multiple of ``multiple``."""
    return _round_up(min(int(tile), int(length)) + 2 * halo, multiple)


def _round_up(n: int, m: int) -> int:
    return int(-(-n // m) * m)


def axis_weights(starts: Sequence[int], length: int, size: int) -> list[np.ndarray]:
    """Normalised 1-D blending windows of the tiles along one axis.

    Parameters
    ----------
    starts : sequence of int
        Start offset of each tile (increasing), as from :func:`axis_starts`.
    length : int
        Length of the axis in pixels.
    size : int
        Tile length in pixels (``min(tile, length)``).

    Returns
    -------
    list of (size,) ndarray of float64
        One window per tile. Each rises with a raised-cosine ramp across the
        overlap with the previous tile and falls across the overlap with the
        next (flat at the image border); together they sum to 1 at every
        position of the axis.
    """
    starts = [int(s) for s in starts]
    n = len(starts)
    raw = []
    for i, s in enumerate(starts):
        w = np.ones(size)
        if i > 0:
            o = starts[i - 1] + size - s
            if o > 0:
                k = np.arange(o)
                w[:o] *= 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / o)
        if i < n - 1:
            o = s + size - starts[i + 1]
            if o > 0:
                k = np.arange(o)
                w[size - o :] *= 0.5 + 0.5 * np.cos(np.pi * (k + 0.5) / o)
        raw.append(w)
    total = np.zeros(length)
    for s, w in zip(starts, raw):
        total[s : s + size] += w
    if np.any(total <= 0):  # cannot happen for a plan that covers the axis
        raise ValueError("tiles do not cover the axis")
    return [w / total[s : s + size] for s, w in zip(starts, raw)]


def tile_boxes(
    shape: tuple[int, int],
    tile: int = TILE_SIZE,
    overlap: float = OVERLAP,
    halo: int = HALO,
    multiple: int = MULTIPLE,
) -> list[TileBox]:
    """Boxes of the tiles covering an image of ``shape`` = (H, W), row by row.

    All padded tiles have the same size: the tile (or the whole image where it
    is smaller than a tile) plus ``halo`` on each side, rounded up to a multiple
    of ``multiple``.
    """
    grid = plan_grid(shape, tile, overlap)
    h, w = grid.shape
    th, tw = min(tile, h), min(tile, w)
    ph = padded_edge(h, tile, halo, multiple)
    pw = padded_edge(w, tile, halo, multiple)
    out = []
    for iy, y in enumerate(grid.y_starts):
        for ix, x in enumerate(grid.x_starts):
            y, x = int(y), int(x)
            out.append(TileBox(y, x, y + th, x + tw, y - halo, x - halo, ph, pw, iy, ix))
    return out


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored into [0, n) ('reflect' mode: the edge pixel is not repeated)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


def extract_tile(data: np.ndarray, box: TileBox, margin: int = 0) -> np.ndarray:
    """The padded tile ``box`` of ``data`` (C, H, W), mirrored beyond the image.

    With ``margin`` > 0, ``data`` is the image already extended by that many
    pixels on every side (:func:`astrosharp.outside.extend_frame`) and box
    coordinates refer to the image inside it; the extension is mirrored in
    turn where a box reaches beyond it.

    Returns
    -------
    (C, ph, pw) ndarray, same dtype as ``data``
    """
    _, h, w = data.shape
    ys = np.arange(box.py0, box.py0 + box.ph) + margin
    xs = np.arange(box.px0, box.px0 + box.pw) + margin
    inside_y = (ys.min() >= 0) and (ys.max() < h)
    inside_x = (xs.min() >= 0) and (xs.max() < w)
    if inside_y and inside_x:
        return data[:, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1].copy()
    ry = _reflect_index(ys, h)
    rx = _reflect_index(xs, w)
    return data[:, ry[:, None], rx[None, :]]


def iter_batches(boxes: Sequence[TileBox], batch: int) -> Iterator[list[TileBox]]:
    """Consecutive groups of at most ``batch`` boxes."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    for i in range(0, len(boxes), batch):
        yield list(boxes[i : i + batch])


TileFn = Callable[[np.ndarray, list[TileBox]], Union[np.ndarray, Sequence[np.ndarray]]]


def run_tiled(
    data: np.ndarray,
    fn: TileFn,
    *,
    tile: int = TILE_SIZE,
    overlap: float = OVERLAP,
    batch: int = 4,
    halo: int = HALO,
    multiple: int = MULTIPLE,
    outputs: int = 1,
    progress: Callable[[int], object] | None = None,
    margin: int = 0,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Apply ``fn`` to an image tile by tile and blend the results.

    Parameters
    ----------
    data : (C, H, W) ndarray
        The image (float32 recommended; it is not modified).
    fn : callable
        ``fn(tiles, boxes)`` with ``tiles`` a (B, C, ph, pw) float32 array of
        padded tiles and ``boxes`` the matching list of :class:`TileBox`;
        returns ``outputs`` arrays (a single array when ``outputs == 1``), each
        (B, C_out, ph, pw). Only each tile's own box is kept from them.
    tile : int
        Tile edge in pixels (512).
    overlap : float
        Fraction of a tile shared with each neighbour (0.2).
    batch : int
        Tiles per call of ``fn``; memory holds one batch of tiles at a time.
    halo : int
        Context pixels added on every side of each tile.
    multiple : int
        Padded tiles are a multiple of this size (16 for the network).
    outputs : int
        Number of arrays ``fn`` returns (1 or 2, e.g. stars and non-stellar).
    progress : callable, optional
        Called with the number of tiles finished after each batch.
    margin : int
        ``data`` is the image extended by this many pixels on every side
        (the context beyond the frame edge); the outputs cover the image
        without them.

    Returns
    -------
    (C_out, H, W) float32 ndarray, or a tuple of ``outputs`` of them
        The blended outputs; blending weights sum to 1 at every pixel.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"data must be (C, H, W), got shape {data.shape}")
    if outputs < 1:
        raise ValueError(f"outputs must be at least 1, got {outputs}")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    _, h, w = data.shape
    h, w = h - 2 * margin, w - 2 * margin
    if h < 1 or w < 1:
        raise ValueError(f"data of shape {data.shape} is smaller than twice the margin {margin}")
    grid = plan_grid((h, w), tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    wy = axis_weights(grid.y_starts, h, th)
    wx = axis_weights(grid.x_starts, w, tw)
    boxes = tile_boxes((h, w), tile, overlap, halo, multiple)
    acc: list[np.ndarray] | None = None
    for group in iter_batches(boxes, batch):
        tiles = np.stack([extract_tile(data, b, margin) for b in group]).astype(np.float32, copy=False)
        res = fn(tiles, group)
        if isinstance(res, np.ndarray):
            res = (res,)
        res = tuple(np.asarray(r) for r in res)
        if len(res) != outputs:
            raise ValueError(f"tile function returned {len(res)} outputs, expected {outputs}")
        for r in res:
            if r.ndim != 4 or r.shape[0] != len(group) or r.shape[2:] != tiles.shape[2:]:
                raise ValueError(
                    f"tile function returned shape {r.shape}, expected ({len(group)}, C, {tiles.shape[2]}, {tiles.shape[3]})"
                )
        if acc is None:
            acc = [np.zeros((r.shape[1], h, w), dtype=np.float32) for r in res]
        for k, b in enumerate(group):
            oy, ox = b.y0 - b.py0, b.x0 - b.px0
            weight = (wy[b.iy][:, None] * wx[b.ix][None, :]).astype(np.float32)
            for a, r in zip(acc, res):
                a[:, b.y0 : b.y1, b.x0 : b.x1] += weight * r[k, :, oy : oy + th, ox : ox + tw]
        if progress is not None:
            progress(len(group))
    assert acc is not None  # at least one tile always exists
    return acc[0] if outputs == 1 else tuple(acc)
