"""The record each format reader hands to :func:`astrosharp.io.read_image`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["RawImage", "CFAInfo"]


@dataclass(frozen=True)
class CFAInfo:
    """A raw colour-filter-array layout.

    ``pattern`` starts at stored pixel (``y_offset``, ``x_offset``) of the
    top row; ``bottom_up`` says the top row is stored last.
    """

    pattern: str
    x_offset: int = 0
    y_offset: int = 0
    bottom_up: bool = False
    source: str = "BAYERPAT"


@dataclass
class RawImage:
    """Samples as stored, (N, H, W), with the file's metadata."""

    raw: np.ndarray
    header: fits.Header
    properties: dict[str, Any] = field(default_factory=dict)
    n_alpha: int = 0
    cfa: CFAInfo | None = None
    #: integer type of samples handed over as float because some are blank (NaN)
    integer_type: str | None = None
