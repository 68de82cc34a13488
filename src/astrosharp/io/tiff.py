"""TIFF files through tifffile.

Reading: the first series of the file; 8/16/32-bit integer and 16/32/64-bit
float samples; mono (MINISBLACK/MINISWHITE is not inverted) and RGB, chunky
(interleaved) or planar; extra samples (alpha) are dropped with a
:class:`DataWarning`; a multi-page stack keeps its first page with a warning.
Rows are stored top first and kept in that order.

Writing: one page, RGB interleaved (``photometric='rgb'``, ``planarconfig
='contig'``) or mono (``'minisblack'``), uncompressed unless ``compression=
'zlib'``. TIFF has no FITS header, so the header is stored as FITS cards in
the ImageDescription tag after a ``astrosharp FITS header`` line and read
back from there; the Software, DateTime, Artist, Copyright and resolution
tags of a TIFF input are kept in :attr:`Image.properties` and written back.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..errors import DataWarning, ImageDataError, ImageFormatError, ParameterError
from ._raw import RawImage

__all__ = ["read_tiff", "write_tiff", "HEADER_MARKER"]

#: First line of an ImageDescription that carries a FITS header.
HEADER_MARKER = "astrosharp FITS header"

_KEPT_TAGS = ("Software", "DateTime", "Artist", "Copyright", "XResolution", "YResolution", "ResolutionUnit")


def _header_from_description(text: str) -> fits.Header | None:
    if not text.startswith(HEADER_MARKER):
        return None
    body = text[len(HEADER_MARKER) :].lstrip("\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        try:
            return fits.Header.fromstring(body, sep="\n")
        except Exception:
            return None


def read_tiff(path: Path) -> RawImage:
    """Read the first image of a TIFF file.

    Returns
    -------
    RawImage
        ``raw`` (N, H, W) in the stored sample type; ``n_alpha`` counts the
        trailing extra (alpha) samples.

    Raises
    ------
    ImageFormatError
        Not a TIFF file, or truncated / damaged.
    ImageDataError
        Palette, CMYK, YCbCr-undecoded or otherwise non-mono non-RGB data.
    """
    import tifffile

    path = Path(path)
    name = path.name
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageFormatError(f"{name} holds no image")
            series = tif.series[0]
            page = tif.pages[0]
            axes = series.axes
            arr = series.asarray()
            photometric = int(page.photometric)
            n_extra = len(page.extrasamples or ())
            description = page.description or ""
            properties: dict[str, Any] = {}
            for tag_name in _KEPT_TAGS:
                tag = page.tags.get(tag_name)
                if tag is not None:
                    value = tag.value
                    properties[f"tiff:{tag_name}"] = int(value) if tag_name == "ResolutionUnit" else value
    except (ImageFormatError, ImageDataError):
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, OSError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageFormatError(f"{name} is not a readable TIFF file: {reason}") from exc

    if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
        raise ImageDataError(
            f"{name} uses TIFF photometric interpretation {photometric} (palette, CMYK, YCbCr...); astrosharp reads mono and RGB TIFF"
        )
    if np.iscomplexobj(arr):
        raise ImageDataError(f"{name} holds complex samples; astrosharp reads real-valued images")
    # bring the array to (N, H, W): samples first, extra axes reduced to their first entry
    extra = [i for i, a in enumerate(axes) if a not in "YXSC"]
    if any(arr.shape[i] > 1 for i in extra):
        warnings.warn(f"{name} holds several pages or planes ({series.shape}, axes {axes}); using the first", DataWarning, stacklevel=3)
    index = tuple(0 if i in extra else slice(None) for i in range(arr.ndim))
    arr = arr[index]
    axes = "".join(a for i, a in enumerate(axes) if i not in extra)
    if "Y" not in axes or "X" not in axes:
        raise ImageDataError(f"{name} holds data with axes {series.axes}, not a 2-D image")
    chan = [a for a in axes if a in "SC"]
    order = chan + ["Y", "X"]
    arr = np.transpose(arr, [axes.index(a) for a in order])
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:  # both S and C: flatten
        arr = arr.reshape(-1, *arr.shape[-2:])
    n_alpha = n_extra
    if n_alpha == 0 and photometric in (0, 1) and arr.shape[0] == 2:
        n_alpha = 1  # gray + alpha
    if photometric == 2 and arr.shape[0] == 4 and n_alpha == 0:
        n_alpha = 1
    header = _header_from_description(description)
    if header is None:
        header = fits.Header()
        if description.strip():
            properties["tiff:ImageDescription"] = description
    return RawImage(raw=np.ascontiguousarray(arr), header=header, properties=properties, n_alpha=n_alpha)


def write_tiff(
    handle: BinaryIO,
    data: np.ndarray,
    header: fits.Header,
    properties: dict[str, Any],
    *,
    compression: str | None = None,
) -> None:
    """Write one image as a TIFF file.

    Parameters
    ----------
    handle : binary file
        Destination.
    data : (C, H, W) ndarray
        Samples in the output type; C = 3 is written interleaved RGB.
    header : astropy.io.fits.Header
        Stored in ImageDescription (see the module notes).
    properties : dict
        ``tiff:*`` tags of a TIFF input are written back.
    compression : None or "zlib"
    """
    import tifffile

    from .fits import clean_header

    if compression not in (None, "none", "zlib"):
        raise ParameterError(f"TIFF compression {compression!r} is not supported; choose None or 'zlib'")
    if data.shape[0] == 3:
        arr = np.ascontiguousarray(np.moveaxis(data, 0, -1))
        photometric = "rgb"
    else:
        arr = data[0]
        photometric = "minisblack"
    hdr = clean_header(header)
    if len(hdr):
        description = HEADER_MARKER + "\n" + hdr.tostring(sep="\n", endcard=False, padding=False)
    else:
        description = str(properties.get("tiff:ImageDescription", "")) or None
    if description is not None:
        description = description.encode("ascii", errors="replace").decode("ascii")
    kwargs: dict[str, Any] = {}
    if "tiff:XResolution" in properties and "tiff:YResolution" in properties:
        kwargs["resolution"] = (properties["tiff:XResolution"], properties["tiff:YResolution"])
        unit = properties.get("tiff:ResolutionUnit")
        if unit is not None:
            kwargs["resolutionunit"] = unit
    extratags = []
    for tag_name, code in (("Artist", 315), ("Copyright", 33432)):
        value = properties.get(f"tiff:{tag_name}")
        if isinstance(value, str) and value:
            extratags.append((code, "s", 0, value, True))
    software = properties.get("tiff:Software")
    tifffile.imwrite(
        handle,
        arr,
        photometric=photometric,
        planarconfig="contig",
        compression="zlib" if compression == "zlib" else None,
        description=description,
        metadata=None,
        software=f"astrosharp (from {software})" if isinstance(software, str) and software and "astrosharp" not in software else "astrosharp",
        datetime=True,
        extratags=extratags,
        **kwargs,
    )
