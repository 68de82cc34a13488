"""read_image / write_image: one entry point for FITS, XISF and TIFF."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataWarning, ImageDataError, ImageFormatError, ParameterError
from ..image import Image
from . import _common
from ._atomic import atomic_output, check_output_path
from ._raw import RawImage
from .debayer import BAYER_PATTERNS, debayer_bilinear

__all__ = ["SUPPORTED_EXTENSIONS", "read_image", "write_image", "default_output_path", "format_of"]

#: File name endings astrosharp reads and writes (``.gz`` and ``.bz2`` are compressed FITS).
SUPPORTED_EXTENSIONS = (".fit", ".fits", ".fts", ".fz", ".gz", ".bz2", ".xisf", ".tif", ".tiff")

_FORMATS = {
    ".fit": "fits", ".fits": "fits", ".fts": "fits", ".fz": "fits", ".gz": "fits", ".bz2": "fits",
    ".xisf": "xisf", ".tif": "tiff", ".tiff": "tiff",
}
_FITS_INNER = (".fit", ".fits", ".fts")
_SUFFIX = "_astrosharp"


def format_of(path: str | Path) -> str:
    """``"fits"``, ``"xisf"`` or ``"tiff"`` from the file name ending.

    Raises
    ------
    ImageFormatError
        The extension is not one of :data:`SUPPORTED_EXTENSIONS`.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _FORMATS:
        what = f"unknown image file extension '{path.suffix}'" if path.suffix else "no file extension"
        raise ImageFormatError(
            f"{path.name} has {what}; astrosharp reads and writes {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return _FORMATS[ext]


def default_output_path(input_path: str | Path) -> Path:
    """``NAME_astrosharp.EXT`` beside the input.

    The extension is kept, except for compressed FITS inputs (``.fz``,
    ``.gz``, ``.bz2``), whose output is plain FITS: ``m31.fits.fz`` ->
    ``m31_astrosharp.fits``, ``sdss.fit.bz2`` -> ``sdss_astrosharp.fit``.
    Deconvolved float data compress poorly, and a plain file opens everywhere.
    """
    path = Path(input_path)
    format_of(path)
    ext = path.suffix
    if ext.lower() in (".fz", ".gz", ".bz2"):
        stem = path.stem
        inner = Path(stem).suffix
        if inner.lower() in _FITS_INNER:
            return path.with_name(f"{Path(stem).stem}{_SUFFIX}{inner}")
        return path.with_name(f"{stem}{_SUFFIX}.fits")
    return path.with_name(f"{path.stem}{_SUFFIX}{ext}")


def _read_raw(path: Path, fmt: str) -> RawImage:
    if fmt == "fits":
        from .fits import read_fits

        return read_fits(path)
    if fmt == "xisf":
        from .xisf import read_xisf

        return read_xisf(path)
    from .tiff import read_tiff

    return read_tiff(path)


def read_image(
    path: str | Path,
    *,
    planes: Sequence[int] | None = None,
    debayer: bool = True,
) -> Image:
    """Read a FITS, XISF or TIFF image.

    Parameters
    ----------
    path : str or Path
        ``.fit``, ``.fits``, ``.fts``, ``.fz``, ``.gz``, ``.bz2`` (FITS),
        ``.xisf`` or ``.tif``/``.tiff``.
    planes : sequence of 1 or 3 ints, optional
        Planes of a cube to use, zero-based, e.g. ``(2, 1, 0)`` for i, r, g
        of a g-r-i-z-y cube. By default 1 or 3 planes are used as they are,
        alpha planes are dropped and other cubes use plane 0 (with a
        :class:`~astrosharp.errors.DataWarning`).
    debayer : bool
        A raw colour-filter-array frame (FITS ``BAYERPAT``, XISF
        ``ColorFilterArray``) is demosaiced to RGB with a DataWarning when
        true (default), and refused with an :class:`ImageDataError` when false.

    Returns
    -------
    Image
        ``data`` float32 (C, H, W), C = 1 or 3. Integer samples are divided by
        their type's maximum (``Image.scale``; ``Image.source_dtype`` names the
        stored type); float samples are unchanged, NaN and Inf included.

    Raises
    ------
    ImageFormatError
        Missing file, unknown extension, not an image, truncated or damaged.
    ImageDataError
        1-D data, under 16 px, unsupported sample or colour types, or a CFA
        frame with ``debayer=False``.
    """
    path = Path(path)
    fmt = format_of(path)
    if not path.exists():
        raise ImageFormatError(f"no such file: {path}")
    if path.is_dir():
        raise ImageFormatError(f"{path} is a folder, not an image file")
    rec = _read_raw(path, fmt)
    raw = _common.select_planes(rec.raw, planes, name=path.name, n_alpha=rec.n_alpha)
    if rec.integer_type is not None:  # integers with blank (NaN) pixels, handed over as float
        scale = float(_common.integer_max(rec.integer_type))
        data = (raw.astype(np.float64) / scale).astype(np.float32)
        source_dtype = rec.integer_type
    else:
        data, scale, source_dtype = _common.normalise(raw)
    header = rec.header
    cfa = rec.cfa if data.shape[0] == 1 else None
    if cfa is not None:
        what = f"a raw colour-filter-array frame ({cfa.source} {cfa.pattern})"
        if not debayer:
            raise ImageDataError(
                f"{path.name} is {what}; debayer it in your processing software first, or read it with debayer=True"
            )
        if cfa.pattern not in BAYER_PATTERNS:
            raise ImageDataError(
                f"{path.name} is {what}, which astrosharp cannot debayer; debayer it in your processing software first"
            )
        mono = data[0][::-1] if cfa.bottom_up else data[0]
        rgb = debayer_bilinear(mono, cfa.pattern, cfa.x_offset, cfa.y_offset)
        data = np.ascontiguousarray(rgb[:, ::-1] if cfa.bottom_up else rgb)
        warnings.warn(
            f"{path.name} is {what}: debayered to full-resolution RGB by bilinear interpolation; "
            "for best results calibrate and debayer in your processing software first",
            DataWarning,
            stacklevel=2,
        )
        header = header.copy()
        from .fits import CFA_KEYWORDS

        for key in CFA_KEYWORDS:
            header.remove(key, ignore_missing=True, remove_all=True)
        header.add_history(f"astrosharp: debayered {cfa.pattern} colour-filter-array data to RGB (bilinear)")
    try:
        return Image(
            data=data,
            header=header,
            properties=rec.properties,
            source_format=fmt,
            source_dtype=source_dtype,
            scale=scale,
            path=path,
        )
    except ImageDataError as exc:  # too small, ...: say which file
        raise ImageDataError(f"{path.name}: {exc}") from None


def write_image(
    image: Image,
    path: str | Path,
    *,
    overwrite: bool = False,
    dtype: str = "float32",
    history: str | None = None,
    compression: str | None = None,
) -> Path:
    """Write an image atomically; the format follows the extension.

    Parameters
    ----------
    image : Image
    path : str or Path
        Output file; its folder must exist. ``.fz`` writes a lossless
        tile-compressed FITS, ``.gz``/``.bz2`` a compressed FITS file.
    overwrite : bool
        Replace an existing file (never the image's own input file).
    dtype : {"float32", "float64", "uint8", "uint16", "uint32"}
        Stored sample type. Integer types hold ``round(data * max)``, clipped
        to the type's range with a DataWarning when values fall outside [0, 1].
    history : str, optional
        A line (or lines) for the header's HISTORY, e.g. what astrosharp did
        with which settings.
    compression : str, optional
        XISF: ``"zlib"``, ``"lz4"``, ``"lz4hc"``, ``"zstd"``, each with optional
        ``"+sh"``; TIFF: ``"zlib"``. Not used for FITS (choose ``.fz``).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ImageFormatError
        Unknown extension.
    AstrosharpError
        The output folder does not exist, or the output is the input file.
    OutputExistsError
        The file exists and ``overwrite`` is false.
    ParameterError
        Unknown dtype or compression.
    """
    if not isinstance(image, Image):
        raise ParameterError(f"write_image needs an astrosharp Image, got {type(image).__name__}")
    path = Path(path)
    fmt = format_of(path)
    out_dtype = _common.check_output_dtype(dtype)
    if fmt == "fits" and compression not in (None, "none"):
        raise ParameterError("FITS compression is chosen by the file name: use .fz (tile-compressed), .gz or .bz2")
    if fmt == "xisf":
        from .xisf import parse_codec

        parse_codec(compression)
    if fmt == "tiff" and compression not in (None, "none", "zlib"):
        raise ParameterError(f"TIFF compression {compression!r} is not supported; choose None or 'zlib'")
    check_output_path(path, overwrite=overwrite, input_path=image.path)
    stored = _common.to_output_dtype(image.data, out_dtype)
    header = image.header.copy()
    _common.add_history(header, _common.write_notes(image.source_dtype, image.scale, out_dtype, history))
    with atomic_output(path, overwrite=overwrite) as handle:
        if fmt == "fits":
            from .fits import write_fits

            write_fits(handle, stored, header, path=path)
        elif fmt == "xisf":
            from .xisf import write_xisf

            from .. import __version__

            write_xisf(handle, stored, header, image.properties, compression=compression, creator=f"astrosharp {__version__}")
        else:
            from .tiff import write_tiff

            write_tiff(handle, stored, header, image.properties, compression=compression)
    return path
