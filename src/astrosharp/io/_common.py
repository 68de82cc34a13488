"""Conventions shared by the format readers and writers.

Integer convention: integer samples become float32 divided by their type's
maximum (uint8 255, uint16 65535, uint32 4294967295; signed types by their
positive maximum, e.g. int16 32767). Writing an integer type multiplies by
that type's maximum, rounds and clips to its range. Floating-point data are
never rescaled or clipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from astropy.io import fits

from ..errors import DataWarning, ImageDataError, ParameterError

__all__ = [
    "OUTPUT_DTYPES",
    "integer_max",
    "normalise",
    "to_output_dtype",
    "select_planes",
    "write_notes",
]

#: Sample types every writer accepts.
OUTPUT_DTYPES = ("float32", "float64", "uint8", "uint16", "uint32")


def integer_max(dtype: np.dtype | str) -> int:
    """Largest value of an integer dtype (the divisor of the integer convention)."""
    return int(np.iinfo(np.dtype(dtype)).max)


def normalise(raw: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Convert stored samples to float32 by the integer convention.

    Parameters
    ----------
    raw : ndarray
        Samples as stored (any shape), integer or floating point.

    Returns
    -------
    data : ndarray of float32
        ``raw / max`` for integers, ``raw`` unchanged in value for floats.
    scale : float
        The divisor (1.0 for floating-point data).
    source_dtype : str
        NumPy name of the stored type.
    """
    dtype = raw.dtype
    name = dtype.name
    if np.issubdtype(dtype, np.bool_):
        return raw.astype(np.float32), 1.0, name
    if np.issubdtype(dtype, np.integer):
        vmax = integer_max(dtype)
        if dtype.itemsize <= 2:
            data = raw.astype(np.float32) / np.float32(vmax)
        else:  # divide in double precision, then round once to float32
            data = (raw.astype(np.float64) / float(vmax)).astype(np.float32)
        return data, float(vmax), name
    if np.issubdtype(dtype, np.floating):
        return raw.astype(np.float32, copy=False), 1.0, name
    raise ImageDataError(f"pixel samples of type {name} are not supported (expected integers or real floating point)")


def check_output_dtype(dtype: str | np.dtype) -> np.dtype:
    """Validate a requested output sample type."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in OUTPUT_DTYPES:
        raise ParameterError(f"output dtype {dtype!r} is not supported; choose one of {', '.join(OUTPUT_DTYPES)}")
    return dt


def to_output_dtype(data: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Convert float32 pixels to the stored output type.

    Floating point: a plain cast (float32 to float32 is bit-exact). Integer:
    ``round(data * max)`` clipped to ``[0, max]``; a :class:`DataWarning`
    says how many samples were clipped and NaN/Inf samples become 0.
    """
    dt = check_output_dtype(dtype)
    if np.issubdtype(dt, np.floating):
        return np.ascontiguousarray(data, dtype=dt)
    vmax = integer_max(dt)
    scaled = data.astype(np.float64) * vmax
    bad = ~np.isfinite(scaled)
    n_bad = int(bad.sum())
    if n_bad:
        scaled[bad] = 0.0
    n_low = int((scaled < -0.5).sum())
    n_high = int((scaled > vmax + 0.5).sum())
    if n_bad or n_low or n_high:
        warnings.warn(
            f"writing {dt.name}: {n_low} samples below 0 and {n_high} above 1 were clipped, "
            f"{n_bad} NaN/Inf samples were set to 0; write float32 to keep every value",
            DataWarning,
            stacklevel=3,
        )
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, vmax, out=scaled)
    return scaled.astype(dt)


def select_planes(
    raw: np.ndarray,
    planes: Sequence[int] | None,
    *,
    name: str,
    n_alpha: int = 0,
) -> np.ndarray:
    """Pick the image planes of a (N, H, W) stack.

    Parameters
    ----------
    raw : (N, H, W) ndarray
    planes : sequence of 1 or 3 ints, or None
        Zero-based plane indices to keep, in order. ``None`` keeps 1 or 3
        colour planes as they are, drops ``n_alpha`` trailing alpha planes
        with a :class:`DataWarning`, and otherwise keeps plane 0 with a
        :class:`DataWarning` that says how to choose.
    name : str
        File name for messages.
    n_alpha : int
        How many trailing planes the file marks as alpha (transparency).
    """
    n = raw.shape[0]
    if planes is not None:
        try:
            idx = [int(p) for p in planes]
        except (TypeError, ValueError):
            raise ParameterError(f"planes must be a sequence of 1 or 3 plane numbers, got {planes!r}") from None
        if len(idx) not in (1, 3):
            raise ParameterError(f"planes must name 1 (mono) or 3 (RGB) planes, got {len(idx)}: {idx}")
        bad = [p for p in idx if not 0 <= p < n]
        if bad:
            raise ParameterError(f"{name} has {n} planes (numbered 0 to {n - 1}); plane(s) {bad} do not exist")
        return raw[idx]
    if n_alpha and n - n_alpha in (1, 3):
        warnings.warn(
            f"{name}: alpha (transparency) channel dropped; astrosharp processes the {n - n_alpha} colour channel(s) only",
            DataWarning,
            stacklevel=3,
        )
        return raw[: n - n_alpha]
    if n in (1, 3):
        return raw
    warnings.warn(
        f"{name} holds {n} image planes and astrosharp processes 1 (mono) or 3 (RGB): using plane 0 only; "
        f"choose others with planes=(i,) or planes=(r, g, b)",
        DataWarning,
        stacklevel=3,
    )
    return raw[:1]


def write_notes(source_dtype: str, scale: float, out_dtype: np.dtype, history: str | None) -> list[str]:
    """HISTORY lines recording the integer convention and the caller's note."""
    notes: list[str] = []
    if np.issubdtype(out_dtype, np.integer):
        notes.append(
            f"astrosharp: values in [0, 1] multiplied by {integer_max(out_dtype)} and rounded to {out_dtype.name}"
        )
    elif scale != 1.0:
        notes.append(
            f"astrosharp: integer data ({source_dtype}) divided by {scale:.10g}; multiply by {scale:.10g} to restore the original units"
        )
    if history:
        notes.extend(line for line in history.splitlines() if line.strip())
    return notes


def add_history(header: fits.Header, notes: Sequence[str]) -> None:
    """Append HISTORY cards (long lines are continued by astropy)."""
    for note in notes:
        header.add_history(note)
