"""The in-memory image: float32 pixels shaped (C, H, W) plus the file's metadata.

Dtype policy (stated once, here): pixels are float32 in the file's own linear
units. Integer files are divided by their type's maximum (65535 for 16 bit), so
they land in [0, 1]; the divisor is kept in :attr:`Image.scale` so the original
units can be restored on writing. Floating-point data are never clipped or
rescaled. NaN and Inf pixels are kept as they are; processing excludes them and
puts them back where they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .errors import ImageDataError

__all__ = ["Image", "as_chw"]

MIN_SIZE = 16


@dataclass
class Image:
    """Pixels and metadata of one image.

    Parameters
    ----------
    data : (C, H, W) ndarray of float32
        Linear pixel values; C is 1 (mono) or 3 (RGB).
    header : astropy.io.fits.Header
        FITS keywords (from a FITS header, or an XISF file's FITSKeyword
        elements); WCS keywords live here too.
    properties : dict
        Format-specific metadata that has no FITS keyword (XISF properties,
        TIFF tags), kept so that writing the same format preserves it.
    source_format : str
        ``"fits"``, ``"xisf"``, ``"tiff"`` or ``""`` for images made in memory.
    source_dtype : str
        NumPy dtype name of the stored pixels (``"uint16"``, ``"float32"``, ...).
    scale : float
        Integer data were divided by this on reading (1.0 for float data).
    path : Path or None
        Where the image was read from.
    """

    data: np.ndarray
    header: fits.Header = field(default_factory=fits.Header)
    properties: dict[str, Any] = field(default_factory=dict)
    source_format: str = ""
    source_dtype: str = "float32"
    scale: float = 1.0
    path: Path | None = None

    def __post_init__(self) -> None:
        self.data = as_chw(self.data)

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    def with_data(self, data: np.ndarray) -> "Image":
        """A copy of this image's metadata around new pixel data."""
        return Image(
            data=data,
            header=self.header.copy(),
            properties=dict(self.properties),
            source_format=self.source_format,
            source_dtype=self.source_dtype,
            scale=self.scale,
            path=self.path,
        )


def as_chw(data: np.ndarray) -> np.ndarray:
    """Validate pixel data and return it as float32 (C, H, W).

    2-D input becomes one channel. Raises :class:`ImageDataError` for data that
    is not 2-D or 3-D, that has other than 1 or 3 channels, or that is smaller
    than 16 px on a side.
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ImageDataError(
            f"image data must be 2-D (mono) or 3-D (channels, height, width), got {arr.ndim}-D data of shape {arr.shape}"
        )
    if arr.shape[0] not in (1, 3):
        raise ImageDataError(
            f"image must have 1 (mono) or 3 (RGB) channels, got {arr.shape[0]} (shape {arr.shape})"
        )
    if min(arr.shape[1:]) < MIN_SIZE:
        raise ImageDataError(
            f"image is {arr.shape[2]}x{arr.shape[1]} px; astrosharp needs at least {MIN_SIZE} px on each side"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ImageDataError(f"image data must be real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
