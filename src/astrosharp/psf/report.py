"""Text and JSON descriptions of a PSF field, for the command line and scripts.

:func:`format_psf_table` gives one block per channel: the median FWHM, beta,
ellipticity and angle over the nodes, the star count, and the values at the
centre and the four corners of the image (where optical aberrations show);
then the field's notes (borrowed tiles, fallbacks). :func:`psf_to_json` gives
the same summary plus the full node grid as a JSON-ready dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .field import ORIGINS, PSFField

__all__ = ["format_psf_table", "psf_to_json", "channel_names", "zone_points"]


def channel_names(n: int) -> list[str]:
    """Display names of ``n`` channels (R, G, B for three; mono for one)."""
    if n == 3:
        return ["R", "G", "B"]
    if n == 1:
        return ["mono"]
    return [f"ch{c}" for c in range(n)]


def zone_points(shape: tuple[int, int]) -> dict[str, tuple[float, float]]:
    """(y, x) of the centre and corners (one eighth of the size in from each
    edge), with FITS orientation: row 0 is the bottom."""
    h, w = shape
    y0, y1 = h / 8.0, h - 1 - h / 8.0
    x0, x1 = w / 8.0, w - 1 - w / 8.0
    return {
        "centre": ((h - 1) / 2.0, (w - 1) / 2.0),
        "top-left": (y1, x0),
        "top-right": (y1, x1),
        "bottom-left": (y0, x0),
        "bottom-right": (y0, x1),
    }


def _field_of(obj) -> PSFField:
    return obj.field if hasattr(obj, "field") and isinstance(obj.field, PSFField) else obj


def _summary(field: PSFField) -> list[dict[str, Any]]:
    out = []
    names = channel_names(field.channels)
    zones = zone_points(field.shape)
    for c in range(field.channels):
        med = field.median(c)
        origins = {ORIGINS[i]: int(np.sum(field.origin[c] == i)) for i in np.unique(field.origin[c])}
        out.append(
            {
                "channel": names[c],
                "fwhm": med["fwhm"],
                "beta": med["beta"],
                "ellipticity": med["ellipticity"],
                "angle": med["angle"],
                "asym_x": med["asym_x"],
                "asym_y": med["asym_y"],
                "stars": int(field.counts[c].sum()),
                "fwhm_min": float(field.param("fwhm")[c].min()),
                "fwhm_max": float(field.param("fwhm")[c].max()),
                "nodes_by_origin": origins,
                "zones": {k: field.at(y, x, c) for k, (y, x) in zones.items()},
            }
        )
    return out


def format_psf_table(field) -> str:
    """Human-readable table of a PSF field (or a ``PSFMeasurement``).

    Returns
    -------
    str
        Several lines: per channel the median FWHM (px), beta, ellipticity,
        angle (degrees CCW from +x), stars used, then centre / corner values,
        then the notes.
    """
    field = _field_of(field)
    h, w = field.shape
    ny, nx = len(field.ys), len(field.xs)
    lines = [f"PSF field of a {w} x {h} px image: {ny} x {nx} tile nodes, FWHM in px, angle in degrees CCW from +x"]
    lines.append(f"{'channel':<8}{'FWHM':>7}{'range':>13}{'beta':>7}{'ellip':>7}{'angle':>7}{'stars':>7}  origin of nodes")
    summ = _summary(field)
    for s in summ:
        org = ", ".join(f"{k} {v}" for k, v in s["nodes_by_origin"].items())
        lines.append(
            f"{s['channel']:<8}{s['fwhm']:7.2f}{s['fwhm_min']:6.2f}-{s['fwhm_max']:<6.2f}{s['beta']:7.2f}"
            f"{s['ellipticity']:7.3f}{s['angle']:7.1f}{s['stars']:7d}  {org}"
        )
    lines.append("")
    lines.append(f"{'zone':<14}" + "".join(f"{s['channel'] + ' FWHM/e/angle':>24}" for s in summ))
    for z in zone_points(field.shape):
        row = f"{z:<14}"
        for s in summ:
            v = s["zones"][z]
            row += f"{v['fwhm']:>12.2f} {v['ellipticity']:5.3f} {v['angle']:5.1f}"
        lines.append(row)
    if field.notes:
        lines.append("")
        lines += [f"note: {n}" for n in field.notes]
    return "\n".join(lines)


def psf_to_json(field) -> dict[str, Any]:
    """JSON-ready dict: ``summary`` (per channel, as in the table), ``field``
    (the full node grid, :meth:`PSFField.to_dict`) and ``notes``; with a
    ``PSFMeasurement`` also ``stars`` (per-star fits actually used)."""
    meas = field if hasattr(field, "stars") and hasattr(field, "field") else None
    f = _field_of(field)
    out: dict[str, Any] = {
        "definitions": {
            "fwhm": "px, geometric mean of the major- and minor-axis FWHM of a pixel-integrated elliptical Moffat",
            "ellipticity": "1 - minor/major",
            "angle": "degrees, major axis, counter-clockwise from +x (x = column, y = row, row 0 at the bottom)",
            "e1, e2": "ellipticity * (cos, sin)(2 angle)",
            "asym_x, asym_y": "coma-like third-moment asymmetry (dimensionless, 0 = symmetric)",
        },
        "summary": _summary(f),
        "field": f.to_dict(),
        "notes": list(f.notes),
    }
    if meas is not None:
        s = meas.stars
        u = s.used
        out["stars"] = {k: np.asarray(getattr(s, k))[u].tolist() for k in ("channel", "x", "y", "fwhm", "beta", "ellipticity", "angle", "snr")}
    return out
