"""Tile plan of the engine: 512 px tiles with 20 % overlap.

The plan is shared by the PSF field (one node per tile centre) and by the
processing engine (one task per tile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TILE_SIZE", "OVERLAP", "axis_starts", "TileGrid", "plan_grid"]

TILE_SIZE = 512
OVERLAP = 0.2


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
