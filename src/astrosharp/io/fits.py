"""FITS files through astropy: plain, gzip/bzip2-compressed and tile-compressed.

Reading takes the first HDU that holds image data (the primary HDU, an image
extension, or a tile-compressed ``CompImageHDU`` in a ``.fz`` file). BZERO and
BSCALE are applied by astropy: signed 16/32-bit data with BZERO 32768 /
2147483648 are unsigned integers; other scaled integers are physical values
in floating point and are kept in those units. Pixel rows are kept in the
order stored (row 0 is the first stored row, the bottom row in viewers that
follow the FITS convention); astrosharp never flips images.

Writing keeps every keyword of :attr:`Image.header` (WCS included) except the
structural ones, which follow the written array (BITPIX, NAXISn, BZERO,
BSCALE, BLANK) and stale checksums, and appends HISTORY lines.
"""

from __future__ import annotations

import bz2
import gzip
import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from ..errors import ImageDataError, ImageFormatError
from ._raw import CFAInfo, RawImage

__all__ = ["read_fits", "write_fits", "STRUCTURAL_KEYWORDS", "clean_header"]

#: Keywords that describe the stored array, not the image: never copied.
STRUCTURAL_KEYWORDS = frozenset(
    {
        "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "BZERO", "BSCALE", "BLANK", "XTENSION",
        "PCOUNT", "GCOUNT", "CHECKSUM", "DATASUM", "EXTNAME", "EXTVER", "END",
        "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZSIMPLE",
        "ZTENSION", "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "ZHECKSUM", "ZDATASUM", "ZBLANK",
        "ZSCALE", "ZZERO", "TFIELDS",
    }
)
_STRUCTURAL_PREFIXES = ("NAXIS", "ZNAXIS", "ZTILE", "ZNAME", "ZVAL", "TTYPE", "TFORM")

#: Keywords of a raw colour-filter-array frame, removed once debayered.
CFA_KEYWORDS = ("BAYERPAT", "XBAYROFF", "YBAYROFF", "BAYOFFX", "BAYOFFY", "COLORTYP")


def clean_header(header: fits.Header) -> fits.Header:
    """A copy of ``header`` without the structural keywords."""
    out = fits.Header()
    for card in header.cards:
        key = card.keyword
        if key in STRUCTURAL_KEYWORDS or (key.startswith(_STRUCTURAL_PREFIXES) and key[-1:].isdigit()):
            continue
        out.append(card, end=True)
    return out


def _first_image_hdu(hdul: fits.HDUList, name: str):
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            if int(hdu.header.get("NAXIS", 0)) > 0:
                return hdu
    raise ImageFormatError(f"{name} holds no image data (only empty headers or tables)")


def _cfa_info(header: fits.Header) -> CFAInfo | None:
    pattern = header.get("BAYERPAT")
    if not pattern or not str(pattern).strip():
        return None
    def _int(*keys: str) -> int:
        for key in keys:
            if key in header:
                try:
                    return int(header[key])
                except (TypeError, ValueError):
                    return 0
        return 0
    bottom_up = str(header.get("ROWORDER", "")).strip().upper() == "BOTTOM-UP"
    return CFAInfo(
        pattern=str(pattern).strip().upper(),
        x_offset=_int("XBAYROFF", "BAYOFFX"),
        y_offset=_int("YBAYROFF", "BAYOFFY"),
        bottom_up=bottom_up,
        source="BAYERPAT",
    )


def read_fits(path: Path) -> RawImage:
    """Read the first image of a FITS file.

    Returns
    -------
    RawImage
        ``raw`` is (N, H, W) in the stored type after BZERO/BSCALE (uint16 for
        16-bit data with BZERO 32768); a 2-D image has N = 1. Leading axes of
        length 1 beyond the third are dropped.

    Raises
    ------
    ImageFormatError
        Not a FITS file, truncated or damaged, or without image data.
    ImageDataError
        1-D data or more than 3 axes.
    """
    name = Path(path).name
    error: Exception | None = None
    data = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                hdu = _first_image_hdu(hdul, name)
                header = hdu.header.copy()
                if hdu.data is not None:
                    data = np.array(hdu.data, copy=True)
        except (ImageFormatError, ImageDataError):
            raise
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
            error = exc
    if any("truncated" in str(w.message) for w in caught):
        raise ImageFormatError(
            f"{name} is truncated (the file is shorter than its header says); it cannot be read"
        ) from error
    if error is not None:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageFormatError(f"{name} is not a readable FITS file: {reason}") from error
    if data is None:
        raise ImageFormatError(f"{name} holds no image data")
    data = np.asarray(data)
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 1:
        raise ImageDataError(f"{name} holds 1-D data ({data.shape[0]} values), not an image; astrosharp needs 2-D or 3-D data")
    if data.ndim > 3:
        raise ImageDataError(f"{name} holds {data.ndim}-D data of shape {data.shape}; astrosharp reads 2-D images and 3-D (planes, height, width) cubes")
    if data.ndim == 2:
        data = data[None]
    data, integer_type = _blank_pixels(data, header)
    return RawImage(
        raw=data, header=header, cfa=_cfa_info(header) if data.shape[0] == 1 else None, integer_type=integer_type
    )


def _blank_pixels(data: np.ndarray, header: fits.Header) -> tuple[np.ndarray, str | None]:
    """Integer data with BLANK pixels: float with NaN there, plus the integer type.

    astropy turns unscaled integers with BLANK into float32 with NaN, and
    ignores BLANK for unsigned (BZERO-offset) data; both cases come back here
    as floats in the stored units, and the integer type is reported so that
    the integer convention still applies.
    """
    bitpix = int(header.get("BITPIX", 0))
    if bitpix <= 0:
        return data, None
    bzero = header.get("BZERO", 0)
    bscale = header.get("BSCALE", 1)
    if data.dtype.kind == "f":
        if bscale == 1 and bzero == 0 and bitpix in (8, 16, 32, 64):
            return data, {8: "uint8", 16: "int16", 32: "int32", 64: "int64"}[bitpix]
        return data, None
    if "BLANK" not in header or bscale != 1:
        return data, None
    try:
        blank = int(header["BLANK"]) + int(bzero)
    except (TypeError, ValueError):
        return data, None
    mask = data == blank
    if not mask.any():
        return data, None
    out = data.astype(np.float32 if data.dtype.itemsize <= 2 else np.float64)
    out[mask] = np.nan
    return out, data.dtype.name


def write_fits(handle: BinaryIO, data: np.ndarray, header: fits.Header, *, path: Path) -> None:
    """Write stored samples and a header as a FITS file to an open handle.

    Parameters
    ----------
    handle : binary file
        Destination (a temporary file; see :mod:`astrosharp.io._atomic`).
    data : (C, H, W) ndarray
        Samples in the output type; C = 1 is written as a 2-D image.
    header : astropy.io.fits.Header
        Keywords to keep; structural keywords are rebuilt for ``data``.
    path : Path
        Final name: ``.fz`` writes a lossless GZIP_2 tile-compressed image
        extension, ``.gz`` / ``.bz2`` compress the whole file.
    """
    arr = data[0] if data.shape[0] == 1 else data
    hdr = clean_header(header)
    suffix = path.suffix.lower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        if suffix == ".fz":
            comp = fits.CompImageHDU(data=arr, header=hdr, compression_type="GZIP_2", quantize_level=0.0)
            hdul = fits.HDUList([fits.PrimaryHDU(), comp])
        else:
            hdul = fits.HDUList([fits.PrimaryHDU(data=arr, header=hdr)])
        if suffix in (".gz", ".bz2"):
            buf = io.BytesIO()
            hdul.writeto(buf, output_verify="silentfix")
            raw = buf.getvalue()
            handle.write(gzip.compress(raw, compresslevel=6, mtime=0) if suffix == ".gz" else bz2.compress(raw))
        else:
            hdul.writeto(handle, output_verify="silentfix")
